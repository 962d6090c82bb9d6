//! The status contract: every response the sidecar makes itself, row by row, as a client
//! sees it in each body form, against apps that misbehave on real sockets.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;
use support::{Running, apps, client, policy};

/// What a row of the contract must look like to a client.
struct Expect {
    status: u16,
    title: &'static str,
    error: &'static str,
    details: &'static str,
    detail: String,
}

/// Asserts the exact response for problem+json, HTML, plain text and HEAD.
async fn assert_local(proxy: SocketAddr, path: &str, e: &Expect) {
    let proxy_status = format!("portcullis; error={}; details=\"{}\"", e.error, e.details);

    let json = client::get(proxy, path, &[("accept", "application/problem+json")]).await;
    assert_eq!(json.status.as_u16(), e.status, "{json:?}");
    assert_eq!(json.header("proxy-status"), proxy_status);
    assert_eq!(json.header("cache-control"), "no-store");
    assert_eq!(json.header("content-type"), "application/problem+json");
    assert_eq!(
        json.json(),
        serde_json::json!({
            "type": format!("https://portcullis.dev/problems/{}", e.details),
            "title": e.title,
            "status": e.status,
            "detail": e.detail,
        })
    );

    let html = client::get(proxy, path, &[("accept", "text/html,*/*;q=0.8")]).await;
    assert_eq!(html.status.as_u16(), e.status);
    assert_eq!(html.header("proxy-status"), proxy_status);
    assert_eq!(html.header("content-type"), "text/html; charset=utf-8");
    let title = format!("{} {}", e.status, e.title);
    let escaped = e.detail.replace('"', "&quot;").replace('\'', "&#39;");
    assert_eq!(
        html.body,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1><p>{escaped}</p></body></html>\n"
        )
    );

    let text = client::get(proxy, path, &[]).await;
    let expected_text = format!("{} {}: {}\n", e.status, e.title, e.detail);
    assert_eq!(text.status.as_u16(), e.status);
    assert_eq!(text.header("proxy-status"), proxy_status);
    assert_eq!(text.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(text.header("content-length"), expected_text.len().to_string());
    assert_eq!(text.body, expected_text);

    let head = client::send(proxy, Method::HEAD, path, &[], "").await;
    assert_eq!(head.status.as_u16(), e.status);
    assert_eq!(head.header("proxy-status"), proxy_status);
    assert_eq!(head.header("content-length"), expected_text.len().to_string());
    assert_eq!(head.body, "");
}

