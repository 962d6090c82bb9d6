//! The injection webhook over HTTPS, spoken to as the API server does: real
//! `admission.k8s.io/v1` AdmissionReview JSON in a POST to /inject, pods as the API server
//! hands them to mutating webhooks (defaults applied, no name yet for a ReplicaSet's pods).
//! Each answer is checked whole; each patch is applied to its pod, and the patched pod
//! must validate against the Kubernetes API (its schema, and the API server's own Pod
//! validation: the fake API server creates it as the real one would) and come back
//! untouched when re-admitted.

#[path = "fixtures/inject/expected.rs"]
mod expected;
#[path = "fixtures/inject/kubernetes_validate.rs"]
mod kubernetes_validate;
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use portcullis::inject::InjectConfig;
use portcullis::inject::webhook::{ServiceLookup, Webhook, no_services};
use portcullis::telemetry::controller_metrics::{ControllerMetrics, InjectionLabels};
use portcullis::tls::CertStore;
use portcullis::tls::issue;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use expected::{CA, pre_stop_op, sidecar_stopping, token_volume};
const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

// --- Transport: the only place that knows how bytes reach the webhook. ---

/// The name the API server reaches the webhook Service by, which its certificate carries.
const WEBHOOK_HOST: &str = "portcullis-webhook.portcullis-system.svc";

/// One CA and serving certificate for every test of this file, issued as the controller
/// issues its own.
fn certificates() -> &'static (String, Arc<CertStore>) {
    static CERTS: OnceLock<(String, Arc<CertStore>)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let now = SystemTime::now();
        let ca = issue::new_ca(now, issue::CA_VALIDITY).unwrap();
        let leaf =
            issue::serving(&ca, &[WEBHOOK_HOST.into()], now, issue::SERVING_VALIDITY).unwrap();
        let store = Arc::new(CertStore::default());
        store.install(&leaf.cert_pem, &leaf.key_pem, &ca.cert_pem).unwrap();
        (ca.cert_pem, store)
    })
}

/// Serves `webhook` over HTTPS on 127.0.0.1, as the controller does, until the test ends.
async fn serve(webhook: Arc<Webhook>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = TlsAcceptor::from(certificates().1.server_config());
    let service = hyper::service::service_fn(move |req| {
        let webhook = webhook.clone();
        async move { Ok::<_, std::convert::Infallible>(webhook.handle(req).await) }
    });
    tokio::spawn(portcullis::tls::serve::serve(
        listener,
        Some(tls),
        service,
        std::future::pending(),
    ));
    addr
}

