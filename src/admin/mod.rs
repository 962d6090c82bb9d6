//! The admin server: health, readiness, metrics and the effective config. It listens on
//! localhost unless told otherwise, since `/config` shows the whole policy.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::ConfigRx;
use crate::telemetry::metrics::Metrics;

#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub config: ConfigRx,
    /// Set once a config is in force.
    pub ready: Arc<AtomicBool>,
}

impl Admin {
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Usually out of file descriptors: pause rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.route(&req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "only GET and HEAD\n".into(),
            );
        }
        match req.uri().path() {
            "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::Acquire) => {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            }
            "/readyz" => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no config yet\n".into())
            }
            "/metrics" => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            "/config" => {
                let snapshot = self.config.borrow().clone();
                let body = serde_json::to_string_pretty(&snapshot).expect("config serializes");
                reply(StatusCode::OK, "application/json", body + "\n")
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
