//! `portcullis controller` against a Kubernetes API over HTTP: the real kube-rs watchers
//! feed the index, and a pod's stream follows what happens in the "cluster"; the webhook
//! reads the Services the controller watches.

#[path = "fixtures/inject/expected.rs"]
mod expected;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use portcullis::controller::run::{CertSource, Controller, Leadership, WebhookListener};
use portcullis::inject::InjectConfig;
use portcullis::tls::issue::SERVING_VALIDITY;
use portcullis::tls::self_issued::SelfIssued;
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use tokio::net::TcpListener;

const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
const WINDOWS: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";
const PODS: &str = "/api/v1/pods";
const SECRETS: &str = "/api/v1/secrets";
const SERVICES: &str = "/api/v1/services";

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
        peers: None,
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

// --- The webhook of a running controller, and the Services it watches. ---

/// A Service of `shop` as the API server stores it, selecting `app: <app>`, with one port
/// reaching the pods' port named `api`, saying `app_protocol`.
fn service(name: &str, app: &str, app_protocol: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": {"selector": {"app": app}, "type": "ClusterIP", "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"], "sessionAffinity": "None", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "main", "protocol": "TCP", "appProtocol": app_protocol,
                "port": 80, "targetPort": "api"}]},
        "status": {"loadBalancer": {}}
    })
}

/// A pod of the ReplicaSet `<app>-6c9f`, labelled `app: <app>`, serving on a port named
/// `api` (9000): nothing in the pod says HTTP/2.
fn api_pod(app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{app}-6c9f-"), "namespace": "shop",
            "labels": {"app": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{app}-6c9f"), "uid": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
                "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "api", "image": "shop/api:1",
            "ports": [{"name": "api", "containerPort": 9000, "protocol": "TCP"}]}]}
    })
}

/// Admits `pod` through the webhook over TLS, as the API server does: the answer, and its
/// patch decoded.
async fn admit(addr: std::net::SocketAddr, ca_pem: &str, pod: &Value) -> (Value, Option<Value>) {
    let review =
        expected::admission_review("3c2b1a09-8f7e-4d6c-9b5a-0e1f2a3b4c5d", "CREATE", pod.clone());
    let answer = support::tls_client::post_review(addr, ca_pem, &review).await;
    let patch = answer["response"]["patch"].as_str().map(|b64| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    });
    (answer, patch)
}

/// The sidecar's `--app-protocol` and the injected annotation's `appProtocol`, from a patch.
fn protocols(patch: &Value) -> (String, String) {
    let ops = patch.as_array().unwrap();
    let sidecar = ops.iter().find(|op| op["path"] == "/spec/initContainers").unwrap();
    let args = sidecar["value"][0]["args"].as_array().unwrap();
    let at = args.iter().position(|a| a == "--app-protocol").unwrap();
    let annotation = &ops[0]["value"]["portcullis.dev/injected"];
    let annotation: Value = serde_json::from_str(annotation.as_str().unwrap()).unwrap();
    (
        args[at + 1].as_str().unwrap().to_owned(),
        annotation["appProtocol"].as_str().unwrap().to_owned(),
    )
}

/// Admits `pod` until `done` likes the answer (the controller's Service cache follows the
/// cluster a moment later), and returns that answer.
async fn admit_until(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    pod: &Value,
    done: impl Fn(&Value, &Option<Value>) -> bool,
) -> (Value, Option<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, patch) = admit(addr, ca_pem, pod).await;
        if done(&answer, &patch) {
            return (answer, patch);
        }
        assert!(Instant::now() < deadline, "never: {answer} {patch:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn says(protocol: &'static str) -> impl Fn(&Value, &Option<Value>) -> bool {
    move |_, patch| patch.as_ref().is_some_and(|p| protocols(p).0 == protocol)
}

