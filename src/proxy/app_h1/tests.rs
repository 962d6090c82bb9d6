//! Requests with a body, on real sockets: a client whose body hyper's server reads, as the
//! proxy's does, and an app that the test drives byte by byte.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::proxy::body::{ClientBody, RequestBody};
use crate::proxy::error::ProxyError;
use crate::proxy::headers;

/// A request as the proxy gets it: hyper's server reads `raw` from a client socket and hands
/// over the request, its body still coming. The client socket is returned, to write more.
async fn client_request(
    raw: &[u8],
    idle: Option<Duration>,
    deadline: Option<Instant>,
) -> (Parts, RequestBody, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let service = service_fn(move |req: Request<Incoming>| {
            let _ = tx.send(req);
            // The request's answer is the test's business; the body flows meanwhile.
            async {
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        });
        let io = TokioIo::new(server);
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
    });
    client.write_all(raw).await.unwrap();
    let (mut parts, body) = rx.recv().await.unwrap().into_parts();
    // What `prepare_request` does to the fields that matter here.
    headers::strip_hop_by_hop(&mut parts.headers, false);
    (parts, body.into_request_body(idle, deadline).0, client)
}

/// An app the test drives, and the proxy's connection to it.
async fn app() -> (TcpStream, Box<H1Conn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (app, _) = listener.accept().await.unwrap();
    (app, H1Conn::new(proxy))
}

/// Reads from the app's socket until what it got contains `end`.
async fn read_until(app: &mut TcpStream, got: &mut Vec<u8>, end: &[u8]) {
    let mut buf = [0u8; 64 * 1024];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = app.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

async fn read_body(response: Response<H1Body>) -> (Vec<u8>, H1Body) {
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(bytes) = frame.unwrap().into_data() {
            data.extend_from_slice(&bytes);
        }
    }
    (data, body)
}

fn label(failed: &Failed) -> ProxyError {
    failed.error.to_proxy_error(8192, Some(Duration::from_secs(30)))
}

