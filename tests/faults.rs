//! Faults, each on real sockets on 127.0.0.1 (issue 9, "Prove it holds"): the app killed
//! mid-load and restarted; the controller killed, restarted and unreachable; the config
//! stream cut in the middle of a snapshot; the wall clock stepped; SIGTERM under load; and
//! a config reload every 100 ms under load. `make soak` runs the long versions.

#[path = "support/faults.rs"]
mod faults;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faults::{KillableApp, Outcome, Proc, free_addr, request, request_h2};
use http::{HeaderMap, Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use support::fake_api::FakeApi;
use support::{Running, client, metric, policy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const TERMINATED: &str =
    "portcullis; error=connection_terminated; details=\"connection_terminated\"";
const REFUSED: &str = "portcullis; error=connection_refused; details=\"connection_refused\"";
const CONNECT_FAILED: &str =
    "portcullis; error=destination_unavailable; details=\"connect_failed\"";
const MAINTENANCE: &str = "portcullis; error=destination_unavailable; details=\"maintenance\"";
const HEADERS_TIMEOUT: &str =
    "portcullis; error=http_response_timeout; details=\"response_headers_timeout\"";

/// Runs `workers` HTTP/1.1 keep-alive clients against `addr` until `stop`, each sending the
/// requests `pick(worker, i)` makes; returns every outcome and how often a client found its
/// connection closed and had to open another.
async fn h1_load(
    addr: SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    pause: Duration,
    pick: fn(usize, usize) -> http::Request<http_body_util::Full<bytes::Bytes>>,
) -> tokio::task::JoinHandle<(Vec<Outcome>, usize)> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut out, mut reconnects) = (Vec::new(), 0);
            let mut tx = faults::h1(addr).await.unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                match faults::attempt(&mut tx, pick(w, i)).await {
                    Some(outcome) => out.push(outcome),
                    None => {
                        reconnects += 1;
                        tx = faults::h1(addr).await.unwrap();
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            (out, reconnects)
        }));
    }
    tokio::spawn(async move {
        let (mut all, mut reconnects) = (Vec::new(), 0);
        for task in tasks {
            let (out, r) = task.await.unwrap();
            all.extend(out);
            reconnects += r;
        }
        (all, reconnects)
    })
}

// ---------------------------------------------------------------------------------------
// The app is killed mid-load and restarted.

