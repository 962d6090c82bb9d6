"""values.schema.json: every value is described, and a wrong value is refused with a
message that names it, before anything reaches the cluster."""

from __future__ import annotations

import json

import pytest
import yaml
from helm_python import HelmRenderError, HelmValuesError

from conftest import CHART, SCENARIOS, render_files

# A wrong value, and the words the refusal must contain to point the user at it.
BAD_VALUES = [
    ({"webhook": {"failurePolicy": "Sometimes"}}, ["webhook", "failurePolicy"]),
    ({"webhook": {"timeoutSeconds": 31}}, ["webhook", "timeoutSeconds"]),
    ({"controller": {"replicas": 0}}, ["controller", "replicas"]),
    ({"controller": {"replica": 3}}, ["controller", "replica"]),
    ({"controller": {"logFormat": "xml"}}, ["controller", "logFormat"]),
    ({"proxy": {"logFormat": "yaml"}}, ["proxy", "logFormat"]),
    ({"proxy": {"proxyPort": 70000}}, ["proxy", "proxyPort"]),
    ({"proxy": {"excludedNamespaces": ["Not_A_Namespace"]}}, ["proxy", "excludedNamespaces"]),
    ({"proxy": {"resources": {"requests": {"cpu": "a lot"}}}}, ["proxy", "resources", "requests", "cpu"]),
    ({"proxy": {"startupProbe": {"periodSeconds": 0}}}, ["proxy", "startupProbe", "periodSeconds"]),
    ({"proxy": {"stopDelay": "5 seconds"}}, ["proxy", "stopDelay"]),
    ({"proxy": {"stopDelay": 5}}, ["proxy", "stopDelay"]),
    ({"tls": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}}, ["tls", "certManager", "issuerRef"]),
    ({"tls": {"certManager": {"duration": "90 days"}}}, ["tls", "certManager", "duration"]),
    ({"image": {"digest": "latest"}}, ["image", "digest"]),
    ({"monitoring": {"prometheusRule": {"proxyErrorsPerSecond": 0}}}, ["monitoring", "prometheusRule", "proxyErrorsPerSecond"]),
    ({"monitoring": {"prometheusRule": {"maintenanceLongerThan": "four hours"}}}, ["monitoring", "prometheusRule", "maintenanceLongerThan"]),
    ({"replicas": 3}, ["replicas"]),
]


@pytest.mark.parametrize("values,words", BAD_VALUES, ids=[".".join(w) for _, w in BAD_VALUES])
def test_bad_values_are_refused_naming_the_field(chart, values, words):
    with pytest.raises(HelmValuesError) as refused:
        chart.validate_schema(values)
    message = str(refused.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    # `helm install` and `helm template` refuse them the same way.
    with pytest.raises(HelmValuesError):
        render_files(chart, values)


def test_proxy_and_admin_ports_must_differ(chart):
    with pytest.raises(HelmRenderError) as refused:
        render_files(chart, {"proxy": {"proxyPort": 9901}})
    assert "proxy.proxyPort and proxy.adminPort must differ" in str(refused.value)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenarios_pass_the_schema(chart, scenario):
    chart.validate_schema(SCENARIOS[scenario])


def test_the_schema_covers_every_value():
    """Every key of values.yaml is a property of the schema, every object closes itself
    with additionalProperties: false, and every leaf has a type."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node):
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
        return node

    def walk(path, value, node):
        node = resolve(node)
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} is open"
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(f"{path}.{key}", sub, node["properties"][key])
        else:
            assert "type" in node or "oneOf" in node or "enum" in node, f"{path} has no type"

    walk("values", defaults, schema)
