//! Admin servers: health, readiness, metrics, and for the sidecar the effective config and
//! the app container's `preStop` hook (`prestop`), and what it enforces now (`state`). They listen on localhost unless told
//! otherwise; `/config`, which shows the whole policy, answers loopback clients only even
//! then.

pub mod prestop;
mod reply;
pub mod state;

pub use reply::reply;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use prestop::StopHook;

use crate::config::ConfigRx;
use crate::proxy::Lifecycle;
use crate::telemetry::metrics::Metrics;

/// What an admin server answers; the sidecar's and the controller's differ in their details.
pub trait Endpoints: Clone + Send + Sync + 'static {
    fn ready(&self) -> bool;
    fn metrics(&self) -> String;
    /// Paths beyond /livez, /readyz and /metrics; `local` says whether the client is on
    /// this host (loopback), for what only the pod itself may see.
    fn other(&self, _path: &str, _local: bool) -> Option<Response<Full<Bytes>>> {
        None
    }
    /// Paths answered later, such as the sidecar's `/prestop`: the answer to come.
    fn later(&self, _req: &Request<Incoming>, _local: bool) -> Option<Later> {
        None
    }
}

/// An answer that takes its time.
pub type Later = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Serves /livez, /readyz, /metrics and the endpoints' own paths, GET and HEAD only.
pub async fn serve<E: Endpoints>(listener: TcpListener, endpoints: E) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Usually out of file descriptors: pause rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let endpoints = endpoints.clone();
                let local = peer.ip().is_loopback();
                async move {
                    let response = match endpoints.later(&req, local) {
                        Some(later) => later.await,
                        None => route(&endpoints, &req, local),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route<E: Endpoints>(
    endpoints: &E,
    req: &Request<Incoming>,
    local: bool,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n".into());
    }
    match req.uri().path() {
        "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if endpoints.ready() => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".into()),
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            endpoints.metrics(),
        ),
        path => endpoints
            .other(path, local)
            .unwrap_or_else(|| reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into())),
    }
}

/// The sidecar's admin endpoints.
#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub config: ConfigRx,
    /// Set once a config is in force.
    pub ready: Arc<AtomicBool>,
    /// `/prestop`, and whether the pod is stopping.
    pub stop: Arc<StopHook>,
    pub lifecycle: Arc<Lifecycle>,
    /// Samples of the 5xx totals, for `/v1/state`.
    pub recent: Arc<state::Recent>,
}

impl Endpoints for Admin {
    /// Not ready once the pod is stopping, for good: a terminating endpoint that says it
    /// still serves is one that kube-proxy may fall back to.
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.lifecycle.is_stopping()
    }

    fn later(&self, req: &Request<Incoming>, local: bool) -> Option<Later> {
        if req.uri().path() != "/prestop" || req.method() != Method::GET {
            return None;
        }
        let (stop, headers) = (self.stop.clone(), req.headers().clone());
        Some(Box::pin(async move { stop.call(&headers, local).await }))
    }

    fn metrics(&self) -> String {
        self.metrics.scrape()
    }

    /// The whole effective config, to the pod itself only: in a pod the admin port listens
    /// on every address for the kubelet's probes and Prometheus, and the config (bypass
    /// digests included) is nobody else's business. `kubectl port-forward` counts as local.
    fn other(&self, path: &str, local: bool) -> Option<Response<Full<Bytes>>> {
        if path == state::STATE_PATH {
            return Some(self.state());
        }
        (path == "/config").then(|| {
            if !local {
                let message = "/config is shown to loopback clients only (kubectl port-forward)\n";
                return reply(StatusCode::FORBIDDEN, "text/plain", message.into());
            }
            let snapshot = self.config.borrow().clone();
            let body = serde_json::to_string_pretty(&snapshot).expect("config serializes");
            reply(StatusCode::OK, "application/json", body + "\n")
        })
    }
}

impl Admin {
    fn state(&self) -> Response<Full<Bytes>> {
        let totals = state::totals_5xx(&self.metrics.encode());
        let recent = self.recent.since_oldest(std::time::Instant::now(), &totals);
        let connected = self.metrics.controller_connected.get() == 1;
        let snapshot = self.config.borrow().clone();
        let status = state::status_of(&snapshot, jiff::Timestamp::now(), connected, recent);
        let body = serde_json::to_string_pretty(&status).expect("a state serializes");
        reply(StatusCode::OK, "application/json", body + "\n")
    }

    /// Samples the 5xx totals every [`state::SAMPLE_EVERY`] for as long as it runs.
    pub async fn sample_recent(self) {
        let mut tick = tokio::time::interval(state::SAMPLE_EVERY);
        loop {
            let at = tick.tick().await.into_std();
            self.recent.sample(at, state::totals_5xx(&self.metrics.encode()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header;

    use super::*;

    #[test]
    fn the_config_is_shown_to_the_pod_itself_only() {
        let (_tx, config) = crate::config::channel();
        let lifecycle = Arc::new(Lifecycle::default());
        let stop = Arc::new(StopHook::new(lifecycle.clone(), Duration::ZERO, None));
        let admin = Admin {
            metrics: Arc::default(),
            config,
            ready: Arc::default(),
            stop,
            lifecycle,
            recent: Arc::default(),
        };
        let refused = admin.other("/config", false).expect("a response");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let shown = admin.other("/config", true).expect("a response");
        assert_eq!(shown.status(), StatusCode::OK);
        assert_eq!(shown.headers()[header::CONTENT_TYPE], "application/json");
        assert!(admin.other("/elsewhere", true).is_none());
    }
}