/// Only requests in flight at the kill fail, each as a labelled 502; traffic recovers by
/// itself. Two kills: one restarted at once (so only the requests in flight can fail), one
/// left down for 400 ms (requests sent meanwhile are refused, and say so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_killed_mid_load_fails_only_the_requests_in_flight_as_labelled_502s() {
    // 40 to 120 ms, drawn per request: with one fixed time the workers fall into step,
    // and a kill that lands between two of their rounds finds nothing in flight.
    let slow = faults::handler(|_, _| async {
        tokio::time::sleep(Duration::from_millis(40 + fastrand::u64(0..80))).await;
        faults::ok("done")
    });
    let first = KillableApp::start(None, slow).await;
    // Pooled connections kept for a minute, so that idle ones are in the pool at each kill.
    let proxy = Running::start(first.addr, &policy("  timeouts: {upstreamIdle: 1m}")).await;
    let warm: Vec<_> =
        (0..8).map(|_| tokio::spawn(client::get(proxy.addr, "/warm", &[]))).collect();
    for w in warm {
        assert_eq!(w.await.unwrap().status, 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    // GETs and POSTs with a body (never retried) in turn.
    let load = h1_load(proxy.addr, 5, stop.clone(), Duration::ZERO, |w, i| {
        if (w + i) % 2 == 0 {
            request(Method::POST, "/work", "order")
        } else {
            request(Method::GET, "/work", "")
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Killing takes a moment (every connection of the app is closed in turn): each kill
    // is the span from its start to the last connection closed.
    let kill1 = Instant::now();
    let cut1 = first.kill().await;
    let killed1 = Instant::now();
    let second = first.restart().await;
    let back1 = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let kill2 = Instant::now();
    let cut2 = second.kill().await;
    let killed2 = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = second.restart().await;
    let back2 = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    let (outcomes, reconnects) = load.await.unwrap();

    assert!(!cut1.is_empty() && !cut2.is_empty(), "each kill cut requests: {cut1:?} {cut2:?}");
    assert_eq!(reconnects, 0, "a dying app never costs the client its connection");
    let kills = [(kill1, killed1, back1), (kill2, killed2, back2)];
    let in_flight_at_kill =
        |o: &Outcome| kills.iter().any(|(kill, killed, _)| o.sent <= *killed && o.done >= *kill);
    let sent_while_down =
        |o: &Outcome| kills.iter().any(|(kill, _, back)| o.sent <= *back && o.done >= *kill);
    let report = |o: &Outcome| {
        let t = |i: Instant| {
            i.saturating_duration_since(kill1).as_micros() as i128
                - kill1.saturating_duration_since(i).as_micros() as i128
        };
        let spans: Vec<_> = kills.iter().map(|(k, d, b)| (t(*k), t(*d), t(*b))).collect();
        format!(
            "{} {} sent {} us, done {} us after kill one; kills (start, killed, back) {spans:?}: {:?} {:?}",
            o.method,
            o.path,
            t(o.sent),
            t(o.done),
            o.proxy_status,
            o.body
        )
    };
    for o in &outcomes {
        if o.ok() {
            assert_eq!(o.body, "done");
            continue;
        }
        assert_eq!(o.status, Some(StatusCode::BAD_GATEWAY), "only labelled 502s: {}", report(o));
        match o.proxy_status.as_str() {
            TERMINATED => {
                assert!(in_flight_at_kill(o), "cut, not in flight at a kill: {}", report(o))
            }
            REFUSED | CONNECT_FAILED => {
                assert!(sent_while_down(o), "refused while the app was up: {}", report(o))
            }
            _ => panic!("unexpected Proxy-Status: {}", report(o)),
        }
    }
    // A POST is never sent twice: each one the app was handling is a 502 to its client
    // (as is one still on its way to the app when it died, which the app never saw).
    let cut_posts = cut1.iter().chain(&cut2).filter(|c| c.method == Method::POST).count();
    let terminated = |method: Method| {
        outcomes.iter().filter(|o| o.method == method && o.proxy_status == TERMINATED).count()
    };
    let (terminated_posts, terminated_gets) = (terminated(Method::POST), terminated(Method::GET));
    assert!(terminated_posts >= cut_posts, "{terminated_posts} POSTs cut, {cut_posts} at the app");
    // While the app was down, requests were refused, and said so.
    let refused = outcomes.iter().filter(|o| o.proxy_status == REFUSED).count();
    assert!(refused > 0, "nothing was sent while the app was down for 400 ms");

    // Recovered by itself.
    let recovered = outcomes.iter().filter(|o| o.sent >= back2 && o.ok()).count();
    assert!(recovered >= 10, "only {recovered} requests after the last restart");
    assert!(third.answered() >= recovered);
    let metrics = proxy.admin_get("/metrics").await.body;
    let counted = |reason: &str| {
        metric(
            &metrics,
            &format!(
                r#"portcullis_responses_total{{status="502",reason="{reason}",source="proxy"}}"#
            ),
        )
        .unwrap_or(0.0) as usize
    };
    assert_eq!(counted("connection_terminated"), terminated_posts + terminated_gets);
    assert_eq!(counted("connection_refused"), refused);
}

// ---------------------------------------------------------------------------------------
// The controller is killed, restarted, or unreachable while requests flow.

const PODS: &str = "/api/v1/pods";
const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
const WINDOWS: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";

fn web_policy(response_headers: &str) -> serde_json::Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "UpstreamPolicy",
        "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "timeouts": {"responseHeaders": response_headers}},
    })
}

fn window(name: &str, start: Timestamp, end: Timestamp) -> serde_json::Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"start": start.to_string(), "end": end.to_string(), "exemptPaths": ["/load"]},
    })
}

/// `portcullis proxy` arguments in front of `app`, with `extra` flags.
fn proxy_args(
    listen: SocketAddr,
    app: SocketAddr,
    admin: SocketAddr,
    extra: &[&str],
) -> Vec<String> {
    let base = ["proxy", "--listen", &listen.to_string(), "--upstream", &app.to_string()]
        .map(String::from);
    let admin = ["--admin".to_string(), admin.to_string()];
    base.into_iter().chain(admin).chain(extra.iter().map(|a| a.to_string())).collect()
}