/// POSTs `body` as JSON to `path` over TLS, trusting only the test CA, as the API server
/// does with the caBundle; the status and the body read whole.
async fn post(addr: SocketAddr, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let config = portcullis::tls::client_config(&certificates().0).unwrap();
    let name = ServerName::try_from(WEBHOOK_HOST).unwrap();
    let stream = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("host", format!("{WEBHOOK_HOST}:443"))
        .header("content-type", "application/json")
        .header("accept", "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

// --- What the API server sends. ---

/// A container as the API server defaults it, with the ServiceAccount admission plugin's
/// token mount.
fn container(name: &str, extra: Value) -> Value {
    let mut container = json!({
        "name": name,
        "image": format!("registry.example/{name}:1.0"),
        "resources": {},
        "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    });
    for (key, value) in extra.as_object().unwrap() {
        container[key] = value.clone();
    }
    container
}

/// A pod of the ReplicaSet `web-7d9c5b8f4`, as admitted: no name yet, defaults applied.
fn pod(labels: Value, containers: Value) -> Value {
    let mut all_labels = json!({"app": "web", "pod-template-hash": "7d9c5b8f4"});
    for (key, value) in labels.as_object().unwrap() {
        all_labels[key] = value.clone();
    }
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d9c5b8f4-",
            "namespace": "shop",
            "creationTimestamp": null,
            "labels": all_labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f4",
                "uid": "4f3b2a10-9c1d-4e6f-8a7b-2c3d4e5f6a7b",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ], "defaultMode": 420}}],
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

fn plain_pod() -> Value {
    plain_pod_labelled(json!({}))
}

fn plain_pod_labelled(labels: Value) -> Value {
    let http = json!({"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]});
    pod(labels, json!([container("web", http)]))
}

/// The AdmissionReview the API server POSTs for the creation of `pod`.
fn admission_review(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&expected::admission_review(UID, "CREATE", pod.clone())).unwrap()
}

// --- What the webhook must answer. ---

struct Harness {
    addr: SocketAddr,
    metrics: Arc<ControllerMetrics>,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(None, CA).await
    }

    async fn start_with(recorder: Option<Recorder>, ca: &'static str) -> Harness {
        Harness::start_full(recorder, ca, no_services()).await
    }

    /// A webhook that knows these Services, as the controller's cache would hand them.
    async fn start_among(services: Vec<Arc<Service>>) -> Harness {
        let lookup: ServiceLookup = Arc::new(move |namespace| {
            let here = |s: &&Arc<Service>| s.metadata.namespace.as_deref() == Some(namespace);
            services.iter().filter(here).cloned().collect()
        });
        Harness::start_full(None, CA, lookup).await
    }

    async fn start_full(
        recorder: Option<Recorder>,
        ca: &'static str,
        services: ServiceLookup,
    ) -> Harness {
        let metrics = Arc::new(ControllerMetrics::default());
        let webhook = Webhook {
            config: Arc::new(InjectConfig::default()),
            ca_pem: Arc::new(move || ca.to_owned()),
            services,
            metrics: metrics.clone(),
            recorder,
        };
        Harness { addr: serve(Arc::new(webhook)).await, metrics }
    }

    /// Admits `pod`: the answer, with its patch (decoded from base64) taken out.
    async fn admit(&self, pod: &Value) -> (Value, Option<Value>) {
        let (status, body) = post(self.addr, "/inject", admission_review(pod)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut answer: Value = serde_json::from_str(&body).unwrap();
        let patch = answer["response"].as_object_mut().unwrap().remove("patch").map(|patch| {
            assert!(patch.is_string(), "the patch must be base64 text: {patch}");
            let ByteString(bytes) = serde_json::from_value(patch).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        });
        (answer, patch)
    }

    fn count(&self, result: &'static str, reason: &'static str) -> u64 {
        self.metrics.injections.get_or_create(&InjectionLabels { result, reason }).get()
    }
}

fn allowed_with_patch() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": true, "status": {}, "patchType": "JSONPatch"}
    })
}

fn allowed_unchanged() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": true, "status": {}}
    })
}

fn injected_annotation(port: &str, app_port: i32, renamed: &str) -> Value {
    json!({"portcullis.dev/injected": expected::annotation(port, app_port, renamed)})
}

