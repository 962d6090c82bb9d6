//! The plumbing of the bodies the proxy streams, in both directions: the error a body
//! stream fails with, the watchdog that cuts a stream short when it falls silent
//! (`timeouts.idle`) or runs past the whole exchange's deadline (`timeouts.request`), and
//! the client's request body on its way to the app.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::error::ProxyError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body stream was cut short by the proxy.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("the request deadline passed")]
    Deadline,
    #[error("the peer failed mid-body")]
    Peer,
}

impl StreamError {
    pub fn reason(self) -> &'static str {
        match self {
            StreamError::Idle(_) => "idle_timeout",
            StreamError::Deadline => "request_timeout",
            StreamError::Peer => "peer_error",
        }
    }

    /// What the client is answered when its request body fails before the app's response
    /// head: the same for both HTTP/1.1 clients and HTTP/2. `request_timeout` is the route's.
    pub fn to_proxy_error(self, request_timeout: Option<Duration>) -> ProxyError {
        match self {
            StreamError::Idle(d) => ProxyError::RequestBodyIdle(d),
            StreamError::Deadline => {
                ProxyError::RequestTimeout(request_timeout.unwrap_or_default())
            }
            StreamError::Peer => ProxyError::RequestBodyFailed,
        }
    }
}

/// A timer that fires at the earlier of "idle for too long" and the exchange's deadline.
///
/// Most bodies finish within a poll or two, so the timer is only armed when the body
/// actually waits, and the clock is only read then: silence is counted from the first
/// wait after a frame, which is later than the frame by no more than one poll.
pub(super) struct Watchdog {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    /// When the silence began; `None` while frames are flowing and no wait has begun.
    quiet_since: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Watchdog {
    pub(super) fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Self {
        Watchdog { idle, deadline, quiet_since: None, sleep: None }
    }

    fn wake_at(&self, quiet_since: Instant) -> Option<Instant> {
        let idle_at = self.idle.map(|d| quiet_since + d);
        match (idle_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called on every frame: silence is counted from the next wait.
    pub(super) fn activity(&mut self) {
        self.quiet_since = None;
    }

    /// Called when the body has nothing to give: arms the timer and tells whether it fired.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<StreamError> {
        if self.idle.is_none() && self.deadline.is_none() {
            return None;
        }
        let quiet_since = *self.quiet_since.get_or_insert_with(Instant::now);
        let at = self.wake_at(quiet_since)?;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return None;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(StreamError::Deadline)
        } else {
            Some(StreamError::Idle(self.idle.unwrap_or_default()))
        }
    }
}

/// The client's request body on its way to the app.
pub struct RequestBody(RequestBodyKind);

enum RequestBodyKind {
    Empty,
    Streaming { inner: Incoming, dog: Watchdog },
}

impl RequestBody {
    pub fn new(inner: Incoming, idle: Option<Duration>, deadline: Option<Instant>) -> Self {
        if inner.is_end_stream() {
            RequestBody::empty()
        } else {
            RequestBody(RequestBodyKind::Streaming { inner, dog: Watchdog::new(idle, deadline) })
        }
    }

    pub fn empty() -> Self {
        RequestBody(RequestBodyKind::Empty)
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.0, RequestBodyKind::Empty)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let RequestBodyKind::Streaming { inner, dog } = &mut self.get_mut().0 else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                dog.activity();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(Box::new(StreamError::Peer)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match dog.poll_expired(cx) {
                Some(why) => Poll::Ready(Some(Err(Box::new(why)))),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            RequestBodyKind::Empty => true,
            RequestBodyKind::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            RequestBodyKind::Empty => SizeHint::with_exact(0),
            RequestBodyKind::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// Finds the proxy's own stream error behind a hyper error, if that is what caused it.
pub fn stream_error_in(err: &(dyn std::error::Error + 'static)) -> Option<StreamError> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<StreamError>() {
            return Some(*found);
        }
        source = e.source();
    }
    None
}
