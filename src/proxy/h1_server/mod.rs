//! The sidecar's own HTTP/1.1 server, for requests without a body: it parses each head
//! once, hands it to the request handler, and writes the response as hyper's server would,
//! without hyper's connection, dispatcher and buffers around each request. A request it
//! does not serve (a body, a protocol switch, `Expect`, `TE`, HTTP/1.0) is handed back with
//! its bytes unread, for hyper's server to serve (`client_conn`).
//!
//! - `request`: the head, and whether it is ours;
//! - `response`: the response head, as hyper writes it;
//! - here: the connection, request by request.

mod request;
mod response;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use self::request::{Head, Parsed};
use self::response::{BodyLength, Encoded, Framing};
use super::body::NoBody;
use super::client_io::ClientIo;
use super::forward::{Client, Proxy};
use super::response_body::ProxyBody;

/// How much is read at a time.
const READ_SIZE: usize = 4096;
/// Body bytes queued for the client before the body is polled for more.
const MAX_QUEUED: usize = 64 * 1024;
/// Slices handed to one vectored write.
const MAX_SLICES: usize = 16;

/// How a connection's run on this server ended.
pub enum Ended {
    /// Closed, or failed: nothing more to do with it.
    Closed,
    /// It waits for its next request with nothing under way and nothing buffered.
    Idle(Box<ClientIo>),
    /// Its next request is hyper's to serve; what this server had read of it is given back
    /// to the reader.
    ForHyper(Box<ClientIo>),
}

/// When the connection gives up waiting for its next request and is idle.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// For the first request of this run: the connection was served again because its
    /// client sent, and the bytes may not have been reported yet.
    pub first: Duration,
    /// For each later request, counted from the end of the response before it.
    pub between: Duration,
}

/// Serves `client`'s requests on `io` while they are ours.
pub async fn serve(
    mut io: Box<ClientIo>,
    proxy: &Proxy,
    client: &Client,
    patience: Patience,
) -> Ended {
    let mut buf = BytesMut::new();
    let mut spans = Vec::new();
    let mut wait = patience.first;
    // One timer for the run, moved on only when it fires: resetting it after every request
    // would cost a timer-wheel update each.
    let mut give_up = pin!(tokio::time::sleep(Duration::ZERO));
    let mut waiting_since = Instant::now();
    let mut armed = false;
    loop {
        let head = match request::parse(&mut buf, &mut spans) {
            Parsed::Ours(head) => head,
            Parsed::Hyper => {
                io.unread(buf.freeze());
                return Ended::ForHyper(io);
            }
            Parsed::Partial => {
                let read = poll_fn(|cx| {
                    if buf.is_empty() {
                        if let Poll::Ready(read) = poll_read(&mut io, &mut buf, cx) {
                            return Poll::Ready(Some(read));
                        }
                        // A head begun is waited for: the reader's header timer ends it.
                        if io.holds_head() {
                            return Poll::Pending;
                        }
                        if wait.is_zero() {
                            return Poll::Ready(None);
                        }
                        let by = waiting_since + wait;
                        if !armed {
                            give_up.as_mut().reset(by);
                            armed = true;
                        }
                        if give_up.as_mut().poll(cx).is_ready() {
                            if Instant::now() >= by {
                                return Poll::Ready(None);
                            }
                            // It fired for an earlier wait: on to this one's end.
                            give_up.as_mut().reset(by);
                            if give_up.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(None);
                            }
                        }
                        return Poll::Pending;
                    }
                    // The rest of a head the reader has passed (it holds back heads that
                    // have not ended): it is there to read.
                    poll_read(&mut io, &mut buf, cx).map(Some)
                })
                .await;
                match read {
                    None => return Ended::Idle(io),
                    Some(Ok(0)) | Some(Err(_)) => return Ended::Closed,
                    Some(Ok(_)) => continue,
                }
            }
        };
        let keep_alive = head.keep_alive;
        match exchange(&mut io, &mut buf, proxy, client, head).await {
            Ok(true) if keep_alive => {}
            Ok(_) => {
                let _ = io.shutdown().await;
                return Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(error = %e, "client connection ended with an error");
                return Ended::Closed;
            }
        }
        wait = patience.between;
        waiting_since = Instant::now();
    }
}

fn poll_read(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_SIZE);
    pin!(io.read_buf(buf)).poll(cx)
}

