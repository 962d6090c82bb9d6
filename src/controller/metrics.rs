//! The controller's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::telemetry::metrics::ResultLabels;

pub struct ControllerMetrics {
    pub registry: Registry,
    pub streams: Gauge,
    pub snapshots_sent: Counter,
    pub index_pods: Gauge,
    pub index_resources: Gauge,
    pub status_writes: Family<ResultLabels, Counter>,
    pub propagation: Histogram,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis_controller");
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
        registry.register("status_writes", "Status writes, by result", status_writes.clone());
        // 100 µs to about 3 s.
        let propagation = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "propagation_seconds",
            "From a resource change to the snapshot leaving for a pod",
            propagation.clone(),
        );
        ControllerMetrics {
            registry,
            streams,
            snapshots_sent,
            index_pods,
            index_resources,
            status_writes,
            propagation,
        }
    }
}

impl ControllerMetrics {
    pub fn encode(&self) -> String {
        crate::telemetry::metrics::encode(&self.registry)
    }
}
