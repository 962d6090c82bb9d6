//! `portcullis controller` against a Kubernetes API over HTTP: the real kube-rs watchers
//! feed the index, and a pod's stream follows what happens in the "cluster".

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_api::FakeApi;
use tokio::net::TcpListener;

const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
const WINDOWS: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";
const PODS: &str = "/api/v1/pods";
const SECRETS: &str = "/api/v1/secrets";

fn pod(name: &str, app: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}}})
}

fn policy(name: &str, created: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "UpstreamPolicy",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created, "generation": 1},
        "spec": spec,
    })
}

/// Reads NDJSON lines from a config stream until `accept` likes a snapshot.
async fn wait_for(
    body: &mut hyper::body::Incoming,
    buffer: &mut Vec<u8>,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let message: serde_json::Value = serde_json::from_slice(&line[..end]).unwrap();
            if message["type"] == "snapshot" && accept(&message) {
                return message;
            }
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("no such snapshot in time");
        if let Ok(data) = frame.unwrap().unwrap().into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_resources_reach_the_pods_stream() {
    let api = FakeApi::start().await;
    api.apply(PODS, pod("checkout-1", "checkout"));
    api.apply(POLICIES, policy("checkout", "2026-01-01T00:00:00Z", json!({"selector": {"matchLabels": {"app": "checkout"}}, "timeouts": {"responseHeaders": "3s"}})));

    let streams = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = streams.local_addr().unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let controller = portcullis::controller::run::Controller {
        client: api.client(),
        streams,
        admin,
        keepalive: Duration::from_millis(500),
        leadership: portcullis::controller::run::Leadership::Always,
        certs: None,
        webhook: None,
    };
    tokio::spawn(controller.run(std::future::pending()));

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/v1/config/shop/checkout-1")
        .header("host", "controller")
        .header("authorization", "Bearer token-shop-checkout-1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tx.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut buffer = Vec::new();

    // The policy, once the watchers have listed it.
    let first =
        wait_for(&mut body, &mut buffer, |m| m["config"]["policy"]["name"] == "shop/checkout")
            .await;
    assert_eq!(first["config"]["policy"]["spec"]["timeouts"]["responseHeaders"], "3s");

    // A change in the cluster reaches the stream.
    api.apply(POLICIES, policy("checkout", "2026-01-01T00:00:00Z", json!({"selector": {"matchLabels": {"app": "checkout"}}, "timeouts": {"responseHeaders": "9s"}})));
    wait_for(&mut body, &mut buffer, |m| {
        m["config"]["policy"]["spec"]["timeouts"]["responseHeaders"] == "9s"
    })
    .await;

    // A window with a bypass: its Secret travels as a digest.
    api.apply(SECRETS, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ops", "namespace": "shop"}, "data": {"token": "b3BlbiBzZXNhbWU="}}));
    api.apply(WINDOWS, json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {"name": "upgrade", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"bypass": {"header": "X-Ops", "secretRef": {"name": "ops", "key": "token"}}},
    }));
    let with_window =
        wait_for(&mut body, &mut buffer, |m| m["config"]["windows"][0]["bypass"].is_object()).await;
    let sha256 = with_window["config"]["windows"][0]["bypass"]["sha256"].as_str().unwrap();
    use sha2::Digest;
    let expected: String =
        sha2::Sha256::digest(b"open sesame").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha256, expected, "the digest of the Secret's token (base64 \"b3BlbiBzZXNhbWU=\")");
    assert!(!with_window.to_string().contains("sesame"));

    // The pod is relabelled out of the policy: its stream hears so.
    api.apply(PODS, pod("checkout-1", "cart"));
    wait_for(&mut body, &mut buffer, |m| m["config"]["policy"].is_null()).await;

    // Deleting the window empties the pod's windows.
    api.delete(WINDOWS, "shop", "upgrade");
    wait_for(&mut body, &mut buffer, |m| {
        m["config"]["windows"].as_array().is_none_or(|w| w.is_empty())
    })
    .await;

    // The status writer (the only replica leads) has told the policy what happened.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !api.patches().iter().any(|(path, body)| {
        path == "/apis/portcullis.dev/v1alpha1/namespaces/shop/upstreampolicies/checkout/status"
            && body["status"]["conditions"][0]["reason"] == "Accepted"
    }) {
        assert!(std::time::Instant::now() < deadline, "no status written: {:?}", api.patches());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = support::client::get(admin_addr, "/metrics", &[]).await.body;
    assert!(metrics.contains("portcullis_controller_streams 1"), "{metrics}");
    assert!(
        support::metric(&metrics, r#"portcullis_controller_status_writes_total{result="ok"}"#)
            .unwrap()
            >= 1.0,
        "{metrics}"
    );
    assert!(
        support::metric(&metrics, "portcullis_controller_snapshots_sent_total").unwrap() >= 5.0,
        "{metrics}"
    );
    api.save_requests("controller");
}