/// Serves one request: its response written whole. Returns whether the connection may
/// carry another request, as far as the response goes.
async fn exchange(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    proxy: &Proxy,
    client: &Client,
    head: Head,
) -> io::Result<bool> {
    let Head { parts, keep_alive } = head;
    let method = parts.method.clone();
    let request = Request::from_parts(parts, NoBody);
    let response = {
        let mut handling = pin!(proxy.handle(client, request));
        poll_fn(|cx| {
            if let Poll::Ready(response) = handling.as_mut().poll(cx) {
                return Poll::Ready(Ok(response));
            }
            // As hyper does: a client that closes while its request is under way has gone,
            // and the request is given up.
            watch_client(io, buf, cx)
        })
        .await?
    };
    write_response(io, buf, response, &method, keep_alive).await
}

/// While a request is under way: reads what the client sends next (a pipelined request),
/// and fails once the client has closed. Nothing more is read while bytes are buffered.
fn watch_client<T>(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if !buf.is_empty() {
        return Poll::Pending;
    }
    match poll_read(io, buf, cx) {
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Ready(Ok(_)) | Poll::Pending => Poll::Pending,
    }
}

async fn write_response(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    response: Response<ProxyBody>,
    method: &Method,
    keep_alive: bool,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        body.size_hint().exact().map_or(BodyLength::Unknown, BodyLength::Known)
    };
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>().map(|r| r.as_bytes());
    let mut head = Vec::with_capacity(256);
    let Encoded { framing, last } =
        response::encode(&mut head, &parts, reason, method, length, keep_alive)
            .map_err(io::Error::other)?;
    let mut out = Outgoing::new(head, framing);
    let mut body = pin!(body);
    poll_fn(|cx| {
        loop {
            if !out.ended && out.queued < MAX_QUEUED {
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            out.data(data);
                        }
                        if body.is_end_stream() {
                            out.end()?;
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        out.end()?;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                    Poll::Pending => {}
                }
            }
            if !out.is_empty() {
                if out.poll_send(io, cx)?.is_ready() {
                    continue;
                }
            } else if out.ended {
                return Poll::Ready(Ok(()));
            }
            return watch_client(io, buf, cx);
        }
    })
    .await?;
    Ok(!last)
}

/// What is on its way to the client: the head, then the body as the framing says.
struct Outgoing {
    queue: VecDeque<Bytes>,
    queued: usize,
    framing: Framing,
    /// Body bytes still owed, for a body of known length.
    remaining: u64,
    ended: bool,
}

impl Outgoing {
    fn new(head: Vec<u8>, framing: Framing) -> Self {
        let remaining = match framing {
            Framing::Length(n) => n,
            Framing::Chunked | Framing::UntilClose => 0,
        };
        let mut queue = VecDeque::with_capacity(4);
        let queued = head.len();
        queue.push_back(Bytes::from(head));
        // No body at all (HEAD, 204, 304, or a length of 0): it is not read.
        let ended = framing == Framing::Length(0);
        Outgoing { queue, queued, framing, remaining, ended }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.queue.push_back(bytes);
    }

    fn data(&mut self, mut data: Bytes) {
        if data.is_empty() || self.ended {
            return;
        }
        match self.framing {
            Framing::Length(_) => {
                // As hyper does: what goes past the length is cut off, and the rest of the
                // body is not read.
                let take = (data.len() as u64).min(self.remaining) as usize;
                data.truncate(take);
                self.remaining -= take as u64;
                if take > 0 {
                    self.push(data);
                }
                if self.remaining == 0 {
                    self.ended = true;
                }
            }
            Framing::Chunked => {
                self.push(Bytes::from(format!("{:X}\r\n", data.len())));
                self.push(data);
                self.push(Bytes::from_static(b"\r\n"));
            }
            Framing::UntilClose => self.push(data),
        }
    }

    /// The body has ended: a body shorter than its length fails the connection.
    fn end(&mut self) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        match self.framing {
            Framing::Length(_) if self.remaining > 0 => {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a response body ended short"))
            }
            Framing::Chunked => {
                self.push(Bytes::from_static(b"0\r\n\r\n"));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes what is queued, in as few writes as the socket takes.
    fn poll_send(&mut self, io: &mut ClientIo, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.queue.len().min(MAX_SLICES);
            for (slice, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                *slice = IoSlice::new(bytes);
            }
            let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }
}
