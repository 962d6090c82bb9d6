//! The sidecar following its pod's config stream from the controller.
//!
//! The stream is one HTTP/2 request: the controller's snapshots come down its response, and
//! the sidecar's acknowledgements go up its request body, one line per snapshot: applied,
//! or refused and why (see docs/controller.md). Each snapshot is checked and applied whole
//! (requests in flight keep the config they started with); one that carries fields this
//! sidecar does not know is refused, since enforcing part of it would be claiming what it
//! does not do. When the controller is away the last good config stays in force, window
//! schedules included, so maintenance still starts and ends on time; the sidecar reconnects
//! with exponential backoff and full jitter, so that a restarted controller is not met by
//! every sidecar at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::snapshot::{Config, ConfigTx, publish};
use super::wire::{AckMessage, PodSnapshot, SIDECAR_VERSION_HEADER, StreamMessage};

/// The acknowledgements waiting to go up; the sidecar never has more than a few.
const ACKS_QUEUED: usize = 16;

/// Where the sidecar's config comes from when a controller runs.
#[derive(Clone, Debug)]
pub struct ControllerSource {
    /// Base URL of the controller's stream endpoint: `https://host:port`, or
    /// `http://` to a loopback address (nothing leaves the machine, so the token may too).
    pub url: String,
    /// Trust for `https://`: only the CA the sidecar was injected with.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub namespace: String,
    pub pod: String,
    /// The pod's projected ServiceAccount token (audience `portcullis`), re-read on every
    /// connection since the kubelet rotates it.
    pub token_file: PathBuf,
    /// No line for this long (keepalives included) means the connection is dead.
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read the token file {path}: {source}")]
    Token { path: String, source: std::io::Error },
    #[error(
        "invalid controller URL {0:?}: https://host:port (with a CA), or http:// to a \
         loopback address only, since the pod's token must not cross the network in clear"
    )]
    Url(String),
    #[error("TLS with the controller failed: {0}")]
    Tls(std::io::Error),
    #[error("cannot reach the controller: {0}")]
    Connect(std::io::Error),
    #[error("the controller refused the stream: {status} {body}")]
    Refused { status: StatusCode, body: String },
    #[error("the stream broke: {0}")]
    Stream(String),
    #[error("no word from the controller for {0:?}")]
    Silent(Duration),
    #[error("the controller ended the stream")]
    Ended,
}

/// What one connection did, for logs and metrics.
#[derive(Debug)]
pub enum FollowEvent {
    Applied { version: u64, generation: u64 },
    Refused(String),
    Disconnected(FollowError),
}

/// Exponential backoff with full jitter (AWS architecture blog's "full jitter").
struct Backoff {
    attempt: u32,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(30);

    fn next(&mut self) -> Duration {
        let ceiling = Self::BASE.saturating_mul(1 << self.attempt.min(16)).min(Self::CAP);
        self.attempt += 1;
        Duration::from_millis(fastrand::u64(0..=ceiling.as_millis() as u64))
    }
}