/// The stop token the webhook drew for a pod, from its sidecar's env in `patch`: 32
/// lowercase hex characters. The callers then expect it, whole, everywhere else.
fn token_in(patch: &Value) -> String {
    let ops = patch.as_array().unwrap();
    let op = ops.iter().find(|op| op["path"].as_str().unwrap().starts_with("/spec/initContainers"));
    let value = &op.expect("the sidecar's operation")["value"];
    let sidecar = if value.is_array() { &value[0] } else { value };
    let env = sidecar["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "PORTCULLIS_STOP_TOKEN").unwrap();
    let token = token["value"].as_str().unwrap().to_owned();
    assert!(token.parse::<portcullis::inject::StopToken>().is_ok(), "{token:?}");
    token
}

/// The sidecar as the default config injects it, speaking `protocol` with `token`.
fn sidecar(app_port: i32, port_name: Value, protocol: &str, token: &str) -> Value {
    sidecar_stopping(app_port, port_name, "1", protocol, "5s", token)
}

/// Applies `patch` to `pod`, checks that the result is a valid Pod for every supported
/// Kubernetes version, and that admitting it again changes nothing (reinvocation).
async fn check_patched(harness: &Harness, pod: &Value, patch: &Value) -> Value {
    let mut patched = pod.clone();
    let operations: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut patched, &operations).unwrap();
    // The API server names the pod before it is stored; validation needs a name.
    let mut named = patched.clone();
    named["metadata"]["name"] = json!("web-7d9c5b8f4-x2m9q");
    kubernetes_validate::validate(&serde_json::to_string(&named).unwrap(), 1);
    // The ReplicaSet's create, after admission: the API server names the pod and
    // validates it; this pod must be created, not refused.
    let api = support::fake_api::FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(api.client(), "shop");
    let typed: Pod = serde_json::from_value(patched.clone()).unwrap();
    let created = pods.create(&PostParams::default(), &typed).await;
    assert!(created.is_ok(), "the API server refuses the injected pod: {created:?}");

    let skipped = harness.count("skipped", "already_injected");
    let (answer, again) = harness.admit(&patched).await;
    assert_eq!(answer, allowed_unchanged());
    assert_eq!(again, None, "a reinvocation must add nothing");
    assert_eq!(harness.count("skipped", "already_injected"), skipped + 1);
    patched
}

#[tokio::test]
async fn plain_pod_gets_the_sidecar() {
    let harness = Harness::start().await;
    let pod = plain_pod();
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations",
             "value": injected_annotation("http", 8080, "app-http")},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            pre_stop_op(0, &token),
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "http1", &token)]},
            {"op": "add", "path": "/spec/volumes/-", "value": token_volume()}
        ])
    );
    let patched = check_patched(&harness, &pod, &patch).await;
    assert_eq!(patched["spec"]["volumes"][0]["name"], "kube-api-access-x7k2p");
    assert_eq!(patched["spec"]["volumes"][1], token_volume());
    assert_eq!(harness.count("injected", "injected"), 1);
}

