//! The config stream: `POST /v1/config/{namespace}/{pod}` with the pod's token as a bearer
//! token. The answer is one long response of newline-delimited JSON (HTTP/2, or HTTP/1.1
//! chunked): the pod's current snapshot, a new one on every real change, and a keepalive
//! line whenever nothing happened for a while. The request body, beside it, carries the
//! sidecar's acknowledgements ([`AckMessage`]), one line per snapshot; the sidecar names
//! its version in a header. A `GET` (sidecars from before acknowledgements) gets the same
//! stream, and its sidecar counts as outdated: nothing it holds can be confirmed.
//!
//! Nothing is streamed before every watched kind's first list is in the index: a stream
//! opened sooner waits for it, and is told to come back if it takes long.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::auth::{AuthError, Authenticator};
use super::index::{Index, ObjectKey};
use super::sidecars::{Hello, Sidecars, StreamId};
use crate::config::follow::Lines;
use crate::config::wire::{AckMessage, SIDECAR_VERSION_HEADER, StreamMessage};
use crate::telemetry::controller_metrics::ControllerMetrics;

/// How long a stream opened before the first lists are in waits for them before it is
/// told to come back.
const LIST_WAIT: Duration = Duration::from_secs(5);
/// The longest acknowledgement line read; a longer one ends the reading.
const MAX_ACK_LINE: usize = 64 << 10;

pub type StreamResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

#[derive(Clone)]
pub struct StreamServer {
    pub index: Arc<Mutex<Index>>,
    pub auth: Authenticator,
    pub keepalive: Duration,
    pub metrics: Arc<ControllerMetrics>,
    /// TLS for the streams, so that the pods' tokens never cross the network in clear.
    /// `None` only where nothing leaves the machine (tests).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where each sidecar stands, from what its stream says.
    pub sidecars: Arc<Mutex<Sidecars>>,
}

/// Counts a stream as open for as long as it lives, and tells the registry when it ends.
struct OpenStream {
    metrics: Arc<ControllerMetrics>,
    sidecars: Arc<Mutex<Sidecars>>,
    pod: ObjectKey,
    id: StreamId,
}

impl OpenStream {
    fn new(server: &StreamServer, pod: ObjectKey, id: StreamId) -> Self {
        server.metrics.streams.inc();
        OpenStream { metrics: server.metrics.clone(), sidecars: server.sidecars.clone(), pod, id }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.metrics.streams.dec();
        let mut sidecars = self.sidecars.lock().unwrap_or_else(|e| e.into_inner());
        sidecars.disconnected(&self.pod, self.id, jiff::Timestamp::now());
    }
}

impl StreamServer {
    pub async fn serve(self, listener: TcpListener) {
        self.serve_until(listener, std::future::pending()).await;
    }

