//! Request bodies through the sidecar to an HTTP/1.1 app, on the request's own task: what
//! the app receives, an app that answers before it has read the body, and one that streams
//! its answer as it reads.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Running, apps};

const WAIT: Duration = Duration::from_secs(5);

/// Reads from `stream` until what it got contains `end`.
async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, end: &[u8]) {
    let mut buf = [0u8; 64 * 1024];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// The data of a chunked body (no extensions, no trailers), and whether it ended.
fn dechunk(mut body: &str) -> (String, bool) {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return (data, rest == "\r\n");
        }
        data.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap();
    }
    (data, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_reaches_the_app_chunked_and_the_connection_is_reused() {
    // Each request the app gets: the connection it came on, and what it was.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (heard, connections) = (seen.clone(), Arc::new(AtomicUsize::new(0)));
    let app = apps::raw(move |mut s| {
        let heard = heard.clone();
        let connection = connections.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                while let Some(end) = got.windows(5).position(|w| w == b"0\r\n\r\n") {
                    let request: Vec<u8> = got.drain(..end + 5).collect();
                    let request = String::from_utf8_lossy(&request).into_owned();
                    heard.lock().unwrap().push((connection, request));
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                }
                match s.read(&mut buf).await {
                    Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
        }
    })
    .await;
    let proxy = Running::start(app, "").await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        client
            .write_all(
                b"POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            )
            .await
            .unwrap();
        client.write_all(b"2\r\nde\r\n0\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        read_until(&mut client, &mut got, b"\r\n\r\nok").await;
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&got));
    }
    let seen = seen.lock().unwrap();
    let on: Vec<_> = seen.iter().map(|(connection, _)| *connection).collect();
    assert_eq!(on, [0, 0], "both requests on one connection to the app: {seen:?}");
    for (_, request) in seen.iter() {
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /in HTTP/1.1\r\n"), "{request}");
        assert!(head.ends_with("\r\ntransfer-encoding: chunked"), "{request}");
        // However the sidecar got the chunks, they carry the same body, ended.
        assert_eq!(dechunk(body), ("abcde".to_owned(), true), "{request:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_refuses_a_body_early_and_closes_is_heard() {
    let app = apps::raw(|mut s| async move {
        let _ = apps::read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big\n")
            .await;
        // Closed with the body unread: the sidecar's side of the connection is reset.
        drop(s);
    })
    .await;
    let proxy = Running::start(app, "").await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = client.into_split();
    let feeding = tokio::spawn(async move {
        let block = vec![b'a'; 64 * 1024];
        while wr.write_all(&block).await.is_ok() {}
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"too big\n") {
        let n = tokio::time::timeout(WAIT, rd.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let raw = String::from_utf8_lossy(&got);
    assert!(raw.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{raw}");
    assert!(!raw.contains("proxy-status"), "the app's answer, not the sidecar's: {raw}");
    feeding.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_answers_as_it_reads_gets_the_rest_of_the_body() {
    // It sends its head at once, then echoes each piece of the body as it arrives.
    let app = apps::raw(|mut s| async move {
        let mut got = Vec::new();
        read_until(&mut s, &mut got, b"\r\n\r\n").await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n").await;
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let _ = s.write_all(&got[at..]).await;
        let mut echoed = got.len() - at;
        let mut buf = [0u8; 64];
        while echoed < 6 {
            let Ok(n @ 1..) = s.read(&mut buf).await else { return };
            let _ = s.write_all(&buf[..n]).await;
            echoed += n;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let proxy = Running::start(app, "").await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    read_until(&mut client, &mut got, b"\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&got));
    // Each piece comes back before the next is sent: the sidecar sends the body while it
    // reads the answer.
    for piece in [&b"abc"[..], b"def"] {
        client.write_all(piece).await.unwrap();
        read_until(&mut client, &mut got, piece).await;
    }
    assert!(got.ends_with(b"\r\n\r\nabcdef"), "{}", String::from_utf8_lossy(&got));
}

/// The wait for the response headers (`timeouts.responseHeaders`) begins once the request
/// has been sent whole, as Envoy's route timeout and nginx's `proxy_read_timeout` count: an
/// upload that takes longer than it is not a slow app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_the_response_headers_timeout_is_answered() {
    let app = apps::raw(|mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(5).any(|w| w == b"0\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(n @ 1..) => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    })
    .await;
    let config = "apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\n\
                  metadata: {name: p}\nspec:\n  timeouts: {responseHeaders: 1s}\n";
    let proxy = Running::start(app, config).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // Three seconds of upload, a chunk every 300 ms.
    for _ in 0..10 {
        client.write_all(b"3\r\nabc\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    client.write_all(b"0\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    read_until(&mut client, &mut got, b"\r\n\r\nok").await;
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&got));
}
