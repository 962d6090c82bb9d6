//! What the two HTTP/1.1 targets share: one runtime and one real sidecar (the same
//! `portcullis::sidecar::Sidecar` that `portcullis proxy` runs, default config) per process,
//! on loopback sockets, reused by every run.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use portcullis::proxy::{AppProtocol, ClientTimeouts};
use portcullis::sidecar::Sidecar;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Starts a sidecar in front of `app` on `rt`; returns the address clients connect to.
pub fn start_sidecar(rt: &Runtime, app: SocketAddr) -> SocketAddr {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sidecar = Sidecar {
            listener,
            admin,
            upstream: app.to_string(),
            app_protocol: AppProtocol::Http1,
            config_file: None,
            secrets_dir: None,
            controller: None,
            reload_interval: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(1),
            client_timeouts: ClientTimeouts {
                header: Duration::from_secs(2),
                idle: Duration::from_secs(2),
            },
            client_limits: Default::default(),
            stop: Default::default(),
        };
        tokio::spawn(sidecar.run(std::future::pending()));
        addr
    })
}

/// A loopback address of its own for each client connection (all of 127.0.0.0/8 is this
/// host), so that the app can tell from X-Forwarded-For which run sent a request.
/// Returns the address and the run's number.
pub fn next_client_ip() -> (Ipv4Addr, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seq = NEXT.fetch_add(1, Ordering::Relaxed);
    let n = seq % (200 << 16);
    (Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8), seq)
}

pub async fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((ip, 0).into())?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Where a head of `bytes` ends (the index after its blank line), if it is complete.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}
