//! The client's request body on its way to the app: framed as hyper's client frames it
//! (`Client::set_length` in hyper's `proto/h1/role.rs`), and written one frame at a time,
//! each frame only once the one before has gone out, so that an app that reads slowly slows
//! the client down (TCP backpressure) instead of filling the sidecar's memory.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Method;
use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

use super::conn::H1Conn;
use super::head::Added;
use crate::proxy::body::{BoxError, RequestBody, StreamError, stream_error_in};
use crate::proxy::headers;

/// The most pieces one write hands the kernel: the rest of the head, and one frame (a
/// chunk is a size line, its data and a CRLF, and the last one may follow).
const MAX_SLICES: usize = 6;

/// How the body is delimited on the wire.
#[derive(Debug)]
enum Coding {
    /// This many bytes are still to be sent.
    Length(u64),
    /// Chunked, with the trailer fields that the request's Trailer field announces: hyper
    /// sends no others.
    Chunked { trailers: Vec<HeaderName> },
}

/// Why sending the body stopped short.
#[derive(Debug)]
pub(super) enum UploadError {
    /// The client's body failed: the exchange fails with it, as on hyper's client.
    Body(StreamError),
    /// Writing to the app failed: its answer may still be there to read.
    Io(io::Error),
}

/// A request body being written to the app, after the head in the connection's `out`.
pub(super) struct Upload {
    body: RequestBody,
    coding: Coding,
    /// How much of the head has been written.
    head_sent: usize,
    /// Encoded body bytes not yet written, in order.
    queue: VecDeque<Bytes>,
    /// Where chunk-size lines and trailer sections are written before they are queued.
    scratch: BytesMut,
    /// All that is to be sent is queued: the body is not polled again.
    ended: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("coding", &self.coding).field("ended", &self.ended).finish()
    }
}

impl Upload {
    /// The upload of a request's body (not empty), and the field the head gains for it.
    /// `None`: nothing of the body is sent, as hyper sends nothing of a body of size 0, or
    /// of unknown size on a GET, HEAD or CONNECT.
    pub(super) fn new(parts: &Parts, body: RequestBody) -> (Option<Box<Upload>>, Added) {
        let (coding, added) = match headers::content_length(&parts.headers) {
            // hyper respects a valid Content-Length of the request, whatever the body says.
            Ok(Some(n)) => (Coding::Length(n), Added::None),
            _ => match body.size_hint().exact() {
                Some(n) => (Coding::Length(n), Added::ContentLength(n)),
                None if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) => {
                    return (None, Added::None);
                }
                None => {
                    let trailers = announced_trailers(&parts.headers);
                    (Coding::Chunked { trailers }, Added::Chunked)
                }
            },
        };
        if matches!(coding, Coding::Length(0)) {
            return (None, added);
        }
        let upload = Upload {
            body,
            coding,
            head_sent: 0,
            queue: VecDeque::new(),
            scratch: BytesMut::new(),
            ended: false,
        };
        (Some(Box::new(upload)), added)
    }

    /// Writes the head and then the body to the app as the body gives it; ready once all
    /// of it has been written. The body is polled before the head is written, so that a
    /// small body already at hand goes out with the head in one write.
    pub(super) fn poll_send(
        &mut self,
        conn: &mut H1Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if !self.ended
                && self.queue.is_empty()
                && let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx)
            {
                self.encode(frame)?;
                continue;
            }
            let head = &conn.out[self.head_sent..];
            if head.is_empty() && self.queue.is_empty() {
                // Not ended: the body has nothing yet, and has been polled.
                return if self.ended { Poll::Ready(Ok(())) } else { Poll::Pending };
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let pieces = std::iter::once(head).chain(self.queue.iter().map(|b| &b[..]));
            let mut count = 0;
            for piece in pieces.filter(|p| !p.is_empty()).take(MAX_SLICES) {
                slices[count] = IoSlice::new(piece);
                count += 1;
            }
            let head_len = head.len();
            let written =
                ready!(Pin::new(&mut conn.stream).poll_write_vectored(cx, &slices[..count]))
                    .map_err(UploadError::Io)?;
            if written == 0 {
                return Poll::Ready(Err(UploadError::Io(io::ErrorKind::WriteZero.into())));
            }
            self.advance(head_len, written);
        }
    }

    /// Drops `written` bytes from the front of what is to be written: the head's first.
    fn advance(&mut self, head_len: usize, mut written: usize) {
        let from_head = written.min(head_len);
        self.head_sent += from_head;
        written -= from_head;
        while written > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }

    fn encode(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Result<(), UploadError> {
        let frame = match frame {
            None => return self.end(),
            Some(Err(e)) => {
                let cause = stream_error_in(e.as_ref()).unwrap_or(StreamError::Peer);
                return Err(UploadError::Body(cause));
            }
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => self.data(data),
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => self.trailers(&trailers),
                // A kind of frame HTTP/1.1 cannot carry: dropped, as hyper drops it.
                Err(_) => Ok(()),
            },
        }
    }

    fn data(&mut self, mut data: Bytes) -> Result<(), UploadError> {
        // An empty chunk would end a chunked body; hyper skips empty frames.
        if !data.is_empty() {
            match &mut self.coding {
                Coding::Length(left) => {
                    // Past the length, hyper writes nothing more of the body.
                    data.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= data.len() as u64;
                    self.queue.push_back(data);
                    if *left == 0 {
                        self.ended = true;
                        return Ok(());
                    }
                }
                Coding::Chunked { .. } => {
                    // hyper writes the size in upper-case hex.
                    // Writing to a BytesMut cannot fail.
                    let _ = write!(self.scratch, "{:X}\r\n", data.len());
                    self.queue.push_back(self.scratch.split().freeze());
                    self.queue.push_back(data);
                    self.queue.push_back(Bytes::from_static(b"\r\n"));
                }
            }
        }
        // The last chunk goes with the last data, in the same write.
        if self.body.is_end_stream() { self.end() } else { Ok(()) }
    }

    /// The trailer fields, where the request announced them; the body ends here.
    fn trailers(&mut self, fields: &HeaderMap) -> Result<(), UploadError> {
        let Coding::Chunked { trailers: announced } = &self.coding else { return self.end() };
        let mut sent = false;
        for (name, value) in fields {
            if announced.contains(name) && allowed_in_trailers(name) {
                if !sent {
                    self.scratch.put_slice(b"0\r\n");
                    sent = true;
                }
                self.scratch.put_slice(name.as_str().as_bytes());
                self.scratch.put_slice(b": ");
                self.scratch.put_slice(value.as_bytes());
                self.scratch.put_slice(b"\r\n");
            }
        }
        if !sent {
            return self.end();
        }
        self.scratch.put_slice(b"\r\n");
        self.queue.push_back(self.scratch.split().freeze());
        self.ended = true;
        Ok(())
    }

    fn end(&mut self) -> Result<(), UploadError> {
        match self.coding {
            Coding::Length(0) => {}
            // The client's side checks the length, so this is not expected; hyper fails the
            // exchange the same way (the app is left waiting for the rest).
            Coding::Length(_) => {
                let short = io::Error::new(io::ErrorKind::UnexpectedEof, "request body short");
                return Err(UploadError::Io(short));
            }
            Coding::Chunked { .. } => self.queue.push_back(Bytes::from_static(b"0\r\n\r\n")),
        }
        self.ended = true;
        Ok(())
    }
}

/// The names a Trailer field announces, as hyper reads them.
fn announced_trailers(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// hyper never sends these as trailers (its `is_valid_trailer_field`).
fn allowed_in_trailers(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
    )
}
