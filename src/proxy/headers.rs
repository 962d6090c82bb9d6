//! Header rules for a proxy (RFC 9110 §7.6): hop-by-hop fields stay on their hop, Via
//! records each hop, and X-Forwarded-* tell the app who the client was; and the name the
//! sidecar goes by in Via and Proxy-Status.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};

/// The name this proxy uses in Proxy-Status and Via (a macro, so that `concat!` can
/// build static header values from it).
macro_rules! proxy_name {
    () => {
        "portcullis"
    };
}
pub const PROXY_NAME: &str = proxy_name!();

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard Keep-Alive and Proxy-Connection that old clients still send, and the h2c
/// upgrade's HTTP2-Settings, which RFC 7540 §3.2.1 makes hop-by-hop).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
    "http2-settings",
];

/// Where a lowercase field name stands in `HOP_BY_HOP`, if it is there.
fn hop_index(name: &[u8]) -> Option<usize> {
    HOP_BY_HOP.iter().position(|hop| hop.as_bytes() == name)
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop fields, including every field that Connection names. With
/// `keep_upgrade`, Connection: upgrade and Upgrade survive, for a protocol switch.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names (no hashing) finds which are here: most messages carry none,
    // or only Connection, and each removal or lookup hashes its name.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = hop_index(name.as_str().as_bytes()) {
            present[i] = true;
        }
    }
    let here = |name: &str| hop_index(name.as_bytes()).is_some_and(|i| present[i]);
    if !keep_upgrade && !present.contains(&true) {
        return;
    }
    // Fields that Connection names besides those: rare ("close" and "keep-alive" are the
    // usual tokens), so the list is empty and costs no allocation.
    let listed: Vec<HeaderName> = if here("connection") {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.eq_ignore_ascii_case(b"close"))
            .filter(|t| !HOP_BY_HOP.iter().any(|hop| t.eq_ignore_ascii_case(hop.as_bytes())))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect()
    } else {
        Vec::new()
    };
    let wants_trailers = here("te")
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")));
    for name in &listed {
        headers.remove(name);
    }
    for (&name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        if !(keep_upgrade && (name == "upgrade" || name == "connection")) {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // "TE: trailers" says the client can take trailers; gRPC needs it to reach the app.
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What a `content-type` says of gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grpc {
    /// `application/grpc`, alone or followed by `+proto`, `+json`... or parameters: it
    /// exists only over HTTP/2, so it goes to the app over HTTP/2 whatever its protocol.
    Native,
    /// `application/grpc-web...`: made for HTTP/1.1, it follows the app's protocol like any
    /// other request; its clients read a trailers-only answer as gRPC's do.
    Web,
}

pub fn grpc_kind(content_type: &HeaderValue) -> Option<Grpc> {
    const GRPC: &[u8] = b"application/grpc";
    let ct = content_type.as_bytes();
    let rest = ct.get(GRPC.len()..).filter(|_| ct[..GRPC.len()].eq_ignore_ascii_case(GRPC))?;
    match rest {
        [] | [b'+' | b';' | b' ' | b'\t', ..] => Some(Grpc::Native),
        [b'-', w, e, b, ..] if [*w, *e, *b].eq_ignore_ascii_case(b"web") => Some(Grpc::Web),
        _ => None,
    }
}

/// Whether a request is gRPC proper (see [`Grpc::Native`]).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(grpc_kind) == Some(Grpc::Native)
}

/// Appends this hop to Via, naming the protocol version it was received with.
pub fn append_via(headers: &mut HeaderMap, received: Version) {
    let value = match received {
        Version::HTTP_2 => HeaderValue::from_static(concat!("2 ", proxy_name!())),
        Version::HTTP_10 => HeaderValue::from_static(concat!("1.0 ", proxy_name!())),
        _ => HeaderValue::from_static(concat!("1.1 ", proxy_name!())),
    };
    headers.append(header::VIA, value);
}

/// Adds the client's address to X-Forwarded-For and, when no hop before us set it,
/// X-Forwarded-Proto: the sidecar itself only speaks cleartext HTTP.
pub fn append_forwarded(headers: &mut HeaderMap, client: &HeaderValue) {
    // Entries: each name is hashed once, not once to look and again to write.
    match headers.entry(&X_FORWARDED_FOR) {
        header::Entry::Occupied(mut prior) => {
            let joined = [prior.get().as_bytes(), b", ", client.as_bytes()].concat();
            prior.insert(HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client.clone()));
        }
        header::Entry::Vacant(first) => {
            first.insert(client.clone());
        }
    }
    headers.entry(&X_FORWARDED_PROTO).or_insert_with(|| HeaderValue::from_static("http"));
}

