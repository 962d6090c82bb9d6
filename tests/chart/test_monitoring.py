"""The optional Prometheus Operator objects: off by default, and alerts written only on
metrics (and label values) that the code really exports."""

from __future__ import annotations

import re

import pytest

from conftest import NAMESPACE, REPO, SCENARIOS

METRIC_SOURCES = ["src/telemetry/metrics.rs", "src/telemetry/controller_metrics.rs"]


def exported_metrics() -> set[str]:
    """Metric names as Prometheus sees them, read from the registrations in the code."""
    names = set()
    for path in METRIC_SOURCES:
        source = (REPO / path).read_text()
        prefixes = {var: prefix for var, prefix in re.findall(r"let (?:mut )?(\w+) = [\w:.]*with_prefix\(\"(\w+)\"\)", source)}
        for var, name in re.findall(r"(\w+)\.register\(\s*\"(\w+)\"", source):
            names.add(f"{prefixes[var]}_{name}" if var in prefixes else name)
    return names


def test_the_code_exports_what_the_alerts_read():
    # The reading of the sources itself: a few names known from the code.
    names = exported_metrics()
    assert {"portcullis_responses", "portcullis_controller_streams", "portcullis_injections"} <= names


def test_off_by_default(render):
    rendered = render()
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert rendered.all(kind) == []
    assert [s["metadata"]["name"] for s in rendered.all("Service")] == ["portcullis", "portcullis-webhook"]


