//! The plumbing of the bodies the proxy streams, in both directions: the error a body
//! stream fails with, the watchdog that cuts a stream short when it falls silent
//! (`timeouts.idle`) or runs past the whole exchange's deadline (`timeouts.request`), and
//! the client's request body on its way to the app.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::duplex::{Direction, Duplex};
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
/// wait after a frame, which is later than the frame by no more than one poll. Linked to
/// the other direction of its exchange ([`Duplex`]), it counts silence both ways: when it
/// fires, frames the other way since the silence began count it again from the last one.
pub(super) struct Watchdog {
    /// `timeouts.idle`, in milliseconds (the unit of every duration a policy gives).
    idle_ms: Option<NonZeroU32>,
    deadline: Option<Instant>,
    /// Where idle time is counted from: when the silence began, or a later moment the other
    /// direction was active; `None` while frames are flowing and no wait has begun.
    quiet_since: Option<Instant>,
    /// Which side of `duplex` this is. (Beside it rather than paired in one `Option`, and
    /// the idle timeout in milliseconds: every response carries a watchdog, and stays as
    /// small as it was before the link.)
    direction: Direction,
    sleep: Option<Pin<Box<Sleep>>>,
    duplex: Option<Arc<Duplex>>,
}

impl Watchdog {
    pub(super) fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Self {
        let idle_ms = idle
            .and_then(|d| NonZeroU32::new(u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)));
        Watchdog {
            idle_ms,
            deadline,
            quiet_since: None,
            direction: Direction::Response,
            sleep: None,
            duplex: None,
        }
    }

    /// This direction of the exchange that `duplex` links.
    pub(super) fn linked(mut self, duplex: Option<Arc<Duplex>>, direction: Direction) -> Self {
        self.duplex = duplex;
        self.direction = direction;
        self
    }

    fn idle(&self) -> Option<Duration> {
        self.idle_ms.map(|ms| Duration::from_millis(ms.get().into()))
    }

    fn wake_at(&self, counted_from: Instant) -> Option<Instant> {
        let idle_at = self.idle().map(|d| counted_from + d);
        match (idle_at, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called on every frame: silence is counted from the next wait.
    pub(super) fn activity(&mut self) {
        self.quiet_since = None;
        if let Some(duplex) = &self.duplex {
            duplex.flowing(self.direction);
        }
    }

    /// Called when the stream is over, whichever way it ended.
    pub(super) fn ended(&mut self) {
        if let Some(duplex) = &self.duplex {
            duplex.ended(self.direction);
        }
    }

    /// Called when the body has nothing to give: arms the timer and tells whether it fired.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<StreamError> {
        if self.idle_ms.is_none() && self.deadline.is_none() {
            return None;
        }
        if self.quiet_since.is_none() {
            let now = Instant::now();
            self.quiet_since = Some(now);
            if let Some(duplex) = &self.duplex {
                duplex.silent_since(self.direction, now);
            }
        }
        loop {
            let counted_from = self.quiet_since?;
            let at = self.wake_at(counted_from)?;
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
                return Some(StreamError::Deadline);
            }
            let other = match self.direction {
                Direction::Request => Direction::Response,
                Direction::Response => Direction::Request,
            };
            match self.duplex.as_ref().and_then(|duplex| duplex.active_at(other)) {
                Some(at) if at > counted_from => self.quiet_since = Some(at),
                _ => return Some(StreamError::Idle(self.idle().unwrap_or_default())),
            }
        }
    }
}

impl Drop for Watchdog {
    /// A body dropped unfinished is over too: its last state must not keep the other
    /// direction alive, nor the wait for response headers from starting.
    fn drop(&mut self) {
        self.ended();
    }
}

/// The client's request body on its way to the app.
pub struct RequestBody(RequestBodyKind);

enum RequestBodyKind {
    Empty,
    Streaming { inner: Incoming, dog: Watchdog },
}

/// A request's body as the server that read its head hands it over: hyper's, or none.
pub trait ClientBody: Send + 'static {
    /// The body on its way to the app, and what it shares with the response's (none for a
    /// request without one).
    fn into_request_body(
        self,
        idle: Option<Duration>,
        deadline: Option<Instant>,
    ) -> (RequestBody, Option<Arc<Duplex>>);
}

