//! Hostile HTTP/1.1 clients on raw sockets (issue 9): slowloris, slow bodies, heads over
//! the limit, too many fields, the Host rules of RFC 9112 §3.2, request smuggling variants,
//! abusive chunks, and more connections than the limit. Each asserts exactly what the
//! client is answered, that the connection closes where it must, and what reached the app.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use portcullis::proxy::{ClientLimits, ClientTimeouts};
use support::{Running, apps, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// An app that counts the requests it is handed whole (body included) and answers "ok".
async fn counting_app() -> (SocketAddr, apps::Counter) {
    let counter = apps::Counter::default();
    let seen = counter.clone();
    let app = apps::app(move |req| {
        let whole = req.headers().get("x-len").is_none_or(|len| {
            len.to_str().ok().and_then(|l| l.parse::<usize>().ok()) == Some(req.body().len())
        });
        if whole {
            seen.hit();
        }
        async { Response::new(Full::new(Bytes::from_static(b"ok"))) }
    })
    .await;
    (app, counter)
}

/// The one response a refused request gets: status line, labels, close, and body.
fn assert_refused(raw: &str, status: &str, details: &str, text: &str) {
    assert!(raw.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{raw}");
    let label =
        format!("proxy-status: portcullis; error=http_request_error; details=\"{details}\"");
    assert!(raw.contains(&format!("{label}\r\n")), "{raw}");
    assert!(raw.contains("connection: close\r\n"), "{raw}");
    assert!(raw.ends_with(&format!("{status}: {text}\n")), "{raw}");
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "one response only: {raw}");
}

async fn start(app: SocketAddr, limits: ClientLimits, header: Duration) -> Running {
    let timeouts = ClientTimeouts { header, ..Default::default() };
    Running::start_with_limits(app, "", timeouts, limits).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_gets_408_and_close_at_the_header_timeout() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_millis(600)).await;
    // One request served first, so that the trickled head is not the connection's first.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Idle well past the header timeout: an idle connection is not a slow head.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let started = Instant::now();
    let (mut rd, mut wr) = stream.split();
    let trickle = async {
        for piece in [&b"GET /b HTTP/1.1\r\n"[..], b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"] {
            if wr.write_all(piece).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut out = Vec::new();
    tokio::select! {
        () = trickle => unreachable!(),
        read = tokio::time::timeout(WAIT, rd.read_to_end(&mut out)) => {
            read.expect("closed within the wait").unwrap();
        }
    }
    let took = started.elapsed();
    let raw = String::from_utf8_lossy(&out);
    assert_refused(
        &raw,
        "408 Request Timeout",
        "client_header_timeout",
        "the request head did not arrive whole within 600ms",
    );
    assert!(took >= Duration::from_millis(550), "not before the header timeout: {took:?}");
    assert_eq!(counter.get(), 1, "the trickled request never reaches the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_without_an_answer() {
    let (app, _) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_millis(400)).await;
    let (raw, closed) = client::raw(proxy.addr, b"", WAIT).await;
    assert!(closed, "closed at the header timeout");
    assert_eq!(raw, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_is_cut_at_the_idle_timeout() {
    let (app, counter) = counting_app().await;
    let policy = support::policy("  timeouts: {idle: 300ms}");
    let proxy = Running::start(app, &policy).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Len: 10\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let raw = String::from_utf8_lossy(&out);
    assert_refused(
        &raw,
        "408 Request Timeout",
        "request_body_idle",
        "the request body stalled for 300ms",
    );
    assert_eq!(counter.get(), 0, "the app never gets the whole body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_the_limit_get_431_and_never_reach_the_app() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    // 200 KB in one field, in one write and trickled in pieces.
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000));
    let (raw, closed) = client::raw(proxy.addr, big.as_bytes(), WAIT).await;
    let text = "the request head exceeded 61440 bytes";
    assert_refused(&raw, "431 Request Header Fields Too Large", "request_head_too_large", text);
    assert!(closed);
    // Just under the default limit passes.
    let fits = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(60_000));
    let (raw, _) = client::raw(proxy.addr, fits.as_bytes(), Duration::from_millis(500)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert_eq!(counter.get(), 1);

    // A configured limit, with the head split over many reads after a good request.
    let limits = ClientLimits { max_head_bytes: 4096, ..Default::default() };
    let small = start(app, limits, Duration::from_secs(10)).await;
    let mut stream = TcpStream::connect(small.addr).await.unwrap();
    let head = format!("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(5000));
    let good = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(good).await.unwrap();
    for piece in head.as_bytes().chunks(700) {
        if stream.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await.unwrap().unwrap();
    let raw = String::from_utf8_lossy(&out);
    let (first, second) = raw.split_at(raw.find("HTTP/1.1 431").expect("a 431"));
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("ok"), "{raw}");
    let text = "the request head exceeded 4096 bytes";
    assert_refused(second, "431 Request Header Fields Too Large", "request_head_too_large", text);
    assert_eq!(counter.get(), 2, "only the good requests reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_fields_get_431() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    let fields = |n: usize| (0..n).map(|i| format!("X-{i}: 1\r\n")).collect::<String>();
    let over = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(100));
    let (raw, closed) = client::raw(proxy.addr, over.as_bytes(), WAIT).await;
    let text = "the request head has more than 100 header fields";
    assert_refused(&raw, "431 Request Header Fields Too Large", "too_many_request_headers", text);
    assert!(closed);
    // (The app's own parser takes 100 fields too, and the sidecar adds three.)
    let at = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(96));
    let (raw, _) = client::raw(proxy.addr, at.as_bytes(), Duration::from_millis(500)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert_eq!(counter.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_exactly_one_valid_host_get_400() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    for (request, why) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "no Host field"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host field"),
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "more than one Host field"),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", "a Host that is not a host and port"),
    ] {
        let (raw, _) = client::raw(proxy.addr, request, Duration::from_millis(500)).await;
        // Answered in the request's version: HTTP/1.0 for the third.
        assert!(raw.get(8..).is_some_and(|r| r.starts_with(" 400 Bad Request\r\n")), "{raw}");
        let label = "proxy-status: portcullis; error=http_request_error; details=\"invalid_host\"";
        assert!(raw.contains(&format!("{label}\r\n")), "{raw}");
        let text = format!("400 Bad Request: the request's Host is not usable: {why}\n");
        assert!(raw.ends_with(&text), "{raw}");
    }
    assert_eq!(counter.get(), 0, "none reached the app");
    // HTTP/1.0 may leave Host out.
    let (raw, _) =
        client::raw(proxy.addr, b"GET / HTTP/1.0\r\n\r\n", Duration::from_millis(500)).await;
    assert!(raw.starts_with("HTTP/1.0 200 OK\r\n") && raw.ends_with("ok"), "{raw}");
    assert_eq!(counter.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_variants_are_refused_and_never_forwarded() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    let obs_fold = "an invalid header field name (or an obsolete line folding)";
    let cases: [(&[u8], &str, &str); 9] = [
        (b"POST / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n b\r\nContent-Length: 0\r\n\r\n", "400 Bad Request", obs_fold),
        (b"POST / HTTP/1.1\nHost: x\nContent-Length: 0\n\n", "400 Bad Request", "a line ends in a bare LF"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
            "400 Bad Request",
            "conflicting Content-Length values",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabc", "400 Bad Request", "conflicting Content-Length values"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "400 Bad Request", "an invalid Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "400 Bad Request", obs_fold),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
            "Transfer-Encoding does not end in chunked",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
            "chunked is applied more than once",
        ),
        (
            b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
    ];
    for (request, status, why) in cases {
        // After a good request on the same connection, so that the refusal comes in turn.
        let bytes = [&b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"[..], request].concat();
        let (raw, closed) = client::raw(proxy.addr, &bytes, WAIT).await;
        let (first, refused) = raw.split_at(raw.find(&format!("HTTP/1.1 {status}")).expect(&raw));
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("ok"), "{raw}");
        let text = format!("the request head is malformed: {why}");
        assert_refused(refused, status, "malformed_request", &text);
        assert!(closed, "{raw}");
    }
    let coded = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, coded, WAIT).await;
    let text = "the request's Transfer-Encoding has a coding other than chunked";
    assert_refused(&raw, "501 Not Implemented", "unsupported_transfer_coding", text);
    assert!(closed);
    assert_eq!(counter.get(), cases.len(), "only the good requests reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_chunks_fail_the_request_body() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    let overflow =
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Len: 1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\na\r\n0\r\n\r\n".to_vec();
    // Chunk extensions past hyper's budget for them (16 KiB per body).
    let mut extensions =
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Len: 40\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        extensions.extend_from_slice(format!("1;ext={}\r\nz\r\n", "e".repeat(1000)).as_bytes());
    }
    extensions.extend_from_slice(b"0\r\n\r\n");
    for request in [overflow, extensions] {
        let (raw, closed) = client::raw(proxy.addr, &request, WAIT).await;
        assert_refused(
            &raw,
            "400 Bad Request",
            "request_body_failed",
            "the request body could not be read from the client",
        );
        assert!(closed);
    }
    assert_eq!(counter.get(), 0, "no body reached the app whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_a_labelled_503() {
    let (app, counter) = counting_app().await;
    let limits = ClientLimits { max_connections: 2, ..Default::default() };
    let proxy = start(app, limits, Duration::from_secs(10)).await;
    let mut a = client::Http1::connect(proxy.addr).await;
    let mut b = client::Http1::connect(proxy.addr).await;
    assert_eq!(a.get("/").await.unwrap().body, "ok");
    assert_eq!(b.get("/").await.unwrap().body, "ok");

    let over = client::get(proxy.addr, "/", &[("accept", "application/problem+json")]).await;
    assert_eq!(over.status, 503);
    assert_eq!(over.header("retry-after"), "1");
    assert_eq!(
        over.header("proxy-status"),
        "portcullis; error=connection_limit_reached; details=\"client_connection_limit\""
    );
    assert_eq!(over.header("connection"), "close");
    assert_eq!(over.json()["detail"], "the sidecar is at its limit of 2 client connections");
    assert_eq!(counter.get(), 2, "the turned-away request never reaches the app");

    // The open connections are still served; once one closes, a new one is taken.
    assert_eq!(a.get("/").await.unwrap().body, "ok");
    drop(b);
    let mut served = None;
    for _ in 0..50 {
        let reply = client::get(proxy.addr, "/", &[]).await;
        if reply.status == 200 {
            served = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served.expect("a freed slot is taken").body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_follows_an_upgrade_the_app_declines_is_scanned_as_a_request() {
    let (app, counter) = counting_app().await;
    let proxy = start(app, ClientLimits::default(), Duration::from_secs(10)).await;
    let bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
        POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, bytes, WAIT).await;
    let (first, refused) = raw.split_at(raw.find("HTTP/1.1 400").expect(&raw));
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("ok"), "{raw}");
    assert!(refused.contains("details=\"ambiguous_framing\""), "{raw}");
    assert!(closed);
    assert_eq!(counter.get(), 1, "the smuggled request never reaches the app");
}
