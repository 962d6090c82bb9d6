"""The MutatingWebhookConfiguration and the two TLS modes: self-issued (the default) and
cert-manager."""

from __future__ import annotations

from conftest import NAMESPACE, SCENARIOS, container

NOT_EXCLUDED = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NAMESPACE, "kube-system"]}


def common(failure_policy="Fail", timeout=10):
    return {
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "portcullis-webhook", "namespace": NAMESPACE, "path": "/inject", "port": 443}},
        "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}
        ],
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": timeout,
        "reinvocationPolicy": "IfNeeded",
    }


def expected_webhooks(not_excluded=NOT_EXCLUDED, **kw):
    return [
        {
            "name": "namespaced.inject.portcullis.dev",
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "portcullis.dev/inject", "operator": "In", "values": ["enabled"]},
                    not_excluded,
                ]
            },
            "objectSelector": {"matchExpressions": [{"key": "portcullis.dev/inject", "operator": "NotIn", "values": ["disabled"]}]},
            **common(**kw),
        },
        {
            "name": "labelled.inject.portcullis.dev",
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "portcullis.dev/inject", "operator": "NotIn", "values": ["enabled"]},
                    not_excluded,
                ]
            },
            "objectSelector": {"matchExpressions": [{"key": "portcullis.dev/inject", "operator": "In", "values": ["enabled"]}]},
            **common(**kw),
        },
    ]


def test_webhooks_and_selectors_as_designed(render):
    config = render().one("MutatingWebhookConfiguration", "portcullis")
    assert config["webhooks"] == expected_webhooks()
    # No caBundle: the controller patches it in, and helm never touches it afterwards.
    assert "annotations" not in config["metadata"]
    for webhook in config["webhooks"]:
        assert "caBundle" not in webhook["clientConfig"]


def test_failure_policy_and_timeout_values(render):
    config = render(SCENARIOS["fail-open"]).one("MutatingWebhookConfiguration")
    assert config["webhooks"] == expected_webhooks(failure_policy="Ignore", timeout=5)


def test_extra_excluded_namespaces_are_filtered_by_the_api_server(render):
    config = render(SCENARIOS["excluded-namespaces"]).one("MutatingWebhookConfiguration")
    not_excluded = {**NOT_EXCLUDED, "values": [NAMESPACE, "kube-system", "monitoring", "istio-system"]}
    assert config["webhooks"] == expected_webhooks(not_excluded=not_excluded)


def test_the_controller_keeps_the_ca_bundle_in_self_issued_mode(render):
    rendered = render()
    args = container(rendered.one("Deployment"))["args"]
    assert "--webhook-config=portcullis" in args
    assert "--tls-secret=portcullis-tls" in args
    assert not any(a.startswith("--tls-dir") for a in args)
    secret = rendered.one("Secret", "portcullis-tls")
    # Empty: the controller fills it in; no keep policy, so `helm uninstall` removes it.
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        # The chart's standard labels, as on every object it makes.
        "metadata": {"name": "portcullis-tls", "namespace": NAMESPACE,
                     "labels": rendered.one("Deployment")["metadata"]["labels"]},
        "type": "Opaque",
    }
    assert rendered.all("Certificate") == [] and rendered.all("Issuer") == []


def test_cert_manager_mode(render):
    rendered = render(SCENARIOS["cert-manager"])
    config = rendered.one("MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/portcullis-serving"}
    assert config["webhooks"] == expected_webhooks()
    assert rendered.all("Secret") == []

    serving = rendered.one("Certificate", "portcullis-serving")
    assert serving["spec"]["secretName"] == "portcullis-serving-cert"
    assert serving["spec"]["issuerRef"] == {"name": "portcullis-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert serving["spec"]["dnsNames"] == [
        f"{svc}{suffix}"
        for svc in ("portcullis", "portcullis-webhook")
        for suffix in ("", f".{NAMESPACE}", f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local")
    ]
    assert (serving["spec"]["duration"], serving["spec"]["renewBefore"]) == ("2160h", "720h")
    # The chart's own chain: self-signed Issuer -> CA Certificate -> CA Issuer.
    assert rendered.one("Issuer", "portcullis-selfsigned")["spec"] == {"selfSigned": {}}
    ca = rendered.one("Certificate", "portcullis-ca")["spec"]
    assert ca["isCA"] is True and ca["secretName"] == "portcullis-ca"
    assert ca["issuerRef"] == {"name": "portcullis-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}
    assert rendered.one("Issuer", "portcullis-ca")["spec"] == {"ca": {"secretName": "portcullis-ca"}}

    deployment = rendered.one("Deployment")
    c = container(deployment)
    assert "--tls-dir=/var/run/portcullis/tls" in c["args"]
    assert not any(a.split("=")[0] in ("--tls-secret", "--webhook-config", "--tls-san") for a in c["args"])
    assert {"name": "tls", "mountPath": "/var/run/portcullis/tls", "readOnly": True} in c["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "portcullis-serving-cert"}} in deployment["spec"]["template"]["spec"]["volumes"]


def test_cert_manager_with_an_issuer_of_ones_own(render):
    rendered = render(SCENARIOS["cert-manager-cluster-issuer"])
    assert rendered.all("Issuer") == []
    assert [c["metadata"]["name"] for c in rendered.all("Certificate")] == ["portcullis-serving"]
    assert rendered.one("Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