/// `portcullis controller` against the fake API, serving streams over TLS from `tls_dir`.
fn controller_proc(dir: &std::path::Path, listen: SocketAddr, n: usize) -> Proc {
    let args: Vec<String> = [
        "controller",
        "--listen",
        &listen.to_string(),
        "--admin",
        &free_addr().to_string(),
        "--tls-dir",
        &dir.join("tls").display().to_string(),
        "--keepalive",
        "300ms",
        "--lease-namespace",
        "portcullis-system",
        "--identity",
        "faults",
    ]
    .map(String::from)
    .to_vec();
    let env = [
        ("KUBECONFIG", dir.join("kubeconfig").display().to_string()),
        ("RUST_LOG", "info".to_string()),
    ];
    Proc::spawn(&args, &env, &dir.join(format!("controller-{n}.log")))
}

/// The sidecar's `/config`, as JSON.
async fn sidecar_config(admin: SocketAddr) -> serde_json::Value {
    client::get(admin, "/config", &[]).await.json()
}

async fn wait_for_config(
    admin: SocketAddr,
    within: Duration,
    what: &str,
    logs: impl Fn() -> String,
    accept: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let config = sidecar_config(admin).await;
        if accept(&config) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {config}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn response_headers(config: &serde_json::Value) -> &str {
    config["config"]["policy"]["defaultRoute"]["timeouts"]["responseHeaders"].as_str().unwrap_or("")
}

/// Zero failed requests while the controller is unreachable (stopped: its connections
/// hang), killed, and restarted; maintenance windows start and end on time meanwhile; the
/// sidecar reconnects and applies what changed while the controller was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_killed_restarted_or_unreachable_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.apply(PODS, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}}}));
    api.apply(POLICIES, web_policy("5s"));
    std::fs::write(
        dir.path().join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
             current-context: fake\n",
            api.addr
        ),
    )
    .unwrap();
    let now = std::time::SystemTime::now();
    let ca = portcullis::tls::issue::new_ca(now, Duration::from_secs(86400)).unwrap();
    let serving = portcullis::tls::issue::serving(
        &ca,
        &["127.0.0.1".into()],
        now,
        Duration::from_secs(86400),
    )
    .unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(tls.join("tls.key"), &serving.key_pem).unwrap();
    std::fs::write(tls.join("ca.crt"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("token"), "token-shop-web-1\n").unwrap();

    let streams = free_addr();
    let mut controller = controller_proc(dir.path(), streams, 1);
    let app = support::apps::app(|_| async { faults::ok("ok") }).await;
    let (listen, admin) = (free_addr(), free_addr());
    let token = dir.path().join("token").display().to_string();
    let url = format!("https://{streams}");
    let sidecar_args =
        proxy_args(listen, app, admin, &["--controller", &url, "--token-file", &token]);
    let sidecar = Proc::spawn(
        &sidecar_args,
        &[
            ("PORTCULLIS_CONTROLLER_CA", ca.cert_pem.clone()),
            ("POD_NAMESPACE", "shop".into()),
            ("POD_NAME", "web-1".into()),
        ],
        &dir.path().join("sidecar.log"),
    );
    let logs = || {
        format!(
            "--- sidecar:\n{}\n--- controller:\n{}",
            sidecar.logs(),
            std::fs::read_to_string(dir.path().join("controller-1.log")).unwrap_or_default()
        )
    };
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(20), "the sidecar's first snapshot")
        .await;

    // Two windows, both to start and end while the controller is away. On whole seconds:
    // the API's times (metav1.Time) have no fraction, and the stream sends none.
    let (now, i_now) = (Timestamp::now(), Instant::now());
    let t0 = Timestamp::from_second(now.as_second() + 1).unwrap();
    let i0 = i_now + t0.duration_since(now).unsigned_abs();
    let at = |ms: i64| t0 + SignedDuration::from_millis(ms);
    let instant = |ms: u64| i0 + Duration::from_millis(ms);
    let (w1, w2) = ((at(3000), at(4000)), (at(6000), at(7000)));
    api.apply(WINDOWS, window("one", w1.0, w1.1));
    api.apply(WINDOWS, window("two", w2.0, w2.1));
    wait_for_config(admin, Duration::from_secs(1), "the windows", logs, |c| {
        c["config"]["windows"].as_array().is_some_and(|w| w.len() == 2)
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = h1_load(listen, 3, stop.clone(), Duration::from_millis(2), |w, i| {
        request(Method::GET, &format!("/load/{w}/{i}"), "")
    })
    .await;
    // Probes for the windows: (sent, answered, status, Proxy-Status), by the wall clock.
    let probe_stop = stop.clone();
    let probes = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !probe_stop.load(Ordering::SeqCst) {
            let sent = Timestamp::now();
            let reply = client::get(listen, "/probe", &[]).await;
            seen.push((
                sent,
                Timestamp::now(),
                reply.status,
                reply.header("proxy-status").to_owned(),
            ));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });

    // Unreachable: the controller stops answering (SIGSTOP) with its connections open.
    tokio::time::sleep_until(instant(2000).into()).await;
    controller.signal("STOP");
    assert!(Timestamp::now() < w1.0, "the timeline slipped: stopped after window one began");
    tokio::time::sleep_until(instant(4500).into()).await;
    controller.signal("CONT");

    // Killed, with a change made in the cluster meanwhile, then started again.
    tokio::time::sleep_until(instant(5000).into()).await;
    controller.signal("KILL");
    controller.exit(Duration::from_secs(5)).await;
    assert!(Timestamp::now() < w2.0, "the timeline slipped: killed after window two began");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&client::get(admin, "/metrics", &[]).await.body, "portcullis_controller_connected")
        != Some(0.0)
    {
        assert!(Instant::now() < deadline, "the stream's loss was never noticed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep_until(instant(7500).into()).await;
    api.apply(POLICIES, web_policy("7s"));
    let mut controller = controller_proc(dir.path(), streams, 2);
    wait_for_config(admin, Duration::from_secs(20), "the change after the kill", logs, |c| {
        response_headers(c) == "7s"
    })
    .await;

    // Restarted (SIGTERM, then started again), with another change.
    controller.signal("TERM");
    controller.exit(Duration::from_secs(10)).await;
    api.apply(POLICIES, web_policy("9s"));
    let _controller = controller_proc(dir.path(), streams, 3);
    wait_for_config(admin, Duration::from_secs(20), "the change after the restart", logs, |c| {
        response_headers(c) == "9s"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (outcomes, reconnects) = load.await.unwrap();
    let probes = probes.await.unwrap();

    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok()).collect();
    assert!(failed.is_empty(), "{} failed, e.g. {:?}\n{}", failed.len(), failed.first(), logs());
    assert_eq!(reconnects, 0);
    assert!(outcomes.len() > 200, "only {} requests", outcomes.len());
    let metrics = client::get(admin, "/metrics", &[]).await.body;
    assert_eq!(metric(&metrics, "portcullis_controller_connected"), Some(1.0), "{metrics}");

    // On time: a probe wholly before a window's start, or after its end, was served; one
    // wholly inside was turned away (the sidecar judged it at some instant between).
    let open = [(Timestamp::MIN, w1.0), (w1.1, w2.0), (w2.1, Timestamp::MAX)];
    for (sent, answered, status, proxy_status) in &probes {
        if open.iter().any(|(from, to)| *sent >= *from && *answered < *to) {
            assert_eq!(*status, StatusCode::OK, "on at {sent}..{answered}: {proxy_status}");
        }
    }
    for (name, (start, end)) in [("one", w1), ("two", w2)] {
        let inside: Vec<_> = probes
            .iter()
            .filter(|(sent, answered, ..)| *sent >= start && *answered < end)
            .collect();
        for (sent, answered, status, proxy_status) in &inside {
            assert_eq!(
                (*status, proxy_status.as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, MAINTENANCE),
                "window {name} was off at {sent}..{answered}"
            );
        }
        assert!(inside.len() >= 5, "only {} probes inside window {name}", inside.len());
    }
}

// ---------------------------------------------------------------------------------------
// The stream is cut in the middle of a snapshot.

/// A stand-in for the controller's stream endpoint, over HTTP/2 as the sidecar speaks it:
/// each stream's request is answered 200 at once, and handed to the test, which sends what
/// it likes, ends the stream, resets it, or drops the whole connection.
async fn fake_stream_server() -> (SocketAddr, mpsc::UnboundedReceiver<FakeStream>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let kill = Arc::new(tokio::sync::Notify::new());
            let killed = kill.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (body, frames) = mpsc::unbounded_channel::<
                        Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>,
                    >();
                    let head =
                        format!("{} {}\n{:?}", req.method(), req.uri().path(), req.headers());
                    let _ = tx.send(FakeStream { head, body, kill: kill.clone() });
                    let frames = futures::stream::unfold(frames, |mut f| async move {
                        Some((f.recv().await?, f))
                    });
                    let response = http::Response::builder()
                        .header("content-type", "application/x-ndjson")
                        .body(http_body_util::StreamBody::new(frames))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service);
                // Killed: the connection is dropped without another frame.
                tokio::select! {
                    _ = conn => {}
                    () = killed.notified() => {}
                }
            });
        }
    });
    (addr, rx)
}

