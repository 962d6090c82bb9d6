//! The sidecar following its pod's config stream from the controller.
//!
//! Each snapshot is checked and applied whole (requests in flight keep the config they
//! started with). When the controller is away the last good config stays in force, window
//! schedules included, so maintenance still starts and ends on time; the sidecar reconnects
//! with exponential backoff and full jitter, so that a restarted controller is not met by
//! every sidecar at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::wire::StreamMessage;
use super::{ConfigTx, publish};

/// Where the sidecar's config comes from when a controller runs.
#[derive(Clone, Debug)]
pub struct ControllerSource {
    /// Base URL of the controller's stream endpoint (`http://host:port`).
    pub url: String,
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
    #[error("invalid controller URL {0:?}: only http://host:port is supported")]
    Url(String),
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
        let mut body = match self.open().await {
            Ok(body) => body,
            Err(e) => return e,
        };
        let mut buffer = BytesMut::new();
        loop {
            let frame = match tokio::time::timeout(self.idle_timeout, body.frame()).await {
                Err(_) => return FollowError::Silent(self.idle_timeout),
                Ok(None) => return FollowError::Ended,
                Ok(Some(Err(e))) => return FollowError::Stream(e.to_string()),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(end + 1);
                match serde_json::from_slice::<StreamMessage>(&line[..end]) {
                    Ok(StreamMessage::Keepalive) => {}
                    Ok(StreamMessage::Snapshot(snapshot)) => match snapshot.config.to_config() {
                        Ok(config) => {
                            let generation = publish(tx, config);
                            ready.store(true, Ordering::Release);
                            backoff.attempt = 0;
                            on_event(FollowEvent::Applied {
                                version: snapshot.version,
                                generation,
                            });
                        }
                        Err(e) => on_event(FollowEvent::Refused(e.to_string())),
                    },
                    Err(e) => {
                        on_event(FollowEvent::Refused(format!("unreadable stream line: {e}")))
                    }
                }
            }
            if buffer.len() > 16 << 20 {
                return FollowError::Stream("a line longer than 16 MiB".into());
            }
        }
    }

    async fn open(&self) -> Result<hyper::body::Incoming, FollowError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|source| {
            FollowError::Token { path: self.token_file.display().to_string(), source }
        })?;
        let base: Uri = self.url.parse().map_err(|_| FollowError::Url(self.url.clone()))?;
        let (Some("http"), Some(authority)) = (base.scheme_str(), base.authority()) else {
            return Err(FollowError::Url(self.url.clone()));
        };
        let address = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let stream = TcpStream::connect(&address).await.map_err(FollowError::Connect)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FollowError::Stream(e.to_string()))?;
        tokio::spawn(conn);
        let path = format!("/v1/config/{}/{}", self.namespace, self.pod);
        let req = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .body(Empty::<bytes::Bytes>::new())
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
        Ok(response.into_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