#[tokio::test]
async fn probes_on_the_named_port_go_to_its_number() {
    let harness = Harness::start().await;
    let web = container(
        "web",
        json!({
            "ports": [
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                {"name": "http", "containerPort": 8080, "protocol": "TCP"}
            ],
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "http", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "timeoutSeconds": 1,
                "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "startupProbe": {"httpGet": {"path": "/metrics", "port": "metrics", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                "failureThreshold": 3},
            "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": "http",
                "scheme": "HTTP"}}}
        }),
    );
    let pod = pod(json!({"portcullis.dev/inject": "enabled"}), json!([web]));
    let mut pod = pod;
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "http"});
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    // The app's own preStop (by the port's name) is kept, on the port's number.
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
             "value": expected::annotation_stopping("http", 8080, "http1", "app-http", "5s",
                "kept")},
            {"op": "replace", "path": "/spec/containers/0/ports/1/name", "value": "app-http"},
            {"op": "replace", "path": "/spec/containers/0/livenessProbe/httpGet/port",
             "value": 8080},
            {"op": "replace", "path": "/spec/containers/0/readinessProbe/tcpSocket/port",
             "value": 8080},
            {"op": "replace", "path": "/spec/containers/0/lifecycle/preStop/httpGet/port",
             "value": 8080},
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "http1", &token)]},
            {"op": "add", "path": "/spec/volumes/-", "value": token_volume()}
        ])
    );
    let patched = check_patched(&harness, &pod, &patch).await;
    let web = &patched["spec"]["containers"][0];
    // The probe by another name is the app's business: untouched.
    assert_eq!(web["startupProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(web["ports"][0]["name"], "metrics");
}

#[tokio::test]
async fn several_containers() {
    let harness = Harness::start().await;
    let containers = json!([
        container("log-shipper", json!({"ports": [{"containerPort": 24224, "protocol": "TCP"}]})),
        container(
            "api",
            json!({"ports": [
            {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
            {"name": "http", "containerPort": 8000, "protocol": "TCP"}
        ], "readinessProbe": {"grpc": {"port": 9000, "service": ""}, "timeoutSeconds": 1,
            "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}})
        ),
        container(
            "cache",
            json!({"ports": [
                {"name": "redis", "containerPort": 6379, "protocol": "TCP"}
            ]})
        )
    ]);
    let mut pod = pod(json!({}), containers);
    pod["spec"]["initContainers"] = json!([container("migrate", json!({"command": ["migrate"]}))]);
    pod["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": "2025-01-01"});
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
             "value": expected::annotation_with_protocol("grpc", 9000, "http2", "app-grpc")},
            {"op": "replace", "path": "/spec/containers/1/ports/0/name", "value": "app-grpc"},
            // The hook goes to the container whose port was taken over, only.
            pre_stop_op(1, &token),
            // Named grpc: the sidecar speaks HTTP/2 to the app.
            {"op": "add", "path": "/spec/initContainers/-",
             "value": sidecar(9000, json!("grpc"), "http2", &token)},
            {"op": "add", "path": "/spec/volumes/-", "value": token_volume()}
        ])
    );
    let patched = check_patched(&harness, &pod, &patch).await;
    let init: Vec<&str> = patched["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["migrate", "portcullis-proxy"]);
    assert_eq!(patched["spec"]["containers"][2]["ports"][0]["name"], "redis");
}

#[tokio::test]
async fn skips_allow_the_pod_unchanged() {
    let harness = Harness::start().await;
    let http = json!({"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]});

    let opted_out =
        pod(json!({"portcullis.dev/inject": "disabled"}), json!([container("web", http)]));
    let mut host_network = plain_pod();
    host_network["spec"]["hostNetwork"] = json!(true);
    let unnamed = json!({"ports": [{"containerPort": 8080, "protocol": "TCP"}]});
    let no_named_port = pod(json!({}), json!([container("web", unnamed)]));
    let mut already_injected = plain_pod();
    already_injected["spec"]["initContainers"] =
        json!([container("portcullis-proxy", json!({"restartPolicy": "Always"}))]);

    for (pod, reason) in [
        (&opted_out, "opted_out"),
        (&host_network, "host_network"),
        (&no_named_port, "no_named_port"),
        (&already_injected, "already_injected"),
    ] {
        let (answer, patch) = harness.admit(pod).await;
        assert_eq!(answer, allowed_unchanged(), "{reason}");
        assert_eq!(patch, None, "{reason}");
        assert_eq!(harness.count("skipped", reason), 1, "{reason}");
    }
    assert_eq!(harness.count("injected", "injected"), 0);
    let metrics = harness.metrics.encode();
    for reason in ["opted_out", "host_network", "no_named_port", "already_injected"] {
        let line =
            format!(r#"portcullis_injections_total{{result="skipped",reason="{reason}"}} 1"#);
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn what_is_no_admission_review_is_refused() {
    let harness = Harness::start().await;
    let (status, body) = post(harness.addr, "/inject", b"{\"apiVersion\": 1}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("the body is not an AdmissionReview:"), "{body}");
    let (status, _) = post(harness.addr, "/mutate", admission_review(&plain_pod())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(harness.count("failed", "invalid_review"), 1);
}

/// The Events the webhook published through the fake API server so far.
async fn events(api: &support::fake_api::FakeApi, count: usize) -> Vec<(String, Value)> {
    // Published in the background: up to 10 s on a loaded machine.
    for _ in 0..1000 {
        let events: Vec<_> =
            api.posts().into_iter().filter(|(path, _)| path.contains("/events")).collect();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {count} Events: {:?}", api.posts());
}

/// The note of the one Event published, which must say a pod was skipped.
async fn skip_note(api: &support::fake_api::FakeApi) -> Value {
    let published = events(api, 1).await;
    let (_, event) = &published[0];
    assert_eq!((&event["type"], &event["reason"]), (&json!("Normal"), &json!("InjectionSkipped")));
    event["note"].clone()
}

#[tokio::test]
async fn skips_and_failures_are_events_on_the_owner() {
    let api = support::fake_api::FakeApi::start().await;
    let reporter = Reporter { controller: "portcullis".into(), instance: Some("test-0".into()) };
    let recorder = Recorder::new(api.client(), reporter.clone());
    let harness = Harness::start_with(Some(recorder.clone()), CA).await;

    let mut host_network = plain_pod();
    host_network["spec"]["hostNetwork"] = json!(true);
    let (answer, _) = harness.admit(&host_network).await;
    assert_eq!(answer, allowed_unchanged());
    let published = events(&api, 1).await;
    let (path, event) = &published[0];
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(
        event["regarding"],
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f4",
               "namespace": "shop", "uid": "4f3b2a10-9c1d-4e6f-8a7b-2c3d4e5f6a7b"})
    );
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "InjectionSkipped");
    assert_eq!(event["action"], "Inject");
    assert_eq!(
        event["note"],
        "pod web-7d9c5b8f4-: the pod uses the node's network, where the sidecar cannot take \
         over a port (host_network)"
    );
    assert_eq!(event["reportingController"], "portcullis");

    // An injected pod is no news; a pod without an owner has nobody to tell; a dry run
    // must have no side effects.
    harness.admit(&plain_pod()).await;
    let mut orphan = plain_pod_labelled(json!({"portcullis.dev/inject": "disabled"}));
    orphan["metadata"].as_object_mut().unwrap().remove("ownerReferences");
    orphan["metadata"]["name"] = json!("orphan");
    harness.admit(&orphan).await;
    // (Another owner, so that an Event would be a new one, not the first one's series.)
    let mut other_owner = host_network.clone();
    other_owner["metadata"]["ownerReferences"][0]["name"] = json!("web-5c6d7e8f9");
    other_owner["metadata"]["ownerReferences"][0]["uid"] =
        json!("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let mut dry_run: Value = serde_json::from_slice(&admission_review(&other_owner)).unwrap();
    dry_run["request"]["dryRun"] = json!(true);
    let (status, _) = post(harness.addr, "/inject", serde_json::to_vec(&dry_run).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // A reinvocation of a pod injected already, by another owner: counted, not announced.
    let mut reinvoked = plain_pod();
    reinvoked["metadata"]["ownerReferences"] = other_owner["metadata"]["ownerReferences"].clone();
    let (_, patch) = harness.admit(&reinvoked).await;
    let mut injected = reinvoked.clone();
    let ops: json_patch::Patch =
        serde_json::from_value(patch.expect("the first admission injects")).unwrap();
    json_patch::patch(&mut injected, &ops).unwrap();
    let before = harness.count("skipped", "already_injected");
    let (answer, patch) = harness.admit(&injected).await;
    assert_eq!((answer, patch), (allowed_unchanged(), None));
    assert_eq!(harness.count("skipped", "already_injected"), before + 1);

    // A failure is a warning.
    let failing = Harness::start_with(Some(Recorder::new(api.client(), reporter)), "").await;
    let (answer, patch) = failing.admit(&plain_pod()).await;
    assert_eq!((answer, patch), (allowed_unchanged(), None));
    assert_eq!(failing.count("failed", "ca_unavailable"), 1);
    let published = events(&api, 2).await;
    assert_eq!(published.len(), 2, "{published:?}");
    let (_, event) = &published[1];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InjectionFailed");
    assert_eq!(
        event["note"],
        "pod web-7d9c5b8f4-: the controller has no CA bundle yet for the sidecar to trust \
         (ca_unavailable)"
    );
    // Give a stray Event the time to show up before counting for good.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(events(&api, 2).await.len(), 2);
    assert_eq!(api.patches(), []);
    api.save_requests("inject-webhook");
}

/// The annotation beats the port's name; a value the sidecar cannot take leaves the pod
/// alone, and its owner is told which annotation and value, and what it may be.
#[tokio::test]
async fn the_app_protocol_annotation_wins_and_a_bad_one_is_an_event() {
    let api = support::fake_api::FakeApi::start().await;
    let reporter = Reporter { controller: "portcullis".into(), instance: Some("test-0".into()) };
    let harness = Harness::start_with(Some(Recorder::new(api.client(), reporter)), CA).await;
    let grpc = json!({"ports": [{"name": "grpc", "containerPort": 9000, "protocol": "TCP"}]});
    let mut pod = pod(json!({}), json!([container("api", grpc)]));

    pod["metadata"]["annotations"] = json!({"portcullis.dev/app-protocol": "http1"});
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch[0],
        json!({"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
               "value": expected::annotation_with_protocol("grpc", 9000, "http1", "app-grpc")})
    );
    assert_eq!(
        patch[3],
        json!({"op": "add", "path": "/spec/initContainers",
               "value": [sidecar(9000, json!("grpc"), "http1", &token)]})
    );
    check_patched(&harness, &pod, &patch).await;

    pod["metadata"]["annotations"] = json!({"portcullis.dev/app-protocol": "grpc"});
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!((answer, patch), (allowed_unchanged(), None));
    assert_eq!(harness.count("skipped", "invalid_annotation"), 1);
    assert_eq!(
        skip_note(&api).await,
        "pod web-7d9c5b8f4-: portcullis.dev/app-protocol: \"grpc\" is neither http1 nor http2 \
         (invalid_annotation)"
    );
    assert_eq!(harness.count("injected", "injected"), 1);
}

/// A Service as the API server stores it (defaults applied), selecting the pods of `web`.
fn web_service(name: &str, ports: Value) -> Arc<Service> {
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": "9b2c4d6e-1f3a-4b5c-8d7e-0a1b2c3d4e5f",
            "resourceVersion": "4711", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"app": "web"}, "ports": ports, "type": "ClusterIP",
            "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}
    });
    Arc::new(serde_json::from_value(service).unwrap())
}

/// A Service port whose appProtocol says HTTP/2 and whose targetPort names the pod's port:
/// the sidecar speaks HTTP/2 to the app, and the patch is otherwise the plain one. Without
/// the Service, the same pod gets HTTP/1.1; a Service of another namespace counts for
/// nothing.
#[tokio::test]
async fn a_services_app_protocol_says_the_apps_protocol() {
    let h2c = web_service(
        "web",
        json!([{"name": "h2", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c",
                "port": 80, "targetPort": "http"}]),
    );
    let mut elsewhere = (*web_service(
        "web",
        json!([{"name": "tls", "protocol": "TCP",
        "appProtocol": "https", "port": 443, "targetPort": "http"}]),
    ))
    .clone();
    elsewhere.metadata.namespace = Some("cart".into());
    let harness = Harness::start_among(vec![h2c, Arc::new(elsewhere)]).await;
    let pod = plain_pod();
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"portcullis.dev/injected":
                expected::annotation_with_protocol("http", 8080, "http2", "app-http")}},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            pre_stop_op(0, &token),
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "http2", &token)]},
            {"op": "add", "path": "/spec/volumes/-", "value": token_volume()}
        ])
    );
    check_patched(&harness, &pod, &patch).await;

    let (_, patch) = Harness::start().await.admit(&pod).await;
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch[3],
        json!({"op": "add", "path": "/spec/initContainers",
               "value": [sidecar(8080, json!("http"), "http1", &token)]})
    );
}