impl ControllerSource {
    /// Follows the stream for as long as the process runs.
    pub async fn follow(
        self,
        tx: ConfigTx,
        ready: Arc<AtomicBool>,
        mut on_event: impl FnMut(FollowEvent),
    ) {
        let mut backoff = Backoff { attempt: 0 };
        loop {
            let outcome = self.session(&tx, &ready, &mut backoff, &mut on_event).await;
            on_event(FollowEvent::Disconnected(outcome));
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// One connection, until it fails.
    async fn session(
        &self,
        tx: &ConfigTx,
        ready: &AtomicBool,
        backoff: &mut Backoff,
        on_event: &mut impl FnMut(FollowEvent),
    ) -> FollowError {
        let (mut body, acks) = match self.open().await {
            Ok(opened) => opened,
            Err(e) => return e,
        };
        let mut lines = Lines::default();
        loop {
            let frame = match tokio::time::timeout(self.idle_timeout, body.frame()).await {
                Err(_) => return FollowError::Silent(self.idle_timeout),
                Ok(None) => return FollowError::Ended,
                Ok(Some(Err(e))) => return FollowError::Stream(e.to_string()),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            lines.push(&data);
            while let Some(line) = lines.next_line() {
                let ack = match decode_line(&line) {
                    Decoded::Keepalive | Decoded::Ignored => continue,
                    Decoded::Config { version, config } => {
                        let generation = publish(tx, *config);
                        ready.store(true, Ordering::Release);
                        backoff.attempt = 0;
                        on_event(FollowEvent::Applied { version, generation });
                        AckMessage::Applied { version }
                    }
                    Decoded::Refused { version, reason, unknown_fields } => {
                        on_event(FollowEvent::Refused(reason.clone()));
                        AckMessage::Refused { version, reason, unknown_fields }
                    }
                };
                let mut line = serde_json::to_vec(&ack).expect("an acknowledgement serializes");
                line.push(b'\n');
                // A closed request body means a broken stream, found on the next read.
                let _ = acks.send(Bytes::from(line)).await;
            }
            if lines.overflowed() {
                return FollowError::Stream("a line longer than 16 MiB".into());
            }
        }
    }

    async fn open(
        &self,
    ) -> Result<(hyper::body::Incoming, tokio::sync::mpsc::Sender<Bytes>), FollowError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|source| {
            FollowError::Token { path: self.token_file.display().to_string(), source }
        })?;
        let base: Uri = self.url.parse().map_err(|_| FollowError::Url(self.url.clone()))?;
        let (Some(scheme), Some(authority)) = (base.scheme_str(), base.authority()) else {
            return Err(FollowError::Url(self.url.clone()));
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let tls = match (scheme, &self.tls) {
            ("https", Some(tls)) => Some(tls),
            ("http", _) if is_loopback(host) => None,
            _ => return Err(FollowError::Url(self.url.clone())),
        };
        let tcp = TcpStream::connect((host, port)).await.map_err(FollowError::Connect)?;
        let mut sender = match tls {
            Some(tls) => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| FollowError::Url(self.url.clone()))?;
                let mut tls = (**tls).clone();
                tls.alpn_protocols = vec![b"h2".to_vec()];
                let stream = TlsConnector::from(Arc::new(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(FollowError::Tls)?;
                handshake(stream).await?
            }
            None => handshake(tcp).await?,
        };
        let path = format!("{scheme}://{authority}/v1/config/{}/{}", self.namespace, self.pod);
        let (acks, queued) = tokio::sync::mpsc::channel::<Bytes>(ACKS_QUEUED);
        let lines = futures::stream::unfold(queued, |mut queued| async move {
            let line = queued.recv().await?;
            Some((Ok(Frame::data(line)), queued))
        });
        let req = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(SIDECAR_VERSION_HEADER, env!("CARGO_PKG_VERSION"))
            .body(StreamBody::new(lines).boxed_unsync())
            .map_err(|e| FollowError::Stream(e.to_string()))?;
        let response =
            sender.send_request(req).await.map_err(|e| FollowError::Stream(e.to_string()))?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body =
                response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(FollowError::Refused {
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        Ok((response.into_body(), acks))
    }
}

/// The config stream cut into lines, as its bytes arrive in frames of any size.
#[derive(Debug, Default)]
pub struct Lines {
    buffer: BytesMut,
}

impl Lines {
    /// The longest line waited for; past it the stream is given up.
    pub const MAX_LINE: usize = 16 << 20;

    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete line, without its newline.
    pub fn next_line(&mut self) -> Option<BytesMut> {
        let end = self.buffer.iter().position(|b| *b == b'\n')?;
        let mut line = self.buffer.split_to(end + 1);
        line.truncate(end);
        Some(line)
    }

    /// Whether more than [`Lines::MAX_LINE`] bytes wait without a newline.
    pub fn overflowed(&self) -> bool {
        self.pending() > Self::MAX_LINE
    }

    /// Bytes waiting for their newline.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// What one line of the stream asks of the sidecar.
#[derive(Debug)]
pub enum Decoded {
    Keepalive,
    /// A message of a type this sidecar does not know, from a newer controller: nothing
    /// to enforce, so nothing to refuse.
    Ignored,
    /// A snapshot whose whole config passed every check: to be applied whole.
    Config {
        version: u64,
        config: Box<Config>,
    },
    /// An unreadable line, a snapshot with fields this sidecar does not know, or one that
    /// failed a check: the last good config stays.
    Refused {
        version: Option<u64>,
        reason: String,
        unknown_fields: Vec<String>,
    },
}

/// Reads one line of the stream (without its newline) and checks the config it carries.
pub fn decode_line(line: &[u8]) -> Decoded {
    let refused = |version, reason| Decoded::Refused { version, reason, unknown_fields: vec![] };
    let snapshot = match serde_json::from_slice::<StreamMessage>(line) {
        Ok(StreamMessage::Keepalive) => return Decoded::Keepalive,
        Ok(StreamMessage::Snapshot(snapshot)) => snapshot,
        Err(e) => {
            let value = serde_json::from_slice::<serde_json::Value>(line).ok();
            let kind = value.as_ref().and_then(|v| v.get("type")?.as_str());
            if kind.is_some_and(|k| k != "snapshot" && k != "keepalive") {
                return Decoded::Ignored;
            }
            let version = value.as_ref().and_then(|v| v.get("version")?.as_u64());
            return refused(version, format!("unreadable stream line: {e}"));
        }
    };
    let unknown_fields = unknown_fields(line);
    if !unknown_fields.is_empty() {
        let reason = format!(
            "this sidecar ({}) does not know {}: it is older than the controller",
            env!("CARGO_PKG_VERSION"),
            unknown_fields.join(", ")
        );
        return Decoded::Refused { version: Some(snapshot.version), reason, unknown_fields };
    }
    match snapshot.config.to_config() {
        Ok(config) => Decoded::Config { version: snapshot.version, config: Box::new(config) },
        Err(e) => refused(Some(snapshot.version), e.to_string()),
    }
}

/// The fields of a snapshot line that this sidecar's types do not have.
fn unknown_fields(line: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(mut message)) = serde_json::from_slice(line) else {
        return Vec::new();
    };
    message.remove("type");
    let mut unknown = Vec::new();
    let _: Result<PodSnapshot, _> =
        serde_ignored::deserialize(serde_json::Value::Object(message), |path| {
            unknown.push(field_path(&path))
        });
    unknown
}

/// A field's path as docs and errors write it: `config.windows[0].spec.x`.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

type AckBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// An HTTP/2 connection over `io`, driven on its own task.
async fn handshake<IO>(
    io: IO,
) -> Result<hyper::client::conn::http2::SendRequest<AckBody>, FollowError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| FollowError::Stream(e.to_string()))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_be_plain() {
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("portcullis.portcullis-system.svc") && !is_loopback("10.0.0.1"));
    }

    #[tokio::test]
    async fn a_plain_url_to_another_host_is_refused_before_connecting() {
        let source = ControllerSource {
            url: "http://192.0.2.1:8090".into(),
            tls: None,
            namespace: "shop".into(),
            pod: "web-1".into(),
            token_file: "/nonexistent".into(),
            idle_timeout: Duration::from_secs(1),
        };
        let err = source.open().await.expect_err("refused");
        // The token file is read first; with one present the URL is what refuses.
        assert!(matches!(err, FollowError::Token { .. }), "{err}");
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "token").unwrap();
        let source = ControllerSource { token_file: token.path().into(), ..source };
        let err = source.open().await.expect_err("refused");
        assert!(matches!(err, FollowError::Url(_)), "{err}");
    }