/// An HTTP/1.1 request to the app needs origin-form and a Host; an HTTP/2 request carries
/// the authority in its URI instead.
pub fn to_origin_form(uri: &mut Uri, headers: &mut HeaderMap) {
    if let Some(authority) = uri.authority()
        && !headers.contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(origin) = path.parse() {
            *uri = origin;
        }
    }
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 §7.2), or empty, as a client
/// sends it for a target without an authority.
pub fn valid_host(host: &HeaderValue) -> bool {
    let bytes = host.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    // The common case, a name or IPv4 address with an optional port, needs no parser.
    let (name, port) = match bytes.iter().rposition(|&b| b == b':') {
        Some(colon) => (&bytes[..colon], &bytes[colon + 1..]),
        None => (bytes, &b""[..]),
    };
    if !name.is_empty()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.iter().all(u8::is_ascii_digit)
    {
        return true;
    }
    let Ok(authority) = http::uri::Authority::try_from(bytes) else { return false };
    // The authority grammar also takes userinfo, and any characters after the colon.
    let port = authority.as_str().strip_prefix(authority.host());
    port.is_some_and(|p| p.strip_prefix(':').unwrap_or(p).bytes().all(|b| b.is_ascii_digit()))
}

/// The length that every Content-Length value states, comma lists included (RFC 9110
/// §8.6): `Ok(None)` when there is none, `Err(())` when one is not digits or they disagree.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let mut length = Ok(None);
    for value in headers.get_all(header::CONTENT_LENGTH) {
        add_length(&mut length, value);
    }
    length
}

/// Takes one more Content-Length value into what the ones before it stated.
fn add_length(length: &mut Result<Option<u64>, ()>, value: &HeaderValue) {
    let Ok(seen) = length else { return };
    for part in value.as_bytes().split(|b| *b == b',') {
        let Some(n) = decimal(part.trim_ascii()) else {
            *length = Err(());
            return;
        };
        if *seen.get_or_insert(n) != n {
            *length = Err(());
            return;
        }
    }
}

/// What the checks on an app's response head read from its fields, in one pass over them:
/// each lookup by name would hash the name again.
#[derive(Debug)]
pub struct HeadFacts {
    /// As [`content_length`] says.
    pub content_length: Result<Option<u64>, ()>,
    pub transfer_encoding: bool,
    /// The size of the head as the app sent it: status line, fields, and blank line.
    pub size: usize,
}

impl HeadFacts {
    pub fn of(status_reason_len: usize, headers: &HeaderMap) -> Self {
        // "HTTP/1.1 200 " + reason + CRLF, the blank line at the end, and the fields.
        let size = 13 + status_reason_len + 2 + 2;
        let mut facts = HeadFacts { content_length: Ok(None), transfer_encoding: false, size };
        for (name, value) in headers {
            // "name: value" CRLF.
            facts.size += name.as_str().len() + value.len() + 4;
            if name == header::CONTENT_LENGTH {
                add_length(&mut facts.content_length, value);
            } else if name == header::TRANSFER_ENCODING {
                facts.transfer_encoding = true;
            }
        }
        facts
    }
}

/// Where one field lies in a parsed head: name offset and length, value offset and length,
/// so that the field's value can share one copy of the head.
pub type Span = (usize, usize, usize, usize);

/// Where `part`, a slice that httparse gave of `head`, starts in it; `None` for a slice
/// from elsewhere (httparse gives a static "" for a missing reason phrase).
pub fn offset_in(head: &[u8], part: &[u8]) -> Option<usize> {
    let (start, at) = (head.as_ptr() as usize, part.as_ptr() as usize);
    (at >= start && at + part.len() <= start + head.len()).then(|| at - start)
}

