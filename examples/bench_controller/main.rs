//! `make bench`, controller part (issue 22): 10,000 pods and 1,000 sidecar streams, then
//! the time from applying a MaintenanceWindow to its `Programmed=True` status, the status
//! writes per second, and the controller's RSS and CPU.
//!
//! - A fake Kubernetes API server (tests/support/fake_api.rs) in this process holds 10,000
//!   injected, running pods: 1,000 in namespace `bench`, labelled `app: bench-{i % 20}` (20
//!   groups of 50), and 9,000 over 90 other namespaces; 100 UpstreamPolicies (one in `bench`
//!   selecting its 1,000 pods, 99 elsewhere selecting 10 pods each) and 50 weekly
//!   MaintenanceWindows elsewhere. It pages its lists (`limit`, `continue`) as the real API
//!   server does, and kube-rs's watcher asks for 500 items a page.
//! - The real `Controller::run` (one replica, `Leadership::Always`, no TLS) runs in a child
//!   process (this binary again), so that its RSS and CPU are its own and not those of the
//!   fake API server and of the 1,000 clients; it lists and watches over HTTP.
//! - 1,000 hand-made sidecars, one per `bench` pod, each on its own HTTP/2 connection, POST
//!   `/v1/config/bench/{pod}` and acknowledge every snapshot up the request body as soon as it
//!   arrives.
//! - Then, one after another, 40 new MaintenanceWindows in `bench` (36 selecting one group of
//!   50 pods, every tenth all 1,000), each after a random pause of 0-1 s so that the applies
//!   do not keep step with the controller's once-a-second status comparison: from
//!   `api.apply` to the first status PATCH of that window whose `Programmed` condition is
//!   `True` (PATCHes seen by polling the fake API every 5 ms).

//!
//! - [`process`]: the controller's own process, and its /proc figures.
//! - [`cluster`]: what the fake API server holds before the controller starts.
//! - [`sidecars`]: the hand-made sidecars, and reads of the controller's admin port.
//! - [`writes`]: the status PATCHes the controller makes, timed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

mod cluster;
mod process;
mod sidecars;
mod writes;

use cluster::{fill, resource};
use process::{ControllerProcess, cpu_seconds, memory, mib, raise_open_files, run_controller};
use sidecars::{REOPENED, Received, STARTED, get, sidecar, synced};
use writes::{Rates, Writes};

#[allow(dead_code)]
#[path = "../../tests/support/fake_api.rs"]
mod fake_api;

use fake_api::FakeApi;

/// Set in the child process that runs the controller: the fake API server's URL.
const CONTROLLER_ROLE: &str = "PORTCULLIS_BENCH_CONTROLLER_API";

const NS: &str = "bench";
/// Streamed pods, all in `bench`.
const STREAMS: usize = 1_000;
/// Label groups among them: `app: bench-{i % GROUPS}`.
const GROUPS: usize = 20;
const OTHER_NAMESPACES: usize = 90;
const OTHER_PODS: usize = 9_000;
const POLICIES: usize = 100;
const WINDOWS: usize = 50;
/// MaintenanceWindows applied and timed, one after another.
const MEASURED: usize = 40;
/// Every this many, the measured window selects every `bench` pod.
const ALL_EVERY: usize = 10;
const POLL: Duration = Duration::from_millis(5);
/// How long the controller's CPU is measured with nothing changing.
const IDLE: Duration = Duration::from_secs(5);

const PODS_PATH: &str = "/api/v1/pods";
const POLICIES_PATH: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
const WINDOWS_PATH: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";
const CREATED: &str = "2026-01-01T00:00:00Z";

