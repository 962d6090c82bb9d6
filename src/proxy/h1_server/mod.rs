//! The sidecar's own HTTP/1.1 server, for requests without a body: it parses each head
//! once, hands it to the request handler, and writes the response as hyper's server would,
//! without hyper's connection, dispatcher and buffers around each request. A request it
//! does not serve (a body, a protocol switch, `Expect`, `TE`, HTTP/1.0) is handed back with
//! its bytes unread, for hyper's server to serve (`client_conn`).
//!
//! - `request`: the head, and whether it is ours;
//! - `response`: the response head, as hyper writes it;
//! - `outgoing`: the head and body on their way to the client;
//! - here: the connection, request by request.

mod outgoing;
mod request;
mod response;

use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use self::outgoing::Outgoing;
use self::request::{Head, Parsed};
use self::response::{BodyLength, Encoded};
use super::body::NoBody;
use super::client_io::ClientIo;
use super::forward::{Client, Proxy};
use super::response_body::ProxyBody;
use super::spare;

/// How much is read at a time.
const READ_SIZE: usize = 4096;
/// Body bytes queued for the client before the body is polled for more.
const MAX_QUEUED: usize = 64 * 1024;

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
    let mut out = Outgoing::default();
    let mut wait = patience.first;
    // One timer for the run, moved on only when it fires: resetting it after every request
    // would cost a timer-wheel update each.
    let mut give_up = pin!(tokio::time::sleep(Duration::ZERO));
    let mut waiting_since = Instant::now();
    let mut armed = false;
    loop {
        let head = match request::parse(&mut buf, &mut spans, io.scanned()) {
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
        match exchange(&mut io, &mut buf, &mut out, proxy, client, head).await {
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
    out: &mut Outgoing,
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
    write_response(io, buf, out, response, &method, keep_alive).await
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
    out: &mut Outgoing,
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
    let Encoded { framing, last } =
        response::encode(out.head_buffer(), &parts, reason, method, length, keep_alive)
            .map_err(io::Error::other)?;
    // Written: nothing of the head is read again. The map goes back for the next request,
    // and the head's pieces (`spare::copy`) are let go of before the body streams.
    spare::keep(parts.headers);
    drop(parts.extensions);
    out.start(framing);
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
    out.finish();
    Ok(!last)
}
