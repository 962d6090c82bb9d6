//! Pieces for the fault tests (`tests/faults.rs`, `tests/rollout.rs`): an app that can be
//! killed and started again on its port, the `portcullis` binary as a process, and clients
//! that record what became of every request they sent.
// Each test binary that includes this uses part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What an app answers: each request with its body read whole.
pub type Handler =
    Arc<dyn Fn(Method, String) -> BoxFuture<'static, Response<Full<Bytes>>> + Send + Sync>;

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Method, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    Arc::new(move |method, path| Box::pin(f(method, path)))
}

/// A request the app had read but not yet answered when it was killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub method: Method,
    pub path: String,
}

/// An HTTP/1.1 app on 127.0.0.1 that can be killed as a process is: its listener and every
/// connection closed at once, requests in flight dropped unanswered. A WebSocket upgrade
/// (`upgrade: websocket`) is answered 101 and echoed.
pub struct KillableApp {
    pub addr: SocketAddr,
    handler: Handler,
    kill: watch::Sender<bool>,
    /// The accept loop and every connection, upgraded ones included.
    live: Arc<AtomicUsize>,
    cut: Arc<Mutex<Vec<Cut>>>,
    answered: Arc<AtomicUsize>,
}

/// Decrements a count when dropped.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records a request as cut unless it was answered.
struct Pending {
    request: Option<Cut>,
    cut: Arc<Mutex<Vec<Cut>>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.cut.lock().unwrap().push(request);
        }
    }
}