fn expect(status: u16, error: &'static str, details: &'static str, detail: &str) -> Expect {
    let title = match status {
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => unreachable!(),
    };
    Expect { status, title, error, details, detail: detail.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_504_connection_timeout() {
    let (app, _held) = apps::never_accepts().await;
    let proxy = Running::start(app, &policy("  timeouts: {connect: 300ms}")).await;
    let e = expect(
        504,
        "connection_timeout",
        "connect_timeout",
        "the app did not accept a connection within 300ms",
    );
    assert_local(proxy.addr, "/", &e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_app_is_504_http_response_timeout() {
    let app = apps::stalls().await;
    let proxy = Running::start(app, &policy("  timeouts: {responseHeaders: 300ms}")).await;
    let e = expect(
        504,
        "http_response_timeout",
        "response_headers_timeout",
        "the app sent no response headers within 300ms",
    );
    assert_local(proxy.addr, "/", &e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_before_headers_is_504() {
    let app = apps::stalls().await;
    let proxy =
        Running::start(app, &policy("  timeouts: {responseHeaders: 10s, request: 400ms}")).await;
    let e = expect(
        504,
        "http_response_timeout",
        "request_timeout",
        "the request did not complete within 400ms",
    );
    assert_local(proxy.addr, "/", &e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502_connection_refused() {
    let proxy = Running::after_app_left("").await;
    let e =
        expect(502, "connection_refused", "connection_refused", "the app refused the connection");
    assert_local(proxy.addr, "/", &e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_reset_before_headers_are_502_connection_terminated() {
    let detail = "the app closed the connection before completing its response headers";
    let e = expect(502, "connection_terminated", "connection_terminated", detail);
    for app in [apps::closes().await, apps::resets().await, apps::closes_mid_head().await] {
        let proxy = Running::start(app, "").await;
        assert_local(proxy.addr, "/", &e).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_are_502_http_protocol_error() {
    let e = expect(
        502,
        "http_protocol_error",
        "malformed_response",
        "the app sent a malformed response",
    );
    let garbage = apps::replies(b"HELLO I AM NOT HTTP\r\n\r\n").await;
    let bad_header =
        apps::replies(b"HTTP/1.1 200 OK\r\nBad Header Name: x\r\nContent-Length: 0\r\n\r\n").await;
    let conflicting =
        apps::replies(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            .await;
    // Found by the http1_client fuzz target: framed both ways, a response that could split
    // (RFC 9112 §6.3); it used to reach the client as nothing at all.
    let both = apps::replies(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    // Also found by fuzzing: a switch of protocols that the request did not ask for.
    let switch = apps::replies(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    for app in [garbage, bad_header, conflicting, both, switch] {
        let proxy = Running::start(app, "").await;
        assert_local(proxy.addr, "/", &e).await;
    }
}

/// Found by the http1_client fuzz target: an app that closes right after its head, short of
/// the length it announced. The client gets that head and a body cut short (see "Streams
/// cut short"), not a connection closed without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_fails_before_its_first_byte_still_lets_the_head_out() {
    let app = apps::replies(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    let proxy = Running::start(app, "").await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, request, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{raw}");
    assert!(raw.contains("retry-after: 7\r\n") && raw.contains("content-length: 5\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "no body byte: {raw}");
    assert!(closed, "the connection is closed, so the body is seen to fall short");
}

/// Found by the http1_client fuzz target once the sidecar read the app's responses on the
/// request's own task: a body that breaks off after some bytes, read in the same poll as
/// the head. The client still gets the head and the bytes that came, then the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_off_right_after_its_first_bytes_still_lets_them_out() {
    let app = apps::replies(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").await;
    let proxy = Running::start(app, "").await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, request, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("content-length: 100\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nshort"), "the bytes that came: {raw}");
    assert!(closed, "the connection is closed, so the body is seen to fall short");
}

/// Found by the same fuzz target: a status line with no reason phrase at all (and bare LFs,
/// which hyper's client takes too) is the app's answer, passed on as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_line_without_a_reason_phrase_is_passed_on() {
    let app = apps::replies(b"HTTP/1.1 408\nContent-Length: 2\n\nno").await;
    let proxy = Running::start(app, "").await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (raw, _) = client::raw(proxy.addr, request, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 408 \r\n"), "{raw}");
    assert!(raw.contains("via: 1.1 portcullis\r\n") && raw.ends_with("\r\n\r\nno"), "{raw}");
    assert!(!raw.contains("proxy-status"), "the app's own answer: {raw}");
}

/// A response whose header section is about `size` bytes.
fn huge_head(size: usize) -> &'static [u8] {
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    let mut i = 0;
    while head.len() < size {
        head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(200)));
        i += 1;
    }
    head.push_str("\r\nok");
    Box::leak(head.into_bytes().into_boxed_slice())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_headers_are_502_header_section_size() {
    // Over the default 64 KiB: refused by the parser's own bound.
    let app = apps::replies(huge_head(70_000)).await;
    let proxy = Running::start(app, "").await;
    let e = expect(
        502,
        "http_response_header_section_size",
        "response_headers_too_large",
        "the app's response header section exceeded 65536 bytes",
    );
    assert_local(proxy.addr, "/", &e).await;

    // Over a route's smaller limit, under the connection's.
    let app = apps::replies(huge_head(3_000)).await;
    let spec = "  routes:\n  - match: {pathPrefix: /small}\n    validation: {maxResponseHeaderBytes: 2048}";
    let proxy = Running::start(app, &policy(spec)).await;
    let e = expect(
        502,
        "http_response_header_section_size",
        "response_headers_too_large",
        "the app's response header section exceeded 2048 bytes",
    );
    assert_local(proxy.addr, "/small/x", &e).await;
    let fine = client::get(proxy.addr, "/other", &[]).await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_content_type_is_502_content_type_mismatch() {
    let app = apps::replies(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
    )
    .await;
    let spec = "  routes:\n  - match: {pathPrefix: /reports, methods: [GET, HEAD]}\n    validation: {contentTypes: [text/csv]}";
    let proxy = Running::start(app, &policy(spec)).await;
    let e = expect(
        502,
        "http_protocol_error",
        "content_type_mismatch",
        "the app answered with content type \"text/html\", which this route does not allow",
    );
    assert_local(proxy.addr, "/reports/q3", &e).await;
    // Outside the route, the same response passes.
    let other = client::get(proxy.addr, "/home", &[]).await;
    assert_eq!((other.status.as_u16(), other.body.as_str()), (200, "<html>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_content_type_passes() {
    let app = apps::replies(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\nContent-Length: 4\r\n\r\na,b\n",
    )
    .await;
    let spec = "  validation: {contentTypes: [text/csv]}";
    let proxy = Running::start(app, &policy(spec)).await;
    let reply = client::get(proxy.addr, "/reports", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "a,b\n");
    assert_eq!(reply.header("proxy-status"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_trailers_only_status() {
    let proxy = Running::after_app_left("").await;
    let mut h2 = client::Http2::connect(proxy.addr).await;
    let req = http::Request::post(format!("http://{}/pkg.Svc/Call", proxy.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Default::default())
        .unwrap();
    let reply = h2.send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/grpc");
    assert_eq!(reply.header("grpc-status"), "14");
    assert_eq!(reply.header("grpc-message"), "the app refused the connection");
    assert_eq!(
        reply.header("proxy-status"),
        "portcullis; error=connection_refused; details=\"connection_refused\""
    );
    assert_eq!(reply.body, "");

    let app = apps::stalls().await;
    let proxy = Running::start(app, &policy("  timeouts: {responseHeaders: 300ms}")).await;
    let mut h2 = client::Http2::connect(proxy.addr).await;
    let req = http::Request::post(format!("http://{}/pkg.Svc/Call", proxy.addr))
        .header("content-type", "application/grpc+proto")
        .body(Default::default())
        .unwrap();
    let reply = h2.send(req).await;
    assert_eq!(reply.header("grpc-status"), "4");
    assert_eq!(reply.header("grpc-message"), "the app sent no response headers within 300ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_format_setting_overrides_accept() {
    let proxy = Running::after_app_left(&policy("  errors: {format: json}")).await;
    let reply = client::get(proxy.addr, "/", &[("accept", "text/html")]).await;
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.json()["status"], 502);
}
