//! The app's response body, read from its connection as the client takes it: by length,
//! chunked, or until the connection closes; meanwhile, what is left of the request body
//! goes on being sent. Once both have ended cleanly, the connection can be taken back for
//! the next request.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::Response;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use super::conn::H1Conn;
use super::error::H1Error;
use super::head::{Framing, Head, MAX_FIELDS};
use super::send::Upload;
use crate::proxy::body::BoxError;
use crate::proxy::spare;

/// Body pieces up to this size are copied out of the connection's read buffer; larger ones
/// share it.
const COPY_UP_TO: usize = 2048;
/// hyper's limits: chunk extensions over the whole body, and the trailer section.
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// This many bytes of a Content-Length body are still to come.
    Length(u64),
    /// A chunk-size line is next.
    ChunkSize,
    /// This many bytes of the current chunk are still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data is next.
    ChunkEnd,
    /// The trailer section after the last chunk is next.
    Trailers,
    UntilClose,
    Done,
    Failed,
}

/// A response body read from an [`H1Conn`].
#[derive(Debug)]
pub struct H1Body {
    conn: Option<Box<H1Conn>>,
    state: State,
    keep_alive: bool,
    /// Chunk extension bytes so far; they are ignored, but not without end.
    extension_bytes: usize,
    /// The request body, when the app answered before all of it was sent.
    upload: Option<Box<Upload>>,
}

/// The response for a head just read, its body still on `conn`. `upload`: the rest of the
/// request body; `writable`: whether writing to the app has not failed.
pub(super) fn response(
    head: Head,
    conn: Box<H1Conn>,
    upload: Option<Box<Upload>>,
    writable: bool,
) -> Response<H1Body> {
    let state = match head.framing {
        Framing::None => State::Done,
        Framing::Length(n) => State::Length(n),
        Framing::Chunked => State::ChunkSize,
        Framing::UntilClose => State::UntilClose,
    };
    let keep_alive = head.keep_alive && writable;
    let body = H1Body { conn: Some(conn), state, keep_alive, extension_bytes: 0, upload };
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    if let Some(reason) = head.reason
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason)
    {
        response.extensions_mut().insert(reason);
    }
    response
}

impl H1Body {
    /// The connection, once the body has ended cleanly and the app left it fit for another
    /// request: it said nothing against keep-alive and sent nothing past the body, and the
    /// request body was sent whole.
    pub fn take_reusable(&mut self) -> Option<Box<H1Conn>> {
        let ended = self.is_end_stream() && self.upload.is_none();
        let conn = self.conn.take_if(|c| ended && self.keep_alive && c.buf.is_empty())?;
        Some(conn)
    }

    fn fail(&mut self, error: H1Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Failed;
        self.conn = None;
        self.upload = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }

