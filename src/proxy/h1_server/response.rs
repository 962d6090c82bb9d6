//! A response head written to an HTTP/1.1 client exactly as hyper's server writes it: the
//! status line, the fields in order with lower-case names, the field that frames the body
//! when the response has none, `connection: close` when the connection ends after it, and
//! `date` when the response carries none.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::response::Parts;
use http::{Method, StatusCode, Version};

use crate::proxy::headers;

/// How the body after a response head is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes; no body at all for 0.
    Length(u64),
    Chunked,
    /// Until the connection closes: a body of unknown length in an HTTP/1.0 response.
    UntilClose,
}

/// The body's length as the response tells it: `None` for a body that has ended already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    None,
    Known(u64),
    Unknown,
}

/// Why a response cannot be written (hyper refuses the same ones, and ends the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("a response with an invalid or conflicting Content-Length")]
    ContentLength,
    #[error("a 1xx response in place of a final one")]
    Informational,
}

/// The head written, and what follows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Encoded {
    pub framing: Framing,
    /// Whether the connection closes once the response has been written.
    pub last: bool,
}

/// Writes the head of `parts` into `dst` for a request with `method`. `keep_alive`: the
/// request lets the connection carry another one.
pub fn encode(
    dst: &mut Vec<u8>,
    parts: &Parts,
    reason: Option<&[u8]>,
    method: &Method,
    body: BodyLength,
    keep_alive: bool,
) -> Result<Encoded, EncodeError> {
    let status = parts.status;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(EncodeError::Informational);
    }
    let mut last = !keep_alive || status == StatusCode::SWITCHING_PROTOCOLS;
    match parts.version {
        Version::HTTP_10 => dst.extend_from_slice(b"HTTP/1.0 "),
        _ => dst.extend_from_slice(b"HTTP/1.1 "),
    }
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    let reason = reason.unwrap_or_else(|| status.canonical_reason().unwrap_or("<none>").as_bytes());
    dst.extend_from_slice(reason);
    dst.extend_from_slice(b"\r\n");

    // hyper drops Transfer-Encoding and Trailer from an HTTP/1.0 response, whose body
    // then runs to the close.
    let http10 = parts.version == Version::HTTP_10;
    let can_body = can_have_body(method, status);
    let can_chunk = can_body && !http10;
    let mut framing = Framing::Length(0);
    let (mut wrote_len, mut wrote_date) = (false, false);
    let mut length_seen = None;
    let mut coded = false;
    // `Connection: close` is added to the response's own Connection line, or as a line of
    // its own after the fields, where the request ends keep-alive.
    let mut add_close =
        !keep_alive && !parts.headers.get_all(header::CONNECTION).iter().any(is_close);
    // hyper writes repeated Transfer-Encoding, Connection and Trailer fields as one line.
    let mut open: Option<Open> = None;
    // A Transfer-Encoding whose last coding is not chunked: hyper ends that line, and every
    // joined line after it, with `, chunked`.
    let mut must_chunk = false;
    for (name, value) in &parts.headers {
        let joins = match *name {
            header::CONNECTION => open == Some(Open::Connection),
            header::TRANSFER_ENCODING => open == Some(Open::Coding),
            header::TRAILER => open == Some(Open::Trailer),
            _ => false,
        };
        if joins {
            dst.extend_from_slice(b", ");
            dst.extend_from_slice(value.as_bytes());
            match *name {
                header::CONNECTION => last |= is_close(value),
                header::TRANSFER_ENCODING => must_chunk = !ends_in_chunked(value),
                _ => {}
            }
            continue;
        }
        match *name {
            header::CONTENT_LENGTH => {
                if coded {
                    return Err(EncodeError::ContentLength);
                }
                match body {
                    BodyLength::None if *method != Method::HEAD => continue,
                    // hyper reads the field only where the body's own length is unknown:
                    // otherwise it writes its first value as it stands.
                    BodyLength::None if wrote_len => return Err(EncodeError::ContentLength),
                    BodyLength::None => wrote_len = true,
                    BodyLength::Known(_) if wrote_len => continue,
                    BodyLength::Known(known) => {
                        (wrote_len, framing) = (true, Framing::Length(known));
                    }
                    BodyLength::Unknown => {
                        let Some(n) = headers::decimal(value.as_bytes()) else {
                            return Err(EncodeError::ContentLength);
                        };
                        match length_seen {
                            Some(seen) if seen != n => return Err(EncodeError::ContentLength),
                            Some(_) => continue,
                            None => {}
                        }
                        length_seen = Some(n);
                        (wrote_len, framing) = (true, Framing::Length(n));
                    }
                }
            }
            header::TRANSFER_ENCODING => {
                if wrote_len {
                    return Err(EncodeError::ContentLength);
                }
                if !can_chunk {
                    continue;
                }
                (coded, wrote_len, framing) = (true, true, Framing::Chunked);
                end_line(dst, &mut open, &mut add_close, must_chunk);
                dst.extend_from_slice(b"transfer-encoding: ");
                dst.extend_from_slice(value.as_bytes());
                open = Some(Open::Coding);
                must_chunk = !ends_in_chunked(value);
                continue;
            }
            header::CONNECTION => {
                last |= is_close(value);
                end_line(dst, &mut open, &mut add_close, must_chunk);
                dst.extend_from_slice(b"connection: ");
                dst.extend_from_slice(value.as_bytes());
                open = Some(Open::Connection);
                continue;
            }
            header::DATE => wrote_date = true,
            // hyper leaves Trailer out where no chunked body can follow. (No trailers go to
            // a client that did not ask for them: `TE: trailers` makes a request hyper's.)
            header::TRAILER => {
                if !can_chunk {
                    continue;
                }
                end_line(dst, &mut open, &mut add_close, must_chunk);
                dst.extend_from_slice(b"trailer: ");
                dst.extend_from_slice(value.as_bytes());
                open = Some(Open::Trailer);
                continue;
            }
            _ => {}
        }
        end_line(dst, &mut open, &mut add_close, must_chunk);
        line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    end_line(dst, &mut open, &mut add_close, must_chunk);
    if add_close {
        dst.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_len {
        framing = match body {
            BodyLength::Unknown if can_chunk => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            BodyLength::Unknown => Framing::UntilClose,
            BodyLength::None | BodyLength::Known(0) => {
                if can_have_content_length(status) && *method != Method::HEAD {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            BodyLength::Known(n) if can_have_content_length(status) => {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                dst.extend_from_slice(b"\r\n");
                Framing::Length(n)
            }
            BodyLength::Known(_) => Framing::Length(0),
        };
    }
    if !can_body {
        framing = Framing::Length(0);
    }
    last |= framing == Framing::UntilClose;
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        with_date(|date| dst.extend_from_slice(date));
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    Ok(Encoded { framing, last })
}

/// A line begun and not ended, so that a repeat of its field can join it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Connection,
    Trailer,
    Coding,
}

fn ends_in_chunked(value: &HeaderValue) -> bool {
    let last = value.as_bytes().rsplit(|&b| b == b',').next().unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

fn end_line(dst: &mut Vec<u8>, open: &mut Option<Open>, add_close: &mut bool, must_chunk: bool) {
    let Some(line) = open.take() else { return };
    if line == Open::Connection && std::mem::take(add_close) {
        dst.extend_from_slice(b", close");
    }
    if must_chunk {
        dst.extend_from_slice(b", chunked");
    }
    dst.extend_from_slice(b"\r\n");
}

fn line(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

fn is_close(value: &HeaderValue) -> bool {
    value.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// RFC 9110 §6.4.1: no body for HEAD, 1xx, 204 and 304.
pub fn can_have_body(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

fn can_have_content_length(status: StatusCode) -> bool {
    !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// The `date` value, formatted once a second per thread, as hyper caches it.
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    CACHED.with_borrow_mut(|(at, date)| {
        if *at != second {
            *at = second;
            *date = httpdate::fmt_http_date(now);
        }
        f(date.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(
        response: http::Response<()>,
        method: Method,
        body: BodyLength,
        keep_alive: bool,
    ) -> (String, Result<Encoded, EncodeError>) {
        let (parts, ()) = response.into_parts();
        let mut dst = Vec::new();
        let encoded = encode(&mut dst, &parts, None, &method, body, keep_alive);
        let text = String::from_utf8(dst).unwrap();
        // The date the server adds (29 characters, ending in GMT), not one of the response's.
        let date =
            text.find("date: ").map(|at| at + 6).filter(|&at| text[at..].find(" GMT") == Some(25));
        let text = match date {
            Some(at) => format!("{}<date>{}", &text[..at], &text[at + 29..]),
            None => text,
        };
        (text, encoded)
    }

    fn ok() -> http::response::Builder {
        http::Response::builder()
    }

    #[test]
    fn a_known_length_is_written_and_date_added() {
        let (text, encoded) = written(
            ok().header("x-a", "1").body(()).unwrap(),
            Method::GET,
            BodyLength::Known(5),
            true,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: <date>\r\n\r\n");
        assert_eq!(encoded, Ok(Encoded { framing: Framing::Length(5), last: false }));
    }

    #[test]
    fn an_unknown_length_is_chunked_and_an_ended_body_is_zero() {
        let (text, encoded) =
            written(ok().status(404).body(()).unwrap(), Method::GET, BodyLength::Unknown, true);
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\ndate: <date>\r\n\r\n"
        );
        assert_eq!(encoded.unwrap().framing, Framing::Chunked);
        let (text, _) = written(ok().body(()).unwrap(), Method::GET, BodyLength::None, true);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: <date>\r\n\r\n");
    }

    #[test]
    fn the_responses_own_length_and_connection_fields_are_kept_and_close_is_noted() {
        let response = ok()
            .header("content-length", "3")
            .header("connection", "keep-alive")
            .header("connection", "close")
            .header("date", "x")
            .body(())
            .unwrap();
        let (text, encoded) = written(response, Method::GET, BodyLength::Known(3), true);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive, close\r\ndate: x\r\n\r\n"
        );
        assert_eq!(encoded, Ok(Encoded { framing: Framing::Length(3), last: true }));
    }

    #[test]
    fn a_request_that_closes_gets_connection_close() {
        let (text, encoded) =
            written(ok().body(()).unwrap(), Method::GET, BodyLength::Known(2), false);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\ndate: <date>\r\n\r\n"
        );
        assert!(encoded.unwrap().last);
        let response = ok().header("connection", "foo").body(()).unwrap();
        let (text, _) = written(response, Method::GET, BodyLength::Known(2), false);
        assert!(text.contains("connection: foo, close\r\n"), "{text}");
    }

    #[test]
    fn head_204_and_304_have_no_body() {
        let response = ok().header("content-length", "10").body(()).unwrap();
        let (text, encoded) = written(response, Method::HEAD, BodyLength::Known(10), true);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\ndate: <date>\r\n\r\n");
        assert_eq!(encoded.unwrap().framing, Framing::Length(0));
        let (text, encoded) =
            written(ok().body(()).unwrap(), Method::HEAD, BodyLength::Unknown, true);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ndate: <date>\r\n\r\n");
        assert_eq!(encoded.unwrap().framing, Framing::Length(0));
        let (text, _) =
            written(ok().status(204).body(()).unwrap(), Method::GET, BodyLength::None, true);
        assert_eq!(text, "HTTP/1.1 204 No Content\r\ndate: <date>\r\n\r\n");
        let response = ok().status(304).header("transfer-encoding", "chunked").body(()).unwrap();
        let (text, _) = written(response, Method::GET, BodyLength::Unknown, true);
        assert_eq!(text, "HTTP/1.1 304 Not Modified\r\ndate: <date>\r\n\r\n");
    }

    #[test]
    fn a_coding_that_does_not_end_in_chunked_is_ended_with_it() {
        let response = ok().header("transfer-encoding", "gzip").body(()).unwrap();
        let (text, encoded) = written(response, Method::GET, BodyLength::Unknown, true);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ndate: <date>\r\n\r\n"
        );
        assert_eq!(encoded.unwrap().framing, Framing::Chunked);
    }

    #[test]
    fn repeated_trailer_fields_are_one_line_and_none_without_a_chunked_body() {
        let response =
            ok().header("trailer", "x-a").header("x-b", "1").header("trailer", "x-c").body(());
        let (text, _) = written(response.unwrap(), Method::GET, BodyLength::Unknown, true);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ntrailer: x-a, x-c\r\nx-b: 1\r\ntransfer-encoding: chunked\r\n\
             date: <date>\r\n\r\n"
        );
        let response = ok().header("trailer", "x-a").body(()).unwrap();
        let (text, _) = written(response, Method::HEAD, BodyLength::Unknown, true);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ndate: <date>\r\n\r\n");
    }

    #[test]
    fn a_length_field_is_read_only_where_the_body_does_not_know_its_own() {
        let response = ok().header("content-length", "5, 5").body(()).unwrap();
        let (text, encoded) = written(response, Method::GET, BodyLength::Known(5), true);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ndate: <date>\r\n\r\n");
        assert_eq!(encoded.unwrap().framing, Framing::Length(5));
        let response = ok().header("content-length", "5, 5").body(()).unwrap();
        let (_, encoded) = written(response, Method::GET, BodyLength::Unknown, true);
        assert_eq!(encoded, Err(EncodeError::ContentLength));
    }

    #[test]
    fn conflicting_lengths_and_1xx_are_refused() {
        let response =
            ok().header("content-length", "1").header("content-length", "2").body(()).unwrap();
        assert_eq!(
            written(response, Method::GET, BodyLength::Unknown, true).1,
            Err(EncodeError::ContentLength)
        );
        let (_, encoded) =
            written(ok().status(103).body(()).unwrap(), Method::GET, BodyLength::None, true);
        assert_eq!(encoded, Err(EncodeError::Informational));
    }

    #[test]
    fn a_custom_reason_and_http_1_0_are_kept() {
        let (parts, ()) = ok().status(599).version(Version::HTTP_10).body(()).unwrap().into_parts();
        let mut dst = Vec::new();
        encode(&mut dst, &parts, Some(b"Odd"), &Method::GET, BodyLength::None, true).unwrap();
        assert!(dst.starts_with(b"HTTP/1.0 599 Odd\r\n"), "{:?}", String::from_utf8_lossy(&dst));
    }
}