/// Digits only, at least one, and no more than a u64 holds.
pub(super) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Whether a Connection field lists `token`.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Whether an HTTP/1.1 request asks to switch protocols (WebSocket and the like).
pub fn wants_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && connection_has(headers, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn grpc_is_told_by_its_content_type_and_grpc_web_is_not() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(&map(&[("content-type", ct)])), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpcx",
            "application/json",
            "grpc",
        ] {
            assert!(!is_grpc(&map(&[("content-type", ct)])), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
        let kind = |ct: &str| grpc_kind(&HeaderValue::from_str(ct).unwrap());
        assert_eq!(kind("application/grpc-web-text+proto"), Some(Grpc::Web));
        assert_eq!(kind("APPLICATION/GRPC-WEB"), Some(Grpc::Web));
        assert_eq!(kind("application/grpcx"), None);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_removed() {
        // HTTP2-Settings goes even when Connection does not name it.
        let mut h = map(&[("http2-settings", "AAMAAABkAAQAAP__"), ("x-end-to-end", "kept")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("x-end-to-end", "kept")]));
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("x-secret-hop", "2"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("x-end-to-end", "kept")]));
        // An app's usual answer: only Connection goes.
        let mut h = map(&[("connection", "keep-alive"), ("content-length", "2")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("content-length", "2")]));
    }

    #[test]
    fn te_trailers_and_upgrades_survive_when_meaningful() {
        let mut h =
            map(&[("te", "trailers, gzip"), ("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn via_and_forwarded_are_appended() {
        let mut h = map(&[("via", "1.1 edge"), ("x-forwarded-for", "203.0.113.9")]);
        append_via(&mut h, Version::HTTP_2);
        append_forwarded(&mut h, &HeaderValue::from_static("10.0.0.7"));
        let via: Vec<_> = h.get_all("via").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(via, ["1.1 edge", "2 portcullis"]);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn absolute_uri_becomes_origin_form_with_host() {
        let mut uri: Uri = "http://app.local:8080/a/b?c=d".parse().unwrap();
        let mut h = HeaderMap::new();
        to_origin_form(&mut uri, &mut h);
        assert_eq!(uri, "/a/b?c=d");
        assert_eq!(h["host"], "app.local:8080");
    }

    #[test]
    fn content_length_lists_must_agree_and_connection_tokens_are_found() {
        assert_eq!(content_length(&map(&[])), Ok(None));
        assert_eq!(
            content_length(&map(&[("content-length", "5, 5"), ("content-length", "5")])),
            Ok(Some(5))
        );
        assert_eq!(
            content_length(&map(&[("content-length", "18446744073709551615")])),
            Ok(Some(u64::MAX))
        );
        for bad in [
            "5, 6",
            "-1",
            "",
            "5,",
            "0x5",
            "+5",
            "5 5",
            "18446744073709551616",
            "99999999999999999999",
        ] {
            assert_eq!(content_length(&map(&[("content-length", bad)])), Err(()), "{bad:?}");
        }
        let h = map(&[("connection", "keep-alive"), ("connection", "x, Close ")]);
        assert!(connection_has(&h, "close") && connection_has(&h, "keep-alive"));
        assert!(!connection_has(&h, "upgrade"));
    }

    #[test]
    fn head_facts_read_the_fields_as_the_lookups_do() {
        let h = map(&[
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("x-a", "1"),
            ("content-length", "5, 5"),
        ]);
        let facts = HeadFacts::of(2, &h);
        assert_eq!(facts.content_length, content_length(&h));
        assert_eq!(facts.content_length, Ok(Some(5)));
        assert!(!facts.transfer_encoding);
        // "HTTP/1.1 200 OK\r\n", four fields with ": " and CRLF each, and the blank line.
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\
                    content-length: 5, 5\r\nx-a: 1\r\n\r\n";
        assert_eq!(facts.size, head.len());

        let h = map(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "6"),
        ]);
        let facts = HeadFacts::of(2, &h);
        assert_eq!((facts.content_length, facts.transfer_encoding), (Err(()), true));
        let facts = HeadFacts::of(0, &map(&[("transfer-encoding", "chunked")]));
        assert_eq!((facts.content_length, facts.transfer_encoding), (Ok(None), true));
    }

    #[test]
    fn host_values() {
        for ok in ["", "app", "app.local:8080", "10.0.0.7", "[::1]:80", "xn--bcher-kva.example"] {
            assert!(valid_host(&HeaderValue::from_static(ok)), "{ok:?}");
        }
        for bad in ["user@app", "app/path", "app:port", "a b", "app?x"] {
            assert!(!valid_host(&HeaderValue::from_static(bad)), "{bad:?}");
        }
    }
}