/// The Service's appProtocol, from the controller's own watch of Services (never asked
/// for during admission), says what the sidecar speaks to the app: a Service listed at
/// start, one added later, one deleted; a pod no Service reaches gets HTTP/1.1; and a
/// Service saying what the sidecar cannot speak leaves the pod alone, with an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_reads_the_apps_protocol_from_the_services_the_controller_watches() {
    let api = FakeApi::start().await;
    api.apply(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "portcullis-tls", "namespace": "portcullis-system"}}),
    );
    api.apply(SERVICES, service("api", "api", "kubernetes.io/h2c"));

    let listener = |_| async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let (streams, admin, webhook) = (listener(()).await, listener(()).await, listener(()).await);
    let (admin_addr, webhook_addr) = (admin.local_addr().unwrap(), webhook.local_addr().unwrap());
    let keeper = SelfIssued {
        secrets: kube::Api::namespaced(api.client(), "portcullis-system"),
        secret_name: "portcullis-tls".into(),
        sans: vec!["localhost".into()],
        webhook_config: None,
        validity: SERVING_VALIDITY,
        every: Duration::from_secs(60),
    };
    let controller = Controller {
        client: api.client(),
        streams,
        admin,
        keepalive: Duration::from_millis(500),
        leadership: Leadership::Always,
        certs: Some(CertSource::SelfIssued(Box::new(keeper))),
        webhook: Some(WebhookListener {
            listener: webhook,
            config: Arc::new(InjectConfig::default()),
        }),
        peers: None,
    };
    tokio::spawn(controller.run(std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::client::get(admin_addr, "/readyz", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "the controller never got a certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret = api.object(SECRETS, "portcullis-system", "portcullis-tls").unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    let ca = String::from_utf8(ca).unwrap();

    // Listed at start: HTTP/2, in the sidecar's flags and the annotation; the rest of the
    // patch is what any pod gets.
    let (answer, patch) = admit_until(webhook_addr, &ca, &api_pod("api"), says("http2")).await;
    assert_eq!(answer["response"]["allowed"], true);
    let patch = patch.unwrap();
    assert_eq!(protocols(&patch), ("http2".into(), "http2".into()));
    assert_eq!(
        patch[0]["value"]["portcullis.dev/injected"],
        expected::annotation_with_protocol("api", 9000, "http2", "app-api")
    );
    assert_eq!(
        patch[1],
        json!({"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-api"})
    );
    // The app's preStop hook shows the sidecar the token the webhook drew for the pod.
    let sidecar = &patch[3]["value"][0];
    assert_eq!(sidecar["env"][3]["name"], "PORTCULLIS_STOP_TOKEN");
    let token = sidecar["env"][3]["value"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(patch[2], expected::pre_stop_op(0, token));

    // The same pod, but no Service selects it: HTTP/1.1, at once (the cache has synced).
    let (_, patch) = admit(webhook_addr, &ca, &api_pod("web")).await;
    assert_eq!(protocols(&patch.unwrap()), ("http1".into(), "http1".into()));

    // A Service added later, by the watch: what it says counts from then on.
    api.apply(SERVICES, service("web-tls", "web", "https"));
    let (answer, patch) =
        admit_until(webhook_addr, &ca, &api_pod("web"), |_, patch| patch.is_none()).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(patch, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let posted = api.posts();
        if let Some((_, event)) =
            posted.iter().find(|(path, _)| path.ends_with("/namespaces/shop/events"))
        {
            break event.clone();
        }
        assert!(Instant::now() < deadline, "no Event: {posted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["reason"], "InjectionSkipped");
    assert_eq!(event["regarding"]["name"], "web-6c9f");
    assert_eq!(
        event["note"],
        "pod web-6c9f-: Service web-tls port main has appProtocol \"https\", which is neither \
         HTTP/1.1 nor cleartext HTTP/2, the protocols the sidecar speaks to the app; set the \
         annotation portcullis.dev/app-protocol to http1 or http2 to inject the pod anyway \
         (unsupported_app_protocol)"
    );

    // Deleted: forgotten.
    api.delete(SERVICES, "shop", "web-tls");
    admit_until(webhook_addr, &ca, &api_pod("web"), says("http1")).await;

    let metrics = support::client::get(admin_addr, "/metrics", &[]).await.body;
    assert!(
        support::metric(
            &metrics,
            r#"portcullis_injections_total{result="skipped",reason="unsupported_app_protocol"}"#
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    // Services are only listed and watched: nothing asked of one Service, ever.
    let requests: Vec<(String, String)> = api
        .requests()
        .into_iter()
        .filter(|(_, path, _)| path.contains("services"))
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|(method, path)| method == "GET" && path == SERVICES),
        "{requests:?}"
    );
    api.save_requests("controller-webhook");
}
