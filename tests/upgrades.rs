//! Protocol switches through the sidecar, on raw sockets, in front of an app that switches
//! whenever it can (h2c included): only the allowed protocols (WebSocket by default) are
//! tunnelled; an h2c upgrade goes on as a plain HTTP/1.1 request, any other protocol is
//! refused, and a 101 the sidecar cannot honour is a 502. After each, what the client sends
//! next is read as the next request, never passed to the app unchecked.

mod support;

use std::time::Duration;

use portcullis::proxy::{AllowedUpgrades, ClientLimits};
use support::{Running, apps, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// An h2c upgrade as curl sends it (`curl --http2 http://...`).
const H2C: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
    HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

/// A request after the one under test, on the same connection: it must be read as a
/// request, and its `Connection: close` ends the exchange.
const NEXT: &str = "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A response's lines, its Date aside.
fn lines(response: &str) -> Vec<&str> {
    response.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("date:")).collect()
}

/// The app's plain answer as the client gets it.
fn assert_plain(response: &str) {
    let expected = ["HTTP/1.1 200 OK", "content-length: 5", "via: 1.1 portcullis", "", "plain"];
    assert_eq!(lines(response), expected, "{response:?}");
}

/// The app's plain answer to `NEXT`, which closes the connection.
fn assert_plain_last(response: &str) {
    let expected = [
        "HTTP/1.1 200 OK",
        "content-length: 5",
        "via: 1.1 portcullis",
        "connection: close",
        "",
        "plain",
    ];
    assert_eq!(lines(response), expected, "{response:?}");
}

/// The sidecar's 502 for a switch it cannot honour, as text.
fn assert_malformed_502(response: &str) {
    let body = "502 Bad Gateway: the app sent a malformed response\n";
    let expected = [
        "HTTP/1.1 502 Bad Gateway",
        "cache-control: no-store",
        "proxy-status: portcullis; error=http_protocol_error; details=\"malformed_response\"",
        "content-type: text/plain; charset=utf-8",
        &format!("content-length: {}", body.len()),
        "",
        body,
    ];
    assert_eq!(lines(response), expected, "{response:?}");
}

/// Splits what the client read into responses, each starting at a status line.
fn responses(raw: &str) -> Vec<&str> {
    let starts: Vec<usize> = raw.match_indices("HTTP/1.1 ").map(|(i, _)| i).collect();
    assert_eq!(starts.first(), Some(&0), "{raw:?}");
    starts
        .iter()
        .enumerate()
        .map(|(n, &at)| &raw[at..*starts.get(n + 1).unwrap_or(&raw.len())])
        .collect()
}

/// Nothing of a protocol switch reached the app: no Upgrade, no HTTP2-Settings, no
/// `upgrade` Connection token.
fn assert_no_switch_asked(head: &str) {
    let lower = head.to_ascii_lowercase();
    for gone in ["upgrade", "http2-settings", "\r\nconnection:"] {
        assert!(!lower.contains(gone), "{gone:?} reached the app: {head:?}");
    }
}