def test_service_monitor_scrapes_the_controller_admin_port(render):
    rendered = render(SCENARIOS["monitoring"])
    monitor = rendered.one("ServiceMonitor", "portcullis")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s"}]
    selected = [
        s for s in rendered.all("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["portcullis-metrics"]
    assert selected[0]["spec"]["ports"] == [{"name": "admin", "port": 9902, "targetPort": "admin", "protocol": "TCP"}]


# The pod's workload, from Prometheus' Kubernetes pod discovery: the name of the pod's
# controller (its ownerReference with controller: true) and whether the pod has a label.
WORKLOAD_RELABELINGS = [
    {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_pod_controller_name"],
        "regex": "(.+)",
        "replacement": "$1",
        "targetLabel": "workload",
    },
    {
        "action": "replace",
        "sourceLabels": [
            "__meta_kubernetes_pod_controller_kind",
            "__meta_kubernetes_pod_labelpresent_pod_template_hash",
            "__meta_kubernetes_pod_controller_name",
        ],
        "separator": ";",
        "regex": "ReplicaSet;true;(.+)-[bcdfghjklmnpqrstvwxz2456789]+",
        "replacement": "$1",
        "targetLabel": "workload",
    },
]


def test_pod_monitor_scrapes_every_sidecar(render):
    monitor = render(SCENARIOS["monitoring"]).one("PodMonitor", "portcullis-sidecars")
    assert monitor["spec"] == {
        "namespaceSelector": {"any": True},
        "selector": {},
        "podMetricsEndpoints": [
            {
                "port": "portcullis-adm",
                "path": "/metrics",
                "interval": "15s",
                "relabelings": WORKLOAD_RELABELINGS,
            }
        ],
    }


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str]:
    """Prometheus' `replace` relabeling: the source labels' values (a missing label is the
    empty string) joined by the separator, matched against the regex anchored at both ends
    (RE2, which these regexes share with Python's re); on a match the target label is set
    to the expanded replacement, or removed if that is empty; else nothing changes."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if not match:
            continue
        result = re.sub(r"\$\{?(\d+)\}?", lambda g: match.group(int(g.group(1))) or "", rule.get("replacement", "$1"))
        if result:
            labels[rule["targetLabel"]] = result
        else:
            labels.pop(rule["targetLabel"], None)
    return labels


def pod_target(kind: str | None, controller: str | None, **pod_labels: str) -> dict[str, str]:
    """A discovered pod's meta labels, as Prometheus' Kubernetes pod discovery sets them."""
    labels = {"__meta_kubernetes_namespace": "shop", "__meta_kubernetes_pod_name": "some-pod"}
    if kind:
        labels["__meta_kubernetes_pod_controller_kind"] = kind
    if controller:
        labels["__meta_kubernetes_pod_controller_name"] = controller
    for name, value in pod_labels.items():
        labels[f"__meta_kubernetes_pod_label_{name}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{name}"] = "true"
    return labels


@pytest.mark.parametrize(
    "target,workload",
    [
        # A Deployment's pod: its ReplicaSet is `<deployment>-<pod-template-hash>`.
        (pod_target("ReplicaSet", "web-5d8f7c9b6d", pod_template_hash="5d8f7c9b6d"), "web"),
        (pod_target("ReplicaSet", "checkout-api-7c9f8b6d45", pod_template_hash="7c9f8b6d45"), "checkout-api"),
        (pod_target("StatefulSet", "db"), "db"),
        (pod_target("DaemonSet", "node-agent"), "node-agent"),
        (pod_target("Job", "backup-28473920"), "backup-28473920"),
        # A ReplicaSet of its own (no Deployment, so no pod-template-hash): its name.
        (pod_target("ReplicaSet", "cache-rs"), "cache-rs"),
        # A bare pod: no controller, no workload.
        (pod_target(None, None), None),
    ],
    ids=["deployment", "deployment-dashed", "statefulset", "daemonset", "job", "bare-replicaset", "bare-pod"],
)
def test_the_workload_label_is_the_pods_workload(render, target, workload):
    monitor = render(SCENARIOS["monitoring"]).one("PodMonitor", "portcullis-sidecars")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    labels = relabel(target, endpoint["relabelings"])
    assert labels.get("workload") == workload
    # Nothing else changes.
    assert {k: v for k, v in labels.items() if k != "workload"} == target


def test_alerts(render):
    rule = render(SCENARIOS["monitoring"]).one("PrometheusRule", "portcullis")
    assert rule["metadata"]["namespace"] == NAMESPACE
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert sorted(alerts) == [
        "PortcullisCertificateExpiring",
        "PortcullisInjectionFailing",
        "PortcullisMaintenancePastItsEnd",
        "PortcullisMaintenanceTooLong",
        "PortcullisProxyErrors",
        "PortcullisSidecarsDisconnected",
        "PortcullisStatusWritesFailing",
    ]
    proxy = alerts["PortcullisProxyErrors"]["expr"]
    assert 'source="proxy"' in proxy and 'reason!~"maintenance|app_stopping"' in proxy
    assert proxy.strip().endswith("> 0.5")
    assert "sum by (namespace, reason)" in proxy
    assert alerts["PortcullisMaintenanceTooLong"]["for"] == "4h"
    past = alerts["PortcullisMaintenancePastItsEnd"]["expr"]
    assert "portcullis_maintenance_until_timestamp_seconds) < time() - 60" in past
    disconnected = alerts["PortcullisSidecarsDisconnected"]["expr"]
    assert disconnected.strip() == "max by (namespace, pod) (portcullis_controller_connected) == 0"
    assert alerts["PortcullisCertificateExpiring"]["expr"].strip().endswith("< 7 * 86400")
    # Alertmanager templates reach Prometheus unrendered by Helm.
    assert "{{ $labels.namespace }}" in alerts["PortcullisProxyErrors"]["annotations"]["summary"]


def test_alerts_read_only_exported_metrics_and_label_values(render):
    names = exported_metrics()
    rule = render(SCENARIOS["monitoring"]).one("PrometheusRule")
    used = set()
    for alert in rule["spec"]["groups"][0]["rules"]:
        for metric in re.findall(r"\b(portcullis_\w+)", alert["expr"]):
            base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
            assert metric in names or base in names, f"{alert['alert']} reads {metric}, which nothing exports"
            used.add(metric)
    assert len(used) == 7
    # Label values the alerts match on, and the code that sets them.
    for value, path in [
        ('ERROR: &str = "error"', "src/telemetry/controller_metrics.rs"),  # status.rs writes it
        ('"failed"', "src/inject/review.rs"),
        ('"proxy"', "src/telemetry/metrics.rs"),
        ('"maintenance"', "src/proxy/error.rs"),
        ('"app_stopping"', "src/proxy/error.rs"),
    ]:
        assert value in (REPO / path).read_text(), f"{value} is not in {path}"
