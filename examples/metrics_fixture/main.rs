//! A small Portcullis installation on 127.0.0.1 whose metrics a real Prometheus scrapes
//! (tests/monitoring/test_queries.py, issue 23 "No dangling query"): every series that the
//! chart's dashboard and alerts read must exist here.
//!
//! - A fake Kubernetes API server (tests/support/fake_api.rs) in this process holds the
//!   cluster: pods of two workloads in `shop` (`web`: web-1, web-2, web-3; `maint`:
//!   maint-1), the controller's own pod, the `web` UpstreamPolicy (a 500 ms response-headers
//!   timeout, JSON responses only, an in-flight limit of 3 with a queue of 2, a route whose
//!   exchange is capped at 300 ms), a policy on `maint` whose status the API server refuses
//!   to let the controller write (403, as with RBAC that lacks it), and a MaintenanceWindow
//!   on `maint`, on now and planned to end in two hours.
//! - The real `portcullis controller` binary runs against it (KUBECONFIG), the holder of
//!   its Lease (seeded as held: the fake API server does not apply the Lease manager's
//!   patches), with its serving certificate from `--tls-dir` and the injection webhook on.
//! - The real `portcullis proxy` binary runs for web-1, web-2 and maint-1, following the
//!   controller over TLS as injected sidecars do; web-3's follows a controller address on
//!   which nothing listens, so it never connects.
//! - Apps on raw sockets (app.rs) answer 200, their own 500, a disallowed content type
//!   (502), a malformed status line (502), nothing in time (504), slowly enough for bursts
//!   to overload the sidecar (503), or a stream that stalls (cut short).
//! - Clients (load.rs) load the sidecars for a few seconds, then keep a trickle; the
//!   webhook gets one injectable pod and one request that is no AdmissionReview (a failed
//!   injection); after the sidecars are synced the `web` policy changes once.
//!
//! Once every target's /metrics shows what the load is meant to produce, it prints one JSON
//! line on stdout, its scrape targets with the labels the chart's ServiceMonitor and
//! PodMonitor give them:
//! `{"controller": {"address", "namespace", "pod"}, "sidecars": [{"address", "namespace",
//! "pod", "workload"}, ...], "logs": DIR}`, then runs until its standard input closes.
//!
//! `cargo run --example metrics_fixture [DIR]`: logs and files go to DIR (default: a new
//! temporary folder). The `portcullis` binary is taken from beside the example's folder
//! (`target/debug/portcullis`) or from `PORTCULLIS_BIN`; build both first
//! (`cargo build --bin portcullis --example metrics_fixture`).

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

mod app;
mod cluster;
mod load;

#[allow(dead_code)]
#[path = "../../tests/support/fake_api.rs"]
mod fake_api;

use cluster::{CONTROLLER_NS, CONTROLLER_POD, NS};
use fake_api::FakeApi;

/// How long the load runs at full pace before it becomes a trickle.
const SHORT_LOAD: Duration = Duration::from_secs(5);
/// Longest wait for each step (a loaded 2-core machine).
const STEP: Duration = Duration::from_secs(60);