    /// Serves until `stop` resolves, then drops every open stream.
    pub async fn serve_until(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        let tls = self.tls.clone();
        let service = service_fn(move |req| {
            let server = self.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        crate::tls::serve::serve(listener, tls, service, stop).await;
    }

    pub async fn handle(&self, req: Request<Incoming>) -> StreamResponse {
        let acknowledges = match *req.method() {
            http::Method::POST => true,
            http::Method::GET => false,
            _ => {
                let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "POST or GET\n");
                response.headers_mut().insert(header::ALLOW, "POST, GET".parse().expect("valid"));
                return response;
            }
        };
        let Some(pod) = pod_of(req.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "expected /v1/config/{namespace}/{pod}\n");
        };
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let verdict = match token {
            Some(token) if !token.is_empty() => self.auth.check(token, &pod).await,
            _ => Err(AuthError::Missing),
        };
        if let Err(e) = verdict {
            tracing::warn!(pod = %pod, "config stream refused: {e}");
            let mut response = plain(e.status(), &format!("{e}\n"));
            if e.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            }
            return response;
        }
        let mut complete = self.index.lock().unwrap_or_else(|e| e.into_inner()).completion();
        let listed = tokio::time::timeout(LIST_WAIT, complete.wait_for(|done| *done)).await;
        if !matches!(listed, Ok(Ok(_))) {
            let text = "the controller has not listed every watched kind yet: come back shortly\n";
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, text);
            response.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("valid"));
            return response;
        }
        let version = req
            .headers()
            .get(SIDECAR_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(64).collect());
        let hello = Hello { version, acknowledges };
        let now = jiff::Timestamp::now();
        let id =
            self.sidecars.lock().unwrap_or_else(|e| e.into_inner()).connected(&pod, hello, now);
        let rx = self.index.lock().unwrap_or_else(|e| e.into_inner()).subscribe(&pod);
        tracing::info!(pod = %pod, acknowledges, "config stream opened");
        if acknowledges {
            tokio::spawn(read_acks(req.into_body(), self.sidecars.clone(), pod.clone(), id));
        }
        let open = OpenStream::new(self, pod, id);
        let state = (rx, true, self.keepalive, open);
        let lines = futures::stream::unfold(state, |(mut rx, first, keepalive, open)| async move {
            let changed = if first {
                true
            } else {
                match tokio::time::timeout(keepalive, rx.changed()).await {
                    Ok(Ok(())) => true,
                    Ok(Err(_)) => return None, // the index is gone: end the stream
                    Err(_) => false,
                }
            };
            let message = if changed {
                let published = rx.borrow_and_update().clone();
                open.sidecars.lock().unwrap_or_else(|e| e.into_inner()).sent(
                    &open.pod,
                    open.id,
                    published.clone(),
                );
                open.metrics.snapshots_sent.inc();
                open.metrics.propagation.observe(published.at.elapsed().as_secs_f64());
                StreamMessage::Snapshot(Box::new(published.snapshot.clone()))
            } else {
                StreamMessage::Keepalive
            };
            let mut line = serde_json::to_vec(&message).expect("a message serializes");
            line.push(b'\n');
            Some((Ok(Frame::data(Bytes::from(line))), (rx, false, keepalive, open)))
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(header::CACHE_CONTROL, "no-store")
            .body(StreamBody::new(lines).boxed_unsync())
            .expect("valid response")
    }
}

/// Reads a sidecar's acknowledgements until its request body ends.
async fn read_acks(
    mut body: Incoming,
    sidecars: Arc<Mutex<Sidecars>>,
    pod: ObjectKey,
    id: StreamId,
) {
    let mut lines = Lines::default();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        lines.push(&data);
        while let Some(line) = lines.next_line() {
            match serde_json::from_slice::<AckMessage>(&line) {
                Ok(ack) => {
                    let now = jiff::Timestamp::now();
                    sidecars
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .acknowledged(&pod, id, ack, now);
                }
                Err(e) => tracing::warn!(pod = %pod, "unreadable acknowledgement ignored: {e}"),
            }
        }
        if lines.pending() > MAX_ACK_LINE {
            tracing::warn!(pod = %pod, "acknowledgement line too long: no longer read");
            return;
        }
    }
}

/// `/v1/config/{namespace}/{pod}`.
fn pod_of(path: &str) -> Option<ObjectKey> {
    let rest = path.strip_prefix("/v1/config/")?;
    let (namespace, name) = rest.split_once('/')?;
    let valid = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    (valid(namespace) && valid(name)).then(|| ObjectKey::new(namespace, name))
}

fn plain(status: StatusCode, text: &str) -> StreamResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.to_owned())).boxed_unsync())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_pod() {
        assert_eq!(
            pod_of("/v1/config/shop/checkout-1"),
            Some(ObjectKey::new("shop", "checkout-1"))
        );
        for bad in [
            "/v1/config/shop",
            "/v1/config//x",
            "/v1/config/a/b/c",
            "/v2/config/a/b",
            "/v1/config/a/../b",
        ] {
            assert_eq!(pod_of(bad), None, "{bad}");
        }
    }
}
