//! The sidecar's Prometheus metrics, served on the admin port at `/metrics`.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::process;

/// Who made a response: the app, or the sidecar itself.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Source {
    App,
    Proxy,
}

impl EncodeLabelValue for Source {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Source::App => "app",
            Source::Proxy => "proxy",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub status: u16,
    pub reason: &'static str,
    pub source: Source,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Retry-After values handed out, in seconds: one second (a pod starting or stopping)
/// up to a day (a long maintenance window).
const RETRY_AFTER_BUCKETS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

pub struct Metrics {
    pub registry: Registry,
    /// The Retry-After of every response the sidecar makes with one, by reason.
    pub retry_after: Family<ReasonLabels, Histogram>,
    pub resident_memory: Gauge,
    pub responses: Family<ResponseLabels, Counter>,
    /// The app's own responses by status (100 to 599), each a handle on its counter in
    /// `responses`: every proxied response is counted, and a label set hashed on each
    /// would be one of the larger costs of a request.
    app_responses: Box<[OnceLock<Counter>]>,
    pub app_latency: Histogram,
    pub in_flight: Gauge,
    pub streams_ended: Family<ReasonLabels, Counter>,
    pub retries: Counter,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_generation: Gauge<u64, AtomicU64>,
    pub shed: Family<ReasonLabels, Counter>,
    pub maintenance_active: Family<WindowLabels, Gauge>,
    /// While maintenance is on, its planned end (Unix seconds); 0 when off or open-ended.
    pub maintenance_until: Gauge,
    /// 1 while the config stream from the controller is open (controller mode only).
    pub controller_connected: Gauge,
    pub queue_depth: Gauge,
    pub concurrency_limit: Gauge,
    /// Tasks alive on the sidecar's runtime, read from tokio at each scrape.
    pub runtime_alive_tasks: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub window: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "responses",
            "Responses sent to clients, by status, reason and source (app or proxy)",
            responses.clone(),
        );
        // Buckets from 1 ms to about 33 s, doubling.
        let app_latency = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
        );
        registry.register(
            "app_response_seconds",
            "Time from sending a request to the app to receiving its response headers",
            app_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being handled now", in_flight.clone());
        let streams_ended = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "streams_ended",
            "Response streams cut short after their headers were sent, by reason",
            streams_ended.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "app_retries",
            "Idempotent requests retried on a fresh connection after a reused one failed",
            retries.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register("config_reloads", "Config reloads, by result", config_reloads.clone());
        let config_generation = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "config_generation",
            "Generation of the config in force",
            config_generation.clone(),
        );
        let shed = Family::<ReasonLabels, Counter>::default();
        registry.register("shed", "Requests shed by overload protection, by reason", shed.clone());
        let maintenance_active = Family::<WindowLabels, Gauge>::default();
        registry.register(
            "maintenance_active",
            "1 while a maintenance window is on, per window",
            maintenance_active.clone(),
        );
        let maintenance_until = Gauge::default();
        registry.register(
            "maintenance_until_timestamp_seconds",
            "While maintenance is on, when it is planned to end (Unix time; 0: off or open-ended)",
            maintenance_until.clone(),
        );
        let controller_connected = Gauge::default();
        registry.register(
            "controller_connected",
            "1 while the config stream from the controller is open",
            controller_connected.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests waiting for a turn at the app",
            queue_depth.clone(),
        );
        let concurrency_limit = Gauge::default();
        registry.register(
            "concurrency_limit",
            "The in-flight limit in force (0: no limit)",
            concurrency_limit.clone(),
        );
        let runtime_alive_tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive on the sidecar's runtime",
            runtime_alive_tasks.clone(),
        );
        let retry_after = Family::<ReasonLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(RETRY_AFTER_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "retry_after_seconds",
            "Retry-After of the responses the sidecar makes with one, by reason",
            retry_after.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the sidecar's process",
            resident_memory.clone(),
        );
        Metrics {
            registry,
            retry_after,
            resident_memory,
            shed,
            maintenance_active,
            maintenance_until,
            controller_connected,
            queue_depth,
            concurrency_limit,
            runtime_alive_tasks,
            responses,
            app_responses: (100..600).map(|_| OnceLock::new()).collect(),
            app_latency,
            in_flight,
            streams_ended,
            retries,
            config_reloads,
            config_generation,
        }
    }
}

