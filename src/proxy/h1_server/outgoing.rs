//! What is on its way to the client: a response head, then its body framed as the head
//! says, written in as few vectored writes as the socket takes.
//!
//! One `Outgoing` serves every response of a connection's run: its head buffer and its
//! queue keep their room from one response to the next, and a chunk-size line is written
//! from the queue itself, so that a response costs no allocation of its own.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use super::response::Framing;

/// Slices handed to one vectored write.
const MAX_SLICES: usize = 16;
/// Room kept in the head buffer after a response: a larger head (rare) gives its room back.
const HEAD_ROOM_KEPT: usize = 1024;
/// Pieces of room kept in the queue after a response: a long chunked body's gives it back.
const PIECES_KEPT: usize = 16;
/// The longest chunk-size line: 16 hexadecimal digits and CRLF.
const SIZE_LINE: usize = 18;

/// One piece of a body on its way.
enum Piece {
    Data(Bytes),
    /// A chunk-size line, still to write from `at`.
    SizeLine {
        line: [u8; SIZE_LINE],
        at: u8,
    },
    Static(&'static [u8]),
}

impl Piece {
    /// A chunk's size line as hyper writes it: upper-case hexadecimal, then CRLF.
    fn size_line(size: usize) -> Piece {
        let mut line = [0; SIZE_LINE];
        let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
        let at = SIZE_LINE - 2 - digits;
        for (i, slot) in line[at..SIZE_LINE - 2].iter_mut().enumerate() {
            let nibble = (size >> (4 * (digits - 1 - i))) & 0xf;
            *slot = b"0123456789ABCDEF"[nibble];
        }
        line[SIZE_LINE - 2..].copy_from_slice(b"\r\n");
        Piece::SizeLine { line, at: at as u8 }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Data(data) => data,
            Piece::SizeLine { line, at } => &line[*at as usize..],
            Piece::Static(bytes) => bytes,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Piece::Data(data) => data.advance(n),
            Piece::SizeLine { at, .. } => *at += n as u8,
            Piece::Static(bytes) => *bytes = &bytes[n..],
        }
    }
}

/// The response being written, and the room kept for the next one.
pub struct Outgoing {
    head: Vec<u8>,
    /// How much of the head has been written.
    head_written: usize,
    queue: VecDeque<Piece>,
    /// Bytes of head and body not yet written.
    pub queued: usize,
    framing: Framing,
    /// Body bytes still owed, for a body of known length.
    remaining: u64,
    /// Whether the whole body is queued (or there is none).
    pub ended: bool,
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing {
            head: Vec::new(),
            head_written: 0,
            queue: VecDeque::new(),
            queued: 0,
            framing: Framing::Length(0),
            remaining: 0,
            ended: true,
        }
    }
}

impl Outgoing {
    /// The buffer that the next response's head is written into, emptied.
    pub fn head_buffer(&mut self) -> &mut Vec<u8> {
        self.head.clear();
        &mut self.head
    }

    /// Starts the response whose head is in the head buffer, its body framed as `framing`.
    pub fn start(&mut self, framing: Framing) {
        self.head_written = 0;
        self.queued = self.head.len();
        self.framing = framing;
        self.remaining = match framing {
            Framing::Length(n) => n,
            Framing::Chunked | Framing::UntilClose => 0,
        };
        // No body at all (HEAD, 204, 304, or a length of 0): it is not read.
        self.ended = framing == Framing::Length(0);
    }

    /// Whether everything queued has been written.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Gives back room that an unusually large response took.
    pub fn finish(&mut self) {
        self.queue.clear();
        if self.head.capacity() > HEAD_ROOM_KEPT {
            self.head = Vec::new();
        }
        if self.queue.capacity() > PIECES_KEPT {
            self.queue = VecDeque::new();
        }
    }

    fn push(&mut self, piece: Piece) {
        self.queued += piece.bytes().len();
        self.queue.push_back(piece);
    }

