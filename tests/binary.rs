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
    let (addr, admin) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["proxy", "--listen", &addr.to_string(), "--upstream", &upstream.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Proc { child, addr, admin }
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