fn main() {
    let dir = match std::env::args().nth(1) {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (PathBuf::from(dir), None)
        }
        None => {
            let temp = tempfile::tempdir().unwrap();
            (temp.path().to_owned(), Some(temp))
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The children are spawned from this thread (block_on polls on it): they die with it.
    runtime.block_on(run(&dir.0));
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// A `portcullis` process, killed when dropped (and when this process dies: it gets
/// SIGKILL when its parent goes); its stderr goes to `DIR/NAME.log`.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, args: &[String], env: &[(&str, String)]) -> Proc {
        let bin = std::env::var_os("PORTCULLIS_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/examples/metrics_fixture -> target/debug/portcullis
            exe.parent().and_then(Path::parent).unwrap().join("portcullis")
        });
        assert!(
            bin.exists(),
            "{} is missing: cargo build --bin portcullis (or set PORTCULLIS_BIN)",
            bin.display()
        );
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(&bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        // SAFETY: prctl(2) only, which is async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        Proc { name: name.to_owned(), child, log }
    }

    /// Panics, with its log, if it has exited.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("metrics_fixture: {} exited ({status}):\n{log}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address on which nothing listens now, for a process to bind.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One sidecar: its pod, its workload, its admin address and its process.
struct Sidecar {
    pod: &'static str,
    workload: &'static str,
    listen: SocketAddr,
    admin: SocketAddr,
    proc: Proc,
}

fn sidecar(
    dir: &Path,
    pod: &'static str,
    workload: &'static str,
    app: SocketAddr,
    controller: SocketAddr,
    ca_pem: &str,
) -> Sidecar {
    let (listen, admin) = (free_addr(), free_addr());
    let token = dir.join(format!("token-{pod}"));
    // The fake API server's TokenReview binds `token-<namespace>-<pod>` to that pod.
    std::fs::write(&token, format!("token-{NS}-{pod}\n")).unwrap();
    let args: Vec<String> = [
        "proxy",
        "--listen",
        &listen.to_string(),
        "--upstream",
        &app.to_string(),
        "--admin",
        &admin.to_string(),
        "--controller",
        &format!("https://{controller}"),
        "--token-file",
        &token.display().to_string(),
        "--workers",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let env = [
        ("PORTCULLIS_CONTROLLER_CA", ca_pem.to_owned()),
        ("POD_NAMESPACE", NS.to_owned()),
        ("POD_NAME", pod.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let proc = Proc::spawn(dir, &format!("sidecar-{pod}"), &args, &env);
    eprintln!("metrics_fixture: {NS}/{pod}: proxy {listen}, admin {admin}");
    Sidecar { pod, workload, listen, admin, proc }
}

/// The processes of the installation.
struct Running {
    controller: Proc,
    sidecars: Vec<Sidecar>,
}

impl Running {
    /// Panics, with its log, if any of them has exited.
    fn check_alive(&mut self) {
        self.controller.check_alive();
        for sidecar in &mut self.sidecars {
            sidecar.proc.check_alive();
        }
    }

    /// Waits until `missing` says nothing is missing, polling every 100 ms, checking that
    /// every process still runs; panics after `STEP` with what is missing.
    async fn wait_until<F: Future<Output = Vec<String>>>(
        &mut self,
        what: &str,
        mut missing: impl FnMut() -> F,
    ) {
        let deadline = Instant::now() + STEP;
        loop {
            self.check_alive();
            let lacking = missing().await;
            if lacking.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "metrics_fixture: {what} not within {STEP:?}: {lacking:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The lines of `expected` missing from `text`: each is a line start (a name and its labels
/// as the registry writes them) whose value must be above zero, or a whole line `name value`.
fn lacking(text: Option<String>, target: &str, expected: &[&str]) -> Vec<String> {
    let Some(text) = text else { return vec![format!("{target}: /metrics did not answer")] };
    let present = |want: &str| {
        text.lines().any(|line| {
            line == want
                || line
                    .strip_prefix(want)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|value| value.parse::<f64>().ok())
                    .is_some_and(|value| value > 0.0)
        })
    };
    expected.iter().filter(|want| !present(want)).map(|want| format!("{target}: {want}")).collect()
}

/// What each web sidecar's metrics must show once the load has run.
const WEB_EXPECTED: &[&str] = &[
    r#"portcullis_responses_total{status="200",reason="none",source="app"}"#,
    r#"portcullis_responses_total{status="500",reason="none",source="app"}"#,
    r#"portcullis_responses_total{status="504",reason="response_headers_timeout",source="proxy"}"#,
    r#"portcullis_responses_total{status="502",reason="content_type_mismatch",source="proxy"}"#,
    r#"portcullis_responses_total{status="502",reason="malformed_response",source="proxy"}"#,
    r#"portcullis_responses_total{status="503",reason="overloaded",source="proxy"}"#,
    r#"portcullis_responses_total{status="503",reason="queue_timeout",source="proxy"}"#,
    r#"portcullis_streams_ended_total{reason="request_timeout"}"#,
    "portcullis_controller_connected 1",
];
const MAINT_EXPECTED: &[&str] = &[
    r#"portcullis_responses_total{status="200",reason="none",source="app"}"#,
    r#"portcullis_responses_total{status="503",reason="maintenance",source="proxy"}"#,
    r#"portcullis_maintenance_active{window="shop/upgrade"} 1"#,
    "portcullis_controller_connected 1",
];
const LOST_EXPECTED: &[&str] = &[
    r#"portcullis_responses_total{status="200",reason="none",source="app"}"#,
    "portcullis_controller_connected 0",
];
const CONTROLLER_EXPECTED: &[&str] = &[
    r#"portcullis_controller_status_writes_total{result="ok"}"#,
    r#"portcullis_controller_status_writes_total{result="error"}"#,
    r#"portcullis_injections_total{result="injected",reason="injected"}"#,
    r#"portcullis_injections_total{result="failed",reason="invalid_review"}"#,
    r#"portcullis_controller_sidecars{state="synced"}"#,
    "portcullis_controller_propagation_seconds_count",
    "portcullis_controller_certificate_expiry_timestamp_seconds",
];

async fn run(dir: &Path) {
    let api = FakeApi::start().await;
    let (streams, admin, webhook) = (free_addr(), free_addr(), free_addr());
    cluster::fill(&api, admin);
    let ca_pem = cluster::certificates(dir);
    let kubeconfig = cluster::kubeconfig(dir, api.addr);
    let args: Vec<String> = [
        "controller",
        "--listen",
        &streams.to_string(),
        "--admin",
        &admin.to_string(),
        "--webhook-listen",
        &webhook.to_string(),
        "--tls-dir",
        &dir.join("tls").display().to_string(),
        "--keepalive",
        "1s",
        "--lease-namespace",
        CONTROLLER_NS,
        "--identity",
        CONTROLLER_POD,
    ]
    .map(String::from)
    .to_vec();
    let env = [("KUBECONFIG", kubeconfig.display().to_string()), ("RUST_LOG", "info".to_owned())];
    let controller = Proc::spawn(dir, "controller", &args, &env);
    eprintln!("metrics_fixture: controller: streams {streams}, admin {admin}, webhook {webhook}");
    let mut running = Running { controller, sidecars: Vec::new() };
    running
        .wait_until("the controller ready", || async move {
            match load::admin(admin, "/readyz").await {
                Some(_) => vec![],
                None => vec![format!("controller: {admin}/readyz")],
            }
        })
        .await;

    let app = app::start().await;
    running.sidecars = vec![
        sidecar(dir, "web-1", "web", app, streams, &ca_pem),
        sidecar(dir, "web-2", "web", app, streams, &ca_pem),
        sidecar(dir, "maint-1", "maint", app, streams, &ca_pem),
        // web-3's sidecar follows a controller that is not there.
        sidecar(dir, "web-3", "web", app, free_addr(), &ca_pem),
    ];
    let [web1, web2, maint, lost] = [0, 1, 2, 3].map(|i| {
        let sidecar = &running.sidecars[i];
        (sidecar.listen, sidecar.admin)
    });
    running
        .wait_until("the sidecars' first snapshots", || async move {
            let mut missing = Vec::new();
            for (_, admin) in [web1, web2, maint] {
                if load::admin(admin, "/readyz").await.is_none() {
                    missing.push(format!("{admin}/readyz"));
                }
            }
            missing
        })
        .await;
    cluster::change(&api);

    // The API server's calls to the webhook: a pod to inject, and a body it cannot read.
    let injected = load::review(webhook, &ca_pem, cluster::injectable_review().to_string()).await;
    assert_eq!(injected, 200, "the webhook answers an AdmissionReview");
    let refused = load::review(webhook, &ca_pem, "{\"hello\": 1}".to_owned()).await;
    assert_eq!(refused, 400, "the webhook refuses what is no AdmissionReview");

    load::start(&[web1.0, web2.0], maint.0, lost.0, SHORT_LOAD);
    let checks = [
        (web1.1, "web-1", WEB_EXPECTED),
        (web2.1, "web-2", WEB_EXPECTED),
        (maint.1, "maint-1", MAINT_EXPECTED),
        (lost.1, "web-3", LOST_EXPECTED),
        (admin, "controller", CONTROLLER_EXPECTED),
    ];
    running
        .wait_until("every series the load makes", || async move {
            let mut missing = Vec::new();
            for (addr, target, expected) in checks {
                missing.extend(lacking(load::admin(addr, "/metrics").await, target, expected));
            }
            missing
        })
        .await;

    let sidecars: Vec<_> = running
        .sidecars
        .iter()
        .map(|s| {
            json!({
                "address": s.admin.to_string(), "namespace": NS, "pod": s.pod,
                "workload": s.workload,
            })
        })
        .collect();
    let controller =
        json!({"address": admin.to_string(), "namespace": CONTROLLER_NS, "pod": CONTROLLER_POD});
    let targets = json!({
        "controller": controller,
        "sidecars": sidecars,
        "logs": dir.display().to_string(),
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{targets}").unwrap();
    stdout.flush().unwrap();

    // Until the standard input closes; a child that dies meanwhile ends the fixture.
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut closed => break,
            _ = tick.tick() => running.check_alive(),
        }
    }
}