    fn refusal(line: &str) -> (Option<u64>, String, Vec<String>) {
        match decode_line(line.as_bytes()) {
            Decoded::Refused { version, reason, unknown_fields } => {
                (version, reason, unknown_fields)
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_snapshot_with_fields_this_sidecar_does_not_know_is_refused_by_name() {
        let known = r#"{"type":"snapshot","version":7,"config":{"policy":{"name":"shop/p","spec":{"timeouts":{"request":"3s"}}}}}"#;
        assert!(matches!(decode_line(known.as_bytes()), Decoded::Config { version: 7, .. }));
        let newer = r#"{"type":"snapshot","version":8,"config":{"policy":{"name":"shop/p","spec":{"timeouts":{"request":"3s","retryBudget":"10%"}}}}}"#;
        let (version, reason, unknown) = refusal(newer);
        assert_eq!(version, Some(8));
        assert_eq!(unknown, ["config.policy.spec.timeouts.retryBudget"]);
        assert_eq!(
            reason,
            format!(
                "this sidecar ({}) does not know config.policy.spec.timeouts.retryBudget: it is \
                 older than the controller",
                env!("CARGO_PKG_VERSION")
            )
        );
        let invalid = r#"{"type":"snapshot","version":9,"config":{"windows":[{"name":"shop/w","created":"2026-01-01T00:00:00Z","spec":{"schedule":"0 2 * * *"}}]}}"#;
        let (version, reason, unknown) = refusal(invalid);
        assert_eq!((version, unknown.len()), (Some(9), 0));
        assert_eq!(reason, "shop/w: spec.duration: a schedule needs a positive duration");
        assert_eq!(refusal("not json").0, None);
        assert!(matches!(decode_line(br#"{"type":"goaway"}"#), Decoded::Ignored));
        assert!(matches!(decode_line(br#"{"type":"keepalive"}"#), Decoded::Keepalive));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_full_jitter() {
        let mut b = Backoff { attempt: 0 };
        let draws: Vec<Duration> = (0..20).map(|_| b.next()).collect();
        assert!(draws.iter().all(|d| *d <= Backoff::CAP));
        assert!(draws[0] <= Backoff::BASE);
        let late: Vec<Duration> = (0..200).map(|_| Backoff { attempt: 10 }.next()).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(15)), "reaches toward the cap");
        assert!(late.iter().any(|d| *d < Duration::from_secs(15)), "and is spread below it");
    }
}