/// What every earlier release injected: an admin port named `portcullis-admin`, 16
/// characters. The fake API server refuses the create exactly as kube-apiserver v1.36.2
/// did, so a test can no longer pass on a pod that no cluster would create.
#[tokio::test]
async fn the_api_server_refuses_what_earlier_releases_injected() {
    let harness = Harness::start().await;
    let pod = plain_pod();
    let (_, patch) = harness.admit(&pod).await;
    let mut patched = pod.clone();
    let ops: json_patch::Patch = serde_json::from_value(patch.unwrap()).unwrap();
    json_patch::patch(&mut patched, &ops).unwrap();
    patched["spec"]["initContainers"][0]["ports"][1]["name"] = json!("portcullis-admin");

    let api = support::fake_api::FakeApi::start().await;
    let pods: Api<Pod> = Api::namespaced(api.client(), "shop");
    let typed: Pod = serde_json::from_value(patched).unwrap();
    let Err(kube::Error::Api(status)) = pods.create(&PostParams::default(), &typed).await else {
        panic!("created a pod the API server refuses");
    };
    let message = "Invalid value: \"portcullis-admin\": must be no more than 15 characters";
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({
            "status": "Failure",
            "code": 422,
            "message": format!(
                "Pod \"web-7d9c5b8f4-x2m9q\" is invalid: spec.initContainers[0].ports[1].name: \
                 {message}"
            ),
            "metadata": {},
            "reason": "Invalid",
            "details": {
                "name": "web-7d9c5b8f4-x2m9q",
                "kind": "Pod",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": message,
                    "field": "spec.initContainers[0].ports[1].name"
                }]
            }
        })
    );
    // Refused, so not stored: nothing for a watch to see.
    assert_eq!(api.object("/api/v1/pods", "shop", "web-7d9c5b8f4-x2m9q"), None);
}

