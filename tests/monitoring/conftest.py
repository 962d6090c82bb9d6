"""What the monitoring tests share: the chart's alerting rules as Prometheus reads them
(rendered by Helm's own library with the default thresholds) and the chart's Grafana
dashboard."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "portcullis"
DASHBOARD = CHART / "dashboards" / "portcullis.json"

# The chart tests' renderer, loaded under its own name (both files are called conftest).
_spec = importlib.util.spec_from_file_location("chart_conftest", REPO / "tests" / "chart" / "conftest.py")
chart_conftest = importlib.util.module_from_spec(_spec)
sys.modules["chart_conftest"] = chart_conftest
_spec.loader.exec_module(chart_conftest)

# The PrometheusRule as a user turns it on, with the chart's default thresholds.
RULE_VALUES = {"monitoring": {"prometheusRule": {"enabled": True}}}


def rule_groups() -> list[dict[str, Any]]:
    """The `spec.groups` of the rendered PrometheusRule: a Prometheus rule file's content."""
    with chart_conftest.Chart.load(CHART) as chart:
        rendered = chart_conftest.Rendered(chart_conftest.render_files(chart, RULE_VALUES))
    return rendered.one("PrometheusRule")["spec"]["groups"]


@pytest.fixture(scope="session")
def rules_file(tmp_path_factory) -> Path:
    """The rendered rules written as a rule file for promtool and prometheus."""
    path = tmp_path_factory.mktemp("rules") / "portcullis.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())
