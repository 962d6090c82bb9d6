//! Bodies that the proxy streams: both directions are forwarded frame by frame, never
//! buffered whole, and each is watched for silence (`timeouts.idle`) and for the end of
//! the whole exchange (`timeouts.request`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::app_h1::{H1Body, H1Conn};
use super::forward::Finish;

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
}

/// A timer that fires at the earlier of "idle for too long" and the exchange's deadline.
///
/// Most bodies finish within a poll or two, so the timer is only armed when the body
/// actually waits, and the clock is only read then: silence is counted from the first
/// wait after a frame, which is later than the frame by no more than one poll.
struct Watchdog {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    /// When the silence began; `None` while frames are flowing and no wait has begun.
    quiet_since: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Watchdog {
    fn new(idle: Option<Duration>, deadline: Option<Instant>) -> Self {
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
    fn activity(&mut self) {
        self.quiet_since = None;
    }

    /// Called when the body has nothing to give: arms the timer and tells whether it fired.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<StreamError> {
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

/// The app's response body as one of the two HTTP/1.1 clients, or HTTP/2, gives it.
pub enum AppBody {
    Hyper(Incoming),
    H1(H1Body),
}

impl AppBody {
    /// The `app_h1` connection, once its body has ended and it can carry another request.
    fn take_reusable(&mut self) -> Option<Box<H1Conn>> {
        match self {
            AppBody::Hyper(_) => None,
            AppBody::H1(body) => body.take_reusable(),
        }
    }
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            AppBody::Hyper(body) => {
                Pin::new(body).poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into)))
            }
            AppBody::H1(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AppBody::Hyper(body) => body.is_end_stream(),
            AppBody::H1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AppBody::Hyper(body) => body.size_hint(),
            AppBody::H1(body) => body.size_hint(),
        }
    }
}

/// The app's response body on its way to the client.
pub struct UpstreamBody {
    inner: AppBody,
    dog: Watchdog,
    on_end: Option<Finish>,
    /// Whether hyper has had a chance to write out the head and the frames given so far: the
    /// body has waited since (see `hold_back`).
    written: bool,
    /// The app's body failed before that; the failure is held for one poll.
    failure_held: bool,
}

impl UpstreamBody {
    pub(super) fn new(
        inner: AppBody,
        idle: Option<Duration>,
        deadline: Option<Instant>,
        on_end: Finish,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            dog: Watchdog::new(idle, deadline),
            on_end: Some(on_end),
            written: false,
            failure_held: false,
        };
        // HEAD, 204, 304 and empty bodies are complete before a single poll.
        body.complete_if_ended();
        body
    }

    /// hyper stops polling a body once `is_end_stream` says it is done, so the end is
    /// noticed here rather than waiting for a final `None` that may never be asked for.
    fn complete_if_ended(&mut self) {
        if self.inner.is_end_stream() {
            self.complete();
        }
    }

    fn complete(&mut self) {
        if let Some(hook) = self.on_end.take() {
            hook.complete(self.inner.take_reusable());
        }
    }

    fn abort(&mut self, why: StreamError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(hook) = self.on_end.take() {
            hook.abort(why);
        }
        Poll::Ready(Some(Err(Box::new(why))))
    }

    /// hyper writes an HTTP/1.1 response head together with the body bytes that follow at
    /// once, and drops all of it when the body fails before it has flushed: the client would
    /// see its connection closed without a word. So a failure that comes before the body has
    /// waited once is held for one poll (woken at once), on which hyper flushes: the client
    /// sees the head and a body cut short, as for any stream cut short.
    fn hold_back(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failure_held = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.failure_held) {
            return this.abort(StreamError::Peer);
        }
        if this.inner.is_end_stream() {
            this.complete_if_ended();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let written = std::mem::replace(&mut this.written, polled.is_pending());
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.dog.activity();
                this.complete_if_ended();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) if !written => this.hold_back(cx),
            Poll::Ready(Some(Err(_))) => this.abort(StreamError::Peer),
            Poll::Ready(None) => {
                this.complete();
                Poll::Ready(None)
            }
            Poll::Pending if this.on_end.is_none() => Poll::Pending,
            Poll::Pending => match this.dog.poll_expired(cx) {
                Some(why) => this.abort(why),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of every response the proxy returns to a client.
pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Empty
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Upstream(body) => body.size_hint(),
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
