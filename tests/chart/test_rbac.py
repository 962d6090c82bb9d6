"""Least privilege: exactly the API calls the controller makes, no wildcards, and every rule
explained by a comment that names the code needing it."""

from __future__ import annotations

import re

import pytest

from conftest import CHART, REPO, SCENARIOS

CLUSTER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
    {"apiGroups": ["portcullis.dev"], "resources": ["upstreampolicies", "maintenancewindows"], "verbs": ["list", "watch"]},
    {"apiGroups": ["portcullis.dev"], "resources": ["upstreampolicies/status", "maintenancewindows/status"], "verbs": ["patch"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
WEBHOOK_CONFIG_RULE = {
    "apiGroups": ["admissionregistration.k8s.io"],
    "resources": ["mutatingwebhookconfigurations"],
    "resourceNames": ["portcullis"],
    "verbs": ["get", "patch"],
}
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["portcullis-controller"], "verbs": ["get", "patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
]
TLS_SECRET_RULE = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["portcullis-tls"], "verbs": ["get", "update"]}


def test_self_issued_mode_grants_exactly_what_the_controller_calls(render):
    rendered = render()
    assert rendered.one("ClusterRole", "portcullis")["rules"] == CLUSTER_RULES + [WEBHOOK_CONFIG_RULE]
    assert rendered.one("Role", "portcullis")["rules"] == LEASE_RULES + [TLS_SECRET_RULE]


def test_cert_manager_mode_drops_the_tls_secret_and_webhook_rules(render):
    rendered = render(SCENARIOS["cert-manager"])
    assert rendered.one("ClusterRole", "portcullis")["rules"] == CLUSTER_RULES
    assert rendered.one("Role", "portcullis")["rules"] == LEASE_RULES


def test_bindings_name_the_controller_account(render):
    rendered = render()
    subject = [{"kind": "ServiceAccount", "name": "portcullis", "namespace": "portcullis-system"}]
    cluster = rendered.one("ClusterRoleBinding", "portcullis")
    assert cluster["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "portcullis"}
    assert cluster["subjects"] == subject
    local = rendered.one("RoleBinding", "portcullis")
    assert local["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "portcullis"}
    assert local["subjects"] == subject


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_wildcards(render, scenario):
    rendered = render(SCENARIOS[scenario])
    for kind in ("ClusterRole", "Role"):
        for role in rendered.all(kind):
            assert "aggregationRule" not in role
            for rule in role["rules"]:
                for field, items in rule.items():
                    assert "*" not in items and not any("*" in item for item in items), (kind, field, rule)


def test_secrets_are_read_cluster_wide_only_by_list_and_watch(render):
    for scenario in SCENARIOS:
        rendered = render(SCENARIOS[scenario])
        cluster = [r for r in rendered.one("ClusterRole")["rules"] if "secrets" in r["resources"]]
        assert cluster == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]
        local = [r for r in rendered.one("Role")["rules"] if "secrets" in r["resources"]]
        # Writing is limited to the chart's own Secret by name.
        assert all(r.get("resourceNames") == ["portcullis-tls"] for r in local)


def test_every_rule_carries_a_comment_naming_existing_code():
    source = (CHART / "templates" / "rbac.yaml").read_text()
    lines = source.splitlines()
    rule_lines = [i for i, line in enumerate(lines) if re.match(r"\s*- apiGroups:", line)]
    assert len(rule_lines) == 11
    for i in rule_lines:
        comment = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip().lstrip("# "))
            j -= 1
        assert comment, f"rbac.yaml line {i + 1}: a rule without a comment"
        text = " ".join(comment)
        named = re.findall(r"src/[\w/]+\.rs", text)
        if not named:
            # The create of a Lease is kube-lease-manager's own code.
            assert "kube-lease-manager" in text, f"rbac.yaml line {i + 1}: the comment names no code: {text}"
        for path in named:
            assert (REPO / path).is_file(), f"rbac.yaml line {i + 1} names {path}, which does not exist"
