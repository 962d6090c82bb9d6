//! `Programmed`: whether every pod a resource selects enforces it, from the sidecars' own
//! acknowledgements, through the fake API and real sockets: real sidecars follow real
//! controller replicas, one of them through a relay that is cut as a NetworkPolicy would
//! cut it; hand-made sidecars refuse, or are too old to acknowledge.

mod support;

use std::time::Duration;

use http::StatusCode;
use portcullis::controller::run::{Leadership, PeerSelector};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::fleet::{
    PODS, POLICIES, Relay, Replica, Sidecar, WINDOWS, apply_pod, plugin, pod, programmed,
    replica_pod, wait_status, window,
};

fn is(condition: &Value, status: &str, reason: &str) -> bool {
    condition["status"] == status && condition["reason"] == reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_missed_by_a_cut_off_sidecar_is_not_programmed_until_it_reconnects() {
    let api = FakeApi::start().await;
    apply_pod(&api, pod("shop", "web-1", "web"));
    apply_pod(&api, pod("shop", "web-2", "web"));
    let controller = Replica::start(&api, Leadership::Always, None, None).await;
    apply_pod(&api, replica_pod("controller", controller.admin));
    let relay = Relay::start(controller.streams).await;
    let web1 = Sidecar::start("shop", "web-1", controller.streams).await;
    let web2 = Sidecar::start("shop", "web-2", relay.addr).await;
    for pod in ["web-1", "web-2"] {
        controller.wait_for(pod, |s| s["state"] == "synced").await;
    }

    // The NetworkPolicy: web-2 loses its stream, and keeps its last config.
    relay.cut();
    let cut = controller.wait_for("web-2", |s| s["state"] == "disconnected").await;
    let since = cut["disconnectedAt"].as_str().unwrap().to_owned();
    api.apply(
        WINDOWS,
        window(
            "db",
            1,
            json!({"selector": {"matchLabels": {"app": "web"}}, "message": "migrating"}),
        ),
    );

    let status = wait_status(&api, "maintenancewindows", "db", |s| {
        is(&programmed(s), "False", "SidecarsDisconnected") && s["programmedPods"] == 1
    })
    .await;
    assert_eq!(status["matchedPods"], 2);
    let condition = programmed(&status);
    assert_eq!(
        condition["message"],
        format!(
            "1 of 2 selected pods enforce generation 1; not: shop/web-2 (sidecar disconnected \
             since {since})"
        )
    );
    assert_eq!(condition["observedGeneration"], 1);
    // What the status says is what clients see.
    assert_eq!(web1.answer().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(web2.answer().await, StatusCode::OK);
    // And what the plugin shows.
    let one = controller.wait_for("web-1", |s| s["activeWindows"] == json!(["shop/db"])).await;
    let two = controller.wait_for("web-2", |_| true).await;
    let generation = |s: &Value| format!("{}/{}", s["ackedVersion"], s["latestVersion"]);
    assert_eq!(
        plugin(&api, &["status", "-n", "shop"]).await,
        format!(
            "NAMESPACE   POD     VERSION   REPLICA      GENERATION   STATE          WINDOWS\n\
             shop        web-1   {v}     controller   {g1:<12} synced         shop/db\n\
             shop        web-2   {v}     controller   {g2:<12} disconnected   -\n",
            v = env!("CARGO_PKG_VERSION"),
            g1 = generation(&one),
            g2 = generation(&two),
        )
    );

    // Open for longer than the grace: a Warning Event names the pod.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let event = loop {
        let found = api.posts().into_iter().find(|(_, e)| e["reason"] == "NotProgrammed");
        if let Some((_, event)) = found {
            break event;
        }
        assert!(std::time::Instant::now() < deadline, "no NotProgrammed Event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "db");
    assert_eq!(
        event["note"],
        format!(
            "the window is open but 1 of 2 selected pods do not enforce it: shop/web-2 (sidecar \
             disconnected since {since})"
        )
    );

    relay.restore();
    let status =
        wait_status(&api, "maintenancewindows", "db", |s| is(&programmed(s), "True", "Programmed"))
            .await;
    assert_eq!(status["programmedPods"], 2);
    assert_eq!(programmed(&status)["message"], "2 of 2 selected pods enforce generation 1");
    assert_eq!(web2.answer().await, StatusCode::SERVICE_UNAVAILABLE);

    // An edit: the condition follows the new generation.
    api.apply(
        WINDOWS,
        window(
            "db",
            2,
            json!({"selector": {"matchLabels": {"app": "web"}}, "message": "still migrating"}),
        ),
    );
    let status = wait_status(&api, "maintenancewindows", "db", |s| {
        programmed(s)["observedGeneration"] == 2 && is(&programmed(s), "True", "Programmed")
    })
    .await;
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(programmed(&status)["message"], "2 of 2 selected pods enforce generation 2");
}

/// A hand-made sidecar on the real protocol: HTTP/2, POST, acknowledgements up the body.
struct Speaker {
    response: hyper::body::Incoming,
    acks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buffer: Vec<u8>,
}

impl Speaker {
    async fn open(controller: std::net::SocketAddr, pod: &str, version: &str) -> Speaker {
        use http_body_util::BodyExt;
        let tcp = tokio::net::TcpStream::connect(controller).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let (acks, queued) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let lines = futures::stream::unfold(queued, |mut q| async move {
            let line = q.recv().await?;
            Some((Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(line)), q))
        });
        let req = http::Request::post(format!("http://controller/v1/config/shop/{pod}"))
            .header("authorization", format!("Bearer token-shop-{pod}"))
            .header("portcullis-sidecar-version", version)
            .body(http_body_util::StreamBody::new(lines).boxed_unsync())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        Speaker { response: response.into_body(), acks, buffer: Vec::new() }
    }

    async fn snapshot(&mut self) -> Value {
        use http_body_util::BodyExt;
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let message: Value = serde_json::from_slice(&line[..end]).unwrap();
                if message["type"] == "snapshot" {
                    return message;
                }
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.response.frame())
                .await
                .expect("a snapshot in time");
            if let Ok(data) = frame.unwrap().unwrap().into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    async fn say(&self, ack: Value) {
        let mut line = serde_json::to_vec(&ack).unwrap();
        line.push(b'\n');
        self.acks.send(line.into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_outdated_sidecars_are_named_with_their_reason() {
    let api = FakeApi::start().await;
    for name in ["new-1", "old-1", "good-1"] {
        apply_pod(&api, pod("shop", name, "checkout"));
    }
    api.apply(POLICIES, json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "UpstreamPolicy",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 4, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "checkout"}}, "timeouts": {"request": "3s"}},
    }));
    let controller = Replica::start(&api, Leadership::Always, None, None).await;
    apply_pod(&api, replica_pod("controller", controller.admin));
    support::fleet::Sidecar::start("shop", "good-1", controller.streams).await;

    // A sidecar that refuses what it is sent, and says why.
    let mut refuser = Speaker::open(controller.streams, "new-1", "9.9.9").await;
    let snapshot = refuser.snapshot().await;
    let version = snapshot["version"].as_u64().unwrap();
    refuser
        .say(json!({"type": "refused", "version": version, "reason": "shop/checkout: spec.timeouts.request: not on this node"}))
        .await;
    // A sidecar from before acknowledgements: a GET, and silence.
    let stream = tokio::net::TcpStream::connect(controller.streams).await.unwrap();
    let (mut old, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/v1/config/shop/old-1")
        .header("host", "controller")
        .header("authorization", "Bearer token-shop-old-1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let _old_stream = old.send_request(req).await.unwrap();

    let refused = controller.wait_for("new-1", |s| s["state"] == "refused").await;
    assert_eq!(refused["sidecarVersion"], "9.9.9");
    assert_eq!(refused["refusal"]["version"], version);
    assert_eq!(
        refused["refusal"]["reason"],
        "shop/checkout: spec.timeouts.request: not on this node"
    );
    assert_eq!(refused["latestVersion"], version);
    assert!(refused.get("ackedVersion").is_none(), "{refused}");
    let old = controller.wait_for("old-1", |s| s["state"] == "outdated").await;
    assert!(old.get("sidecarVersion").is_none(), "{old}");

    let status = wait_status(&api, "upstreampolicies", "checkout", |s| {
        is(&programmed(s), "False", "Refused") && s["matchedPods"] == 3
    })
    .await;
    assert_eq!(status["programmedPods"], 1, "good-1, a real sidecar, applied it");
    assert_eq!(
        programmed(&status)["message"],
        "1 of 3 selected pods enforce generation 4; not: shop/new-1 (refused: shop/checkout: \
         spec.timeouts.request: not on this node), shop/old-1 (outdated sidecar: it does not \
         acknowledge)"
    );

    let good = controller.wait_for("good-1", |s| s["state"] == "synced").await;
    let latest = |s: &Value| s["latestVersion"].to_string();
    assert_eq!(
        plugin(&api, &["status", "-n", "shop"]).await,
        format!(
            "NAMESPACE   POD      VERSION   REPLICA      GENERATION   STATE      WINDOWS\n\
             shop        good-1   {v}     controller   {g:<12} synced     -\n\
             shop        new-1    9.9.9     controller   {n:<12} refused    -\n\
             shop        old-1    -         controller   {o:<12} outdated   -\n\
             \n\
             shop/new-1: refused version {version}: shop/checkout: spec.timeouts.request: not on \
             this node\n",
            v = env!("CARGO_PKG_VERSION"),
            g = format!("{}/{}", good["ackedVersion"], latest(&good)),
            n = format!("-/{}", latest(&refused)),
            o = format!("-/{}", latest(&old)),
        )
    );

    // The controller's metrics count sidecars by state and version.
    let metrics = support::client::get(controller.admin, "/metrics", &[]).await.body;
    let gauge = |line: &str| support::metric(&metrics, line);
    assert_eq!(gauge("portcullis_controller_sidecars{state=\"refused\"}"), Some(1.0), "{metrics}");
    assert_eq!(gauge("portcullis_controller_sidecars{state=\"outdated\"}"), Some(1.0));
    assert_eq!(gauge("portcullis_controller_sidecars{state=\"synced\"}"), Some(1.0));
    assert_eq!(gauge("portcullis_controller_sidecar_versions{version=\"9.9.9\"}"), Some(1.0));
    assert_eq!(gauge("portcullis_controller_sidecar_versions{version=\"unknown\"}"), Some(1.0));

    // It applies the next one: the refusal is over.
    api.apply(POLICIES, json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "UpstreamPolicy",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 5, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "checkout"}}, "timeouts": {"request": "4s"}},
    }));
    let next = refuser.snapshot().await;
    refuser.say(json!({"type": "applied", "version": next["version"]})).await;
    let status = wait_status(&api, "upstreampolicies", "checkout", |s| {
        programmed(s)["observedGeneration"] == 5 && s["programmedPods"] == 2
    })
    .await;
    assert_eq!(
        programmed(&status)["message"],
        "2 of 3 selected pods enforce generation 5; not: shop/old-1 (outdated sidecar: it does \
         not acknowledge)"
    );
    assert_eq!(programmed(&status)["reason"], "OutdatedSidecar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_count_every_sidecar_whichever_one_it_follows() {
    let api = FakeApi::start().await;
    apply_pod(&api, pod("shop", "web-1", "web"));
    apply_pod(&api, pod("shop", "web-2", "web"));
    let peers = PeerSelector {
        namespace: "portcullis-system".into(),
        selector: "app.kubernetes.io/component=controller".into(),
    };
    let b = Replica::start(&api, Leadership::Never { identity: "controller-b".into() }, None, None)
        .await;
    apply_pod(&api, replica_pod("controller-b", b.admin));
    let a = Replica::start(&api, Leadership::Always, Some(peers), None).await;
    apply_pod(&api, replica_pod("controller", a.admin));
    let _web1 = Sidecar::start("shop", "web-1", a.streams).await;
    let web2 = Sidecar::start("shop", "web-2", b.streams).await;
    a.wait_for("web-1", |s| s["state"] == "synced" && s["replica"] == "controller").await;
    b.wait_for("web-2", |s| s["state"] == "synced" && s["replica"] == "controller-b").await;
    assert_eq!(a.report().await.sidecars.len(), 1, "each replica knows its own sidecars");
    assert!(a.report().await.leader && !b.report().await.leader);

    api.apply(WINDOWS, window("db", 1, json!({"selector": {"matchLabels": {"app": "web"}}})));
    let status =
        wait_status(&api, "maintenancewindows", "db", |s| is(&programmed(s), "True", "Programmed"))
            .await;
    assert_eq!(
        (status["matchedPods"].clone(), status["programmedPods"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(web2.answer().await, StatusCode::SERVICE_UNAVAILABLE);
    let one = a.wait_for("web-1", |s| s["activeWindows"] == json!(["shop/db"])).await;
    let two = b.wait_for("web-2", |s| s["activeWindows"] == json!(["shop/db"])).await;
    let generation = |s: &Value| format!("{}/{}", s["ackedVersion"], s["latestVersion"]);
    assert_eq!(
        plugin(&api, &["status", "-n", "shop"]).await,
        format!(
            "NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE    WINDOWS\n\
             shop        web-1   {v}     controller     {g1:<12} synced   shop/db\n\
             shop        web-2   {v}     controller-b   {g2:<12} synced   shop/db\n",
            v = env!("CARGO_PKG_VERSION"),
            g1 = generation(&one),
            g2 = generation(&two),
        )
    );

    // Replica b goes away: the leader can no longer vouch for its sidecars.
    b.stop().await;
    api.apply(
        WINDOWS,
        window("db", 2, json!({"selector": {"matchLabels": {"app": "web"}}, "message": "v2"})),
    );
    let status = wait_status(&api, "maintenancewindows", "db", |s| {
        programmed(s)["observedGeneration"] == 2 && s["programmedPods"] == 1
    })
    .await;
    assert_eq!(
        programmed(&status)["message"],
        "1 of 2 selected pods enforce generation 2; not: shop/web-2 (no sidecar stream)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_serves_nothing_before_its_lists_are_complete() {
    // A large cluster: 10,000 pods, 100 UpstreamPolicies, 50 MaintenanceWindows.
    let api = FakeApi::start().await;
    for i in 0..10_000 {
        api.apply(PODS, pod("fleet", &format!("pod-{i}"), &format!("app-{}", i % 100)));
    }
    for i in 0..100 {
        api.apply(POLICIES, json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "UpstreamPolicy",
            "metadata": {"name": format!("policy-{i}"), "namespace": "fleet", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": format!("app-{i}")}}, "timeouts": {"request": "3s"}},
        }));
    }
    for i in 0..50 {
        let mut w = window(
            &format!("window-{i}"),
            1,
            json!({"selector": {"matchLabels": {"app": format!("app-{}", i * 2)}}}),
        );
        w["metadata"]["namespace"] = json!("fleet");
        api.apply(WINDOWS, w);
    }
    let first = Replica::start(&api, Leadership::Always, None, None).await;
    let complete = first_snapshot(first.streams, "pod-42").await;
    assert_eq!(complete["config"]["policy"]["name"], "fleet/policy-42");
    assert_eq!(complete["config"]["windows"][0]["name"], "fleet/window-21");
    let streams = first.streams;
    first.stop().await;

    // The restart, with the pod list slow to come, as 10,000 pods are on a real API server.
    api.slow_list(PODS, Duration::from_millis(2500));
    let second = Replica::start(&api, Leadership::Always, None, Some(streams)).await;
    let ready = support::client::get(second.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "not ready before the lists");
    let opened = std::time::Instant::now();
    let again = first_snapshot(streams, "pod-42").await;
    assert!(opened.elapsed() >= Duration::from_secs(1), "it waited for the pods' list");
    assert_eq!(again["config"], complete["config"], "the first snapshot is complete");
    assert_eq!(support::client::get(second.admin, "/readyz", &[]).await.status, StatusCode::OK);
    second.stop().await;

    // Slower than a stream waits: told to come back, and the sidecar keeps its config.
    api.slow_list(PODS, Duration::from_secs(8));
    let third = Replica::start(&api, Leadership::Always, None, Some(streams)).await;
    let (status, retry_after) = open_status(streams, "pod-42").await;
    assert_eq!((status, retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    third.stop().await;
}

/// The first snapshot a stream for `fleet/{pod}` gets.
async fn first_snapshot(controller: std::net::SocketAddr, pod: &str) -> Value {
    let (response, _) = open(controller, pod).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    use http_body_util::BodyExt;
    loop {
        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let message: Value = serde_json::from_slice(&buffer[..end]).unwrap();
            assert_eq!(message["type"], "snapshot");
            return message;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame()).await.unwrap();
        if let Ok(data) = frame.unwrap().unwrap().into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

async fn open_status(controller: std::net::SocketAddr, pod: &str) -> (StatusCode, Option<String>) {
    let (response, _) = open(controller, pod).await;
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status(), retry)
}

async fn open(
    controller: std::net::SocketAddr,
    pod: &str,
) -> (http::Response<hyper::body::Incoming>, tokio::task::JoinHandle<()>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match tokio::net::TcpStream::connect(controller).await {
            Ok(stream) => break stream,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(format!("/v1/config/fleet/{pod}"))
        .header("host", "controller")
        .header("authorization", format!("Bearer token-fleet-{pod}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    (tx.send_request(req).await.unwrap(), task)
}