/// One stream the sidecar opened with the fake controller.
struct FakeStream {
    /// Method, path and headers.
    head: String,
    body: mpsc::UnboundedSender<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>,
    kill: Arc<tokio::sync::Notify>,
}

impl FakeStream {
    /// One DATA frame.
    fn send(&self, data: &str) {
        let frame = hyper::body::Frame::data(bytes::Bytes::from(data.to_owned()));
        self.body.send(Ok(frame)).unwrap();
    }

    /// Drops the whole connection, mid-stream.
    fn drop_connection(self) {
        self.kill.notify_one();
    }

    /// Resets the stream (RST_STREAM).
    fn reset(self) {
        let _ = self.body.send(Err(std::io::Error::other("reset")));
    }
}

fn snapshot_line(version: u64, response_headers: &str) -> String {
    let message = json!({
        "type": "snapshot",
        "version": version,
        "config": {"policy": {"name": "shop/web", "spec": {"timeouts": {"responseHeaders": response_headers}}}},
    });
    format!("{message}\n")
}

/// No partial config is ever applied: half a snapshot line followed by a dropped
/// connection, a reset of the stream, or a clean end of the body is discarded,
/// and its other half on the next connection is refused as unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_snapshot_applies_no_partial_config() {
    let (controller, mut connections) = fake_stream_server().await;
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), connections.recv())
            .await
            .expect("the sidecar reconnects")
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-shop-web-1\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let sidecar = portcullis::sidecar::Sidecar {
        listener,
        admin: admin_listener,
        upstream: support::closed_port().await.to_string(),
        app_protocol: Default::default(),
        config_file: None,
        secrets_dir: None,
        controller: Some(portcullis::config::follow::ControllerSource {
            tls: None,
            url: format!("http://{controller}"),
            namespace: "shop".into(),
            pod: "web-1".into(),
            token_file,
            idle_timeout: Duration::from_secs(10),
        }),
        reload_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(1),
        client_timeouts: Default::default(),
        client_limits: Default::default(),
        stop: Default::default(),
    };
    tokio::spawn(sidecar.run(std::future::pending()));
    let state = async || {
        let config = sidecar_config(admin).await;
        let metrics = client::get(admin, "/metrics", &[]).await.body;
        let refused = metric(&metrics, r#"portcullis_config_reloads_total{result="refused"}"#);
        (config["generation"].as_u64().unwrap(), response_headers(&config).to_owned(), refused)
    };

    let first = next().await;
    assert!(first.head.starts_with("POST /v1/config/shop/web-1\n"), "{}", first.head);
    assert!(
        first.head.contains("\"authorization\": \"Bearer token-shop-web-1\""),
        "{}",
        first.head
    );
    first.send(&snapshot_line(1, "300ms"));
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(5), "the first snapshot").await;
    assert_eq!(state().await, (1, "300ms".into(), None));

    // Half a line, then the connection drops (no end of the stream).
    let line = snapshot_line(2, "9s");
    let (front, back) = line.split_at(line.len() / 2);
    first.send(front);
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.drop_connection();
    // The next connection proves the sidecar is done with the first.
    let second = next().await;
    assert_eq!(state().await, (1, "300ms".into(), None), "half a snapshot was applied");

    // The other half on the new connection is no snapshot of its own.
    second.send(back);
    // Half of another line, then the stream is reset.
    let line = snapshot_line(3, "7s");
    second.send(&line[..line.len() / 2]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    second.reset();
    let third = next().await;
    assert_eq!(state().await, (1, "300ms".into(), Some(1.0)), "the spliced half was refused");

    // Half a line, then a clean end of the body.
    third.send(&snapshot_line(4, "8s")[..20]);
    drop(third.body);
    let fourth = next().await;
    assert_eq!(state().await, (1, "300ms".into(), Some(1.0)));

    // A whole line that is no valid config is refused too; a whole snapshot is applied.
    fourth.send(&snapshot_line(5, "soon"));
    fourth.send(&snapshot_line(6, "4s"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while state().await != (2, "4s".into(), Some(2.0)) {
        assert!(
            Instant::now() < deadline,
            "the whole snapshot was not applied: {:?}",
            state().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client::get(admin, "/readyz", &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// The wall clock steps forward or back.

/// At the seam where the sidecar asks the wall clock (`Gate::check` takes the instant to
/// judge; the data plane passes `Timestamp::now()`): with one gate and one config
/// generation, so its cached evaluation is put to the test, the windows follow the wall
/// clock through steps forward and back, and Retry-After counts from the new time.
#[test]
fn windows_follow_the_wall_clock_through_steps_forward_and_back() {
    let yaml = "apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\n\
                metadata: {name: once}\nspec: {start: \"2026-03-01T13:00:00Z\", end: \"2026-03-01T14:00:00Z\"}\n\
                ---\napiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\n\
                metadata: {name: nightly}\nspec: {schedule: \"0 2 * * *\", duration: 30m, timeZone: UTC}\n";
    let ts = |s: &str| s.parse::<Timestamp>().unwrap();
    let ctx =
        portcullis::config::LoadContext { secrets_dir: None, now: ts("2026-03-01T00:00:00Z") };
    let config = portcullis::config::parse(yaml, &ctx).unwrap();
    let gate = portcullis::maintenance::Gate::default();
    let none = HeaderMap::new();
    let at = |now: &str| {
        gate.check(7, &config.windows, "/", &none, ts(now)).map(|c| (c.window, c.retry_after))
    };
    assert_eq!(at("2026-03-01T12:00:00Z"), None);
    // Forward into the one-off window, before the cached evaluation said to judge again.
    assert_eq!(at("2026-03-01T13:30:00Z"), Some(("once".into(), 1800)));
    // Back before it: the evaluation made at 13:30 is not trusted for an earlier instant.
    assert_eq!(at("2026-03-01T12:59:59Z"), None);
    assert_eq!(at("2026-03-01T13:59:59.500Z"), Some(("once".into(), 1)));
    // A day forward: into the nightly window, counted from the new time.
    assert_eq!(at("2026-03-02T02:10:00Z"), Some(("nightly".into(), 1200)));
    // A year back: neither.
    assert_eq!(at("2025-03-02T12:00:00Z"), None);
    // And forward again past both.
    assert_eq!(at("2026-03-02T02:30:00Z"), None);
    assert_eq!(at("2026-03-01T13:00:00Z"), Some(("once".into(), 3600)));
}

/// Where libfaketime's multithreaded library is (Debian's `libfaketime`).
fn libfaketime() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var_os("FAKETIME_LIB").map(std::path::PathBuf::from),
        Some("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1".into()),
        Some("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1".into()),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// The real `portcullis proxy` with its wall clock stepped under it by libfaketime
/// (`LD_PRELOAD`; the monotonic clock is left alone, as a real step leaves it): a timeout
/// in flight fires on time whether the clock steps a day back or two days forward, and a
/// maintenance window follows each step. Without libfaketime the test says so and checks
/// nothing beyond the gate test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepped_wall_clock_moves_windows_but_not_timeouts() {
    let Some(lib) = libfaketime() else {
        // CI installs it (.ci/run): there, its absence is a failure, not a skip.
        assert!(std::env::var_os("CI").is_none(), "libfaketime not found on CI");
        eprintln!("SKIPPED: libfaketime not found (apt-get install libfaketime, or FAKETIME_LIB)");
        return;
    };
    let app = support::apps::app(|req| async move {
        if req.uri().path() == "/stall" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        faults::ok("ok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let step = |offset: &str| {
        let tmp = dir.path().join("clock.tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &clock).unwrap();
    };
    step("+0");
    let start = Timestamp::from_second(Timestamp::now().as_second() + 3600).unwrap();
    let end = start + SignedDuration::from_hours(1);
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "{}---\napiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\n\
             metadata: {{name: upgrade}}\nspec: {{start: \"{start}\", end: \"{end}\", exemptPaths: [/stall]}}\n",
            policy("  routes:\n  - match: {pathPrefix: /stall}\n    timeouts: {responseHeaders: 1s}")
        ),
    )
    .unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let args = proxy_args(listen, app, admin, &["--config", &config.display().to_string()]);
    let env = [
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", clock.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ];
    let proxy = Proc::spawn(&args, &env, &dir.path().join("proxy.log"));
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(10), "the proxy").await;
    assert_eq!(client::get(listen, "/", &[]).await.status, 200, "{}", proxy.logs());

    // 90 minutes forward: half an hour into the window, as the proxy's clock tells it.
    step("+5400");
    let reply = client::get(listen, "/", &[]).await;
    assert_eq!(
        (reply.status, reply.header("proxy-status")),
        (StatusCode::SERVICE_UNAVAILABLE, MAINTENANCE)
    );
    let retry_after = support::retry_after(&reply);
    assert!(
        (1780..=1800).contains(&retry_after),
        "Retry-After {retry_after}, not from the new time"
    );

    // A timeout in flight while the clock steps a day back, then two days forward.
    for offset in ["-86400", "+172800"] {
        let started = Instant::now();
        let stalled = tokio::spawn(client::get(listen, "/stall", &[]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        step(offset);
        let reply = stalled.await.unwrap();
        let took = started.elapsed();
        assert_eq!(
            (reply.status, reply.header("proxy-status")),
            (StatusCode::GATEWAY_TIMEOUT, HEADERS_TIMEOUT)
        );
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(3500),
            "the 1s timeout took {took:?} across a step of {offset} s"
        );
        // The window is off a day before it and two days after.
        assert_eq!(client::get(listen, "/", &[]).await.status, 200, "at {offset}");
    }
    // Back into the window (from two days ahead: a step back), then past its end.
    step("+5400");
    assert_eq!(client::get(listen, "/", &[]).await.status, 503);
    step("+7300");
    assert_eq!(client::get(listen, "/", &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// SIGTERM under load.

/// Clients that honour `Connection: close` and GOAWAY lose no request when the sidecar is
/// told to stop under load: every request it took in completes with a 200, HTTP/1.1 ones
/// marked `Connection: close`; HTTP/2 connections are told GOAWAY and take no new stream;
/// idle keep-alive connections are closed; it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request() {
    let app = KillableApp::start(
        None,
        faults::handler(|_, _| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            faults::ok("done")
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let args = proxy_args(listen, app.addr, admin, &["--drain-timeout", "10s"]);
    let mut proxy = Proc::spawn(&args, &[], &dir.path().join("proxy.log"));
    faults::wait_for_200(admin, "/readyz", Duration::from_secs(10), "the proxy").await;

    // Idle keep-alive connections: one request each, then nothing.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut tx = faults::h1(listen).await.unwrap();
        let first = faults::attempt(&mut tx, request(Method::GET, "/idle", "")).await.unwrap();
        assert!(first.ok(), "{first:?}");
        idle.push(tx);
    }

    // HTTP/1.1 clients: a new connection after `Connection: close`; none to be had ends them.
    let mut tasks = Vec::new();
    for w in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let Ok(mut tx) = faults::h1(listen).await else { return out };
            for i in 0.. {
                let Some(outcome) =
                    faults::attempt(&mut tx, request(Method::GET, &format!("/h1/{w}/{i}"), ""))
                        .await
                else {
                    break; // closed before the request could go: the client goes elsewhere
                };
                let close = outcome.connection_close;
                out.push(outcome);
                if close {
                    match faults::h1(listen).await {
                        Ok(fresh) => tx = fresh,
                        Err(_) => break, // refused: the sidecar is gone
                    }
                }
            }
            out
        }));
    }
    // HTTP/2 clients: four streams at a time on one connection until GOAWAY.
    let h2 = faults::h2(listen).await.unwrap();
    for w in 0..4 {
        let mut tx = h2.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0.. {
                let req = request_h2(Method::GET, &format!("/h2/{w}/{i}"));
                match faults::attempt(&mut tx, req).await {
                    Some(outcome) => out.push(outcome),
                    None => break, // GOAWAY: no new stream on this connection
                }
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sigterm = Instant::now();
    proxy.signal("TERM");
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes
            .extend(tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap());
    }
    let status = proxy.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", proxy.logs());

    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok() || o.body != "done").collect();
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    let drained: Vec<_> = outcomes.iter().filter(|o| o.spans(sigterm)).collect();
    assert!(drained.len() >= 4, "only {} requests in flight at SIGTERM", drained.len());
    let h1_drained = drained.iter().filter(|o| o.path.starts_with("/h1/")).count();
    let h1_closing = drained.iter().filter(|o| o.path.starts_with("/h1/") && o.connection_close);
    assert_eq!(h1_closing.count(), h1_drained, "each HTTP/1.1 response while draining says close");
    assert!(drained.iter().any(|o| o.path.starts_with("/h2/")), "no HTTP/2 stream was drained");
    assert!(
        outcomes.iter().all(|o| o.done < sigterm || o.sent < sigterm || o.path.starts_with("/h1/")),
        "an HTTP/2 stream was opened after GOAWAY"
    );
    for tx in &mut idle {
        assert!(tx.ready().await.is_err(), "an idle keep-alive connection outlived the drain");
    }
    assert!(TcpStream::connect(listen).await.is_err(), "still accepting after exit");
}

// ---------------------------------------------------------------------------------------
// A config reload every 100 ms under load.

fn reload_variant(i: usize) -> String {
    let window = "---\napiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\n\
                  metadata: {name: later}\nspec: {start: \"2099-01-01T00:00:00Z\", end: \"2099-01-02T00:00:00Z\"}\n";
    match i % 5 {
        0 => policy(&format!(
            "  timeouts: {{responseHeaders: {}s, upstreamIdle: 2s}}\n  routes:\n  - match: {{pathPrefix: /api}}\n    timeouts: {{request: 10s}}",
            5 + i
        )),
        1 => {
            policy(&format!(
                "  overload: {{maxInFlight: {}, queue: {{size: 50, timeout: 5s}}}}\n  errors: {{format: json}}",
                200 + i
            )) + window
        }
        2 => format!(
            "{}---\napiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: off}}\nspec: {{suspend: true, message: \"m{i}\"}}\n",
            policy(&format!("  timeouts: {{connect: {}ms}}", 500 + i))
        ),
        3 => policy(&format!(
            "  validation: {{contentTypes: [text/plain], maxResponseHeaderBytes: {}}}",
            8192 + i
        )),
        // Every fifth is invalid: refused, and the last good config stays.
        _ => policy(&format!("  timeouts: {{connect: soon{i}}}")),
    }
}

/// Zero failed requests — HTTP/1.1, HTTP/2 and upgrades — while the config file changes
/// every 100 ms, an invalid version included now and then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_every_100ms_under_load_fails_no_request() {
    let app = KillableApp::start(None, faults::handler(|_, _| async { faults::ok("ok") })).await;
    let proxy = Running::start(app.addr, &reload_variant(0)).await;
    let start_generation = proxy.generation().await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = h1_load(proxy.addr, 3, stop.clone(), Duration::from_millis(1), |w, i| {
        request(Method::GET, &format!("/api/{w}/{i}"), "")
    })
    .await;
    let h2 = faults::h2(proxy.addr).await.unwrap();
    let mut streams = Vec::new();
    for w in 0..3 {
        let (mut tx, stop) = (h2.clone(), stop.clone());
        streams.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let req = request_h2(Method::GET, &format!("/h2/{w}/{i}"));
                out.push(faults::attempt(&mut tx, req).await.expect("the HTTP/2 connection stays"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            out
        }));
    }
    let upgrade_stop = stop.clone();
    let upgrades = tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        let mut i = 0;
        while !upgrade_stop.load(Ordering::SeqCst) {
            i += 1;
            match faults::upgrade_round_trip(proxy.addr, &format!("ping {i}")).await {
                Ok(()) => ok += 1,
                Err(e) => failed.push(e),
            }
        }
        (ok, failed)
    });

    let writes = 25;
    for i in 1..=writes {
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.write_config(&reload_variant(i));
    }
    stop.store(true, Ordering::SeqCst);
    let (mut outcomes, reconnects) = load.await.unwrap();
    for s in streams {
        outcomes.extend(s.await.unwrap());
    }
    let (upgraded, upgrade_failures) = upgrades.await.unwrap();

    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok() || o.body != "ok").collect();
    assert!(failed.is_empty(), "{} failed, e.g. {:?}", failed.len(), failed.first());
    assert_eq!(reconnects, 0);
    assert!(upgrade_failures.is_empty(), "{upgrade_failures:?}");
    assert!(outcomes.len() > 300, "only {} requests", outcomes.len());
    assert!(outcomes.iter().any(|o| o.path.starts_with("/h2/")));
    assert!(upgraded >= 10, "only {upgraded} upgrades");

    // Every valid version was applied (the file is polled every 50 ms), the invalid refused.
    let valid = (1..=writes).filter(|i| i % 5 != 4).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = proxy.admin_get("/metrics").await.body;
        let refused = metric(&metrics, r#"portcullis_config_reloads_total{result="refused"}"#);
        let generation = proxy.generation().await;
        // The last write (25: responseHeaders 30s) may land just as the load stops.
        if generation - start_generation >= valid * 8 / 10
            && refused == Some((writes / 5) as f64)
            && response_headers(&proxy.admin_get("/config").await.json()) == "30s"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {valid} applied; refused {refused:?}",
            generation - start_generation
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
