"""Shared helpers for the chart tests: render `charts/portcullis` with Helm's own library
(helm-python-sdk binds Helm 4's Go SDK, so no helm binary is needed) and look at the
manifests as Kubernetes would receive them."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "portcullis"
RELEASE = "portcullis"
NAMESPACE = "portcullis-system"

# Values that each turn on something the defaults leave off, one concern at a time, plus
# one that turns everything on. Every manifest of every one of them is validated.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"tls": {"certManager": {"enabled": True}}},
    "cert-manager-cluster-issuer": {
        "tls": {
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
            }
        }
    },
    "monitoring": {
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "podMonitor": {"enabled": True, "interval": "15s"},
            "prometheusRule": {"enabled": True, "proxyErrorsPerSecond": 0.5},
            "dashboards": {"enabled": True, "labels": {"team": "platform"}, "annotations": {"grafana_folder": "Portcullis"}},
        }
    },
    "one-replica": {"controller": {"replicas": 1}},
    "custom-resources": {
        "controller": {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}}},
        "proxy": {"resources": {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}}},
    },
    "fail-open": {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5}},
    "excluded-namespaces": {"proxy": {"excludedNamespaces": ["monitoring", "istio-system", "kube-system"]}},
    "stop-delay": {"proxy": {"stopDelay": "12s"}},
    "scheduling": {
        "controller": {
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux", "node-role.kubernetes.io/infra": ""},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                        ]
                    }
                }
            },
            "podAnnotations": {"example.com/team": "platform"},
            "podLabels": {"team": "platform"},
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"example.com/role": "portcullis"}},
    },
    "images": {
        "image": {"repository": "registry.example:5000/mirror/portcullis", "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
        "proxy": {"image": "registry.example:5000/mirror/portcullis-proxy:0.1.0-debug", "imagePullPolicy": "IfNotPresent", "logFormat": "plain", "proxyPort": 15001, "adminPort": 15020},
    },
}


def everything_on() -> dict[str, Any]:
    """All scenarios at once (later ones win where they overlap)."""
    merged: dict[str, Any] = {}
    for values in SCENARIOS.values():
        _merge(merged, copy.deepcopy(values))
    return merged


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


SCENARIOS["everything"] = everything_on()


@dataclass
class Manifest:
    """One rendered object and the template it came from."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


class Rendered:
    """A chart rendered with some values, as the objects `helm install` would send."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.manifests: list[Manifest] = []
        for template, text in sorted(files.items()):
            if template.endswith("NOTES.txt"):
                continue
            for obj in yaml.safe_load_all(text):
                if obj:
                    self.manifests.append(Manifest(template, obj))

    @property
    def notes(self) -> str:
        return self.files[f"{CHART.name}/templates/NOTES.txt"]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [m.obj for m in self.manifests if m.kind == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    def kinds(self) -> list[tuple[str, str]]:
        return sorted((m.kind, m.name) for m in self.manifests)


@pytest.fixture(scope="session")
def chart():
    with Chart.load(CHART) as loaded:
        yield loaded


def render_files(chart: Chart, values: dict[str, Any] | None = None, **opts: Any) -> dict[str, str]:
    opts.setdefault("name", RELEASE)
    opts.setdefault("namespace", NAMESPACE)
    return chart.render(values=values or {}, **opts)


@pytest.fixture(scope="session")
def render(chart):
    """Renders the chart with `values` (cached per scenario) into a `Rendered`."""
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, **opts: Any) -> Rendered:
        key = repr((values, sorted(opts.items())))
        if key not in cache:
            cache[key] = Rendered(render_files(chart, values, **opts))
        return cache[key]

    return _render


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only
