//! The two heads of an exchange with the app: the request head written, and the response
//! head parsed, with the framing of the body that follows it (RFC 9112 §6.3).

use std::io::Write as _;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};

use super::error::H1Error;
use crate::proxy::{headers, spare};

/// The most fields a response head may carry, as hyper's client allows.
pub const MAX_FIELDS: usize = 100;

/// hyper's cap on what it buffers while a head is incomplete, whatever the head limit.
const MAX_BUFFERED: usize = 8192 + 4096 * 100;

/// How the body after a response head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    None,
    /// Content-Length bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the app closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The reason phrase, kept only when it is not the status code's own (as hyper does).
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body has ended.
    pub keep_alive: bool,
}

/// The field a request head gains for its body, as hyper's client adds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// None: no body, or the request's own Content-Length frames it.
    None,
    /// The body's exact size, where the request states none.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`, for a body of unknown size.
    Chunked,
}

/// Writes the request line and fields of `parts` (already in origin form, hop-by-hop
/// fields gone) into `dst`, as hyper's client would: the fields as they are, then the one
/// that frames the body, if any. A Content-Length that the request carries is left out
/// when another field frames the body: hyper removes it (it cannot be valid then).
pub fn encode_request(dst: &mut Vec<u8>, parts: &Parts, added: Added) {
    dst.extend_from_slice(parts.method.as_str().as_bytes());
    dst.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if added != Added::None && name == header::CONTENT_LENGTH {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    match added {
        Added::None => {}
        Added::ContentLength(n) => {
            // Writing to a Vec cannot fail.
            let _ = write!(dst, "content-length: {n}\r\n");
        }
        Added::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    dst.extend_from_slice(b"\r\n");
}

pub use crate::proxy::headers::Span;

/// Parses a response head at the start of `buf`. `Ok(None)`: not all of it has arrived.
/// On success the head's bytes are taken off the front of `buf`. `spans` is scratch space,
/// kept by the connection so that a head costs no allocation for it.
pub fn parse_response(
    buf: &mut BytesMut,
    max_head_bytes: usize,
    method: &Method,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, H1Error> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes.min(MAX_BUFFERED) => {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
        Err(e) => return Err(H1Error::Malformed(parse_error(e))),
    };
    if len > max_head_bytes {
        return Err(H1Error::HeadTooLarge);
    }
    let code = response.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("invalid status code"))?;
    let version = if response.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    // Where each field lies in the head, so that its value can share the head's bytes.
    // httparse gives slices of `buf`, except a missing reason, which is a static "".
    let offset = |part: &[u8]| headers::offset_in(&buf[..len], part);
    spans.clear();
    for field in response.headers.iter() {
        let (Some(name), Some(value)) = (offset(field.name.as_bytes()), offset(field.value)) else {
            return Err(H1Error::Malformed("a field outside the head"));
        };
        spans.push((name, field.name.len(), value, field.value.len()));
    }
    let reason = response
        .reason
        .filter(|r| status.canonical_reason() != Some(*r))
        .map(|r| offset(r.as_bytes()).map_or((0, 0), |at| (at, r.len())));
    // Copied out, not split off: a split would share the connection's read buffer with the
    // response's fields until the client has been sent them, and the next read would then
    // need a new buffer (8 KiB or more, for a head of a few hundred bytes). Advanced past,
    // the buffer stays the connection's own and is used again.
    let head = spare::copy(&buf[..len]);
    buf.advance(len);

    // Room for the fields the proxy adds (Via), so that adding one does not grow the map.
    let mut headers = spare::header_map(spans.len() + 2);
    // Whether the fields that decide framing and reuse are here, noted on the way: each
    // lookup of an absent name would hash it for nothing.
    let (mut coded, mut connection) = (false, false);
    for &(name, name_len, value, value_len) in spans.iter() {
        let name = HeaderName::from_bytes(&head[name..name + name_len])
            .map_err(|_| H1Error::Malformed("invalid field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
            .map_err(|_| H1Error::Malformed("invalid field value"))?;
        coded |= name == header::TRANSFER_ENCODING;
        connection |= name == header::CONNECTION;
        headers.append(name, value);
    }
    let reason = reason.map(|(at, len)| head.slice(at..at + len));
    let framing = framing(status, version, method, &headers, coded)?;
    // hyper would send the next request on this connection as HTTP/1.0; it is simpler and
    // as correct to use a new one. A 101 hands the connection over to another protocol.
    let keep_alive = framing != Framing::UntilClose
        && version == Version::HTTP_11
        && status != StatusCode::SWITCHING_PROTOCOLS
        && !(connection && headers::connection_has(&headers, "close"));
    Ok(Some(Head { status, version, reason, headers, framing, keep_alive }))
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Status => "invalid status line",
        httparse::Error::Version => "invalid version",
        httparse::Error::HeaderName => "invalid field name",
        httparse::Error::HeaderValue => "invalid field value",
        httparse::Error::NewLine => "invalid line ending",
        _ => "malformed head",
    }
}

/// RFC 9112 §6.3, in its order. `coded`: whether `headers` has Transfer-Encoding.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    headers: &HeaderMap,
    coded: bool,
) -> Result<Framing, H1Error> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::None);
    }
    if coded {
        if version == Version::HTTP_10 {
            return Err(H1Error::Malformed("Transfer-Encoding in an HTTP/1.0 response"));
        }
        return Ok(if last_coding_is_chunked(headers) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let length = headers::content_length(headers)
        .map_err(|()| H1Error::Malformed("invalid Content-Length"))?;
    match length {
        // hyper reserves the top two values for its own markers.
        Some(n) if n > u64::MAX - 2 => Err(H1Error::HeadTooLarge),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::UntilClose),
    }
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    let last = headers.get_all(header::TRANSFER_ENCODING).iter().next_back();
    last.and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, H1Error> {
        parse_response(&mut BytesMut::from(text), 8192, &Method::GET, &mut Vec::new())
    }

    /// The connection's read buffer is read into again while the response's fields are
    /// still on their way to the client: it must not have been shared with them, or each
    /// exchange would allocate a new one.
    #[test]
    fn the_read_buffer_stays_the_connections_own_while_the_fields_live() {
        let mut buf = BytesMut::with_capacity(8192);
        let base = buf.as_ptr();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok");
        let head = parse_response(&mut buf, 8192, &Method::GET, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(&buf[..], b"ok", "the body is left");
        buf.advance(2);
        buf.reserve(8192);
        assert_eq!(buf.as_ptr(), base, "the same allocation, used again");
        assert_eq!(head.headers["x-a"], "b", "the fields outlive the buffer's reuse");
    }

    #[test]
    fn request_head_is_written_in_origin_form_with_fields_as_given() {
        let (mut parts, ()) = http::Request::post("/a?b=1")
            .header("host", "app")
            .header("x-one", "1")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        encode_request(&mut out, &parts, Added::None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nhost: app\r\nx-one: 1\r\n\r\n"
        );
        parts.uri = "*".parse().unwrap();
        parts.method = Method::OPTIONS;
        let mut out = Vec::new();
        encode_request(&mut out, &parts, Added::None);
        assert!(out.starts_with(b"OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn the_field_that_frames_a_body_comes_last_and_replaces_content_length() {
        let (parts, ()) = http::Request::post("/")
            .header("host", "app")
            .header("content-length", "bad")
            .header("x-one", "1")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        encode_request(&mut out, &parts, Added::Chunked);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nhost: app\r\nx-one: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request(&mut out, &parts, Added::ContentLength(12));
        assert!(out.ends_with(b"x-one: 1\r\ncontent-length: 12\r\n\r\n"));
    }

    #[test]
    fn response_head_framing_and_keep_alive() {
        let head =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello").unwrap().unwrap();
        assert_eq!(
            (head.status, head.version, head.framing, head.keep_alive),
            (StatusCode::OK, Version::HTTP_11, Framing::Length(5), true)
        );
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(head.reason, None);

        let head = parse("HTTP/1.1 200 Fine\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.framing, head.reason.as_deref()), (Framing::Chunked, Some(&b"Fine"[..])));

        let head = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.framing, head.keep_alive), (Framing::UntilClose, false));

        let head = parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.version, head.keep_alive), (Version::HTTP_10, false));
        let head = parse("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.reason.as_deref(), head.keep_alive), (Some(&b""[..]), true));
        let head =
            parse("HTTP/1.1 204 No Content\r\nConnection: x, close\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.framing, head.keep_alive), (Framing::None, false));

        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        let head = parse_response(&mut buf, 8192, &Method::HEAD, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(head.framing, Framing::None);
    }

    #[test]
    fn bad_heads_are_refused_with_what_is_wrong() {
        assert!(matches!(parse("HTTP/1.1 200 OK\r\nContent"), Ok(None)));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Err(H1Error::Malformed(_))), "{bad:?}");
        }
        let huge = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(matches!(parse(huge), Err(H1Error::HeadTooLarge)));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "a: b\r\n".repeat(101));
        assert!(matches!(parse(&many), Err(H1Error::HeadTooLarge)));
        // No reason phrase at all: httparse's "" lies outside the head.
        let head = parse("HTTP/1.1 408\n\n").unwrap().unwrap();
        assert_eq!(
            (head.status, head.reason.as_deref()),
            (StatusCode::REQUEST_TIMEOUT, Some(&b""[..]))
        );
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(matches!(parse(&big), Err(H1Error::HeadTooLarge)));
        assert!(matches!(parse(&big[..8500]), Err(H1Error::HeadTooLarge)));
    }
}