/// A pod whose annotations are just under the API server's 256 KiB: the sidecar's own
/// annotation would take it over, and the API server would refuse the pod for good. The
/// webhook holds the mutation back, admits the pod as it came, counts it and warns.
#[tokio::test]
async fn a_mutation_the_api_server_would_refuse_is_not_applied() {
    let api = support::fake_api::FakeApi::start().await;
    let reporter = Reporter { controller: "portcullis".into(), instance: Some("test-0".into()) };
    let harness = Harness::start_with(Some(Recorder::new(api.client(), reporter)), CA).await;
    let mut pod = plain_pod();
    let key = "example.com/big";
    let room = 256 * 1024 - key.len();
    pod["metadata"]["annotations"] = json!({key: "x".repeat(room)});
    // The pod as it came is valid: at the limit, not over it.
    let pods: Api<Pod> = Api::namespaced(api.client(), "shop");
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    pods.create(&PostParams::default(), &typed).await.expect("valid as it came");

    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!((answer, patch), (allowed_unchanged(), None));
    assert_eq!(harness.count("failed", "invalid_mutation"), 1);
    assert_eq!(harness.count("injected", "injected"), 0);
    let published = events(&api, 1).await;
    let (_, event) = &published[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InjectionFailed");
    assert_eq!(
        event["note"],
        "pod web-7d9c5b8f4-: the sidecar was not added: the API server would refuse the \
         injected pod: metadata.annotations: Too long: must have at most 262144 bytes \
         (invalid_mutation)"
    );
}

/// The app container's own preStop is kept, the pod injected and counted so, and its owner
/// told that the sidecar will learn of the pod's stop only at its own SIGTERM: a Normal
/// Event `PreStopKept`, not for a dry run. A hook added is no news.
#[tokio::test]
async fn a_kept_pre_stop_is_an_event_on_the_owner() {
    let api = support::fake_api::FakeApi::start().await;
    let reporter = Reporter { controller: "portcullis".into(), instance: Some("test-0".into()) };
    let harness = Harness::start_with(Some(Recorder::new(api.client(), reporter)), CA).await;
    let own = json!({"preStop": {"exec": {"command": ["/bin/drain"]}}});
    let web = container(
        "web",
        json!({"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
               "lifecycle": own}),
    );
    let pod = pod(json!({}), json!([web]));

    // A dry run first: answered the same, announced never.
    let mut dry_run: Value = serde_json::from_slice(&admission_review(&pod)).unwrap();
    dry_run["request"]["dryRun"] = json!(true);
    let (status, _) = post(harness.addr, "/inject", serde_json::to_vec(&dry_run).unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!(answer, allowed_with_patch());
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"portcullis.dev/injected":
                expected::annotation_stopping("http", 8080, "http1", "app-http", "5s", "kept")}},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "http1", &token)]},
            {"op": "add", "path": "/spec/volumes/-", "value": token_volume()}
        ])
    );
    let patched = check_patched(&harness, &pod, &patch).await;
    assert_eq!(patched["spec"]["containers"][0]["lifecycle"], own);
    assert_eq!(harness.count("injected", "injected"), 2);

    let published = events(&api, 1).await;
    assert_eq!(published.len(), 1, "{published:?}");
    let (path, event) = &published[0];
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/shop/events");
    assert_eq!(
        event["regarding"],
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f4",
               "namespace": "shop", "uid": "4f3b2a10-9c1d-4e6f-8a7b-2c3d4e5f6a7b"})
    );
    assert_eq!((&event["type"], &event["reason"]), (&json!("Normal"), &json!("PreStopKept")));
    assert_eq!(event["action"], "Inject");
    assert_eq!(
        event["note"],
        "pod web-7d9c5b8f4-: sidecar port http (4180) in front of container web port 8080, app \
         protocol http1 (default), app port renamed app-http, the app's own preStop kept: the \
         sidecar learns the pod is stopping only at its own SIGTERM (injected)"
    );

    // A pod that gets the hook: no Event.
    harness.admit(&plain_pod()).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(events(&api, 1).await.len(), 1);
}

