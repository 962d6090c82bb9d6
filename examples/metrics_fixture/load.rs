//! Clients: the load on the sidecars, the API server's calls to the injection webhook, and
//! reads of admin ports.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The paths a `web` sidecar gets, round after round (see `app.rs`).
pub const WEB_PATHS: &[&str] = &["/ok", "/ok", "/oops", "/html", "/malformed", "/slow", "/stream"];
/// The `maint` sidecar's: `/maint` is under the window, `/ok` is exempt.
pub const MAINT_PATHS: &[&str] = &["/maint", "/ok"];
/// The sidecar that follows no controller: the defaults, so everything passes.
pub const LOST_PATHS: &[&str] = &["/ok", "/oops"];

/// One GET on a new connection; its status, or `None` when the connection failed. The body
/// is read to its end (or its cut).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, Bytes)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "web.shop.svc")
        .header("accept", "application/json")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Some((status, body))
}

/// One client that sends `paths` in turn to `addr`, `pause` apart, while `until` has not
/// passed (`None`: for ever).
async fn worker(
    addr: SocketAddr,
    paths: &'static [&'static str],
    pause: Duration,
    until: Option<Instant>,
) {
    for path in paths.iter().cycle() {
        if until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
        let _ = get(addr, path).await;
        tokio::time::sleep(pause).await;
    }
}

/// `n` requests for `/busy` at once, every `every`, while `until` has not passed: more than
/// the policy's in-flight limit and queue take.
async fn bursts(addr: SocketAddr, n: usize, every: Duration, until: Option<Instant>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
        for _ in 0..n {
            tokio::spawn(get(addr, "/busy"));
        }
    }
}

/// A short load (`short`: three clients per `web` sidecar back to back, a burst each
/// second), then a trickle for ever (one client per sidecar every 200 ms, a burst every 3 s).
pub fn start(web: &[SocketAddr], maint: SocketAddr, lost: SocketAddr, short: Duration) {
    let until = Some(Instant::now() + short);
    for &addr in web {
        for _ in 0..3 {
            tokio::spawn(worker(addr, WEB_PATHS, Duration::ZERO, until));
        }
        tokio::spawn(bursts(addr, 10, Duration::from_secs(1), until));
        tokio::spawn(worker(addr, WEB_PATHS, Duration::from_millis(200), None));
        tokio::spawn(bursts(addr, 8, Duration::from_secs(3), None));
    }
    tokio::spawn(worker(maint, MAINT_PATHS, Duration::ZERO, until));
    tokio::spawn(worker(maint, MAINT_PATHS, Duration::from_millis(200), None));
    tokio::spawn(worker(lost, LOST_PATHS, Duration::from_millis(200), None));
}

/// POSTs `body` to the injection webhook over TLS (trusting `ca_pem` only), as the API
/// server does; the status it answered.
pub async fn review(addr: SocketAddr, ca_pem: &str, body: String) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connector = TlsConnector::from(portcullis::tls::client_config(ca_pem).unwrap());
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/inject?timeout=10s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = tx.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// The text an admin port serves at `path`, if it answers 200.
pub async fn admin(addr: SocketAddr, path: &str) -> Option<String> {
    match get(addr, path).await {
        Some((200, body)) => Some(String::from_utf8_lossy(&body).into_owned()),
        _ => None,
    }
}
