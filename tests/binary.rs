//! `portcullis proxy` as a process: start-up errors, draining on SIGTERM, and the sidecar's
//! own responses checked by an HTTP linter.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::{apps, client};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Proc {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn spawn_proxy(upstream: SocketAddr, extra: &[&str]) -> Proc {
    spawn_proxy_with(upstream, extra, Stdio::null()).await
}

async fn spawn_proxy_with(upstream: SocketAddr, extra: &[&str], stderr: Stdio) -> Proc {
    let (addr, admin) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["proxy", "--listen", &addr.to_string(), "--upstream", &upstream.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(extra)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Proc { child, addr, admin }
}

/// Waits (10 s at most) for the process to exit.
async fn exited(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn an_invalid_config_file_stops_start_up_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, support::policy("  timeouts: {connect: soon}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "document 1 (UpstreamPolicy test): spec.timeouts.connect: invalid duration \"soon\""
        ),
        "{stderr}"
    );
}

#[test]
fn a_tls_controller_without_its_ca_stops_start_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"])
        .args([
            "--admin",
            "127.0.0.1:0",
            "--controller",
            "https://portcullis.portcullis-system.svc:8090",
        ])
        .env("POD_NAMESPACE", "shop")
        .env("POD_NAME", "web-1")
        .env_remove("PORTCULLIS_CONTROLLER_CA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default(),
        "portcullis: --controller https://portcullis.portcullis-system.svc:8090 needs the CA its \
         certificate chains to: --controller-ca FILE or PORTCULLIS_CONTROLLER_CA"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let app = apps::app(|_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Response::new(Full::new(Bytes::from_static(b"finished")))
    })
    .await;
    let mut proc = spawn_proxy(app, &["--drain-timeout", "10s"]).await;
    assert_eq!(client::get(proc.admin, "/readyz", &[]).await.status, 200);
    let addr = proc.addr;
    let in_flight = tokio::spawn(async move { client::get(addr, "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = proc.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let draining = client::get(proc.admin, "/readyz", &[]).await;
    assert_eq!((draining.status.as_u16(), draining.body.as_str()), (503, "not ready\n"));

    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "finished"));
    assert_eq!(reply.header("connection"), "close");
    let status = exited(&mut proc.child).await;
    assert_eq!(status.code(), Some(0));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

fn httplint() -> PathBuf {
    std::env::var_os("HTTPLINT").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/httplint"))
    })
}

/// Every form of the sidecar's own response passes httplint with no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_responses_pass_httplint() {
    let lint = httplint();
    assert!(lint.exists(), "httplint not found at {}; run .ci/run or set HTTPLINT", lint.display());
    let refused = support::Running::after_app_left("").await;
    let window = "apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: w}\nspec: {message: back soon}\n";
    let maintenance = support::Running::start(support::closed_port().await, window).await;
    let requests = [
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nAccept: application/problem+json\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    let cases = requests
        .iter()
        .map(|r| (refused.addr, r, "HTTP/1.1 502"))
        .chain(requests.iter().map(|r| (maintenance.addr, r, "HTTP/1.1 503")));
    for (addr, request, status) in cases {
        let (raw, _) = client::raw(addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(raw.starts_with(status), "{raw}");
        let mut child = Command::new(&lint)
            .arg("-n")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "httplint failed: {report}");
        let complaints: Vec<_> =
            report.lines().filter(|l| l.contains("[WARN]") || l.contains("[BAD]")).collect();
        assert!(complaints.is_empty(), "httplint on\n{raw}\n---\n{report}");
    }
}

/// Sends one GET on a kept-alive connection and returns the response, read to the end of its
/// Content-Length body.
async fn keep_alive_get(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /idle HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 1024];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.parse::<usize>().unwrap());
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Idle keep-alive connections wait in the parking lot, not in a task each: many of them
/// through the real binary are served again after their wait, counted idle at shutdown, and
/// closed, without a byte, once the drain's grace is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_are_parked_served_again_and_closed_on_drain() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    use tokio::io::AsyncReadExt;
    // Room for the clients' sockets in this process (the proxy raises its own limit).
    let mut files = getrlimit(Resource::Nofile);
    files.current = files.maximum;
    setrlimit(Resource::Nofile, files).unwrap();
    let room = files.maximum.unwrap_or(u64::MAX).saturating_sub(256);
    let count = usize::try_from(room.min(2_000)).unwrap();
    assert!(count >= 500, "open-file limit {files:?}");

    let app = apps::app(|_| async { Response::new(Full::new(Bytes::from_static(b"ok"))) }).await;
    let mut proc = spawn_proxy_with(app, &["--log-format", "json"], Stdio::piped()).await;
    let mut stderr = proc.child.stderr.take().unwrap();
    // Read as it comes: a full pipe would stop the proxy.
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
        log
    });
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(proc.addr).await.unwrap();
        let answer = keep_alive_get(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"));
        clients.push(stream);
    }
    // Each is parked as soon as it is idle; then each is served again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for stream in &mut clients {
        let answer = keep_alive_get(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pid = proc.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    for stream in &mut clients {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest));
        read.await.expect("closed on drain").unwrap();
        assert!(rest.is_empty(), "closed without a byte: {rest:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the drain grace");
    let status = exited(&mut proc.child).await;
    assert_eq!(status.code(), Some(0));
    let log = log.join().unwrap();
    let shutdown: serde_json::Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"].as_str().is_some_and(|m| m.starts_with("shutting down")))
        .unwrap_or_else(|| panic!("no shutdown line: {log}"));
    assert_eq!(shutdown["idle"], count, "{shutdown}");
}