#[tokio::test]
async fn a_sized_body_is_sent_exactly_and_the_connection_is_reused() {
    let raw = b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    let (parts, body, _client) = client_request(raw, None, None).await;
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"hello world").await;
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "POST /form HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\nhello world"
    );
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
    let response = sent.await.unwrap().unwrap();
    let (data, mut body) = read_body(response).await;
    assert_eq!(data, b"ok");
    let conn = body.take_reusable().expect("reusable after a whole exchange");

    // The next request goes on the same connection, and nothing was left behind.
    let (parts, ()) = Request::get("/next").header("host", "x").body(()).unwrap().into_parts();
    let sent = tokio::spawn(async move { conn.send(&parts, RequestBody::empty(), 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"\r\n\r\n").await;
    assert_eq!(got, b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n");
    app.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
    assert_eq!(sent.await.unwrap().unwrap().status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_body_of_unknown_size_is_chunked_with_its_announced_trailers() {
    let raw = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
        Trailer: x-sum\r\n\r\n5\r\nhello\r\n";
    let (parts, body, mut client) = client_request(raw, None, None).await;
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"hello\r\n").await;
    // 26 bytes: the size is written in hex, upper case, as hyper writes it.
    client
        .write_all(b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut app, &mut got, b"\r\n0\r\nx-sum: 1\r\n\r\n").await;
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "POST /c HTTP/1.1\r\nhost: x\r\ntrailer: x-sum\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 1\r\n\r\n"
    );
    app.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut body = sent.await.unwrap().unwrap().into_body();
    assert!(body.take_reusable().is_some(), "the body was sent whole");
}

#[tokio::test]
async fn a_chunked_body_without_announced_trailers_ends_with_the_last_chunk() {
    let raw = b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n";
    let (parts, body, _client) = client_request(raw, None, None).await;
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"0\r\n\r\n").await;
    let got = String::from_utf8(got).unwrap();
    assert!(got.ends_with("chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "{got}");
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    assert_eq!(sent.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn an_early_413_and_a_close_reach_the_client_while_the_body_is_still_sent() {
    let raw = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
    let (parts, body, mut client) = client_request(raw, None, None).await;
    // The client keeps sending, far more than the socket buffers hold.
    let feeding = tokio::spawn(async move {
        let block = vec![b'a'; 64 * 1024];
        while client.write_all(&block).await.is_ok() {}
    });
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"\r\n\r\n").await;
    app.write_all(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig",
    )
    .await
    .unwrap();
    // Closed with the body unread: the proxy's side is reset.
    drop(app);
    let response = sent.await.unwrap().expect("the app's answer, not a failure");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (data, mut body) = read_body(response).await;
    assert_eq!(data, b"big");
    assert!(body.take_reusable().is_none());
    feeding.abort();
}

#[tokio::test]
async fn a_connection_answered_before_the_body_was_sent_is_not_reused() {
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
    let (parts, body, _client) = client_request(raw, None, None).await;
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"abc").await;
    // A keep-alive answer, with the connection left open: still mid-request.
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
    let response = sent.await.unwrap().unwrap();
    let (data, mut body) = read_body(response).await;
    assert_eq!(data, b"ok");
    assert!(body.take_reusable().is_none(), "the request body is not all sent");
}

#[tokio::test]
async fn the_rest_of_the_body_is_sent_while_the_response_is_read() {
    // An app that echoes the body as it reads it, after answering at once.
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc";
    let (parts, body, mut client) = client_request(raw, None, None).await;
    let (mut app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"abc").await;
    app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc").await.unwrap();
    let mut body = sent.await.unwrap().unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "abc");
    client.write_all(b"def").await.unwrap();
    let reading = tokio::spawn(async move {
        let rest = body.frame().await.unwrap().unwrap().into_data().unwrap();
        (rest, body)
    });
    read_until(&mut app, &mut got, b"abcdef").await;
    app.write_all(b"def").await.unwrap();
    let (rest, mut body) = reading.await.unwrap();
    assert_eq!(rest, "def");
    assert!(body.frame().await.is_none());
    assert!(body.take_reusable().is_some(), "request and response both whole");
}

/// What hyper's client makes of the same exchange, as `Proxy::exchange` labels it.
async fn hyper_label(raw: &[u8], app: impl AsyncFnOnce(TcpStream)) -> ProxyError {
    let (parts, body, _client) = client_request(raw, None, None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(proxy)).await.unwrap();
    tokio::spawn(conn);
    let sent = tokio::spawn(async move { tx.send_request(Request::from_parts(parts, body)).await });
    app(stream).await;
    let err = sent.await.unwrap().expect_err("a failure");
    crate::proxy::pool::exchange_error(&err, 8192)
}

/// Reads the head and the first bytes of the body, then resets the connection.
async fn reset(mut app: TcpStream) {
    let mut got = Vec::new();
    read_until(&mut app, &mut got, b"abc").await;
    app.set_zero_linger().unwrap();
    drop(app);
}

#[tokio::test]
async fn an_app_that_resets_mid_body_gets_the_label_hyper_gets() {
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
    let hyper = hyper_label(raw, reset).await;

    let (parts, body, _client) = client_request(raw, None, None).await;
    let (app, conn) = app().await;
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    reset(app).await;
    let failed = sent.await.unwrap().expect_err("a failure");
    assert_eq!(label(&failed).reason(), hyper.reason());
    assert!(matches!(label(&failed), ProxyError::ConnectionTerminated), "{failed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_request_body_idle_and_a_late_one_the_request_timeout() {
    let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
    let idle = Duration::from_secs(5);
    let (parts, body, _client) = client_request(raw, Some(idle), None).await;
    let (mut stalled, conn) = app().await;
    let started = Instant::now();
    let sent = tokio::spawn(async move { conn.send(&parts, body, 8192).await });
    let mut got = Vec::new();
    read_until(&mut stalled, &mut got, b"abc").await;
    let failed = sent.await.unwrap().expect_err("a failure");
    assert!(matches!(label(&failed), ProxyError::RequestBodyIdle(d) if d == idle), "{failed:?}");
    assert_eq!(started.elapsed(), idle);

    let deadline = Instant::now() + Duration::from_secs(2);
    let (parts, body, _client) = client_request(raw, Some(idle), Some(deadline)).await;
    let (_app, conn) = app().await;
    let failed = conn.send(&parts, body, 8192).await.expect_err("a failure");
    let timeout = Duration::from_secs(30);
    assert!(matches!(label(&failed), ProxyError::RequestTimeout(d) if d == timeout), "{failed:?}");
}