impl Metrics {
    pub fn response(&self, status: u16, reason: &'static str, source: Source) {
        self.responses.get_or_create(&ResponseLabels { status, reason, source }).inc();
    }

    /// A response the sidecar made itself, with the Retry-After it handed out, if any.
    pub fn proxy_response(&self, status: u16, reason: &'static str, retry_after: Option<u64>) {
        self.response(status, reason, Source::Proxy);
        if let Some(seconds) = retry_after {
            #[allow(clippy::cast_precision_loss)] // whole seconds, far below 2^52
            self.retry_after.get_or_create(&ReasonLabels { reason }).observe(seconds as f64);
        }
    }

    /// One of the app's own responses (reason `none`), counted through its status's handle.
    pub fn app_response(&self, status: u16) {
        let Some(slot) =
            status.checked_sub(100).and_then(|i| self.app_responses.get(usize::from(i)))
        else {
            return self.response(status, "none", Source::App);
        };
        let labels = ResponseLabels { status, reason: "none", source: Source::App };
        slot.get_or_init(|| self.responses.get_or_create(&labels).clone()).inc();
    }

    /// The registry as text for a scrape: the gauges read at scrape time (the runtime's
    /// task count, on the runtime that serves the scrape, the sidecar's only one; the
    /// resident memory) are read first.
    pub fn scrape(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            self.runtime_alive_tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        process::update_resident(&self.resident_memory);
        self.encode()
    }

    /// The registry as text, as it stands (for readers of the counters, such as `/v1/state`).
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// A registry in the Prometheus/OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Counts a request in flight for as long as it lives.
pub struct InFlight(Gauge);

impl InFlight {
    pub fn start(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        InFlight(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_encoded_text_counts_the_runtime_tasks() {
        let metrics = Metrics::default();
        let (tx, rx) = tokio::sync::watch::channel(());
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let _ = rx.changed().await;
                })
            })
            .collect();
        let alive = |text: &str| -> i64 {
            let line = text
                .lines()
                .find(|l| l.starts_with("portcullis_runtime_alive_tasks "))
                .expect("the gauge is encoded");
            line.rsplit(' ').next().unwrap().parse().expect("a number")
        };
        let text = metrics.scrape();
        assert!(text.contains(
            "# HELP portcullis_runtime_alive_tasks Tasks alive on the sidecar's runtime."
        ));
        assert_eq!(alive(&text), 3);
        drop(tx);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(alive(&metrics.scrape()), 0);
    }

    #[test]
    fn cached_and_uncached_responses_land_on_the_same_series() {
        let metrics = Metrics::default();
        metrics.app_response(200);
        metrics.response(200, "none", Source::App);
        metrics.app_response(599);
        metrics.response(502, "connection_refused", Source::Proxy);
        metrics.app_response(99);
        let text = metrics.encode();
        for line in [
            r#"portcullis_responses_total{status="200",reason="none",source="app"} 2"#,
            r#"portcullis_responses_total{status="599",reason="none",source="app"} 1"#,
            r#"portcullis_responses_total{status="502",reason="connection_refused",source="proxy"} 1"#,
            r#"portcullis_responses_total{status="99",reason="none",source="app"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn retry_after_is_counted_by_reason_and_only_where_handed_out() {
        let metrics = Metrics::default();
        metrics.proxy_response(503, "maintenance", Some(840));
        metrics.proxy_response(503, "app_stopping", Some(1));
        metrics.proxy_response(504, "timeout", None);
        let text = metrics.scrape();
        for line in [
            r#"portcullis_retry_after_seconds_sum{reason="maintenance"} 840.0"#,
            r#"portcullis_retry_after_seconds_count{reason="maintenance"} 1"#,
            r#"portcullis_retry_after_seconds_bucket{le="300.0",reason="maintenance"} 0"#,
            r#"portcullis_retry_after_seconds_bucket{le="900.0",reason="maintenance"} 1"#,
            r#"portcullis_retry_after_seconds_bucket{le="1.0",reason="app_stopping"} 1"#,
            r#"portcullis_responses_total{status="504",reason="timeout",source="proxy"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"retry_after_seconds_count{reason="timeout"}"#), "{text}");
        let resident = text
            .lines()
            .find_map(|l| l.strip_prefix("portcullis_process_resident_memory_bytes "))
            .expect("the gauge is encoded");
        assert!(resident.parse::<i64>().unwrap() > 1024 * 1024, "{resident}");
    }
}