/// Each admission draws a token of its own, even for the same pod.
#[tokio::test]
async fn every_pod_gets_a_stop_token_of_its_own() {
    let harness = Harness::start().await;
    let (_, first) = harness.admit(&plain_pod()).await;
    let (_, second) = harness.admit(&plain_pod()).await;
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(token_in(&first), token_in(&second));
    // And nothing else differs.
    let token = token_in(&first);
    let again = serde_json::to_string(&second).unwrap().replace(&token_in(&second), &token);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), first);
}

/// A stop delay the pod's grace period cannot hold leaves the pod alone, and its owner is
/// told both; one it can is written to the sidecar and the annotation.
#[tokio::test]
async fn the_stop_delay_annotation_within_the_grace_period() {
    let api = support::fake_api::FakeApi::start().await;
    let reporter = Reporter { controller: "portcullis".into(), instance: Some("test-0".into()) };
    let harness = Harness::start_with(Some(Recorder::new(api.client(), reporter)), CA).await;
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "12s"});
    let (_, patch) = harness.admit(&pod).await;
    let patch = patch.expect("a patch");
    let token = token_in(&patch);
    assert_eq!(
        patch[0]["value"],
        expected::annotation_stopping("http", 8080, "http1", "app-http", "12s", "added")
    );
    assert_eq!(patch[2], pre_stop_op(0, &token));
    assert_eq!(
        patch[3]["value"][0],
        sidecar_stopping(8080, json!("http"), "1", "http1", "12s", &token)
    );
    check_patched(&harness, &pod, &patch).await;

    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "30s"});
    let (answer, patch) = harness.admit(&pod).await;
    assert_eq!((answer, patch), (allowed_unchanged(), None));
    assert_eq!(harness.count("skipped", "invalid_annotation"), 1);
    assert_eq!(
        skip_note(&api).await,
        "pod web-7d9c5b8f4-: portcullis.dev/stop-delay: 30s is not less than the pod's \
         terminationGracePeriodSeconds (30), which would leave the app no time to stop \
         (invalid_annotation)"
    );
}
