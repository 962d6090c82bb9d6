//! Apps for the proxy to stand in front of: well-behaved ones built on hyper, and raw
//! socket ones that misbehave exactly as a broken app would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Serves each connection with `handle` on a raw socket.
pub async fn raw<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Reads one request head (and nothing more) from a raw connection.
pub async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Answers every request with these raw bytes, then closes.
pub async fn replies(bytes: &'static [u8]) -> SocketAddr {
    raw(move |mut s| async move {
        if read_head(&mut s).await.is_some() {
            let _ = s.write_all(bytes).await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

/// Reads the request and never answers.
pub async fn stalls() -> SocketAddr {
    raw(|mut s| async move {
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await
}

/// Reads the request, then closes the connection without a byte.
pub async fn closes() -> SocketAddr {
    raw(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s.shutdown().await;
    })
    .await
}

/// Reads the request, then resets the connection.
pub async fn resets() -> SocketAddr {
    raw(|mut s| async move {
        let _ = read_head(&mut s).await;
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await
}

/// Sends part of a response head, then closes.
pub async fn closes_mid_head() -> SocketAddr {
    replies(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl").await
}

/// A listener whose accept queue is full, so that a new connection is never accepted.
pub async fn never_accepts() -> (SocketAddr, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // Fill the queue until a connect no longer completes.
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    // Keep the listener open but never accept.
    tokio::spawn(async move {
        let _listener = listener;
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    (addr, held)
}

/// A well-behaved app: `handler` gets each request with its body read whole.
pub async fn app<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    app_with_handle(handler).await.0
}

/// An app that answers "ok" until its task is aborted, which closes its port. It keeps no
/// connection open, so that nothing of it outlives the abort.
pub async fn stoppable() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    app_with_handle(|_| async {
        Response::builder()
            .header("connection", "close")
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await
}

pub async fn app_with_handle<F, Fut>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, Infallible>(handler(Request::from_parts(parts, body)).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, task)
}

/// An app that answers with what it received: method, path, and headers as JSON.
pub async fn echo() -> SocketAddr {
    app(|req| async move {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .keys()
            .map(|k| {
                let values: Vec<_> = req
                    .headers()
                    .get_all(k)
                    .iter()
                    .map(|v| serde_json::Value::from(v.to_str().unwrap_or("")))
                    .collect();
                (k.to_string(), serde_json::Value::Array(values))
            })
            .collect();
        let json = serde_json::json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "version": format!("{:?}", req.version()),
            "headers": headers,
            "body": String::from_utf8_lossy(req.body()),
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_string())))
            .unwrap()
    })
    .await
}

/// Counts requests as they arrive.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The heads an app received, in order.
#[derive(Clone, Default)]
pub struct Heads(Arc<std::sync::Mutex<Vec<String>>>);

impl Heads {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// An HTTP/2 connection preface from a server: an empty SETTINGS frame.
pub const H2_SETTINGS: &[u8] = b"\0\0\0\x04\0\0\0\0\0";

/// An app that switches protocols whenever it can: to h2c when asked (101, then an HTTP/2
/// SETTINGS frame), to WebSocket when asked (101), and on `/h2c-anyway` to h2c and on
/// `/bare-101` without naming a protocol, whatever the request asked. After a 101 it echoes
/// what it reads, upper-cased; any other request gets 200 `plain`. Request bodies with a
/// Content-Length are read, so that keep-alive works.
pub async fn switcher() -> (SocketAddr, Heads) {
    let heads = Heads::default();
    let seen = heads.clone();
    let addr = raw(move |mut s| {
        let seen = seen.clone();
        async move {
            while let Some(head) = read_head(&mut s).await {
                seen.0.lock().unwrap().push(head.clone());
                let lower = head.to_ascii_lowercase();
                let length = lower
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                let to = if head.starts_with("GET /h2c-anyway ") {
                    Some("Upgrade: h2c\r\n")
                } else if head.starts_with("GET /bare-101 ") {
                    Some("")
                } else if lower.contains("\r\nupgrade: h2c\r\n") {
                    Some("Upgrade: h2c\r\n")
                } else if lower.contains("\r\nupgrade: websocket\r\n") {
                    Some("Upgrade: websocket\r\n")
                } else {
                    None
                };
                let Some(to) = to else {
                    let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain";
                    if s.write_all(plain).await.is_err() {
                        return;
                    }
                    continue;
                };
                let switch =
                    format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n{to}\r\n");
                let mut out = switch.into_bytes();
                if to.contains("h2c") {
                    out.extend_from_slice(H2_SETTINGS);
                }
                if s.write_all(&out).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
                return;
            }
        }
    })
    .await;
    (addr, heads)
}
