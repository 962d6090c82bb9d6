//! What passes through: the app's own responses untouched, headers per RFC 9110, streaming,
//! upgrades, HTTP/2 clients, and the request smuggling refusals.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::{BodyExt, Full};
use support::{Running, apps, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_5xx_and_retry_after_pass_through_untouched() {
    let app = apps::app(|_| async {
        Response::builder()
            .status(503)
            .header("retry-after", "120")
            .header("content-type", "text/plain")
            .header("x-app", "mine")
            .body(Full::new(Bytes::from_static(b"the app is down for its own reasons")))
            .unwrap()
    })
    .await;
    let proxy = Running::start(app, "").await;
    let reply = client::get(proxy.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), "120");
    assert_eq!(reply.header("content-type"), "text/plain");
    assert_eq!(reply.header("x-app"), "mine");
    assert_eq!(reply.header("proxy-status"), "");
    assert_eq!(reply.header("via"), "1.1 portcullis");
    assert_eq!(reply.body, "the app is down for its own reasons");

    let metrics = proxy.admin_get("/metrics").await.body;
    assert!(
        metrics
            .contains(r#"portcullis_responses_total{status="503",reason="none",source="app"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stay_on_their_hop() {
    let proxy = Running::start(apps::echo().await, "").await;
    let reply = client::get(
        proxy.addr,
        "/path?q=1",
        &[
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    let seen = reply.json();
    let headers = &seen["headers"];
    for gone in ["connection", "x-hop", "keep-alive", "proxy-connection", "te"] {
        assert!(headers.get(gone).is_none(), "{gone} reached the app: {seen}");
    }
    assert_eq!(headers["x-end-to-end"], serde_json::json!(["kept"]));
    assert_eq!(headers["via"], serde_json::json!(["1.1 portcullis"]));
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["203.0.113.7, 127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(seen["uri"], "/path?q=1");

    // And on the way back.
    let app = apps::replies(
        b"HTTP/1.1 200 OK\r\nConnection: x-back\r\nX-Back: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = Running::start(app, "").await;
    let reply = client::get(proxy.addr, "/", &[]).await;
    assert_eq!(reply.header("x-back"), "");
    assert_eq!(reply.header("keep-alive"), "");
    assert_eq!(reply.body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_app() {
    let proxy = Running::start(apps::echo().await, "").await;
    let reply = client::send(proxy.addr, Method::POST, "/submit", &[], "name=portcullis").await;
    assert_eq!(reply.json()["body"], "name=portcullis");
    assert_eq!(reply.json()["method"], "POST");
}

/// An app that sends its headers and a first chunk, then waits before the rest.
async fn slow_body_app(pause: Duration) -> std::net::SocketAddr {
    apps::raw(move |mut s| async move {
        if apps::read_head(&mut s).await.is_none() {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            .await;
        tokio::time::sleep(pause).await;
        let _ = s.write_all(b"5\r\nlast\n\r\n0\r\n\r\n").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_before_the_app_finishes() {
    let proxy = Running::start(slow_body_app(Duration::from_millis(1500)).await, "").await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let req = http::Request::get("/").header("host", "x").body(Full::<Bytes>::default()).unwrap();
    let mut body = tx.send_request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first\n");
    assert!(started.elapsed() < Duration::from_millis(1000), "first chunk was held back");
    let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(last, "last\n");
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_body_is_cut_after_idle_and_counted() {
    let app = slow_body_app(Duration::from_secs(30)).await;
    let proxy = Running::start(app, &support::policy("  timeouts: {idle: 300ms}")).await;
    let (raw, closed) =
        client::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.contains("first\n"));
    assert!(closed, "the connection must close when the stream is cut");
    assert!(!raw.contains("\r\n0\r\n\r\n"), "a cut stream must not look complete: {raw}");
    let metrics = proxy.admin_get("/metrics").await.body;
    assert!(
        metrics.contains(r#"portcullis_streams_ended_total{reason="idle_timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_cuts_a_stream_after_its_headers() {
    let app = slow_body_app(Duration::from_secs(30)).await;
    let proxy = Running::start(app, &support::policy("  timeouts: {request: 500ms}")).await;
    let started = Instant::now();
    let (raw, closed) =
        client::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n") && closed, "{raw}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let metrics = proxy.admin_get("/metrics").await.body;
    assert!(
        metrics.contains(r#"portcullis_streams_ended_total{reason="request_timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    // The app accepts the upgrade and echoes bytes back, upper-cased.
    let app = apps::raw(|mut s| async move {
        let Some(head) = apps::read_head(&mut s).await else { return };
        assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: upgrade"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
        }
    })
    .await;
    let proxy = Running::start(app, "").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let head = apps::read_head(&mut s).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s.write_all(b"hello tunnel").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"HELLO TUNNEL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served() {
    let proxy = Running::start(apps::echo().await, "").await;
    let mut h2 = client::Http2::connect(proxy.addr).await;
    for i in 0..3 {
        let req =
            http::Request::get(format!("http://app.local/h2/{i}")).body(Full::default()).unwrap();
        let reply = h2.send(req).await;
        assert_eq!(reply.status, 200);
        let seen = reply.json();
        assert_eq!(seen["uri"], format!("/h2/{i}"));
        assert_eq!(seen["headers"]["host"], serde_json::json!(["app.local"]));
        assert_eq!(seen["headers"]["via"], serde_json::json!(["2 portcullis"]));
        assert_eq!(seen["version"], "HTTP/1.1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let counter = apps::Counter::default();
    let seen = counter.clone();
    let app = apps::app(move |_| {
        seen.hit();
        async { Response::new(Full::new(Bytes::from_static(b"ok"))) }
    })
    .await;
    let proxy = Running::start(app, "").await;

    // Both framings at once: refused with the sidecar's own 400, and the connection closed.
    let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let (raw, closed) = client::raw(proxy.addr, smuggle, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw}");
    assert!(
        raw.contains(
            "proxy-status: portcullis; error=http_request_error; details=\"ambiguous_framing\"\r\n"
        ),
        "{raw}"
    );
    assert!(raw.to_ascii_lowercase().contains("connection: close\r\n"), "{raw}");
    assert!(
        raw.ends_with(
            "400 Bad Request: the request carries both Transfer-Encoding and Content-Length\n"
        ),
        "{raw}"
    );
    assert_eq!(
        raw.matches("HTTP/1.1").count(),
        1,
        "the smuggled request must not be answered: {raw}"
    );
    assert!(closed);

    // A Transfer-Encoding that does not end in chunked: refused by the parser, closed.
    let (raw, closed) = client::raw(
        proxy.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw}");
    assert!(closed);
    assert_eq!(counter.get(), 0, "nothing may reach the app");

    // A clean request on a fresh connection still works.
    assert_eq!(client::get(proxy.addr, "/", &[]).await.body, "ok");
    assert_eq!(counter.get(), 1);
}

/// A gRPC-style app over HTTP/2: a data frame, then grpc-status in trailers.
async fn grpc_app() -> std::net::SocketAddr {
    use http_body::Frame;
    use http_body_util::StreamBody;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_owned();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                            Ok(Frame::data(Bytes::from(format!("reply to {path}")))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/grpc")
                                .body(StreamBody::new(futures::stream::iter(frames)))
                                .unwrap(),
                        )
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_the_app_carries_grpc_with_trailers() {
    grpc_calls_through(portcullis::proxy::AppProtocol::Http2).await;
}

/// gRPC exists only over HTTP/2: it goes to the app over HTTP/2 even where the app's
/// protocol is HTTP/1.1 (issue 20: an injected pod whose port says nothing of gRPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_goes_to_the_app_over_http2_whatever_the_app_protocol() {
    grpc_calls_through(portcullis::proxy::AppProtocol::Http1).await;
}

async fn grpc_calls_through(app_protocol: portcullis::proxy::AppProtocol) {
    let proxy = Running::start_with(grpc_app().await, "", app_protocol).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for call in ["/pkg.Svc/One", "/pkg.Svc/Two"] {
        let req = http::Request::post(format!("http://app.local{call}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let response = tx.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers reach the client");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), format!("reply to {call}"));
    }
}

/// The sidecar serves requests without a body itself, and hands the rest to hyper's server
/// (`h1_server`). The same response must reach the client byte for byte the same either
/// way: a GET with `Content-Length: 0` goes to hyper, one without to the sidecar's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_http1_servers_write_the_same_bytes() {
    let responses: [&'static [u8]; 7] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nuntil the close",
        b"HTTP/1.1 204 No Content\r\nX-B: 3\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold",
        b"HTTP/1.1 299 Odd Reason\r\nContent-Length: 0\r\n\r\n",
        // Not HTTP: the sidecar's own 502.
        b"SMTP ready\r\n\r\n",
    ];
    for response in responses {
        let proxy = Running::start(apps::replies(response).await, "").await;
        for (method, connection) in [("GET", "close"), ("GET", "keep-alive"), ("HEAD", "close")] {
            let own =
                format!("{method} /r HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\n\r\n");
            let hypers = format!(
                "{method} /r HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n"
            );
            let wait = Duration::from_millis(500);
            let (own, own_closed) = client::raw(proxy.addr, own.as_bytes(), wait).await;
            let (hypers, hyper_closed) = client::raw(proxy.addr, hypers.as_bytes(), wait).await;
            let undated = |text: &str| -> String {
                text.split("\r\n")
                    .filter(|l| !l.starts_with("date: "))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            };
            let what = format!("{method} {}", String::from_utf8_lossy(response));
            assert!(own.starts_with("HTTP/1."), "{what}, {connection}: {own}");
            assert_eq!(undated(&own), undated(&hypers), "{what}, {connection}");
            assert_eq!(own_closed, hyper_closed, "{what}, {connection}: closed");
            assert_eq!(own.matches("date: ").count(), 1, "{what}, {connection}: {own}");
        }
    }
}

/// Requests sent together are answered in order, on the sidecar's own server and across
/// a hand-over to hyper's and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_both_servers() {
    let proxy = Running::start(apps::echo().await, "").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
              GET /3 HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("closed after the fourth")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 4, "{out}");
    let order: Vec<usize> = ["/1", "/2", "/3", "/4"].iter().map(|p| out.find(p).unwrap()).collect();
    assert!(order.is_sorted(), "{order:?}: {out}");
}
