"""The controller works with exactly what the chart grants: every request that the real
controller code sent to the fake Kubernetes API during the Rust tests (written by
`FakeApi::save_requests` to target/tmp/api-requests/) must be allowed by the rendered
ClusterRole or, inside the release namespace, by the Role. A request the chart does not
grant would be a `forbidden` in a real cluster's controller log."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

from conftest import NAMESPACE, REPO

REQUESTS = REPO / "target" / "tmp" / "api-requests"
# The Rust tests that record their requests; each must have run (make test runs them first).
RECORDERS = {"controller", "controller-webhook", "tls-controller", "tls-webhook", "inject-webhook"}


def attributes(method: str, path: str, query: str) -> dict:
    """RBAC's view of a request, as the API server's request-info resolver sees it."""
    segments = path.strip("/").split("/")
    if segments[0] == "api":
        group, rest = "", segments[2:]
    else:
        group, rest = segments[1], segments[3:]
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
    watching = parse_qs(query).get("watch") == ["true"]
    verb = {
        "GET": "watch" if watching else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }[method]
    return {
        "verb": verb,
        "group": group,
        "resource": f"{resource}/{sub}" if sub else resource,
        "namespace": namespace,
        "name": name,
    }


def allows(rule: dict, request: dict) -> bool:
    return (
        request["group"] in rule["apiGroups"]
        and request["resource"] in rule["resources"]
        and request["verb"] in rule["verbs"]
        and ("resourceNames" not in rule or request["name"] in rule["resourceNames"])
    )


def test_every_request_the_controller_makes_is_granted(render):
    files = sorted(REQUESTS.glob("*.json")) if REQUESTS.exists() else []
    recorded = {f.stem for f in files}
    assert RECORDERS <= recorded, (
        f"requests of {sorted(RECORDERS - recorded)} missing in {REQUESTS}: run the Rust tests "
        "first (make test does)"
    )
    rendered = render({})
    cluster_rules = rendered.one("ClusterRole")["rules"]
    namespace_rules = rendered.one("Role")["rules"]
    checked = set()
    for file in files:
        for request in json.loads(file.read_text()):
            attrs = attributes(request["method"], request["path"], request["query"])
            rules = cluster_rules + (namespace_rules if attrs["namespace"] == NAMESPACE else [])
            key = json.dumps(attrs, sort_keys=True)
            checked.add(key)
            assert any(allows(rule, attrs) for rule in rules), f"{file.name}: not granted: {attrs}"
    # The recordings cover what matters: watches (Services for the webhook too), status
    # writes, TokenReviews, Events, the TLS Secret and the webhook configuration.
    verbs = {(json.loads(k)["verb"], json.loads(k)["resource"]) for k in checked}
    for needed in [
        ("watch", "pods"),
        ("watch", "secrets"),
        ("list", "services"),
        ("watch", "services"),
        ("patch", "upstreampolicies/status"),
        ("create", "tokenreviews"),
        ("create", "events"),
        ("get", "secrets"),
        ("update", "secrets"),
        ("get", "mutatingwebhookconfigurations"),
        ("patch", "mutatingwebhookconfigurations"),
    ]:
        assert needed in verbs, f"no recorded {needed}: {sorted(verbs)}"


def test_the_request_mapping_follows_the_api_servers():
    assert attributes("GET", "/api/v1/pods", "watch=true&resourceVersion=3") == {
        "verb": "watch", "group": "", "resource": "pods", "namespace": None, "name": None,
    }
    assert attributes("PUT", f"/api/v1/namespaces/{NAMESPACE}/secrets/portcullis-tls", "") == {
        "verb": "update", "group": "", "resource": "secrets", "namespace": NAMESPACE, "name": "portcullis-tls",
    }
    assert attributes(
        "PATCH", "/apis/portcullis.dev/v1alpha1/namespaces/shop/maintenancewindows/w/status", ""
    ) == {
        "verb": "patch", "group": "portcullis.dev", "resource": "maintenancewindows/status",
        "namespace": "shop", "name": "w",
    }
    assert attributes(
        "GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/portcullis", ""
    )["verb"] == "get"
    # A Secret in another namespace is not the TLS Secret, whatever its name.
    role_rule = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["portcullis-tls"], "verbs": ["get"]}
    assert not allows(role_rule, attributes("GET", "/api/v1/namespaces/shop/secrets/other", ""))
