//! A rolling restart, with the kubelet's part played on real sockets as the Kubernetes
//! sources describe it for a pod with a native sidecar (issue 21): the app container's
//! `preStop` hook is called (an `httpGet` to the sidecar's `/prestop`, which the injector
//! adds) and waited for; then the app gets SIGTERM and exits at once, as most apps do; only
//! once it has exited does the sidecar, a restartable init container, get its SIGTERM.
//! Meanwhile clients follow the pod's endpoint as kube-proxy does: they keep sending, on
//! kept-alive and on new connections, until the endpoint is withdrawn a moment after the
//! stop began, then go elsewhere.
//!
//! Each scenario prints its counts (`cargo test --test rollout -- --nocapture`).

#[path = "support/faults.rs"]
mod faults;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faults::{KillableApp, Outcome, Proc, free_addr, request};
use http::{Method, StatusCode};
use portcullis::admin::prestop::TOKEN_HEADER;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// Workers that keep one connection alive, and workers that open one per request.
const KEEP_ALIVE_CLIENTS: usize = 4;
const NEW_CONNECTION_CLIENTS: usize = 2;

/// How the kubelet stops the pod, and when the clients stop routing to it.
struct Scenario {
    /// The app's `preStop` hook to the sidecar, with the sidecar's `--stop-delay`; `None`:
    /// no hook, as pods were injected before it.
    hook: Option<&'static str>,
    /// From the start of the stop until the endpoint is withdrawn from the clients.
    withdrawn_after: Duration,
    /// From the app's exit until the kubelet sends the sidecar SIGTERM.
    kubelet_lag: Duration,
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    ok: usize,
    /// Other answers, by status and Proxy-Status.
    answers: BTreeMap<(u16, String), usize>,
    /// Connections refused or broken under a request.
    connection_errors: Vec<String>,
    /// The answers that are not 200, whole.
    failed: Vec<Outcome>,
}

impl Seen {
    fn summary(&self) -> String {
        let answers: Vec<String> =
            self.answers.iter().map(|((s, ps), n)| format!("{n} x {s} {ps}")).collect();
        format!(
            "{} x 200, {}, {} connection errors",
            self.ok,
            if answers.is_empty() { "no other answer".into() } else { answers.join(", ") },
            self.connection_errors.len()
        )
    }
}

