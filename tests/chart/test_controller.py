"""The controller's Deployment, PodDisruptionBudget, Services, ServiceAccount and the
injector's ConfigMap, as design.md fixes them."""

from __future__ import annotations

import hashlib

import yaml

from conftest import NAMESPACE, SCENARIOS, container

SELECTOR = {
    "app.kubernetes.io/name": "portcullis",
    "app.kubernetes.io/instance": "portcullis",
    "app.kubernetes.io/component": "controller",
}
SANS = [
    "portcullis",
    "portcullis.portcullis-system",
    "portcullis.portcullis-system.svc",
    "portcullis.portcullis-system.svc.cluster.local",
    "portcullis-webhook",
    "portcullis-webhook.portcullis-system",
    "portcullis-webhook.portcullis-system.svc",
    "portcullis-webhook.portcullis-system.svc.cluster.local",
]


def test_deployment_defaults(render):
    deployment = render().one("Deployment", "portcullis")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {"matchLabels": SELECTOR}
    assert spec["template"]["metadata"]["labels"].items() >= SELECTOR.items()
    assert pod["serviceAccountName"] == "portcullis"
    assert pod["automountServiceAccountToken"] is True
    assert "priorityClassName" not in pod and "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": SELECTOR},
                    },
                }
            ]
        }
    }
    c = container(deployment)
    assert c["image"] == "ghcr.io/portcullis-dev/portcullis:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == [
        "controller",
        "--listen=0.0.0.0:8090",
        "--webhook-listen=0.0.0.0:9443",
        "--admin=0.0.0.0:9902",
        "--inject-config=/etc/portcullis/inject.yaml",
        "--log-format=json",
        # Sorted by key, as the leader's label selector for its peers.
        "--peer-selector=app.kubernetes.io/component=controller,"
        "app.kubernetes.io/instance=portcullis,app.kubernetes.io/name=portcullis",
        "--tls-secret=portcullis-tls",
        "--webhook-config=portcullis",
        *[f"--tls-san={san}" for san in SANS],
    ]
    assert c["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    assert c["ports"] == [
        {"name": "stream", "containerPort": 8090, "protocol": "TCP"},
        {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
        {"name": "admin", "containerPort": 9902, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert c["volumeMounts"] == [{"name": "inject-config", "mountPath": "/etc/portcullis", "readOnly": True}]
    assert pod["volumes"] == [{"name": "inject-config", "configMap": {"name": "portcullis-inject"}}]


def test_security_context(render):
    for scenario in ("defaults", "everything"):
        deployment = render(SCENARIOS[scenario]).one("Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert container(deployment)["securityContext"] == {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_service_account_token_is_mounted_only_where_asked(render):
    account = render().one("ServiceAccount", "portcullis")
    assert account["automountServiceAccountToken"] is False
    assert "annotations" not in account["metadata"]
    annotated = render(SCENARIOS["scheduling"]).one("ServiceAccount")
    assert annotated["metadata"]["annotations"] == {"example.com/role": "portcullis"}


def test_scheduling_values(render):
    deployment = render(SCENARIOS["scheduling"]).one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    values = SCENARIOS["scheduling"]["controller"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    # An affinity value replaces the default anti-affinity.
    assert pod["affinity"] == values["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    template = deployment["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "platform"
    assert template["annotations"]["example.com/team"] == "platform"


def test_custom_resources_reach_the_controller_and_the_sidecar(render):
    rendered = render(SCENARIOS["custom-resources"])
    assert container(rendered.one("Deployment"))["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": 1, "memory": "512Mi"},
    }
    inject = yaml.safe_load(rendered.one("ConfigMap")["data"]["inject.yaml"])
    assert inject["resources"] == {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}}


def test_image_digest_wins_over_the_tag(render):
    rendered = render(SCENARIOS["images"])
    c = container(rendered.one("Deployment"))
    assert c["image"] == "registry.example:5000/mirror/portcullis@sha256:" + "a" * 64
    assert c["imagePullPolicy"] == "Always"


def test_pod_disruption_budget_only_with_more_than_one_replica(render):
    pdb = render().one("PodDisruptionBudget", "portcullis")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}
    one = render(SCENARIOS["one-replica"])
    assert one.all("PodDisruptionBudget") == []
    assert one.one("Deployment")["spec"]["replicas"] == 1


def test_services(render):
    rendered = render()
    stream = rendered.one("Service", "portcullis")["spec"]
    assert stream["selector"] == SELECTOR
    assert stream["ports"] == [{"name": "stream", "port": 8090, "targetPort": "stream", "protocol": "TCP"}]
    webhook = rendered.one("Service", "portcullis-webhook")["spec"]
    assert webhook["selector"] == SELECTOR
    assert webhook["ports"] == [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]
    assert [s["metadata"]["name"] for s in rendered.all("Service")] == ["portcullis", "portcullis-webhook"]


def test_inject_config_defaults(render):
    config_map = render().one("ConfigMap", "portcullis-inject")
    assert list(config_map["data"]) == ["inject.yaml"]
    assert yaml.safe_load(config_map["data"]["inject.yaml"]) == {
        "image": "ghcr.io/portcullis-dev/portcullis:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "proxyPort": 4180,
        "adminPort": 9901,
        "controllerUrl": f"https://portcullis.{NAMESPACE}.svc:8090",
        "logFormat": "json",
        "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "startupProbe": {"periodSeconds": 1, "failureThreshold": 120},
        "stopDelay": "5s",
        "excludedNamespaces": [NAMESPACE, "kube-system"],
    }


def test_inject_config_overrides(render):
    inject = yaml.safe_load(render(SCENARIOS["images"]).one("ConfigMap")["data"]["inject.yaml"])
    assert inject["image"] == "registry.example:5000/mirror/portcullis-proxy:0.1.0-debug"
    assert inject["imagePullPolicy"] == "IfNotPresent"
    assert (inject["proxyPort"], inject["adminPort"], inject["logFormat"]) == (15001, 15020, "plain")
    excluded = yaml.safe_load(render(SCENARIOS["excluded-namespaces"]).one("ConfigMap")["data"]["inject.yaml"])
    # kube-system is already there once.
    assert excluded["excludedNamespaces"] == [NAMESPACE, "kube-system", "monitoring", "istio-system"]


def test_sidecar_image_follows_the_controller_image(render):
    values = {"image": {"repository": "mirror.example/portcullis", "tag": "0.1.1", "pullPolicy": "Never"}}
    inject = yaml.safe_load(render(values).one("ConfigMap")["data"]["inject.yaml"])
    assert inject["image"] == "mirror.example/portcullis:0.1.1"
    assert inject["imagePullPolicy"] == "Never"


def test_config_checksum_follows_the_config_map(chart, render):
    from conftest import render_files

    for values in ({}, SCENARIOS["images"]):
        files = render_files(chart, values)
        text = files["portcullis/templates/configmap.yaml"]
        rendered = render(values)
        annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/config"] == hashlib.sha256(text.encode()).hexdigest()
    default = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = render(SCENARIOS["images"]).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert changed["checksum/config"] != default