    /// Queues a frame of body data.
    pub fn data(&mut self, mut data: Bytes) {
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
                    self.push(Piece::Data(data));
                }
                if self.remaining == 0 {
                    self.ended = true;
                }
            }
            Framing::Chunked => {
                self.push(Piece::size_line(data.len()));
                self.push(Piece::Data(data));
                self.push(Piece::Static(b"\r\n"));
            }
            Framing::UntilClose => self.push(Piece::Data(data)),
        }
    }

    /// The body has ended: a body shorter than its length fails the connection.
    pub fn end(&mut self) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        match self.framing {
            Framing::Length(_) if self.remaining > 0 => {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a response body ended short"))
            }
            Framing::Chunked => {
                self.push(Piece::Static(b"0\r\n\r\n"));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes what is queued, in as few writes as the socket takes.
    pub fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let head = &self.head[self.head_written..];
            let pieces = self.queue.iter().map(Piece::bytes);
            let mut count = 0;
            for (slice, bytes) in slices.iter_mut().zip(std::iter::once(head).chain(pieces)) {
                *slice = IoSlice::new(bytes);
                count += 1;
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
        let head = (self.head.len() - self.head_written).min(n);
        self.head_written += head;
        n -= head;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            let len = front.bytes().len();
            if len <= n {
                n -= len;
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_upper_case_hex_as_hyper_writes_them() {
        for (size, line) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (15, "F\r\n"),
            (16, "10\r\n"),
            (0xABCDEF, "ABCDEF\r\n"),
            (usize::MAX, "FFFFFFFFFFFFFFFF\r\n"),
        ] {
            assert_eq!(Piece::size_line(size).bytes(), line.as_bytes(), "{size}");
        }
    }

    /// A writer that takes at most `each` bytes per write.
    struct Trickle {
        written: Vec<u8>,
        each: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.each);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.each - n);
                self.written.extend_from_slice(&buf[..take]);
                n += take;
                if n == self.each {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn send(out: &mut Outgoing, each: usize) -> Vec<u8> {
        let mut io = Trickle { written: Vec::new(), each };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(out.poll_send(&mut io, &mut cx).is_ready());
        assert!(out.is_empty());
        io.written
    }

    fn chunked_response(out: &mut Outgoing) {
        out.head_buffer().extend_from_slice(b"HEAD\r\n\r\n");
        out.start(Framing::Chunked);
        out.data(Bytes::from_static(b"hello "));
        out.data(Bytes::from_static(b"world, and more"));
        out.end().unwrap();
    }

    #[test]
    fn a_chunked_body_is_written_whole_however_the_socket_splits_it() {
        let want = b"HEAD\r\n\r\n6\r\nhello \r\nF\r\nworld, and more\r\n0\r\n\r\n";
        for each in [1, 2, 3, 7, 11, 64] {
            let mut out = Outgoing::default();
            chunked_response(&mut out);
            assert_eq!(send(&mut out, each), want, "{each} bytes a write");
        }
    }

    #[test]
    fn the_next_response_reuses_the_room_and_starts_clean() {
        let mut out = Outgoing::default();
        chunked_response(&mut out);
        send(&mut out, 5);
        out.finish();
        out.head_buffer().extend_from_slice(b"NEXT\r\n\r\n");
        out.start(Framing::Length(5));
        out.data(Bytes::from_static(b"12345678"));
        assert!(out.ended, "the length is reached");
        out.end().unwrap();
        assert_eq!(send(&mut out, 3), b"NEXT\r\n\r\n12345", "cut at the length");
    }

    #[test]
    fn a_body_that_ends_short_of_its_length_fails() {
        let mut out = Outgoing::default();
        out.head_buffer().extend_from_slice(b"H\r\n\r\n");
        out.start(Framing::Length(10));
        out.data(Bytes::from_static(b"1234"));
        assert_eq!(out.end().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_large_head_gives_its_room_back() {
        let mut out = Outgoing::default();
        out.head_buffer().resize(8 * 1024, b'x');
        out.start(Framing::Length(0));
        send(&mut out, 4096);
        out.finish();
        assert!(out.head.capacity() <= HEAD_ROOM_KEPT);
    }
}
