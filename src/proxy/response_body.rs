//! The body of every response the proxy returns to a client: the sidecar's own, or the
//! app's, streamed frame by frame (never buffered whole) under the watchdog, with what is
//! done when it ends: the connection back to the pool, or the stream counted as cut short.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::app_h1::{H1Body, H1Conn};
use super::body::{BoxError, StreamError, Watchdog};
use super::duplex::{Direction, Duplex};
use super::pool::{Conn, Pool};
use crate::overload::Permit;
use crate::telemetry::metrics::{InFlight, Metrics, ReasonLabels};

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
        duplex: Option<Arc<Duplex>>,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            dog: Watchdog::new(idle, deadline).linked(duplex, Direction::Response),
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
        self.dog.ended();
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

/// What a request holds while it is in flight; dropped when its response ends.
pub(super) struct Held {
    _in_flight: InFlight,
    _permit: Option<Permit>,
}

impl Held {
    pub(super) fn new(in_flight: InFlight, permit: Option<Permit>) -> Self {
        Held { _in_flight: in_flight, _permit: permit }
    }
}

/// Run when the app's response body ends: a clean end puts the connection back in the
/// pool; a cut-short one is counted and logged.
pub(super) struct Finish {
    pub(super) pool: Option<Pool>,
    pub(super) conn: Option<Conn>,
    pub(super) max_idle: Option<Duration>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) _held: Held,
}

impl Finish {
    /// `h1`: the `app_h1` connection the body was read from, if it can be reused.
    pub(super) fn complete(mut self, h1: Option<Box<H1Conn>>) {
        let Some(pool) = self.pool.take() else { return };
        // hyper's connections are not pooled: an HTTP/2 one stays shared, and an HTTP/1.1
        // one (opened for a protocol switch) is never reused.
        drop(self.conn.take());
        if let Some(conn) = h1 {
            pool.put_h1(conn, self.max_idle);
        }
    }

    pub(super) fn abort(self, why: StreamError) {
        self.metrics.streams_ended.get_or_create(&ReasonLabels { reason: why.reason() }).inc();
        tracing::warn!(reason = why.reason(), "response stream ended early: {why}");
    }
}
