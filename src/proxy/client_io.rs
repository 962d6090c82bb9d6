//! The client connection as hyper reads it: every byte passes the framing scanner first.
//!
//! A head that arrives whole in one read (the usual case) is scanned where hyper will parse
//! it, without a copy. A head split across reads is held back here until it has ended and
//! passed the scanner, so that hyper never sees a head the sidecar refuses: a refused head
//! is replaced by a stand-in request that the handler answers with the refusal
//! (`Framing::next_request`), after the responses to the requests before it; the answer's
//! `Connection: close` then ends the connection. A held head that does not end within the
//! header timeout is refused the same way (408). What follows a request that asks to switch
//! protocols is held until its answer: it is the new protocol, or the next request.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::framing::Framing;
use super::scanner::{Fed, FramingScanner, ScannedHead};

/// What hyper reads in place of a refused head: a request it takes without complaint, and
/// whose `Connection: close` closes the connection once the refusal is answered.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nHost: portcullis.invalid\r\nConnection: close\r\n\r\n";

/// How much is read at a time while a head is held back.
const HELD_READ: usize = 4096;

pub struct ClientIo {
    stream: TcpStream,
    framing: Arc<Framing>,
    scanner: FramingScanner,
    /// Bytes read but not given to hyper yet: a head under way, and what came before it.
    held: Vec<u8>,
    /// How many bytes at the start of `held` may be given to hyper.
    cleared: usize,
    /// When the held head must have ended, and the index of that head.
    head_by: Option<(u64, Pin<Box<Sleep>>)>,
    header_timeout: Duration,
    /// The first request's head counts from the connection's start.
    opened: Instant,
    /// How much of the stand-in hyper has read, once a head is refused.
    stand_in: usize,
}

/// A client connection between requests with nothing held or under way: its socket, out
/// of tokio's reactor, and where its reader stood (`parking`).
pub struct ParkedIo {
    stream: std::net::TcpStream,
    /// The index of the next request.
    next: u64,
}

/// What became of a connection asked to park.
pub enum Parking {
    Parked(ParkedIo),
    /// Something is held or under way: it is not parked.
    Busy(Box<ClientIo>),
    /// Its socket could not leave tokio's reactor, and is closed.
    Closed(io::Error),
}

impl ParkedIo {
    /// The connection ready to read its next request; its framing is made anew.
    pub fn resume(
        self,
        max_head: usize,
        header_timeout: Duration,
    ) -> io::Result<(Box<ClientIo>, Arc<Framing>)> {
        let stream = TcpStream::from_std(self.stream)?;
        let framing = Arc::new(Framing::resumed(self.next));
        let mut io = ClientIo::new(stream, framing.clone(), max_head, header_timeout);
        io.scanner = FramingScanner::resumed(max_head, self.next);
        Ok((Box::new(io), framing))
    }
}

impl AsFd for ParkedIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl ClientIo {
    pub fn new(
        stream: TcpStream,
        framing: Arc<Framing>,
        max_head: usize,
        header_timeout: Duration,
    ) -> Self {
        ClientIo {
            stream,
            framing,
            scanner: FramingScanner::new(max_head),
            held: Vec::new(),
            cleared: 0,
            head_by: None,
            header_timeout,
            opened: Instant::now(),
            stand_in: 0,
        }
    }

