//! Hand-made sidecars on the real protocol, and reads of the controller's admin port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::config::wire::{AckMessage, SIDECAR_VERSION_HEADER};
use portcullis::controller::report::{ReplicaReport, SidecarState};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::NS;

/// A snapshot a sidecar received.
pub(crate) struct Received {
    pub(crate) pod: usize,
    pub(crate) at: Instant,
}

#[derive(serde::Deserialize)]
pub(crate) struct Line {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) version: Option<u64>,
}

/// One hand-made sidecar: an HTTP/2 connection, a POST whose body carries an `applied` line
/// for every snapshot as soon as it arrives. Opens the stream again if it fails.
pub(crate) async fn sidecar(
    i: usize,
    controller: SocketAddr,
    received: mpsc::UnboundedSender<Received>,
) {
    loop {
        let e = follow(i, controller, &received).await;
        let n = REOPENED.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            let at = STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
            eprintln!("bench sidecar {NS}/pod-{i} at {at:.3} s: {e}; again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Streams that failed and were opened again.
pub(crate) static REOPENED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub(crate) async fn follow(
    i: usize,
    controller: SocketAddr,
    received: &mpsc::UnboundedSender<Received>,
) -> String {
    let tcp = match TcpStream::connect(controller).await {
        Ok(tcp) => tcp,
        Err(e) => return format!("connect: {e}"),
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    {
        Ok(handshake) => handshake,
        Err(e) => return format!("handshake: {e}"),
    };
    tokio::spawn(conn);
    let (acks, queued) = mpsc::unbounded_channel::<Bytes>();
    let lines = futures::stream::unfold(queued, |mut queued| async move {
        let line = queued.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), queued))
    });
    let req = Request::post(format!("http://controller/v1/config/{NS}/pod-{i}"))
        .header(header::AUTHORIZATION, format!("Bearer token-{NS}-pod-{i}"))
        .header(SIDECAR_VERSION_HEADER, "bench")
        .body(StreamBody::new(lines).boxed_unsync())
        .unwrap();
    let response = match sender.send_request(req).await {
        Ok(response) => response,
        Err(e) => return format!("request: {e:?}"),
    };
    if response.status() != http::StatusCode::OK {
        return format!("answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(e) => return format!("stream: {e:?}"),
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = memchr::memchr(b'\n', &buffer) {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let at = Instant::now();
            let line: Line = match serde_json::from_slice(&line[..end]) {
                Ok(line) => line,
                Err(e) => return format!("unreadable line: {e}"),
            };
            if let ("snapshot", Some(version)) = (line.kind.as_str(), line.version) {
                let mut ack = serde_json::to_vec(&AckMessage::Applied { version }).unwrap();
                ack.push(b'\n');
                let _ = acks.send(ack.into());
                let _ = received.send(Received { pod: i, at });
            }
        }
    }
    "stream ended".into()
}

/// A GET on the controller's admin port: status and body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Option<(u16, Bytes)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::get(path).header("host", "controller").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(req).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.into_body().collect().await.ok()?.to_bytes()))
}

/// Sidecars that `/v1/sidecars` reports synced.
pub(crate) async fn synced(admin: SocketAddr) -> usize {
    let Some((200, body)) = get(admin, "/v1/sidecars").await else { return 0 };
    let report: ReplicaReport = serde_json::from_slice(&body).expect("a sidecar report");
    report.sidecars.iter().filter(|s| s.state == SidecarState::Synced).count()
}