fn assert_no_tunnel(raw: &str) {
    assert!(!raw.contains("101"), "{raw:?}");
    assert!(!raw.as_bytes().windows(4).any(|w| w == &apps::H2_SETTINGS[..4]), "{raw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_goes_on_as_a_plain_http1_request() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    let variants = [
        H2C.to_owned(),
        "Connection: keep-alive, Upgrade, HTTP2-Settings\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n".to_owned(),
        // HTTP2-Settings that Connection does not name is still hop-by-hop (RFC 7540 §3.2.1).
        "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n".to_owned(),
    ];
    for (i, fields) in variants.iter().enumerate() {
        let request = format!("GET /a{i} HTTP/1.1\r\nHost: x\r\n{fields}\r\n{NEXT}");
        let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
        assert!(closed, "{raw:?}");
        let answers = responses(&raw);
        assert_eq!(answers.len(), 2, "{raw:?}");
        assert_plain(answers[0]);
        assert_plain_last(answers[1]);
        assert_no_tunnel(&raw);
    }
    let heads = heads.all();
    assert_eq!(heads.len(), 2 * variants.len(), "{heads:?}");
    for (i, pair) in heads.chunks(2).enumerate() {
        assert!(pair[0].starts_with(&format!("GET /a{i} HTTP/1.1\r\n")), "{pair:?}");
        assert!(pair[1].starts_with("GET /next HTTP/1.1\r\n"), "{pair:?}");
        assert_no_switch_asked(&pair[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_declined_h2c_upgrade_is_a_502_and_opens_no_tunnel() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    // The app switches to h2c although the request it got asked for nothing.
    let request = format!("GET /h2c-anyway HTTP/1.1\r\nHost: x\r\n{H2C}\r\n{NEXT}");
    let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(closed, "{raw:?}");
    let answers = responses(&raw);
    assert_eq!(answers.len(), 2, "{raw:?}");
    assert_malformed_502(answers[0]);
    // What followed is the next request, not bytes for the app's h2c side.
    assert_plain_last(answers[1]);
    assert_no_tunnel(&raw);
    let heads = heads.all();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].starts_with("GET /h2c-anyway HTTP/1.1\r\n"), "{heads:?}");
    assert_no_switch_asked(&heads[0]);
    assert!(heads[1].starts_with("GET /next HTTP/1.1\r\n"), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_h2c_upgrade_with_a_body_is_followed_by_a_scanned_request() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    let smuggled = "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
        Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let request =
        format!("POST /a HTTP/1.1\r\nHost: x\r\n{H2C}Content-Length: 5\r\n\r\nhello{smuggled}");
    let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(closed, "{raw:?}");
    let answers = responses(&raw);
    assert_eq!(answers.len(), 2, "{raw:?}");
    assert_plain(answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw:?}");
    assert!(answers[1].contains("details=\"ambiguous_framing\""), "{raw:?}");
    let heads = heads.all();
    assert_eq!(heads.len(), 1, "the smuggled request never reaches the app: {heads:?}");
    assert!(heads[0].starts_with("POST /a HTTP/1.1\r\n"), "{heads:?}");
    assert_no_switch_asked(&heads[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocols_are_refused_403_and_never_reach_the_app() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    for (upgrade, named) in [
        ("foo", "foo"),
        ("websocket, foo", "foo"),
        ("h2c, TLS/1.2", "TLS/1.2"),
        ("SPDY/3.1", "SPDY/3.1"),
    ] {
        let request = format!(
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n{NEXT}"
        );
        let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
        assert!(closed, "{raw:?}");
        let body = format!(
            "403 Forbidden: the request asks to switch to {named:?}, a protocol the sidecar does not tunnel\n"
        );
        let expected = [
            "HTTP/1.1 403 Forbidden",
            "cache-control: no-store",
            "proxy-status: portcullis; error=http_request_denied; details=\"upgrade_not_allowed\"",
            "content-type: text/plain; charset=utf-8",
            &format!("content-length: {}", body.len()),
            "connection: close",
            "",
            &body,
        ];
        assert_eq!(lines(&raw), expected, "{upgrade:?}: one answer, then close: {raw:?}");
    }
    assert_eq!(heads.all(), Vec::<String>::new(), "nothing reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_403_and_what_follows_is_not_read() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    let request =
        b"CONNECT app.local:443 HTTP/1.1\r\nHost: app.local:443\r\n\r\n\x16\x03\x01tunnel";
    let (raw, closed) = client::raw(proxy.addr, request, WAIT).await;
    assert!(closed, "{raw:?}");
    let body = "403 Forbidden: the request asks to switch to \"CONNECT\", a protocol the sidecar does not tunnel\n";
    let expected = [
        "HTTP/1.1 403 Forbidden",
        "cache-control: no-store",
        "proxy-status: portcullis; error=http_request_denied; details=\"upgrade_not_allowed\"",
        "content-type: text/plain; charset=utf-8",
        &format!("content-length: {}", body.len()),
        "connection: close",
        "",
        body,
    ];
    assert_eq!(lines(&raw), expected, "{raw:?}");
    assert_eq!(heads.all(), Vec::<String>::new(), "nothing reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_protocol_the_client_did_not_offer_is_a_502() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    // A WebSocket handshake answered with a switch to h2c, and with a switch to nothing named.
    for path in ["/h2c-anyway", "/bare-101"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n{NEXT}"
        );
        let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
        assert!(closed, "{raw:?}");
        let answers = responses(&raw);
        assert_eq!(answers.len(), 2, "{raw:?}");
        assert_malformed_502(answers[0]);
        assert_plain_last(answers[1]);
        assert_no_tunnel(&raw);
    }
    let heads = heads.all();
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert!(heads[0].to_ascii_lowercase().contains("\r\nupgrade: websocket\r\n"), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_tunnelled_with_the_h2c_offer_dropped() {
    let (app, heads) = apps::switcher().await;
    let proxy = Running::start(app, "").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c, WebSocket\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = tokio::time::timeout(WAIT, apps::read_head(&mut s)).await.unwrap().unwrap();
    let expected = [
        "HTTP/1.1 101 Switching Protocols",
        "connection: upgrade",
        "upgrade: websocket",
        "via: 1.1 portcullis",
        "",
        "",
    ];
    assert_eq!(lines(&head), expected, "{head:?}");
    s.write_all(b"hello tunnel").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"HELLO TUNNEL");
    let heads = heads.all();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let lower = heads[0].to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{heads:?}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "only the allowed offer: {heads:?}");
    assert!(!lower.contains("h2c") && !lower.contains("http2-settings"), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_protocol_allowed_websocket_is_refused_too() {
    let (app, heads) = apps::switcher().await;
    let limits = ClientLimits { allowed_upgrades: AllowedUpgrades::none(), ..Default::default() };
    let proxy = Running::start_with_limits(app, "", Default::default(), limits).await;
    let request =
        "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(closed, "{raw:?}");
    assert!(raw.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{raw:?}");
    assert!(raw.contains("details=\"upgrade_not_allowed\""), "{raw:?}");
    // h2c is still declined, not refused.
    let request = format!("GET /a HTTP/1.1\r\nHost: x\r\n{H2C}\r\n{NEXT}");
    let (raw, _) = client::raw(proxy.addr, request.as_bytes(), WAIT).await;
    let answers = responses(&raw);
    assert_eq!(answers.len(), 2, "{raw:?}");
    assert_plain(answers[0]);
    assert_eq!(heads.all().len(), 2);
}