/// One client, until the endpoint is withdrawn: on one kept-alive connection (reconnecting
/// when told `Connection: close`, or when its connection closed before a request could
/// go), or on a new connection for each request.
async fn client(target: SocketAddr, keep_alive: bool, withdrawn: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut conn = None;
    let mut i = 0;
    while !withdrawn.load(Ordering::Acquire) {
        let tx = match &mut conn {
            Some(tx) => tx,
            None => match faults::h1(target).await {
                Ok(tx) => conn.insert(tx),
                Err(e) => {
                    seen.connection_errors.push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        i += 1;
        let Some(outcome) = faults::attempt(tx, request(Method::GET, &format!("/{i}"), "")).await
        else {
            // Closed before the request was written: any client sends it again.
            conn = None;
            continue;
        };
        if outcome.status == Some(StatusCode::OK) && outcome.error.is_empty() {
            seen.ok += 1;
        } else if let Some(status) = outcome.status {
            *seen.answers.entry((status.as_u16(), outcome.proxy_status.clone())).or_default() += 1;
            seen.failed.push(outcome.clone());
        } else {
            seen.connection_errors.push(outcome.error.clone());
        }
        if !keep_alive || outcome.connection_close || outcome.status.is_none() {
            conn = None;
        }
    }
    seen
}

async fn roll(scenario: Scenario) -> Seen {
    let app = KillableApp::start(
        None,
        faults::handler(|_, _| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            faults::ok("ok")
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let delay = scenario.hook.unwrap_or("0s");
    let mut sidecar = spawn(listen, app.addr, admin, delay, dir.path());
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(10), "the sidecar").await;

    let withdrawn = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..KEEP_ALIVE_CLIENTS + NEW_CONNECTION_CLIENTS)
        .map(|n| tokio::spawn(client(listen, n < KEEP_ALIVE_CLIENTS, withdrawn.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The stop begins: the endpoint goes a moment later, whatever the kubelet does.
    let endpoint = tokio::spawn({
        let withdrawn = withdrawn.clone();
        async move {
            tokio::time::sleep(scenario.withdrawn_after).await;
            withdrawn.store(true, Ordering::Release);
        }
    });
    if scenario.hook.is_some() {
        let hook = tokio::spawn(prestop(admin));
        // The pod says it is not ready while it stops.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = faults::h1(admin).await.unwrap().send_request(get("/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "/readyz while stopping");
        assert_eq!(hook.await.unwrap(), StatusCode::OK, "the preStop hook's answer");
    }
    // SIGTERM to the app, which exits at once; the kubelet sees it and, a moment later,
    // sends the sidecar its own.
    app.kill().await;
    tokio::time::sleep(scenario.kubelet_lag).await;
    sidecar.signal("TERM");
    let status = sidecar.exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.logs());
    endpoint.await.unwrap();

    let mut seen = Seen::default();
    for client in clients {
        let one = tokio::time::timeout(Duration::from_secs(20), client).await.unwrap().unwrap();
        seen.ok += one.ok;
        for (key, n) in one.answers {
            *seen.answers.entry(key).or_default() += n;
        }
        seen.connection_errors.extend(one.connection_errors);
        seen.failed.extend(one.failed);
    }
    assert!(seen.ok > 50, "too little traffic to say anything: {}", seen.summary());
    seen
}

/// The sidecar as a process, with the pod's stop token, as the injector starts it.
fn spawn(
    listen: SocketAddr,
    app: SocketAddr,
    admin: SocketAddr,
    stop_delay: &str,
    dir: &std::path::Path,
) -> Proc {
    let args: Vec<String> = [
        "proxy",
        "--listen",
        &listen.to_string(),
        "--upstream",
        &app.to_string(),
        "--admin",
        &admin.to_string(),
        "--stop-delay",
        stop_delay,
    ]
    .map(String::from)
    .into();
    let env = [("PORTCULLIS_STOP_TOKEN", TOKEN.to_string())];
    Proc::spawn(&args, &env, &dir.join("sidecar.log"))
}

fn get(path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    request(Method::GET, path, "")
}

/// The kubelet's `httpGet` hook, as the injector writes it, waited for.
async fn prestop(admin: SocketAddr) -> StatusCode {
    let mut tx = faults::h1(admin).await.unwrap();
    let mut req = get("/prestop");
    req.headers_mut().insert(TOKEN_HEADER, TOKEN.parse().unwrap());
    tx.send_request(req).await.unwrap().status()
}

/// The stop as pods were injected before the hook: the app gets SIGTERM at once, and the
/// clients still routed to the pod meet its exit as 502s (the baseline of the counts, and
/// proof that the scenario reaches the race the hook closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_hook_clients_meet_the_apps_exit() {
    let seen = roll(Scenario {
        hook: None,
        withdrawn_after: Duration::from_millis(1000),
        kubelet_lag: Duration::from_millis(500),
    })
    .await;
    eprintln!("rollout without the preStop hook: {}", seen.summary());
    let refused = (502, r#"portcullis; error=connection_refused; details="connection_refused""#);
    let refused = seen.answers.get(&(refused.0, refused.1.to_owned())).copied().unwrap_or(0);
    assert!(refused > 0, "the app's exit was never met: {}", seen.summary());
}

/// The hook holds the app's stop until the endpoint is withdrawn: nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hook_a_rolling_restart_fails_no_request() {
    let seen = roll(Scenario {
        hook: Some("3s"),
        withdrawn_after: Duration::from_millis(1000),
        kubelet_lag: Duration::from_millis(500),
    })
    .await;
    eprintln!("rollout with a 3s preStop delay: {}", seen.summary());
    assert!(seen.failed.is_empty(), "answers other than 200: {:#?}", seen.failed);
    assert!(seen.connection_errors.is_empty(), "{:?}", seen.connection_errors);
}

/// With no delay, the app is gone while clients still come: they are told 503 `app_stopping`
/// with Retry-After, never 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_delay_an_app_gone_is_answered_503_app_stopping() {
    let seen = roll(Scenario {
        hook: Some("0s"),
        withdrawn_after: Duration::from_millis(1000),
        kubelet_lag: Duration::from_millis(500),
    })
    .await;
    eprintln!("rollout with a 0s preStop delay: {}", seen.summary());
    assert!(!seen.failed.is_empty(), "the app was never met gone: {}", seen.summary());
    for outcome in &seen.failed {
        assert_eq!(outcome.status, Some(StatusCode::SERVICE_UNAVAILABLE), "{outcome:#?}");
        assert_eq!(
            outcome.proxy_status,
            r#"portcullis; error=destination_unavailable; details="app_stopping""#,
            "{outcome:#?}"
        );
        assert_eq!(outcome.retry_after, "1", "{outcome:#?}");
        assert!(outcome.connection_close, "{outcome:#?}");
    }
}

/// Once the pod is stopping, an HTTP/1.1 client's next response closes its connection and
/// an HTTP/2 client is told GOAWAY, so that both reconnect elsewhere; both are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_asks_every_client_to_reconnect_elsewhere() {
    let app = support::apps::app(|_| async { faults::ok("ok") }).await;
    let proxy = support::Running::start(app, "").await;
    let mut h1 = faults::h1(proxy.addr).await.unwrap();
    let h2 = faults::h2(proxy.addr).await.unwrap();
    let before = faults::attempt(&mut h1, get("/before")).await.unwrap();
    assert!(before.ok() && !before.connection_close, "{before:?}");

    // Standalone, with no stop token: the pod itself (loopback) may call the hook.
    let hook = support::client::get(proxy.admin, "/prestop", &[]).await;
    assert_eq!(hook.status, StatusCode::OK, "{}", hook.body);
    assert_eq!(hook.body, "stopping: the app may stop now\n");
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let after = faults::attempt(&mut h1, get("/after")).await.unwrap();
    assert!(after.ok() && after.connection_close, "{after:?}");
    assert!(h1.ready().await.is_err(), "the HTTP/1.1 connection was closed after its answer");
    // GOAWAY: the connection takes no new stream, and closes.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut h2 = h2;
        while h2.ready().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    closed.await.expect("GOAWAY within 10 s");
    // A new connection is still served.
    let fresh = support::client::get(proxy.addr, "/fresh", &[]).await;
    assert_eq!(fresh.status, StatusCode::OK);
}

/// Without the pod's token, a call to `/prestop` from elsewhere changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_needs_the_pods_token() {
    let app = KillableApp::start(None, faults::handler(|_, _| async { faults::ok("ok") })).await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let _sidecar = spawn(listen, app.addr, admin, "0s", dir.path());
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(10), "the sidecar").await;
    let wrong = [(TOKEN_HEADER, "0000000000000000ffffffffffffffff")];
    for headers in [&[][..], &wrong[..]] {
        let refused = support::client::get(admin, "/prestop", headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body, "/prestop needs the pod's stop token in Portcullis-Stop-Token\n");
    }
    assert_eq!(support::client::get(admin, "/readyz", &[]).await.status, StatusCode::OK);
    let through = support::client::get(listen, "/", &[]).await;
    assert_eq!(through.status, StatusCode::OK);
    assert!(through.headers.get("connection").is_none(), "{:?}", through.headers);
}
