//! A connection to the app and what has been read from it: the buffer that the response
//! head and body are parsed from, sized to what the app sends.

use std::io;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::head::Span;

/// How much room a read from the app is given: from 8 KiB, doubled while reads fill it (a
/// large body), up to hyper's own limit, and halved again when they fall well short.
const READ_SIZE: usize = 8 * 1024;
const MAX_READ_SIZE: usize = 8192 + 4096 * 100;

/// A buffer larger than this is not kept by an idle connection.
pub(super) const MAX_IDLE_BUFFER: usize = 2 * READ_SIZE;

/// A connection to the app that carries one request at a time.
#[derive(Debug)]
pub struct H1Conn {
    pub(super) stream: TcpStream,
    /// What has been read and not yet used; empty between exchanges.
    pub(super) buf: BytesMut,
    /// The request head being written; kept to spare an allocation per request.
    pub(super) out: Vec<u8>,
    /// Whether anything was read during the current exchange.
    pub(super) read_any: bool,
    /// Scratch space for parsing response heads.
    pub(super) spans: Vec<Span>,
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

    /// One read from the app into `buf`; 0 at the end of the stream.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
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

    /// Lets go of every buffer, for a connection that has waited in the pool long enough
    /// to be past a burst: an idle connection then costs its socket and this struct, as
    /// nginx's keep-alive connections to an upstream hold no buffer. The next exchange
    /// allocates them again.
    pub fn release_buffers(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        self.out = Vec::new();
        self.spans = Vec::new();
    }

    /// Bytes its buffers hold (their capacity).
    #[cfg(test)]
    pub fn buffer_bytes(&self) -> usize {
        self.buf.capacity() + self.out.capacity() + self.spans.capacity() * size_of::<Span>()
    }

    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let fill = std::pin::pin!(self.fill());
        fill.poll(cx)
    }
}