    /// Sends more of the request body, if any is left. The response goes on whatever
    /// happens to it: the app has answered, and a body it needed and did not get shows as a
    /// response that stalls, which the response's own watchdog ends.
    fn poll_upload(&mut self, cx: &mut Context<'_>) {
        let (Some(upload), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) else {
            return;
        };
        match upload.poll_send(conn, cx) {
            Poll::Pending => return,
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = ?e, "the rest of the request body was not sent");
                self.keep_alive = false;
            }
        }
        self.upload = None;
    }

    /// Up to `remaining` bytes from what has been read, if any has. Small pieces are
    /// copied, so that the connection's read buffer stays its own (see `parse_response`);
    /// larger ones share it, as copying them would cost more than a new buffer.
    fn take_data(&mut self, remaining: u64) -> Option<Bytes> {
        let buf = &mut self.conn.as_mut()?.buf;
        if buf.is_empty() {
            return None;
        }
        let n = remaining.min(buf.len() as u64) as usize;
        if n <= COPY_UP_TO {
            let data = spare::copy(&buf[..n]);
            buf.advance(n);
            return Some(data);
        }
        Some(buf.split_to(n).freeze())
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.upload.is_some() {
            this.poll_upload(cx);
        }
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match this.state {
                State::Done | State::Failed | State::Length(0) => return Poll::Ready(None),
                State::Length(remaining) | State::ChunkData(remaining) => {
                    if let Some(data) = this.take_data(remaining) {
                        let left = remaining - data.len() as u64;
                        this.state = match this.state {
                            State::ChunkData(_) if left == 0 => State::ChunkEnd,
                            State::ChunkData(_) => State::ChunkData(left),
                            _ => State::Length(left),
                        };
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::UntilClose => {
                    if let Some(data) = this.take_data(u64::MAX) {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::ChunkSize => match chunk_size(&conn.buf, this.extension_bytes) {
                    Ok(Some((used, size, extension))) => {
                        conn.buf.advance(used);
                        this.extension_bytes += extension;
                        this.state =
                            if size == 0 { State::Trailers } else { State::ChunkData(size) };
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(e),
                },
                State::ChunkEnd if conn.buf.len() >= 2 => {
                    if &conn.buf[..2] != b"\r\n" {
                        return this.fail(H1Error::Malformed("chunk data longer than its size"));
                    }
                    conn.buf.advance(2);
                    this.state = State::ChunkSize;
                    continue;
                }
                State::ChunkEnd => {}
                State::Trailers => match trailers(&mut conn.buf) {
                    Ok(Some(fields)) => {
                        this.state = State::Done;
                        if !fields.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                        }
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(e),
                },
            }
            // Nothing to give from what has been read: read more.
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.state == State::UntilClose => {
                    this.state = State::Done;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(H1Error::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A chunk-size line: bytes used, chunk size, and extension bytes. httparse is more
/// lenient than hyper in two ways that are closed here: a line with no digits, and a bare
/// LF inside an extension.
fn chunk_size(buf: &[u8], extension_bytes: usize) -> Result<Option<(usize, u64, usize)>, H1Error> {
    let invalid = || H1Error::Malformed("invalid chunk size line");
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 && !buf.is_empty() {
        return Err(invalid());
    }
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((used, size))) => {
            let extension = used - digits - 2;
            if buf[digits..used - 1].contains(&b'\n') {
                return Err(invalid());
            }
            if extension_bytes + extension >= MAX_EXTENSION_BYTES {
                return Err(H1Error::Malformed("chunk extensions over the limit"));
            }
            Ok(Some((used, size, extension)))
        }
        Ok(httparse::Status::Partial) if extension_bytes + buf.len() < MAX_EXTENSION_BYTES + 20 => {
            if buf[digits..].contains(&b'\n') {
                return Err(invalid());
            }
            Ok(None)
        }
        Ok(httparse::Status::Partial) => Err(H1Error::Malformed("chunk extensions over the limit")),
        Err(_) => Err(invalid()),
    }
}

/// The trailer section after the last chunk, up to and including its blank line.
/// `Ok(None)`: not all of it has arrived.
fn trailers(buf: &mut bytes::BytesMut) -> Result<Option<HeaderMap>, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let (used, map) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((used, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes());
                let value = HeaderValue::from_bytes(field.value);
                let (Ok(name), Ok(value)) = (name, value) else {
                    return Err(H1Error::Malformed("invalid trailer field"));
                };
                map.append(name, value);
            }
            (used, map)
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILER_BYTES => return Ok(None),
        _ => return Err(H1Error::Malformed("invalid trailer section")),
    };
    buf.advance(used);
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::proxy::body::RequestBody;

    /// Sends a GET over a real socket to an "app" that answers `reply` (then closes if
    /// `close`), and returns the response with its body still to read.
    async fn exchange(reply: impl AsRef<[u8]> + Send + 'static, close: bool) -> Response<H1Body> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        tokio::spawn(async move {
            // The request is read first: closing with it unread would reset the connection.
            let mut request = [0u8; 1024];
            let _ = app.read(&mut request).await.unwrap();
            app.write_all(reply.as_ref()).await.unwrap();
            if close {
                drop(app);
            } else {
                std::future::pending::<()>().await;
            }
        });
        H1Conn::new(client).send(&parts, RequestBody::empty(), 8192).await.unwrap()
    }

    /// Every frame of a body: its data joined, its trailers, or the error.
    async fn read_all(body: &mut H1Body) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        Ok((data, trailers))
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
        let response = exchange(reply, false).await;
        let mut body = response.into_body();
        let (data, trailers) = read_all(&mut body).await.unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "1");
        assert!(body.take_reusable().is_some());
    }

    #[tokio::test]
    async fn length_body_is_reusable_only_when_nothing_follows() {
        let response = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false).await;
        let mut body = response.into_body();
        assert_eq!(read_all(&mut body).await.unwrap().0, b"abc");
        assert!(body.take_reusable().is_some());

        let response = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", false).await;
        let mut body = response.into_body();
        assert_eq!(read_all(&mut body).await.unwrap().0, b"abc");
        assert!(body.take_reusable().is_none(), "bytes past the body");

        let response = exchange(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            false,
        )
        .await;
        let mut body = response.into_body();
        assert_eq!(read_all(&mut body).await.unwrap().0, b"abc");
        assert!(body.take_reusable().is_none(), "Connection: close");
    }

    #[tokio::test]
    async fn close_delimited_body_ends_with_the_connection() {
        let response = exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
        let mut body = response.into_body();
        assert_eq!(read_all(&mut body).await.unwrap().0, b"until the end");
        assert!(body.take_reusable().is_none());
    }

    #[tokio::test]
    async fn broken_bodies_fail() {
        let cases: [(&'static [u8], &str); 5] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nabc", "chunk size"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nb\r\nabc\r\n",
                "chunk size",
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", "longer than"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", "closed"),
        ];
        for (reply, why) in cases {
            let response = exchange(reply, true).await;
            let mut body = response.into_body();
            let err = read_all(&mut body).await.unwrap_err();
            assert!(err.contains(why), "{:?}: {err}", String::from_utf8_lossy(reply));
            assert!(body.take_reusable().is_none());
        }
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_the_reason_kept_when_it_is_the_apps_own() {
        let reply = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n";
        let response = exchange(reply, false).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("link").is_none());
        let reason = response.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"Fine");
        assert!(response.body().is_end_stream());
    }

    #[tokio::test]
    async fn a_large_body_arrives_whole_and_its_buffer_is_not_kept_idle() {
        let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut reply =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&body);
        let mut response = exchange(reply, false).await.into_body();
        assert_eq!(read_all(&mut response).await.unwrap().0, body);
        let mut conn = response.take_reusable().expect("reusable");
        conn.shrink_for_idle();
        assert!(conn.buf.capacity() <= super::super::conn::MAX_IDLE_BUFFER);
    }
}
