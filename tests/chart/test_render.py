"""The chart as a whole: strict lint, Kubernetes validation of every manifest, CRDs in sync
with `crds/`, and rendering that never changes between runs."""

from __future__ import annotations

import re

import helm_python
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, NAMESPACE, REPO, SCENARIOS, render_files

KUBERNETES_VERSIONS = ["1.33.0", "1.35.0"]

# Kinds that come with CRDs of other projects; kubernetes-validate has no schema for them
# (it raises SchemaNotFoundError, which its CLI prints as a WARN and lets pass), so each
# gets the structural check below instead.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean_in_strict_mode(scenario):
    report = helm_python.lint(CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["total_charts_linted"] == 1


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_kubernetes(render, scenario, version):
    rendered = render(SCENARIOS[scenario])
    assert len(rendered.manifests) >= 10
    for manifest in rendered.manifests:
        obj = manifest.obj
        if (obj["apiVersion"], obj["kind"]) in FOREIGN_KINDS:
            with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
                kubernetes_validate.validate(obj, version, strict=True)
            check_foreign(obj)
        else:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                pytest.fail(f"{manifest.template}: {obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_chart_crds_are_valid_kubernetes(chart, version):
    (crd_file,) = chart.crds
    docs = [d for d in yaml.safe_load_all(crd_file["data"]) if d]
    assert [d["metadata"]["name"] for d in docs] == [
        "upstreampolicies.portcullis.dev",
        "maintenancewindows.portcullis.dev",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def check_foreign(obj):
    """The shape of the cert-manager and Prometheus Operator objects the chart renders,
    checked by hand against those projects' CRDs (fields named as in their v1 APIs)."""
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
    assert meta["namespace"] == NAMESPACE
    spec = obj["spec"]
    kind = obj["kind"]
    if kind == "Issuer":
        assert set(spec) in ({"selfSigned"}, {"ca"})
        if "ca" in spec:
            assert set(spec["ca"]) == {"secretName"}
    elif kind == "Certificate":
        assert set(spec) <= {"secretName", "isCA", "commonName", "duration", "renewBefore", "privateKey", "usages", "dnsNames", "issuerRef"}
        assert spec["secretName"] and set(spec["issuerRef"]) <= {"name", "kind", "group"}
        assert spec["issuerRef"]["name"]
        for key in ("duration", "renewBefore"):
            if key in spec:
                assert re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", spec[key])
        assert set(spec["privateKey"]) <= {"algorithm", "size", "rotationPolicy"}
    elif kind == "ServiceMonitor":
        assert set(spec) == {"selector", "endpoints"}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval"} and endpoint["port"]
    elif kind == "PodMonitor":
        assert set(spec) == {"namespaceSelector", "selector", "podMetricsEndpoints"}
        for endpoint in spec["podMetricsEndpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "relabelings"} and endpoint["port"]
            for rule in endpoint.get("relabelings", []):
                # Prometheus Operator's RelabelConfig (monitoring.coreos.com/v1).
                assert set(rule) <= {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
                assert rule["action"] in {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase", "keepequal", "dropequal"}
                assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) for name in rule.get("sourceLabels", []))
                if rule["action"] == "replace":
                    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", rule["targetLabel"])
    elif kind == "PrometheusRule":
        for group in spec["groups"]:
            assert set(group) == {"name", "rules"}
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
                assert rule["alert"] and rule["expr"].strip()
                if "for" in rule:
                    assert re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", rule["for"])
    else:
        pytest.fail(f"no structural check for {kind}")


def test_chart_crds_equal_the_generated_ones():
    top = (REPO / "crds" / "portcullis.dev.yaml").read_bytes()
    in_chart = (CHART / "crds" / "portcullis.dev.yaml").read_bytes()
    assert in_chart == top, "charts/portcullis/crds/ drifted: cp crds/portcullis.dev.yaml charts/portcullis/crds/"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["portcullis.dev.yaml"]


@pytest.mark.parametrize("scenario", ["defaults", "everything"])
def test_rendering_is_deterministic(chart, scenario):
    """GitOps tools re-render on every sync and `helm upgrade` re-renders too: the output
    must not change, or certificates would churn and the webhook break."""
    values = SCENARIOS[scenario]
    first = render_files(chart, values)
    assert render_files(chart, values) == first
    assert render_files(chart, values, is_upgrade=True, revision=7) == first


def test_templates_use_no_randomness_or_cluster_lookups(chart):
    forbidden = re.compile(
        r"\b(genCA|genCAWithKey|genSelfSignedCert|genSelfSignedCertWithKey|genSignedCert|"
        r"genSignedCertWithKey|genPrivateKey|derivePassword|randAlphaNum|randAlpha|"
        r"randNumeric|randAscii|randBytes|randInt|uuidv4|now|lookup)\b"
    )
    sources = {t["name"]: t["data"] for t in chart.templates}
    assert len(sources) >= 10
    actions = 0
    for name, source in sources.items():
        # Template actions only, comments left out: the text around them is output.
        for action in re.findall(r"\{\{-?(.*?)-?\}\}", source, re.DOTALL):
            if action.strip().startswith("/*"):
                continue
            actions += 1
            found = forbidden.search(action)
            assert not found, f"{name}: {{{{{action}}}}} calls {found.group(0)}"
    assert actions > 100


def test_notes_tell_the_next_three_commands(render):
    notes = render().notes
    assert "kubectl -n portcullis-system rollout status deployment/portcullis" in notes
    assert "kubectl label namespace NAMESPACE portcullis.dev/inject=enabled" in notes
    assert "kubectl -n NAMESPACE rollout restart deployment/DEPLOYMENT" in notes
    assert "kubectl -n NAMESPACE apply -f window.yaml" in notes
    assert "kubectl -n NAMESPACE get mw" in notes
    assert "Pods of portcullis-system, kube-system are never injected." in notes
    assert "Secret portcullis-tls" in notes
    window = yaml.safe_load(notes.split("Save this as window.yaml (APP: the app's pod label):")[1].split("kubectl")[0])
    assert window == {
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "MaintenanceWindow",
        "metadata": {"name": "now"},
        "spec": {"selector": {"matchLabels": {"app": "APP"}}, "message": "Back soon."},
    }
    assert "cert-manager issues the serving certificate (portcullis-serving)" in render(SCENARIOS["cert-manager"]).notes


def test_default_objects(render):
    assert render().kinds() == [
        ("ClusterRole", "portcullis"),
        ("ClusterRoleBinding", "portcullis"),
        ("ConfigMap", "portcullis-inject"),
        ("Deployment", "portcullis"),
        ("MutatingWebhookConfiguration", "portcullis"),
        ("PodDisruptionBudget", "portcullis"),
        ("Role", "portcullis"),
        ("RoleBinding", "portcullis"),
        ("Secret", "portcullis-tls"),
        ("Service", "portcullis"),
        ("Service", "portcullis-webhook"),
        ("ServiceAccount", "portcullis"),
    ]


def test_namespaced_objects_live_in_the_release_namespace(render):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for manifest in render(SCENARIOS["everything"]).manifests:
        if manifest.kind in cluster_scoped:
            assert "namespace" not in manifest.obj["metadata"], manifest.name
        else:
            assert manifest.obj["metadata"]["namespace"] == NAMESPACE, (manifest.kind, manifest.name)


def test_names_follow_the_release(chart):
    from conftest import Rendered

    rendered = Rendered(render_files(chart, {}, name="edge", namespace="ops"))
    assert rendered.one("Deployment")["metadata"]["name"] == "edge-portcullis"
    assert rendered.one("MutatingWebhookConfiguration")["metadata"]["name"] == "edge-portcullis"
    inject = yaml.safe_load(rendered.one("ConfigMap", "edge-portcullis-inject")["data"]["inject.yaml"])
    assert inject["controllerUrl"] == "https://edge-portcullis.ops.svc:8090"
    assert inject["excludedNamespaces"] == ["ops", "kube-system"]
    overridden = Rendered(render_files(chart, {"fullnameOverride": "pc"}, name="edge", namespace="ops"))
    assert overridden.one("Secret")["metadata"]["name"] == "pc-tls"
