"""The chart's `inject.yaml` read by the real injector: `portcullis inject --config` gets
the file the ConfigMap holds and injects a Pod as the webhook would, so a key the code does
not know (it refuses unknown fields) or a value it cannot use fails here, not in a cluster.
The injected pod must pass the OpenAPI schema (kubernetes-validate) and the API server's
own Pod validation, which the schema leaves out (`portcullis validate`: port name lengths,
uniqueness across containers, probe handlers...)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import NAMESPACE, REPO, SCENARIOS

# Any PEM certificate block does: the injector hands it to the sidecar as is.
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]},
}


def binary() -> Path:
    """The portcullis binary that `cargo test` (or `cargo build`) leaves in the target folder."""
    if "PORTCULLIS_BIN" in os.environ:
        return Path(os.environ["PORTCULLIS_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "debug" / "portcullis"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --bin portcullis` first (or set PORTCULLIS_BIN)")
    return path


def inject(tmp_path: Path, config_text: str, pod: dict) -> tuple[dict, str]:
    config = tmp_path / "inject.yaml"
    config.write_text(config_text)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    done = subprocess.run(
        [binary(), "inject", "--config", config, "-f", manifest, "--ca-pem", CA_PEM],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout), done.stderr


def api_server_accepts(tmp_path: Path, manifest: dict) -> None:
    """`portcullis validate`: exit 0, and the pod named valid."""
    path = tmp_path / "injected.yaml"
    path.write_text(yaml.safe_dump(manifest))
    done = subprocess.run([binary(), "validate", "-f", path], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr
    name = manifest["metadata"]["name"]
    assert done.stderr == f"{manifest['kind']} {manifest['metadata']['namespace']}/{name}: valid\n"


def sidecar(pod: dict) -> dict:
    (found,) = [c for c in pod["spec"].get("initContainers", []) if c["name"] == "portcullis-proxy"]
    return found


@pytest.mark.parametrize("scenario", ["defaults", "images", "custom-resources", "stop-delay", "everything"])
def test_the_injector_reads_the_chart_config(render, tmp_path, scenario):
    rendered = render(SCENARIOS[scenario])
    config_text = rendered.one("ConfigMap", "portcullis-inject")["data"]["inject.yaml"]
    config = yaml.safe_load(config_text)
    injected, _ = inject(tmp_path, config_text, POD)
    proxy = sidecar(injected)
    assert proxy["image"] == config["image"]
    assert proxy["imagePullPolicy"] == config["imagePullPolicy"]
    assert proxy["resources"] == config["resources"]
    args = proxy["args"]
    assert args[args.index("--controller") + 1] == f"https://portcullis.{NAMESPACE}.svc:8090"
    assert args[args.index("--listen") + 1] == f"0.0.0.0:{config['proxyPort']}"
    assert args[args.index("--admin") + 1] == f"0.0.0.0:{config['adminPort']}"
    assert args[args.index("--log-format") + 1] == config["logFormat"]
    assert args[args.index("--stop-delay") + 1] == config["stopDelay"]
    # The app's preStop hook calls the admin port, with the token the sidecar has.
    (token,) = [e["value"] for e in proxy["env"] if e["name"] == "PORTCULLIS_STOP_TOKEN"]
    assert injected["spec"]["containers"][0]["lifecycle"] == {
        "preStop": {
            "httpGet": {
                "path": "/prestop",
                "port": config["adminPort"],
                "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": token}],
            }
        }
    }
    assert {"name": "portcullis-adm", "containerPort": config["adminPort"]} in proxy["ports"]
    assert {"name": "http", "containerPort": config["proxyPort"], "protocol": "TCP"} in proxy["ports"]
    for version in ("1.33.0", "1.35.0"):
        kubernetes_validate.validate(injected, version, strict=True)
    api_server_accepts(tmp_path, injected)


def test_the_stop_delay_value_is_rendered(render):
    """`proxy.stopDelay` reaches `inject.yaml` as written; `5s` unless set."""
    for scenario, expected in (("defaults", "5s"), ("stop-delay", "12s")):
        config = yaml.safe_load(render(SCENARIOS[scenario]).one("ConfigMap")["data"]["inject.yaml"])
        assert config["stopDelay"] == expected, scenario


def test_the_injector_honours_the_excluded_namespaces(render, tmp_path):
    config_text = render(SCENARIOS["excluded-namespaces"]).one("ConfigMap")["data"]["inject.yaml"]
    for namespace in ("monitoring", "istio-system", NAMESPACE, "kube-system"):
        pod = {**POD, "metadata": {"name": "web", "namespace": namespace}}
        unchanged, log = inject(tmp_path, config_text, pod)
        assert unchanged == pod, namespace
        assert "excluded" in log
    injected, _ = inject(tmp_path, config_text, POD)
    assert sidecar(injected)["name"] == "portcullis-proxy"


def test_the_api_servers_rules_catch_what_the_schema_does_not(tmp_path):
    """What every earlier release injected: the schema passes it, the API server does not."""
    pod = yaml.safe_load(yaml.safe_dump(POD))
    pod["spec"]["containers"][0]["ports"].append({"name": "portcullis-admin", "containerPort": 9901})
    for version in ("1.33.0", "1.35.0"):
        kubernetes_validate.validate(pod, version, strict=True)
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    done = subprocess.run([binary(), "validate", "-f", path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout == (
        'Pod shop/web: spec.containers[0].ports[1].name: Invalid value: "portcullis-admin": '
        "must be no more than 15 characters\n"
    )
