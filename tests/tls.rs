//! The controller's TLS against a Kubernetes API over HTTP: its own CA and serving
//! certificate kept in a Secret, the webhook configuration's caBundle kept current, the
//! config stream served over TLS (the right CA connects, another is refused, plain HTTP
//! gets nothing), and a rotated certificate served without a restart.

#[path = "fixtures/inject/expected.rs"]
mod expected;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use portcullis::controller::run::{CertSource, Controller, Leadership, WebhookListener};
use portcullis::inject::InjectConfig;
use portcullis::telemetry::controller_metrics::ControllerMetrics;
use portcullis::tls::CertStore;
use portcullis::tls::issue::{self, SERVING_VALIDITY};
use portcullis::tls::self_issued::{KeepError, Kept, SelfIssued};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use support::tls_client::{post_review, tls_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRETS: &str = "/api/v1/secrets";
const PODS: &str = "/api/v1/pods";
const WEBHOOKS: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const NAMESPACE: &str = "portcullis-system";
const SECRET_PATH: &str = "/api/v1/namespaces/portcullis-system/secrets/portcullis-tls";
const WEBHOOK_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/portcullis";

fn sans() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// The chart's objects: an empty Secret and a webhook configuration without caBundle.
fn cluster(api: &FakeApi) {
    api.apply(
        SECRETS,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "portcullis-tls", "namespace": NAMESPACE},
        }),
    );
    let webhook = |name: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "clientConfig": {"service": {"name": "portcullis-webhook", "namespace": NAMESPACE, "path": "/inject", "port": 443}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        })
    };
    api.apply(WEBHOOKS, json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "portcullis"},
        "webhooks": [webhook("namespaced.inject.portcullis.dev"), webhook("labelled.inject.portcullis.dev")],
    }));
    api.apply(PODS, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}}}));
}

fn keeper(api: &FakeApi, every: Duration) -> SelfIssued {
    SelfIssued {
        secrets: kube::Api::namespaced(api.client(), NAMESPACE),
        secret_name: "portcullis-tls".into(),
        sans: sans(),
        webhook_config: Some((kube::Api::all(api.client()), "portcullis".into())),
        validity: SERVING_VALIDITY,
        every,
    }
}

struct Running {
    streams: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    webhook: std::net::SocketAddr,
}

