//! The controller's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use prometheus_client::encoding::EncodeLabelSet;

use super::metrics::ResultLabels;

/// An admission of a pod by the injection webhook: `result` is `injected`, `skipped` or
/// `failed`; `reason` says why (`injected` for a success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InjectionLabels {
    pub result: &'static str,
    pub reason: &'static str,
}

/// The `reason`s of `portcullis_injections_total{result="failed"}`. Each series is there at
/// 0 from the start, so that an alert sees the first failure as an increase (a series that
/// is born at 1 has no increase to see).
pub mod injection_failure {
    pub const NO_OBJECT: &str = "no_object";
    pub const UNDECODABLE_POD: &str = "undecodable_pod";
    pub const STOP_TOKEN_UNAVAILABLE: &str = "stop_token_unavailable";
    pub const CA_UNAVAILABLE: &str = "ca_unavailable";
    pub const INVALID_MUTATION: &str = "invalid_mutation";
    pub const INVALID_REVIEW: &str = "invalid_review";
    pub const ALL: [&str; 6] = [
        NO_OBJECT,
        UNDECODABLE_POD,
        STOP_TOKEN_UNAVAILABLE,
        CA_UNAVAILABLE,
        INVALID_MUTATION,
        INVALID_REVIEW,
    ];
}

/// The `result`s of `portcullis_controller_status_writes_total`, both there at 0 from the
/// start, so that the first error is an increase to alert on.
pub mod status_write {
    pub const OK: &str = "ok";
    pub const ERROR: &str = "error";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SidecarStateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SidecarVersionLabels {
    pub version: String,
}

pub struct ControllerMetrics {
    pub registry: Registry,
    pub streams: Gauge,
    pub snapshots_sent: Counter,
    pub index_pods: Gauge,
    pub index_resources: Gauge,
    pub status_writes: Family<ResultLabels, Counter>,
    pub propagation: Histogram,
    /// `portcullis_injections_total{result,reason}`.
    pub injections: Family<InjectionLabels, Counter>,
    /// Unix time at which the serving certificate in use expires.
    pub certificate_expiry: Gauge,
    /// Serving certificates issued or loaded, by result.
    pub certificate_rotations: Family<ResultLabels, Counter>,
    /// The sidecars this replica knows, by state.
    pub sidecars: Family<SidecarStateLabels, Gauge>,
    /// The sidecars this replica knows, by the version they announced.
    pub sidecar_versions: Family<SidecarVersionLabels, Gauge>,
    pub resident_memory: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let injections = Family::<InjectionLabels, Counter>::default();
        for reason in injection_failure::ALL {
            let _ = injections.get_or_create(&InjectionLabels { result: "failed", reason });
        }
        root.register(
            "portcullis_injections",
            "Pods seen by the injection webhook, by result and reason",
            injections.clone(),
        );
        let registry = root.sub_registry_with_prefix("portcullis_controller");
        let streams = Gauge::default();
        registry.register("streams", "Config streams open now", streams.clone());
        let snapshots_sent = Counter::default();
        registry.register("snapshots_sent", "Snapshots sent to sidecars", snapshots_sent.clone());
        let index_pods = Gauge::default();
        registry.register("index_pods", "Pods in the index", index_pods.clone());
        let index_resources = Gauge::default();
        registry.register(
            "index_resources",
            "UpstreamPolicies, MaintenanceWindows and Secrets in the index",
            index_resources.clone(),
        );
        let status_writes = Family::<ResultLabels, Counter>::default();
        for result in [status_write::OK, status_write::ERROR] {
            let _ = status_writes.get_or_create(&ResultLabels { result });
        }
        registry.register("status_writes", "Status writes, by result", status_writes.clone());
        // 100 µs to about 3 s.
        let propagation = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "propagation_seconds",
            "From a resource change to the snapshot leaving for a pod",
            propagation.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time)",
            certificate_expiry.clone(),
        );
        let certificate_rotations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_rotations",
            "Serving certificates issued or loaded, by result",
            certificate_rotations.clone(),
        );
        let sidecars = Family::<SidecarStateLabels, Gauge>::default();
        registry.register(
            "sidecars",
            "Sidecars that follow (or last followed) this replica, by state: synced, pending, \
             refused, outdated, disconnected",
            sidecars.clone(),
        );
        let sidecar_versions = Family::<SidecarVersionLabels, Gauge>::default();
        registry.register(
            "sidecar_versions",
            "Sidecars that follow (or last followed) this replica, by announced version \
             (unknown: too old to say)",
            sidecar_versions.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the controller's process",
            resident_memory.clone(),
        );
        ControllerMetrics {
            registry: root,
            resident_memory,
            sidecars,
            sidecar_versions,
            streams,
            snapshots_sent,
            index_pods,
            index_resources,
            status_writes,
            propagation,
            injections,
            certificate_expiry,
            certificate_rotations,
        }
    }
}

impl ControllerMetrics {
    pub fn encode(&self) -> String {
        super::process::update_resident(&self.resident_memory);
        super::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reason_is_exported_at_zero_from_the_start() {
        let text = ControllerMetrics::default().encode();
        for reason in injection_failure::ALL {
            let line =
                format!(r#"portcullis_injections_total{{result="failed",reason="{reason}"}} 0"#);
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("portcullis_controller_process_resident_memory_bytes "))
        );
    }
}
