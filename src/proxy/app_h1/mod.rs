//! The HTTP/1.1 client for requests without a body: the request's own task writes the head
//! to a pooled connection to the app and reads the response, head and body, from it. hyper's
//! client puts a connection task and a channel between the two, a task switch and a hop each
//! way for every request; here there are none. Requests with a body, upgrades and HTTP/2
//! stay with hyper's client.
//!
//! What this client accepts from the app is what hyper's does (see `head`), and it fails
//! with the same three outcomes that `ProxyError::from_exchange` gives hyper's errors.

mod body;
mod head;

use std::io;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::request::Parts;
use http::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::H1Body;
use head::Head;

/// How much room a read from the app is given: from 8 KiB, doubled while reads fill it (a
/// large body), up to hyper's own limit, and halved again when they fall well short.
const READ_SIZE: usize = 8 * 1024;
const MAX_READ_SIZE: usize = 8192 + 4096 * 100;

/// A buffer larger than this is not kept by an idle connection.
const MAX_IDLE_BUFFER: usize = 2 * READ_SIZE;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("the response head is larger than allowed")]
    HeadTooLarge,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("the connection closed before the response was complete")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A failed exchange.
#[derive(Debug)]
pub struct Failed {
    pub error: H1Error,
    /// Whether the app had sent any byte: if not, a request on a reused connection may be
    /// sent again on a fresh one.
    pub answered: bool,
}

/// A connection to the app that carries one request at a time.
#[derive(Debug)]
pub struct H1Conn {
    stream: TcpStream,
    /// What has been read and not yet used; empty between exchanges.
    buf: BytesMut,
    /// The request head being written; kept to spare an allocation per request.
    out: Vec<u8>,
    /// Whether anything was read during the current exchange.
    read_any: bool,
    /// Scratch space for parsing response heads.
    spans: Vec<head::Span>,
    /// Room given to the next read.
    read_size: usize,
}

impl H1Conn {
    /// Boxed: a connection moves between the pool, the request and its body, as a pointer.
    pub fn new(stream: TcpStream) -> Box<Self> {
        Box::new(H1Conn {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_any: false,
            spans: Vec::new(),
            read_size: READ_SIZE,
        })
    }

    /// Whether the app has sent anything since the last exchange: a close, a reset, or
    /// bytes no request asked for. Either way the connection cannot carry another one. This
    /// costs no system call unless the socket has been reported readable.
    pub fn is_usable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable, or only not yet known not to be: one read tells.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends a request without a body and reads the response head. The body is read by the
    /// returned response's [`H1Body`], which owns the connection until it ends. On failure,
    /// the connection is dropped; the error says whether the app had sent anything.
    pub async fn send(
        mut self: Box<Self>,
        parts: &Parts,
        max_head_bytes: usize,
    ) -> Result<Response<H1Body>, Failed> {
        self.read_any = false;
        self.out.clear();
        head::encode_request(&mut self.out, parts);
        let sent = self.stream.write_all(&self.out).await;
        let head = match sent {
            Ok(()) => self.read_head(max_head_bytes, &parts.method).await,
            Err(e) => Err(e.into()),
        };
        match head {
            Ok(head) => Ok(body::response(head, self)),
            Err(error) => Err(Failed { error, answered: self.read_any }),
        }
    }

    async fn read_head(&mut self, max_head_bytes: usize, method: &Method) -> Result<Head, H1Error> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) =
                    head::parse_response(&mut self.buf, max_head_bytes, method, &mut self.spans)?
            {
                // Interim responses (100 Continue, 103 Early Hints) are not passed on, as
                // hyper's client does not; the final one follows on the same connection.
                if head.status.is_informational()
                    && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Ok(head);
            }
            if self.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }

    /// One read from the app into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(self.read_size);
        let n = self.stream.read_buf(&mut self.buf).await?;
        self.read_any |= n > 0;
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(READ_SIZE);
        }
        Ok(n)
    }

    /// Lets go of a large read buffer before the connection waits in the pool.
    pub fn shrink_for_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > MAX_IDLE_BUFFER {
            self.buf = BytesMut::new();
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let fill = std::pin::pin!(self.fill());
        fill.poll(cx)
    }
}