async fn start_controller(api: &FakeApi) -> Running {
    let streams = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Running {
        streams: streams.local_addr().unwrap(),
        admin: admin.local_addr().unwrap(),
        webhook: webhook.local_addr().unwrap(),
    };
    let controller = Controller {
        client: api.client(),
        streams,
        admin,
        keepalive: Duration::from_millis(300),
        leadership: Leadership::Always,
        certs: Some(CertSource::SelfIssued(Box::new(keeper(api, Duration::from_millis(200))))),
        webhook: Some(WebhookListener {
            listener: webhook,
            config: Arc::new(InjectConfig::default()),
        }),
        peers: None,
    };
    tokio::spawn(controller.run(std::future::pending()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::client::get(running.admin, "/readyz", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "the controller never got a certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running
}

fn secret_value(api: &FakeApi, key: &str) -> String {
    let secret = api.object(SECRETS, NAMESPACE, "portcullis-tls").unwrap();
    let b64 = secret["data"][key].as_str().unwrap_or_else(|| panic!("no {key} in {secret}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

/// The serving certificate a new connection is shown (DER).
async fn served_certificate(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    let stream = tls_connect(addr, ca_pem).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Opens the pod's config stream over `io`: the body of the 200.
async fn open_stream<IO>(io: IO) -> hyper::body::Incoming
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/v1/config/shop/web-1")
        .header("host", "localhost")
        .header("authorization", "Bearer token-shop-web-1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tx.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body()
}

/// The first line of the pod's config stream opened over `io`.
async fn first_line<IO>(io: IO) -> Value
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let mut body = open_stream(io).await;
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            return serde_json::from_slice(&buffer[..end]).unwrap();
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a line in time")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_issues_its_certificate_publishes_the_ca_and_serves_streams_over_tls() {
    let api = FakeApi::start().await;
    cluster(&api);
    let running = start_controller(&api).await;

    // The Secret now holds a CA and a serving certificate for the wanted names, written
    // once, with the resourceVersion it was read at.
    let puts = api.puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].0, SECRET_PATH);
    assert_eq!(puts[0].1["metadata"]["resourceVersion"], "1", "the version it was read at");
    let (ca, cert) = (secret_value(&api, "ca.crt"), secret_value(&api, "tls.crt"));
    assert!(secret_value(&api, "ca.key").contains("PRIVATE KEY"));
    assert!(secret_value(&api, "tls.key").contains("PRIVATE KEY"));
    let facts = issue::facts(&cert).unwrap();
    assert_eq!(facts.sans, sans().into_iter().collect());
    assert!(issue::signed_by(&cert, &ca));

    // Both webhooks carry the CA, set by one JSON patch that tests each name first. (The
    // controller turns ready once it serves its certificate; the patch follows it.)
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(&ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api.patches().iter().any(|(p, _)| p == WEBHOOK_PATH) {
        assert!(Instant::now() < deadline, "the CA was never published: {:?}", api.patches());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = api.object(WEBHOOKS, "", "portcullis").unwrap();
    for webhook in config["webhooks"].as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["caBundle"], ca_b64.as_str());
    }
    let patches: Vec<_> = api.patches().into_iter().filter(|(p, _)| p == WEBHOOK_PATH).collect();
    assert_eq!(patches.len(), 1, "patched once, then left alone: {patches:?}");
    assert_eq!(
        patches[0].1,
        json!([
            {"op": "test", "path": "/webhooks/0/name", "value": "namespaced.inject.portcullis.dev"},
            {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_b64},
            {"op": "test", "path": "/webhooks/1/name", "value": "labelled.inject.portcullis.dev"},
            {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": ca_b64},
        ])
    );

    // A sidecar that trusts the CA gets its snapshot over TLS.
    let stream = tls_connect(running.streams, &ca).await.unwrap();
    let line = first_line(stream).await;
    assert_eq!(line["type"], "snapshot", "{line}");

    // One that trusts another CA refuses the controller's certificate.
    let other = issue::new_ca(SystemTime::now(), issue::CA_VALIDITY).unwrap();
    let err = tls_connect(running.streams, &other.cert_pem).await.expect_err("refused");
    // (Both CAs are named "portcullis CA", so the signature is what fails.)
    assert_eq!(err.to_string(), "invalid peer certificate: BadSignature");

    // Plain HTTP gets no HTTP answer at all, and the connection is closed.
    let mut plain = TcpStream::connect(running.streams).await.unwrap();
    plain
        .write_all(b"GET /v1/config/shop/web-1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer token-shop-web-1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer))
        .await
        .expect("closed in time")
        .ok();
    assert!(!answer.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&answer));
    assert!(!String::from_utf8_lossy(&answer).contains("snapshot"));

    // Nothing more is written while nothing is due.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(api.puts().len(), 1);
    assert_eq!(api.patches().iter().filter(|(p, _)| p == WEBHOOK_PATH).count(), 1);
    api.save_requests("tls-controller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let api = FakeApi::start().await;
    cluster(&api);
    let running = start_controller(&api).await;
    let ca = secret_value(&api, "ca.crt");
    let before = served_certificate(running.streams, &ca).await;

    // A stream opened before the rotation.
    let mut old_stream = open_stream(tls_connect(running.streams, &ca).await.unwrap()).await;

    // Another replica rotates: a new serving certificate from the same CA in the Secret.
    let ca_pair = issue::Pair { cert_pem: ca.clone(), key_pem: secret_value(&api, "ca.key") };
    let rotated = issue::serving(&ca_pair, &sans(), SystemTime::now(), SERVING_VALIDITY).unwrap();
    let mut secret = api.object(SECRETS, NAMESPACE, "portcullis-tls").unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    secret["data"]["tls.crt"] = json!(b64(&rotated.cert_pem));
    secret["data"]["tls.key"] = json!(b64(&rotated.key_pem));
    api.apply(SECRETS, secret);

    let rotated_der = {
        let (_, pem) = x509_parser::pem::parse_x509_pem(rotated.cert_pem.as_bytes()).unwrap();
        pem.contents
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = served_certificate(running.streams, &ca).await;
        if served == rotated_der {
            break;
        }
        assert_eq!(served, before, "either the old or the rotated certificate");
        assert!(Instant::now() < deadline, "the rotated certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The stream opened before goes on: keepalives keep coming on it.
    use http_body_util::BodyExt;
    for _ in 0..3 {
        let frame = tokio::time::timeout(Duration::from_secs(5), old_stream.frame()).await;
        assert!(matches!(frame, Ok(Some(Ok(_)))), "the old stream still flows");
    }
    let metrics = support::client::get(running.admin, "/metrics", &[]).await.body;
    assert_eq!(
        support::metric(
            &metrics,
            r#"portcullis_controller_certificate_rotations_total{result="loaded"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(api.puts().len(), 1, "the replica took the certificate; it wrote nothing");
}

#[tokio::test]
async fn a_certificate_due_for_rotation_is_replaced_under_the_same_ca() {
    let api = FakeApi::start().await;
    cluster(&api);
    let metrics = ControllerMetrics::default();
    let (store, keeper) = (CertStore::default(), keeper(&api, Duration::from_secs(60)));
    let now = SystemTime::now();
    assert_eq!(keeper.check(&store, now, &metrics).await.unwrap(), Kept::Issued);
    let (ca, first) = (secret_value(&api, "ca.crt"), secret_value(&api, "tls.crt"));
    assert_eq!(keeper.check(&store, now, &metrics).await.unwrap(), Kept::Unchanged);

    // A second replica takes what the first wrote, and writes nothing.
    let other = CertStore::default();
    assert_eq!(keeper.check(&other, now, &metrics).await.unwrap(), Kept::Loaded);
    assert_eq!(other.cert_pem().unwrap(), first);
    assert_eq!(api.puts().len(), 1);

    // 61 of 90 days later it is due: a new certificate from the same CA.
    let later = now + Duration::from_secs(61 * 24 * 3600);
    assert_eq!(keeper.check(&store, later, &metrics).await.unwrap(), Kept::Issued);
    let second = secret_value(&api, "tls.crt");
    assert_ne!(second, first);
    assert_eq!(secret_value(&api, "ca.crt"), ca, "the CA stays: sidecars trust it");
    assert!(issue::signed_by(&second, &ca));
    assert_eq!(store.cert_pem().unwrap(), second);
    assert_eq!(keeper.check(&store, later, &metrics).await.unwrap(), Kept::Unchanged);

    // Wanting another name re-issues too.
    let renamed = SelfIssued { sans: vec!["portcullis.portcullis-system.svc".into()], ..keeper };
    assert_eq!(renamed.check(&store, later, &metrics).await.unwrap(), Kept::Issued);
    let facts = issue::facts(&secret_value(&api, "tls.crt")).unwrap();
    assert_eq!(facts.sans.into_iter().collect::<Vec<_>>(), ["portcullis.portcullis-system.svc"]);
}

#[tokio::test]
async fn nothing_is_created_when_the_charts_objects_are_missing() {
    let api = FakeApi::start().await;
    let metrics = ControllerMetrics::default();
    let store = Arc::new(CertStore::default());
    let err = keeper(&api, Duration::from_secs(60))
        .check(&store, SystemTime::now(), &metrics)
        .await
        .expect_err("no Secret");
    assert!(matches!(err, KeepError::NoSecret(_)));
    assert_eq!(
        err.to_string(),
        "the Secret portcullis-tls does not exist in the controller's namespace (the chart \
         creates it empty; create it with `kubectl create secret generic portcullis-tls`)"
    );
    assert!(!store.ready());

    // With the Secret but without the webhook configuration (uninstalled, or not yet
    // created): the certificate is issued and served, and no configuration is created.
    api.apply(SECRETS, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portcullis-tls", "namespace": NAMESPACE}}));
    let kept = keeper(&api, Duration::from_secs(60))
        .check(&store, SystemTime::now(), &metrics)
        .await
        .unwrap();
    assert_eq!(kept, Kept::Issued);
    assert!(store.ready());
    assert!(api.posts().is_empty(), "{:?}", api.posts());
    assert!(api.patches().is_empty(), "{:?}", api.patches());
    assert!(api.object(WEBHOOKS, "", "portcullis").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_served_over_tls_and_hands_sidecars_the_ca() {
    let api = FakeApi::start().await;
    cluster(&api);
    let running = start_controller(&api).await;
    let ca = secret_value(&api, "ca.crt");

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
    });
    let review = expected::admission_review("705ab4f5-6393-11e8-b7cc-42010a800002", "CREATE", pod);
    let answer = post_review(running.webhook, &ca, &review).await;
    assert_eq!(answer["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "portcullis-proxy");
    let env = sidecar["env"].as_array().unwrap();
    let ca_env = env.iter().find(|e| e["name"] == "PORTCULLIS_CONTROLLER_CA").unwrap();
    assert_eq!(ca_env["value"], ca.as_str(), "the sidecar trusts exactly the controller's CA");

    // Plain HTTP to the webhook gets no HTTP answer.
    let mut plain = TcpStream::connect(running.webhook).await.unwrap();
    plain
        .write_all(b"POST /inject HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{:?}", String::from_utf8_lossy(&answer));

    let metrics = support::client::get(running.admin, "/metrics", &[]).await.body;
    assert_eq!(
        support::metric(
            &metrics,
            r#"portcullis_injections_total{result="injected",reason="injected"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    // An opted-out pod of a ReplicaSet: allowed unchanged, and an Event on the ReplicaSet.
    let mut skipped = review.clone();
    skipped["request"]["uid"] = json!("9a1f0c52-6c3e-4d8f-9b1e-2f1d5c7a8e01");
    skipped["request"]["object"]["metadata"] = json!({
        "generateName": "web-7d9f8b-", "namespace": "shop",
        "labels": {"portcullis.dev/inject": "disabled"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b", "uid": "3f1c2a9e-0b7d-4e5f-8a6c-1d2e3f4a5b6c", "controller": true, "blockOwnerDeletion": true}],
    });
    let answer = post_review(running.webhook, &ca, &skipped).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let posted = api.posts();
        if let Some((_, event)) =
            posted.iter().find(|(path, _)| path == "/apis/events.k8s.io/v1/namespaces/shop/events")
        {
            break event.clone();
        }
        assert!(Instant::now() < deadline, "no Event: {posted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["reason"], "InjectionSkipped", "{event}");
    assert_eq!(event["type"], "Normal", "{event}");
    assert_eq!(event["regarding"]["kind"], "ReplicaSet", "{event}");
    assert_eq!(event["regarding"]["name"], "web-7d9f8b", "{event}");
    api.save_requests("tls-webhook");
}

/// `portcullis proxy --controller https://...` as injected: the CA in
/// PORTCULLIS_CONTROLLER_CA, the pod from POD_NAMESPACE and POD_NAME. Returns its admin
/// address and the process.
// Each child is waited for, or returned, on every way out: the lint does not follow `break`.
#[allow(clippy::zombie_processes)]
async fn sidecar_binary(
    controller: std::net::SocketAddr,
    ca_pem: &str,
    token: &std::path::Path,
) -> (std::net::SocketAddr, std::process::Child) {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // A port found free here can be taken by another test's connection before the sidecar
    // binds it; the sidecar then exits, and is started again on other ports.
    for _ in 0..3 {
        let (listen, admin) = (free(), free());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["proxy", "--listen", &listen.to_string(), "--upstream", "127.0.0.1:1"])
            .args(["--admin", &admin.to_string()])
            .args(["--controller", &format!("https://localhost:{}", controller.port())])
            .arg("--token-file")
            .arg(token)
            .env("PORTCULLIS_CONTROLLER_CA", ca_pem)
            .env("POD_NAMESPACE", "shop")
            .env("POD_NAME", "web-1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while TcpStream::connect(admin).await.is_err() {
            if child.try_wait().unwrap().is_some() {
                let status = child.wait().unwrap();
                let mut said = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said);
                eprintln!("the sidecar exited before it served ({status}): {said}");
                exited = true;
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the sidecar did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !exited {
            return (admin, child);
        }
    }
    panic!("the sidecar exited before it served, three times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_follows_the_controller_over_tls_with_the_injected_ca_only() {
    let api = FakeApi::start().await;
    cluster(&api);
    let running = start_controller(&api).await;
    let ca = secret_value(&api, "ca.crt");
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "token-shop-web-1\n").unwrap();

    // With the controller's CA: the first snapshot arrives and the sidecar turns ready.
    let (admin, mut good) = sidecar_binary(running.streams, &ca, token.path()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::client::get(admin, "/readyz", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "the sidecar never got its config over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    good.kill().unwrap();
    let _ = good.wait();

    // With another CA: it refuses the controller, stays not ready, and says why.
    let other = issue::new_ca(SystemTime::now(), issue::CA_VALIDITY).unwrap();
    let (admin, mut bad) = sidecar_binary(running.streams, &other.cert_pem, token.path()).await;
    let (said, log) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(bad.stderr.take().unwrap());
    std::thread::spawn(move || {
        use std::io::BufRead;
        stderr.lines().map_while(Result::ok).for_each(|line| drop(said.send(line)));
    });
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.contains("TLS with the controller failed: invalid peer certificate"))
    {
        let line = log.recv_timeout(Duration::from_secs(20));
        lines.push(line.unwrap_or_else(|_| panic!("no TLS failure logged: {lines:?}")));
    }
    assert_eq!(support::client::get(admin, "/readyz", &[]).await.status, 503);
    bad.kill().unwrap();
    let _ = bad.wait();
}