impl ClientBody for Incoming {
    fn into_request_body(
        self,
        idle: Option<Duration>,
        deadline: Option<Instant>,
    ) -> (RequestBody, Option<Arc<Duplex>>) {
        if self.is_end_stream() {
            return (RequestBody::empty(), None);
        }
        let duplex = Arc::new(Duplex::new());
        let dog = Watchdog::new(idle, deadline).linked(Some(duplex.clone()), Direction::Request);
        (RequestBody(RequestBodyKind::Streaming { inner: self, dog }), Some(duplex))
    }
}

/// The body of a request that has none: the only kind the sidecar's own HTTP/1.1 server
/// reads (`h1_server`).
#[derive(Debug)]
pub struct NoBody;

impl ClientBody for NoBody {
    fn into_request_body(
        self,
        _idle: Option<Duration>,
        _deadline: Option<Instant>,
    ) -> (RequestBody, Option<Arc<Duplex>>) {
        (RequestBody::empty(), None)
    }
}

impl RequestBody {
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
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                dog.activity();
                if inner.is_end_stream() {
                    dog.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => {
                dog.ended();
                Poll::Ready(Some(Err(Box::new(StreamError::Peer))))
            }
            Poll::Ready(None) => {
                dog.ended();
                Poll::Ready(None)
            }
            Poll::Pending => match dog.poll_expired(cx) {
                Some(why) => {
                    dog.ended();
                    Poll::Ready(Some(Err(Box::new(why))))
                }
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

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    const IDLE: Duration = Duration::from_secs(1);

    fn poll(dog: &mut Watchdog) -> Option<StreamError> {
        dog.poll_expired(&mut Context::from_waker(Waker::noop()))
    }

    async fn at(millis: u64, since: Instant) {
        tokio::time::sleep_until(since + Duration::from_millis(millis)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn alone_a_body_is_idle_after_its_own_silence() {
        let start = Instant::now();
        let mut dog = Watchdog::new(Some(IDLE), None);
        assert_eq!(poll(&mut dog), None);
        at(999, start).await;
        assert_eq!(poll(&mut dog), None);
        at(1000, start).await;
        assert_eq!(poll(&mut dog), Some(StreamError::Idle(IDLE)));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_the_other_way_keep_a_silent_direction_alive() {
        let start = Instant::now();
        let duplex = Some(Arc::new(Duplex::new()));
        let mut response =
            Watchdog::new(Some(IDLE), None).linked(duplex.clone(), Direction::Response);
        let mut request = Watchdog::new(Some(IDLE), None).linked(duplex, Direction::Request);
        // The response falls silent at 0; the request carries a frame at 600 ms, then
        // waits from there.
        assert_eq!(poll(&mut response), None);
        at(600, start).await;
        request.activity();
        assert_eq!(poll(&mut request), None);
        // At 1 s the response's own silence is up, but the request was active since.
        at(1000, start).await;
        assert_eq!(poll(&mut response), None);
        // Flowing the other way right now counts as now.
        at(1500, start).await;
        request.activity();
        at(1599, start).await;
        assert_eq!(poll(&mut response), None);
        assert_eq!(poll(&mut request), None);
        // Both silent since 1.599 s: idle at 2.599 s, not before.
        at(2598, start).await;
        assert_eq!(poll(&mut response), None);
        at(2599, start).await;
        assert_eq!(poll(&mut response), Some(StreamError::Idle(IDLE)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_direction_that_ended_keeps_nothing_alive() {
        let start = Instant::now();
        let duplex = Some(Arc::new(Duplex::new()));
        let mut response =
            Watchdog::new(Some(IDLE), None).linked(duplex.clone(), Direction::Response);
        let mut request = Watchdog::new(Some(IDLE), None).linked(duplex, Direction::Request);
        request.activity();
        assert_eq!(poll(&mut response), None);
        at(500, start).await;
        // Dropped mid-flow: as over as a body that ended.
        drop(request);
        at(1000, start).await;
        assert_eq!(poll(&mut response), Some(StreamError::Idle(IDLE)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_not_moved_by_the_other_direction() {
        let start = Instant::now();
        let duplex = Some(Arc::new(Duplex::new()));
        let deadline = Some(start + Duration::from_millis(1500));
        let mut response =
            Watchdog::new(Some(IDLE), deadline).linked(duplex.clone(), Direction::Response);
        let mut request = Watchdog::new(Some(IDLE), None).linked(duplex, Direction::Request);
        assert_eq!(poll(&mut response), None);
        at(900, start).await;
        request.activity();
        at(1000, start).await;
        assert_eq!(poll(&mut response), None);
        at(1500, start).await;
        assert_eq!(poll(&mut response), Some(StreamError::Deadline));
    }
}