    /// Gives back bytes that a server had read and not used (hyper's, when its connection
    /// was put away; the own server's, when the next request is hyper's): they were scanned
    /// already, and are the first that the next reader reads. A connection with bytes to
    /// read is not idle, whatever its last read found.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.framing.activity.read_something();
        self.held.splice(0..0, bytes.iter().copied());
        self.cleared += bytes.len();
    }

    /// Parks the connection between requests, keeping only its socket and counts. The
    /// first request is not parked for: its head is timed from the connection's start.
    pub fn park(self: Box<Self>) -> Parking {
        let between = self.scanner.next_index().filter(|&next| {
            next > 0
                && next == self.framing.served()
                && self.held.is_empty()
                && self.head_by.is_none()
                && self.stand_in == 0
        });
        let Some(next) = between else { return Parking::Busy(self) };
        match self.stream.into_std() {
            Ok(stream) => Parking::Parked(ParkedIo { stream, next }),
            Err(e) => Parking::Closed(e),
        }
    }

    /// Whether part of a request head has been read and held back: the connection is not
    /// idle, and its reader's header timer runs.
    pub fn holds_head(&self) -> bool {
        self.scanner.head_under_way().is_some()
    }

    /// The last request head the scanner read whole, and where its parts lie.
    pub fn scanned(&self) -> &ScannedHead {
        self.scanner.scanned()
    }

    /// Whether there is something to read: bytes given back, or the client's.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cleared > 0 {
            return Poll::Ready(Ok(()));
        }
        self.stream.poll_read_ready(cx)
    }

    /// The client's first bytes, left in the socket for hyper to read.
    pub fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_peek(cx, buf)
    }

    /// After bytes were fed: starts the clock of the head under way, if any. Returns how
    /// many of the last bytes fed are that head.
    fn note_partial_head(&mut self) -> usize {
        let Some((index, len)) = self.scanner.head_under_way() else {
            self.head_by = None;
            return 0;
        };
        if self.head_by.as_ref().is_none_or(|(at, _)| *at != index) {
            let from = if index == 0 { self.opened } else { Instant::now() };
            let sleep = Box::pin(tokio::time::sleep_until(from + self.header_timeout));
            self.head_by = Some((index, sleep));
        }
        len
    }

    /// Scans `held[from..]`, the bytes after what is held already (a head under way, or
    /// nothing), and clears for hyper what may go on.
    fn absorb(&mut self, from: usize) {
        match self.scanner.feed(&self.framing, &self.held[from..]) {
            Fed::Passed => self.cleared = self.held.len() - self.note_partial_head(),
            // The head held before was itself refused: none of it goes on.
            Fed::Refused { before: 0 } => self.held.clear(),
            Fed::Refused { before } => {
                self.held.truncate(from + before);
                self.cleared = self.held.len();
            }
            // What follows an upgrade request stays held until its answer.
            Fed::Held { before } => self.cleared = from + before,
        }
    }

    /// Reads while a head is held back (the rare path): into `held`, after it.
    fn poll_read_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if let Some((_, by)) = &mut self.head_by
            && by.as_mut().poll(cx).is_ready()
        {
            self.scanner.time_out(&self.framing, self.header_timeout);
            self.held.clear();
            return Poll::Ready(Ok(true));
        }
        let from = self.held.len();
        self.held.resize(from + HELD_READ, 0);
        let mut read = ReadBuf::new(&mut self.held[from..]);
        let polled = Pin::new(&mut self.stream).poll_read(cx, &mut read);
        let n = read.filled().len();
        self.held.truncate(from + n);
        ready!(polled)?;
        if n == 0 {
            // The client left with its head unfinished: hyper sees the end of the stream.
            self.held.clear();
            return Poll::Ready(Ok(false));
        }
        self.framing.activity.read_something();
        self.framing.count_read(n);
        self.absorb(from);
        Poll::Ready(Ok(true))
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.cleared > 0 {
                let n = this.cleared.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.cleared -= n;
                if this.held.is_empty() {
                    // An idle connection keeps no buffer of its own.
                    this.held = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.scanner.is_refused() {
                if this.stand_in < STAND_IN.len() {
                    let rest = &STAND_IN[this.stand_in..];
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    this.stand_in += n;
                    return Poll::Ready(Ok(()));
                }
                // Nothing more is read: the answer to the stand-in closes the connection.
                return Poll::Pending;
            }
            if !this.held.is_empty() && this.scanner.awaiting_switch() {
                let switched = ready!(this.framing.poll_upgrade(cx));
                this.scanner.switch_answered(switched);
                this.absorb(0);
                continue;
            }
            if !this.held.is_empty() {
                if !ready!(this.poll_read_held(cx))? {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The usual case: read straight into hyper's buffer and scan it there.
            let before = buf.filled().len();
            if Pin::new(&mut this.stream).poll_read(cx, buf)?.is_pending() {
                if this.scanner.at_boundary() {
                    this.framing.activity.read_nothing_between_requests();
                }
                return Poll::Pending;
            }
            let filled = buf.filled().len();
            if filled == before {
                return Poll::Ready(Ok(()));
            }
            this.framing.activity.read_something();
            this.framing.count_read(filled - before);
            let keep = match this.scanner.feed(&this.framing, &buf.filled()[before..]) {
                Fed::Refused { before: good } => before + good,
                Fed::Held { before: good } => before + good,
                Fed::Passed => filled - this.note_partial_head(),
            };
            if keep < filled && !this.scanner.is_refused() {
                this.held.extend_from_slice(&buf.filled()[keep..]);
            }
            buf.set_filled(keep);
            if keep > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Writes go straight to the client; the connection's activity notes each one.
impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.framing.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.framing.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// hyper closes a connection that it was asked to put away (see `client_conn`) as it
    /// closes any other; that close leaves the socket open for the next request.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.framing.activity.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