impl KillableApp {
    /// Starts on `addr` (a free port when `None`).
    pub async fn start(addr: Option<SocketAddr>, handler: Handler) -> KillableApp {
        // tokio sets SO_REUSEADDR, so the port is free again at once after a kill.
        let listener =
            TcpListener::bind(addr.unwrap_or("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let app = KillableApp {
            addr: listener.local_addr().unwrap(),
            handler,
            kill: watch::channel(false).0,
            live: Arc::new(AtomicUsize::new(1)),
            cut: Arc::default(),
            answered: Arc::default(),
        };
        let (handler, live, cut, answered) =
            (app.handler.clone(), app.live.clone(), app.cut.clone(), app.answered.clone());
        let mut killed = app.kill.subscribe();
        let kill = app.kill.clone();
        tokio::spawn(async move {
            let _alive = Alive(live.clone());
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = killed.wait_for(|k| *k) => return,
                };
                live.fetch_add(1, Ordering::SeqCst);
                let alive = Alive(live.clone());
                let (handler, cut, answered, live) =
                    (handler.clone(), cut.clone(), answered.clone(), live.clone());
                let mut killed = kill.subscribe();
                let kill = kill.clone();
                tokio::spawn(async move {
                    let _alive = alive;
                    let service = service_fn(move |mut req: Request<Incoming>| {
                        let (handler, cut, answered) =
                            (handler.clone(), cut.clone(), answered.clone());
                        let (live, kill) = (live.clone(), kill.clone());
                        async move {
                            let mut pending = Pending {
                                request: Some(Cut {
                                    method: req.method().clone(),
                                    path: req.uri().path().to_owned(),
                                }),
                                cut,
                            };
                            let response = if is_websocket(req.headers()) {
                                let upgrade = hyper::upgrade::on(&mut req);
                                live.fetch_add(1, Ordering::SeqCst);
                                let alive = Alive(live);
                                let mut killed = kill.subscribe();
                                tokio::spawn(async move {
                                    let _alive = alive;
                                    tokio::select! {
                                        () = echo(upgrade) => {}
                                        _ = killed.wait_for(|k| *k) => {}
                                    }
                                });
                                Response::builder()
                                    .status(StatusCode::SWITCHING_PROTOCOLS)
                                    .header("connection", "upgrade")
                                    .header("upgrade", "websocket")
                                    .body(Full::default())
                                    .unwrap()
                            } else {
                                let (parts, body) = req.into_parts();
                                let _ = body.collect().await;
                                handler(parts.method, parts.uri.path().to_owned()).await
                            };
                            pending.request = None;
                            answered.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    // Killed: the connection is dropped where it stands, as the kernel
                    // closes a killed process's sockets.
                    tokio::select! {
                        _ = conn => {}
                        _ = killed.wait_for(|k| *k) => {}
                    }
                });
            }
        });
        app
    }

    /// Kills the app: the port refuses from now on, every connection is closed, and each
    /// request it had read but not answered is returned.
    pub async fn kill(&self) -> Vec<Cut> {
        let _ = self.kill.send(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.live.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the app's tasks did not stop");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::mem::take(&mut *self.cut.lock().unwrap())
    }

    /// The same app started again on the same port.
    pub async fn restart(&self) -> KillableApp {
        KillableApp::start(Some(self.addr), self.handler.clone()).await
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for KillableApp {
    fn drop(&mut self) {
        let _ = self.kill.send(true);
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get("upgrade").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

async fn echo(upgrade: hyper::upgrade::OnUpgrade) {
    let Ok(upgraded) = upgrade.await else { return };
    let mut io = TokioIo::new(upgraded);
    let mut buf = [0u8; 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A short plain-text 200.
pub fn ok(body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// What became of one request a client sent.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub method: Method,
    pub path: String,
    pub sent: Instant,
    pub done: Instant,
    /// `None`: no response at all (the connection broke after the request was sent).
    pub status: Option<StatusCode>,
    pub proxy_status: String,
    pub retry_after: String,
    pub connection_close: bool,
    pub body: String,
    pub error: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == Some(StatusCode::OK) && self.error.is_empty()
    }

    /// Whether the request was in flight at `t`.
    pub fn spans(&self, t: Instant) -> bool {
        self.sent <= t && t <= self.done
    }
}

/// Sends one request and records its fate; `None` when the client could not send it at
/// all (the connection had closed first), which a client may send again elsewhere.
pub async fn attempt<S>(tx: &mut S, req: Request<Full<Bytes>>) -> Option<Outcome>
where
    S: TrySend,
{
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let sent = Instant::now();
    match tx.try_send(req).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let (body, error) = match body.collect().await {
                Ok(b) => (String::from_utf8_lossy(&b.to_bytes()).into_owned(), String::new()),
                Err(e) => (String::new(), format!("body: {e}")),
            };
            let header = |name: &str| {
                parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
            };
            Some(Outcome {
                method,
                path,
                sent,
                done: Instant::now(),
                // A body cut short is no response.
                status: error.is_empty().then_some(parts.status),
                proxy_status: header("proxy-status"),
                retry_after: header("retry-after"),
                connection_close: header("connection").eq_ignore_ascii_case("close"),
                body,
                error,
            })
        }
        Err(Unsent) => None,
        Err(Failed(error)) => Some(Outcome {
            method,
            path,
            sent,
            done: Instant::now(),
            status: None,
            proxy_status: String::new(),
            retry_after: String::new(),
            connection_close: false,
            body: String::new(),
            error,
        }),
    }
}

pub enum SendError {
    /// Never written: the connection had closed (or was closing) before.
    Unsent,
    Failed(String),
}
use SendError::{Failed, Unsent};

/// HTTP/1.1 and HTTP/2 senders, told apart from the request they could not send.
pub trait TrySend {
    fn try_send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Incoming>, SendError>> + Send;
}

impl TrySend for hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    async fn try_send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        if self.ready().await.is_err() {
            return Err(Unsent);
        }
        self.try_send_request(req).await.map_err(|mut e| match e.take_message() {
            Some(_) => Unsent,
            None => Failed(format!("{:?}", e.error())),
        })
    }
}

impl TrySend for hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    async fn try_send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        if self.ready().await.is_err() {
            return Err(Unsent);
        }
        self.try_send_request(req).await.map_err(|mut e| match e.take_message() {
            Some(_) => Unsent,
            // REFUSED_STREAM: the server promises it did not process the request
            // (RFC 9113 §8.7), so a client sends it again elsewhere.
            None if format!("{:?}", e.error()).contains("REFUSED_STREAM") => Unsent,
            None => Failed(format!("{:?}", e.error())),
        })
    }
}

pub async fn h1(
    addr: SocketAddr,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(tx)
}

pub async fn h2(
    addr: SocketAddr,
) -> std::io::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    let (tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(tx)
}

pub fn request(method: Method, uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "faults.test")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// An HTTP/2 request (the authority in the URI).
pub fn request_h2(method: Method, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://faults.test{path}"))
        .body(Full::default())
        .unwrap()
}

/// A WebSocket-style upgrade through `addr` on a new connection: the 101, then `message`
/// echoed back through the tunnel. `Err` says what went wrong.
pub async fn upgrade_round_trip(addr: SocketAddr, message: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let head = "GET /ws HTTP/1.1\r\nHost: faults.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    stream.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => got.push(byte[0]),
            other => {
                return Err(format!(
                    "head cut short ({other:?}): {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    let head = String::from_utf8_lossy(&got);
    if !head.starts_with("HTTP/1.1 101 ") {
        return Err(format!("no 101: {head:?}"));
    }
    stream.write_all(message.as_bytes()).await.map_err(|e| format!("tunnel write: {e}"))?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).await.map_err(|e| format!("tunnel read: {e}"))?;
    if echoed != message.as_bytes() {
        return Err(format!("echo {:?}", String::from_utf8_lossy(&echoed)));
    }
    Ok(())
}

/// An address nothing listens on yet (for a process to bind).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A `portcullis` process, killed when dropped; its stderr goes to a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[String], env: &[(&str, String)], log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(args).stdout(Stdio::null()).stderr(Stdio::from(file));
        for (k, v) in env {
            command.env(k, v);
        }
        Proc { child: command.spawn().unwrap(), log: log.to_owned() }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits for the process to exit.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit:\n{}",
                self.child.id(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` answers `path` with 200.
pub async fn wait_for_200(addr: SocketAddr, path: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut tx) = h1(addr).await
            && let Ok(response) = tx.send_request(request(Method::GET, path, "")).await
            && response.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {addr}{path} never answered 200");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
