//! The cluster before the controller starts.

use serde_json::{Value, json};

use super::fake_api::FakeApi;
use super::*;

pub(crate) fn pod(namespace: &str, name: &str, app: &str, ip: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "generation": 1, "creationTimestamp": CREATED,
            "labels": {"app": app, "pod-template-hash": "5d8f7c9b6"},
            "annotations": {"portcullis.dev/injected": "{}"},
        },
        "spec": {"containers": [
            {"name": "app", "image": "registry.example/app:1.2.3", "ports": [{"containerPort": 8080}]},
            {"name": "portcullis", "image": "ghcr.io/portcullis/portcullis:0.1.0"},
        ]},
        "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", ip >> 16, (ip >> 8) & 255, ip & 255)},
    })
}

pub(crate) fn resource(
    kind: &str,
    namespace: &str,
    name: &str,
    created: &str,
    spec: Value,
) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": kind,
        "metadata": {
            "name": name, "namespace": namespace, "generation": 1, "creationTimestamp": created,
            "uid": format!("uid-{namespace}-{name}"),
        },
        "spec": spec,
    })
}

/// The cluster before the controller starts.
pub(crate) fn fill(api: &FakeApi) {
    for i in 0..STREAMS {
        api.apply(PODS_PATH, pod(NS, &format!("pod-{i}"), &format!("bench-{}", i % GROUPS), i));
    }
    for i in 0..OTHER_PODS {
        let ns = format!("ns-{}", i % OTHER_NAMESPACES);
        let app = format!("app-{}", (i / OTHER_NAMESPACES) % 10);
        api.apply(PODS_PATH, pod(&ns, &format!("pod-{i}"), &app, STREAMS + i));
    }
    api.apply(
        POLICIES_PATH,
        resource(
            "UpstreamPolicy",
            NS,
            "bench",
            CREATED,
            json!({"selector": {}, "timeouts": {"request": "5s"}}),
        ),
    );
    // Elsewhere: no two policies select the same pods.
    for k in 0..POLICIES - 1 {
        let spec = json!({
            "selector": {"matchLabels": {"app": format!("app-{}", k / OTHER_NAMESPACES)}},
            "timeouts": {"request": "3s"},
        });
        let ns = format!("ns-{}", k % OTHER_NAMESPACES);
        api.apply(
            POLICIES_PATH,
            resource("UpstreamPolicy", &ns, &format!("policy-{k}"), CREATED, spec),
        );
    }
    for k in 0..WINDOWS {
        let spec = json!({
            "selector": {"matchLabels": {"app": format!("app-{}", 2 + k % 8)}},
            "schedule": "0 2 * * SUN", "duration": "1h", "message": "weekly maintenance",
        });
        let ns = format!("ns-{}", (k * 7) % OTHER_NAMESPACES);
        api.apply(
            WINDOWS_PATH,
            resource("MaintenanceWindow", &ns, &format!("window-{k}"), CREATED, spec),
        );
    }
}
