//! What the fake API server holds, the controller's certificates and the kubeconfig that
//! points the real `portcullis controller` at the fake API server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::fake_api::FakeApi;

pub const NS: &str = "shop";
pub const CONTROLLER_NS: &str = "portcullis-system";
pub const CONTROLLER_POD: &str = "portcullis-controller-0";

const PODS: &str = "/api/v1/pods";
const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
const WINDOWS: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";
/// Where the fake API server keeps Leases (its objects are stored by cluster-wide path).
const LEASES: &str = "/apis/coordination.k8s.io/v1/leases";
const CREATED: &str = "2026-01-01T00:00:00Z";

/// The UpstreamPolicy whose status writes the API server refuses (403), as it does when the
/// controller's RBAC lacks `upstreampolicies/status`.
pub const LOCKED_STATUS: &str =
    "/apis/portcullis.dev/v1alpha1/namespaces/shop/upstreampolicies/locked/status";

/// An injected, running pod of workload `app` (a ReplicaSet's pod, as the Deployment makes
/// them).
fn pod(namespace: &str, name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "creationTimestamp": CREATED,
            "labels": {"app": app, "pod-template-hash": "7d9c5b8f4"},
            "annotations": {"portcullis.dev/injected": "{}"},
        },
        "spec": {"containers": [{
            "name": "app", "image": "registry.example/app:1.0",
            "ports": [{"name": "http", "containerPort": 8080}],
        }]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    })
}

/// The leader-election Lease, held by the controller for the next hour: the fake API
/// server answers the Lease manager's strategic and apply patches without applying them,
/// so the holder is there before the controller starts, as after a restart of the replica
/// that held it.
fn lease() -> Value {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": "portcullis-controller", "namespace": CONTROLLER_NS,
            "creationTimestamp": CREATED,
        },
        "spec": {
            "holderIdentity": CONTROLLER_POD, "leaseDurationSeconds": 3600,
            "acquireTime": now, "renewTime": now, "leaseTransitions": 0,
        },
    })
}

/// The controller's own Pod as the leader finds its peers: its IP and its `admin` port.
fn replica_pod(admin: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": CONTROLLER_POD, "namespace": CONTROLLER_NS, "uid": "uid-controller-0",
            "creationTimestamp": CREATED,
            "labels": {
                "app.kubernetes.io/name": "portcullis",
                "app.kubernetes.io/component": "controller",
            },
        },
        "spec": {"containers": [{"name": "controller", "image": "portcullis", "ports": [
            {"name": "admin", "containerPort": admin.port()},
        ]}]},
        "status": {"phase": "Running", "podIP": admin.ip().to_string()},
    })
}

fn resource(kind: &str, name: &str, generation: i64, spec: Value) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": kind,
        "metadata": {
            "name": name, "namespace": NS, "generation": generation,
            "creationTimestamp": CREATED, "uid": format!("uid-{NS}-{name}"),
        },
        "spec": spec,
    })
}

/// Stores a pod where the controller's watch sees it and where a namespaced list finds it.
fn apply_pod(api: &FakeApi, pod: Value) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_owned();
    api.apply(PODS, pod.clone());
    api.apply(&format!("/api/v1/namespaces/{namespace}/pods"), pod);
}

/// The `web` workload's policy: a short response-headers timeout (504), JSON only (502),
/// a small in-flight limit with a short queue (503 overloaded and queue_timeout), and a
/// route whose whole exchange is capped (streams cut short). `retry_after` changes it.
pub fn web_policy(generation: i64, retry_after: &str) -> Value {
    resource(
        "UpstreamPolicy",
        "web",
        generation,
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "timeouts": {"responseHeaders": "500ms"},
            "validation": {"contentTypes": ["application/json"]},
            "overload": {
                "maxInFlight": 3,
                "queue": {"size": 2, "timeout": "200ms"},
                "retryAfter": retry_after,
            },
            "routes": [{"match": {"pathPrefix": "/stream"}, "timeouts": {"request": "300ms"}}],
        }),
    )
}

/// The cluster before the controller starts: pods of `web` (three: the third one's
/// sidecar cannot reach the controller) and of `maint`, the controller's own pod, the
/// `web` policy, a policy on `maint` whose status cannot be written, and a window on
/// `maint` that is on now and ends in two hours.
pub fn fill(api: &FakeApi, controller_admin: SocketAddr) {
    for name in ["web-1", "web-2", "web-3"] {
        apply_pod(api, pod(NS, name, "web"));
    }
    apply_pod(api, pod(NS, "maint-1", "maint"));
    apply_pod(api, replica_pod(controller_admin));
    api.apply(LEASES, lease());
    api.apply(POLICIES, web_policy(1, "2s"));
    api.apply(
        POLICIES,
        resource(
            "UpstreamPolicy",
            "locked",
            1,
            json!({
                "selector": {"matchLabels": {"app": "maint"}},
                "timeouts": {"responseHeaders": "5s"},
            }),
        ),
    );
    api.forbid(LOCKED_STATUS);
    // On whole seconds: the API's times (metav1.Time) have no fraction.
    let now = Timestamp::now().as_second();
    let at = |s: i64| Timestamp::from_second(now + s).unwrap().to_string();
    api.apply(
        WINDOWS,
        resource(
            "MaintenanceWindow",
            "upgrade",
            1,
            json!({
                "selector": {"matchLabels": {"app": "maint"}},
                "start": at(-60), "end": at(7200),
                "exemptPaths": ["/ok"],
                "message": "database upgrade",
            }),
        ),
    );
}

/// A change made once the sidecars follow the controller: it travels to them.
pub fn change(api: &FakeApi) {
    api.apply(POLICIES, web_policy(2, "3s"));
}

/// A CA and a serving certificate for 127.0.0.1 and localhost, in `dir/tls` as
/// cert-manager mounts them (`--tls-dir`); the CA's PEM.
pub fn certificates(dir: &Path) -> String {
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let ca = portcullis::tls::issue::new_ca(now, 90 * day).unwrap();
    let sans = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let serving = portcullis::tls::issue::serving(&ca, &sans, now, 30 * day).unwrap();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(tls.join("tls.key"), &serving.key_pem).unwrap();
    std::fs::write(tls.join("ca.crt"), &ca.cert_pem).unwrap();
    ca.cert_pem
}

/// A kubeconfig that points at the fake API server.
pub fn kubeconfig(dir: &Path, api: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"http://{api}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    path
}

/// An AdmissionReview for the creation of a `web` pod with a named port: injected.
pub fn injectable_review() -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NS,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {
                    "generateName": "web-7d9c5b8f4-", "namespace": NS,
                    "labels": {"app": "web", "pod-template-hash": "7d9c5b8f4"},
                },
                "spec": {
                    "containers": [{
                        "name": "web", "image": "registry.example/web:1.0",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "serviceAccountName": "default",
                    "schedulerName": "default-scheduler",
                },
                "status": {},
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    })
}
