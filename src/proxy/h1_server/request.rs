//! A request head read by the sidecar's own HTTP/1.1 server: the requests it serves
//! itself, and the rest, which it leaves to hyper.
//!
//! Every byte has passed the framing scanner before it gets here (`client_io`): a head that
//! the scanner refused arrives as its stand-in, and the request handler answers the
//! refusal. So httparse cannot fail here on what it accepted there; where anything does
//! not convert (a request target that is not a URI), the head is left to hyper, which
//! answers it as before.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

use crate::proxy::framing::MAX_HEADERS;
use crate::proxy::headers::{self, Span};

/// What the start of the read buffer holds.
// Matched as soon as it is returned: boxing the head would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// A request this server serves; its head has been taken off the buffer.
    Ours(Head),
    /// Not all of a head yet.
    Partial,
    /// A request hyper serves: one with a body, one that asks to switch protocols or to
    /// be told to continue, one that may take trailers, or anything not HTTP/1.1. Nothing
    /// has been taken off the buffer.
    Hyper,
}

/// A request without a body, as hyper's server would hand it to the service.
#[derive(Debug)]
pub struct Head {
    pub parts: Parts,
    /// Whether the client may send another request on the connection (no
    /// `Connection: close`).
    pub keep_alive: bool,
}

/// Parses the request head at the start of `buf`. `spans` is scratch space, kept by the
/// connection so that a head costs no allocation for it.
pub fn parse(buf: &mut BytesMut, spans: &mut Vec<Span>) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Hyper;
    };
    if method == "CONNECT" {
        return Parsed::Hyper;
    }
    // Where each part lies in the head, so that the values can share one copy of it.
    let offset = |part: &[u8]| headers::offset_in(&buf[..len], part);
    spans.clear();
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        if hands_to_hyper(name) {
            return Parsed::Hyper;
        }
        let (Some(at), Some(value_at)) = (offset(name), offset(field.value)) else {
            return Parsed::Hyper;
        };
        spans.push((at, name.len(), value_at, field.value.len()));
    }
    let (Ok(method), Some(target_at)) =
        (Method::from_bytes(method.as_bytes()), offset(target.as_bytes()))
    else {
        return Parsed::Hyper;
    };
    let target_len = target.len();
    // Copied out, not split off, so that the read buffer stays the connection's own and is
    // read into again (as `app_h1` does with response heads).
    let head = Bytes::copy_from_slice(&buf[..len]);
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target_at..target_at + target_len)) else {
        return Parsed::Hyper;
    };
    // Room for the fields the proxy adds on the way to the app (Via, X-Forwarded-For).
    let mut map = HeaderMap::with_capacity(spans.len() + 2);
    let mut connection = false;
    for &(name, name_len, value, value_len) in spans.iter() {
        let Ok(name) = HeaderName::from_bytes(&head[name..name + name_len]) else {
            return Parsed::Hyper;
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(value..value + value_len)) else {
            return Parsed::Hyper;
        };
        connection |= name == header::CONNECTION;
        map.append(name, value);
    }
    buf.advance(len);
    let keep_alive = !(connection && headers::connection_has(&map, "close"));
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Parsed::Ours(Head { parts, keep_alive })
}

/// A field that makes the request hyper's: it frames a body, asks to switch protocols or
/// for 100 Continue, or says the client takes trailers.
fn hands_to_hyper(name: &[u8]) -> bool {
    const HYPERS: [&[u8]; 5] =
        [b"content-length", b"transfer-encoding", b"upgrade", b"expect", b"te"];
    HYPERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse(&mut buf, &mut Vec::new());
        (parsed, buf)
    }

    #[test]
    fn a_request_without_a_body_is_ours_with_its_fields_in_order() {
        let (parsed, rest) =
            parse_text("GET /a?b=1 HTTP/1.1\r\nHost: app\r\nX-One: 1\r\nx-one: 2\r\n\r\nGET /");
        let Parsed::Ours(head) = parsed else { panic!("{parsed:?}") };
        assert_eq!(&rest[..], b"GET /", "the next request's first bytes are left");
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.version, Version::HTTP_11);
        assert!(head.keep_alive);
        let fields: Vec<_> =
            head.parts.headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(fields, [("host", "app"), ("x-one", "1"), ("x-one", "2")]);
    }

    #[test]
    fn connection_close_in_any_field_ends_keep_alive() {
        let (parsed, _) = parse_text(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: foo, Close\r\n\r\n",
        );
        let Parsed::Ours(head) = parsed else { panic!("{parsed:?}") };
        assert!(!head.keep_alive);
    }

    #[test]
    fn requests_with_a_body_a_switch_or_another_version_are_hypers_and_left_in_the_buffer() {
        for text in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://[bad HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let (parsed, rest) = parse_text(text);
            assert!(matches!(parsed, Parsed::Hyper), "{text:?}: {parsed:?}");
            assert_eq!(&rest[..], text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn a_head_not_yet_whole_is_partial() {
        let (parsed, rest) = parse_text("GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(matches!(parsed, Parsed::Partial), "{parsed:?}");
        assert_eq!(rest.len(), 25);
    }

    #[test]
    fn the_read_buffer_stays_the_connections_own() {
        let mut buf = BytesMut::with_capacity(8192);
        let base = buf.as_ptr();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let Parsed::Ours(head) = parse(&mut buf, &mut Vec::new()) else { panic!() };
        buf.reserve(8192);
        assert_eq!(buf.as_ptr(), base, "the same allocation, used again");
        assert_eq!(head.parts.headers["host"], "a");
    }
}
