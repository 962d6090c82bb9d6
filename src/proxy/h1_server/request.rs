//! A request head read by the sidecar's own HTTP/1.1 server: the requests it serves
//! itself, and the rest, which it leaves to hyper.
//!
//! Every byte has passed the framing scanner before it gets here (`client_io`): a head that
//! the scanner refused arrives as its stand-in, and the request handler answers the
//! refusal. So httparse cannot fail here on what it accepted there; where anything does
//! not convert (a request target that is not a URI), the head is left to hyper, which
//! answers it as before. The scanner's own parse of the head is taken where it is of these
//! very bytes (`ScannedHead`): one parse per head.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

use crate::proxy::framing::MAX_HEADERS;
use crate::proxy::headers::{self, Span};
use crate::proxy::scanner::{self, HeadParts, ScannedHead};
use crate::proxy::spare;

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
/// connection so that a head costs no allocation for it. `scanned`: the head that the
/// framing scanner parsed last; where `buf` starts with it, its parts are taken from there,
/// not parsed a second time.
pub fn parse(buf: &mut BytesMut, spans: &mut Vec<Span>, scanned: &ScannedHead) -> Parsed {
    let (parts, fields) = match scanned.found_at_start_of(buf) {
        Some(found) => found,
        None => match locate(buf, spans) {
            Ok(parts) => (parts, &spans[..]),
            Err(Unlocated::Partial) => return Parsed::Partial,
            Err(Unlocated::Hyper) => return Parsed::Hyper,
        },
    };
    build(buf, fields, parts)
}

/// Why no head was found: not all of it yet, or one that is hyper's.
enum Unlocated {
    Partial,
    Hyper,
}

/// Parses the head at the start of `buf` with httparse, as the scanner does.
fn locate(buf: &[u8], spans: &mut Vec<Span>) -> Result<HeadParts, Unlocated> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(Unlocated::Partial),
        Err(_) => return Err(Unlocated::Hyper),
    };
    scanner::locate(&buf[..len], &req, spans).ok_or(Unlocated::Hyper)
}

/// The request whose parts lie where `spans` and `located` say, if it is this server's.
fn build(buf: &mut BytesMut, spans: &[Span], parts: HeadParts) -> Parsed {
    let HeadParts {
        len,
        method: (method_at, method_len),
        target: (target_at, target_len),
        version,
    } = parts;
    let method = &buf[method_at..method_at + method_len];
    if version != 1 || method == b"CONNECT" {
        return Parsed::Hyper;
    }
    if spans.iter().any(|&(name, name_len, ..)| hands_to_hyper(&buf[name..name + name_len])) {
        return Parsed::Hyper;
    }
    let Ok(method) = Method::from_bytes(method) else {
        return Parsed::Hyper;
    };
    // Copied out, not split off, so that the read buffer stays the connection's own and is
    // read into again (as `app_h1` does with response heads).
    let head = spare::copy(&buf[..len]);
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target_at..target_at + target_len)) else {
        return Parsed::Hyper;
    };
    // Room for the fields the proxy adds on the way to the app (Via, X-Forwarded-For).
    let mut map = spare::header_map(spans.len() + 2);
    let mut connection = false;
    for &(name, name_len, value, value_len) in spans {
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
    use crate::proxy::framing::Framing;
    use crate::proxy::scanner::FramingScanner;

    fn parse_text(text: &str) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse(&mut buf, &mut Vec::new(), &ScannedHead::default());
        (parsed, buf)
    }

    fn scanned(text: &str) -> FramingScanner {
        let mut scanner = FramingScanner::new(8192);
        scanner.feed(&Framing::default(), text.as_bytes());
        scanner
    }

    #[test]
    fn the_scanners_parse_is_taken_for_the_very_same_bytes_and_gives_the_same_request() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: app\r\nX-One: 1\r\nx-one: 2\r\n\r\n";
        let scanner = scanned(text);
        let (parts, _) = scanner.scanned().found_at_start_of(text.as_bytes()).expect("kept");
        assert_eq!(parts.len, text.len());
        let (own, _) = parse_text(text);
        let mut buf = BytesMut::from(format!("{text}GET /").as_str());
        let taken = parse(&mut buf, &mut Vec::new(), scanner.scanned());
        assert_eq!(format!("{taken:?}"), format!("{own:?}"));
        assert_eq!(&buf[..], b"GET /", "taken off the buffer as a parse of its own would");
        // One byte apart: parsed anew, never read through the other head's offsets.
        let other = text.replace("b=1", "b=22");
        assert_eq!(scanner.scanned().found_at_start_of(other.as_bytes()), None);
        let mut buf = BytesMut::from(other.as_str());
        let Parsed::Ours(head) = parse(&mut buf, &mut Vec::new(), scanner.scanned()) else {
            panic!("ours")
        };
        assert_eq!(head.parts.uri, "/a?b=22");
        assert_eq!(head.parts.headers["host"], "app");
    }

    #[test]
    fn the_scanners_parse_still_leaves_to_hyper_what_is_hypers() {
        for text in [
            "POST / HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: app\r\n\r\n",
        ] {
            let scanner = scanned(text);
            assert!(scanner.scanned().found_at_start_of(text.as_bytes()).is_some(), "{text}");
            let parsed = parse(&mut BytesMut::from(text), &mut Vec::new(), scanner.scanned());
            assert!(matches!(parsed, Parsed::Hyper), "{text}: {parsed:?}");
        }
    }

    #[test]
    fn a_refused_or_large_head_is_not_kept() {
        let refused = "GET / HTTP/1.1\r\nHost: app\r\nContent-Length: x\r\n\r\n";
        assert_eq!(scanned(refused).scanned().found_at_start_of(refused.as_bytes()), None);
        let large = format!("GET / HTTP/1.1\r\nHost: app\r\nX-Big: {}\r\n\r\n", "b".repeat(2000));
        let scanner = scanned(&large);
        assert_eq!(scanner.scanned().found_at_start_of(large.as_bytes()), None);
        let Parsed::Ours(head) =
            parse(&mut BytesMut::from(large.as_str()), &mut Vec::new(), scanner.scanned())
        else {
            panic!("ours, parsed anew")
        };
        assert_eq!(head.parts.headers["x-big"].len(), 2000);
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
        let Parsed::Ours(head) = parse(&mut buf, &mut Vec::new(), &ScannedHead::default()) else {
            panic!()
        };
        buf.reserve(8192);
        assert_eq!(buf.as_ptr(), base, "the same allocation, used again");
        assert_eq!(head.parts.headers["host"], "a");
    }
}