fn main() {
    raise_open_files();
    if let Ok(api) = std::env::var(CONTROLLER_ROLE) {
        return run_controller(&api);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

/// Waits until `done` holds, polling every 10 ms; panics after `limit`.
async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "bench_controller: {what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted `values`.
fn pct(values: &[Duration], p: f64) -> f64 {
    let rank = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len());
    ms(values[rank - 1])
}

async fn bench() {
    STARTED.get_or_init(Instant::now);
    let api = FakeApi::start().await;
    let filled = Instant::now();
    fill(&api);
    let fill_time = filled.elapsed();
    let writes = Writes::follow(api.clone());

    // The controller, and its first lists.
    let launched = Instant::now();
    let controller = ControllerProcess::start(api.addr);
    let admin = controller.admin;
    wait_until("the controller ready", Duration::from_secs(60), || async move {
        matches!(get(admin, "/readyz").await, Some((200, _)))
    })
    .await;
    let ready = launched.elapsed();
    let (ready_rss, _) = controller.rss();

    // 1,000 sidecars.
    let (received_tx, mut received) = mpsc::unbounded_channel::<Received>();
    let connecting = Instant::now();
    let sidecars: Vec<_> = (0..STREAMS)
        .map(|i| tokio::spawn(sidecar(i, controller.streams, received_tx.clone())))
        .collect();
    let mut first = HashSet::new();
    while first.len() < STREAMS {
        let got = tokio::time::timeout(Duration::from_secs(60), received.recv()).await;
        let got = got.expect("every sidecar's first snapshot within 60 s").unwrap();
        first.insert(got.pod);
    }
    let all_first = connecting.elapsed();
    let reopened_first = REOPENED.load(Ordering::Relaxed);
    wait_until("1,000 sidecars synced", Duration::from_secs(60), || async move {
        synced(admin).await == STREAMS
    })
    .await;
    let all_synced = connecting.elapsed();
    let policy =
        format!("/apis/portcullis.dev/v1alpha1/namespaces/{NS}/upstreampolicies/bench/status");
    let writes_ = writes.clone();
    wait_until("bench/bench Programmed", Duration::from_secs(60), || {
        let found = writes_.programmed(&policy, connecting).is_some();
        async move { found }
    })
    .await;
    let policy_programmed = connecting.elapsed();
    let (streams_rss, _) = controller.rss();
    // Let the first statuses settle, then the controller's CPU with nothing changing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_cpu0, idle_from) = (controller.cpu_seconds(), Instant::now());
    tokio::time::sleep(IDLE).await;
    let idle_cpu = (controller.cpu_seconds() - idle_cpu0) / idle_from.elapsed().as_secs_f64();
    while received.try_recv().is_ok() {}

    // New windows, one after another.
    let cpu0 = controller.cpu_seconds();
    let own_cpu0 = cpu_seconds("/proc/self/stat");
    let measuring = Instant::now();
    let mut latencies = Vec::new();
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut propagation = Vec::new();
    let mut written_false_first = 0;
    for k in 0..MEASURED {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        let everyone = k % ALL_EVERY == ALL_EVERY - 1;
        let (selector, selected) = if everyone {
            (json!({}), STREAMS)
        } else {
            (json!({"matchLabels": {"app": format!("bench-{}", k % GROUPS)}}), STREAMS / GROUPS)
        };
        let name = format!("measured-{k}");
        let created = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string();
        let spec = json!({"selector": selector, "message": "bench maintenance"});
        let path = format!(
            "/apis/portcullis.dev/v1alpha1/namespaces/{NS}/maintenancewindows/{name}/status"
        );
        let applied = Instant::now();
        api.apply(WINDOWS_PATH, resource("MaintenanceWindow", NS, &name, &created, spec));
        let (at, count) = loop {
            if let Some(found) = writes.programmed(&path, applied) {
                break found;
            }
            assert!(applied.elapsed() < Duration::from_secs(30), "{name} not Programmed in 30 s");
            tokio::time::sleep(POLL).await;
        };
        let latency = at - applied;
        latencies.push(latency);
        if everyone {
            large.push(latency)
        } else {
            small.push(latency)
        }
        if count > 1 {
            written_false_first += 1;
        }
        // Every selected sidecar got the change (and acknowledged it: it is Programmed).
        let mut got = 0;
        while got < selected {
            let r = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
            let r = r.expect("a snapshot for every selected sidecar").unwrap();
            got += 1;
            if everyone {
                propagation.push(r.at - applied);
            }
        }
    }
    let measured = measuring.elapsed();
    let measured_end = Instant::now();
    let controller_cpu = controller.cpu_seconds() - cpu0;
    let own_cpu = cpu_seconds("/proc/self/stat") - own_cpu0;
    let (end_rss, peak_rss) = controller.rss();
    let (bench_rss, _) = memory(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let during = writes.rates(measuring, measured_end);
    let events = api.posts().iter().filter(|(path, _)| path.ends_with("/events")).count();
    let reopened = REOPENED.load(Ordering::Relaxed);
    let (opened, open, most) = api.connections();
    let api_connections = [opened, open, most];
    let overall = writes.rates(launched, measured_end);
    for task in &sidecars {
        task.abort();
    }
    controller.stop();

    for list in [&mut latencies, &mut small, &mut large, &mut propagation] {
        list.sort();
    }
    let smalls = small.len();
    let larges = large.len();
    let goal = if mib(peak_rss) < 100.0 { "met" } else { "NOT met" };
    println!(
        "== controller (issue 22): {} pods ({STREAMS} streamed, in {NS}), {POLICIES} UpstreamPolicies, {WINDOWS} MaintenanceWindows",
        STREAMS + OTHER_PODS,
    );
    println!(
        "the real Controller::run, in a process of its own (one replica, leader, no TLS), against a fake API server in the bench process over HTTP; lists paged 500 a page as the API server does"
    );
    println!(
        "ready (first list of every kind in the index): {:.0} ms after launch (fake API filled in {:.0} ms before)",
        ms(ready),
        ms(fill_time)
    );
    println!(
        "{STREAMS} sidecar streams (one HTTP/2 connection each, POST, every snapshot acknowledged at once): all first snapshots in {:.0} ms, all synced in /v1/sidecars in {:.0} ms, bench/bench ({STREAMS} pods) Programmed=True written at {:.0} ms; streams opened again after a failure: {reopened_first} while connecting, {} later",
        ms(all_first),
        ms(all_synced),
        ms(policy_programmed),
        reopened - reopened_first
    );
    println!(
        "apply -> Programmed=True, {MEASURED} new MaintenanceWindows in {NS} one after another, each after a random 0-1 s pause: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
    println!(
        "  {smalls} selecting {} pods: p50 {:.0} ms, max {:.0} ms; {larges} selecting all {STREAMS}: p50 {:.0} ms, max {:.0} ms; p99 of {MEASURED} by nearest rank is the largest",
        STREAMS / GROUPS,
        pct(&small, 0.5),
        pct(&small, 1.0),
        pct(&large, 0.5),
        pct(&large, 1.0)
    );
    println!(
        "  statuses are compared once a second, and a resource written at most once in 900 ms: 0-1 s expected, ~2 s where the first write still said Programmed=False ({written_false_first} of {MEASURED} here); times to the PATCH as seen by polling the fake API every {} ms",
        POLL.as_millis()
    );
    println!(
        "one window to all {STREAMS} streams, apply -> snapshot at the sidecar: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} snapshots)",
        pct(&propagation, 0.5),
        pct(&propagation, 0.99),
        pct(&propagation, 1.0),
        propagation.len()
    );
    let shortest =
        |r: &Rates| r.shortest.map_or_else(|| "-".to_owned(), |d| format!("{:.0} ms", ms(d)));
    println!(
        "status writes while measuring: {} in {:.1} s = {:.2}/s, {} resources; at most {} in any 1 s; per resource at most {} in any 1 s (goal <= 1), shortest gap {}",
        during.writes,
        measured.as_secs_f64(),
        during.writes as f64 / measured.as_secs_f64(),
        during.resources,
        during.peak,
        during.per_resource,
        shortest(&during)
    );
    println!(
        "status writes since launch: {} for {} resources, at most {} in any 1 s (the first write of every resource), per resource at most {} in any 1 s, shortest gap {}; {events} Events posted",
        overall.writes,
        overall.resources,
        overall.peak,
        overall.per_resource,
        shortest(&overall)
    );
    println!(
        "controller RSS: ready {:.1} MiB, {STREAMS} streams {:.1} MiB, after measuring {:.1} MiB, peak (VmHWM) {:.1} MiB; goal < 100 MiB: {goal}",
        mib(ready_rss),
        mib(streams_rss),
        mib(end_rss),
        mib(peak_rss)
    );
    println!(
        "controller connections to the API server (kube client, HTTP/1.1: one per request in flight): {} opened, at most {} open at once, {} open at the end",
        api_connections[0], api_connections[2], api_connections[1]
    );
    println!(
        "controller CPU: {:.0}% of one core idle ({STREAMS} streams, nothing changing), {:.0}% while measuring ({:.2} s in {:.1} s); the bench process (fake API, {STREAMS} clients, poller): {:.2} s CPU, RSS {:.1} MiB",
        100.0 * idle_cpu,
        100.0 * controller_cpu / measured.as_secs_f64(),
        controller_cpu,
        measured.as_secs_f64(),
        own_cpu,
        mib(bench_rss)
    );
}
