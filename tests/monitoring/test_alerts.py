"""The chart's alerts checked and unit-tested by promtool (issue 23, item 5).

`promtool check rules` reads the rendered PrometheusRule as Prometheus would; `promtool test
rules` runs alerts.test.yaml against it: for every alert a scenario where it fires (with its
labels and annotations as Alertmanager gets them) and one where it stays silent on the far
side of a boundary. The tests of the tests: every alert of the rule has both, and breaking a
rule (a threshold, a label, a `for:`) makes promtool fail where it should.

promtool is Debian's `prometheus` package (CI installs it); without it these tests fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import rule_groups

HERE = Path(__file__).resolve().parent
ALERT_TESTS = HERE / "alerts.test.yaml"
# The name alerts.test.yaml gives the rule file (rule_files), relative to itself.
RULES_NAME = "portcullis.rules.yaml"


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: the alert tests need it. Install Debian's "
            "`prometheus` package (apt-get install prometheus: /usr/bin/promtool), as CI does.",
            pytrace=False,
        )
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> dict[str, dict[str, Any]]:
    """The rendered alerting rules by name."""
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def alert_tests() -> dict[str, Any]:
    return yaml.safe_load(ALERT_TESTS.read_text())


def group_kind(group: dict[str, Any]) -> tuple[str, str]:
    """(alert, "fires" or "silent") of a test group of alerts.test.yaml: each is about one
    alert, and fires if any of its cases expects an alert."""
    names = {case["alertname"] for case in group.get("alert_rule_test", [])}
    assert len(names) == 1, f"{group['name']!r}: one alert per group, not {sorted(names)}"
    fires = any(case.get("exp_alerts") for case in group["alert_rule_test"])
    return names.pop(), "fires" if fires else "silent"


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (1h30m, 4h, 10m) in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"a duration: {duration!r}"
    return sum(int(n) * _UNITS[u] for n, u in parts)


def promtool_test(promtool: str, directory: Path, groups: list[dict[str, Any]] | None = None):
    """Runs alerts.test.yaml (or only `groups` of it) against directory/portcullis.rules.yaml."""
    tests = alert_tests()
    if groups is not None:
        tests["tests"] = groups
    (directory / ALERT_TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False))
    return run(promtool, "test", "rules", ALERT_TESTS.name, cwd=directory)


def failed_groups(output: str) -> set[str]:
    """The names of the test groups promtool reports FAILED."""
    return set(re.findall(r"^\s+name: (.*),$", output, re.MULTILINE))


def test_promtool_is_installed():
    # A failure of its own, besides the errors of the tests that need it.
    assert shutil.which("promtool"), (
        "promtool not found on PATH: install Debian's `prometheus` package, as CI does"
    )
    version = run("promtool", "--version")
    assert version.returncode == 0 and version.stdout.startswith("promtool, version "), (
        version.stdout + version.stderr
    )


def test_promtool_check_rules_accepts_every_rule(promtool, rules_file):
    count = sum(len(g["rules"]) for g in rule_groups())
    assert count == len(alerts()) == 7
    result = run(promtool, "check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert lines == [f"Checking {rules_file}", f"SUCCESS: {count} rules found"], result.stdout
    assert result.stderr == ""


def test_promtool_test_rules_passes(promtool, rules_file, tmp_path):
    shutil.copy(rules_file, tmp_path / RULES_NAME)
    result = promtool_test(promtool, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [line.strip() for line in result.stdout.splitlines() if line.strip()] == [
        f"Unit Testing:  {ALERT_TESTS.name}",
        "SUCCESS",
    ], output


def test_the_test_file_reads_the_rendered_rules():
    tests = alert_tests()
    assert tests["rule_files"] == [RULES_NAME]
    for group in tests["tests"]:
        assert "interval" in group, f"{group['name']!r} names its scrape interval"
        assert not group.get("promql_expr_test"), "alerts only"


def test_every_alert_has_a_scenario_where_it_fires_and_one_where_it_stays_silent():
    rules = alerts()
    kinds: dict[str, set[str]] = {name: set() for name in rules}
    for group in alert_tests()["tests"]:
        alert, kind = group_kind(group)
        # A test of a renamed or removed alert would pass silently: none.
        assert alert in rules, f"{group['name']!r} tests {alert}, which the rule does not have"
        assert group["name"].startswith(f"{alert} "), group["name"]
        kinds[alert].add(kind)
        if kind == "fires":
            wait = seconds(rules[alert].get("for", "0s"))
            firing = [c for c in group["alert_rule_test"] if c.get("exp_alerts")]
            assert all(seconds(c["eval_time"]) >= wait for c in firing), group["name"]
            # The `for:` itself is tested: the step before the alert fires, it is pending.
            first = min(seconds(c["eval_time"]) for c in firing)
            assert any(
                not c.get("exp_alerts") and first - 60 <= seconds(c["eval_time"]) < first
                for c in group["alert_rule_test"]
            ), f"{group['name']!r}: no silent case the minute before it fires"
            for case in firing:
                for alert_ in case["exp_alerts"]:
                    assert alert_["exp_labels"]["severity"] == rules[alert]["labels"]["severity"]
                    assert set(alert_["exp_annotations"]) == set(rules[alert]["annotations"])
    missing = {name: sorted({"fires", "silent"} - got) for name, got in kinds.items()}
    missing = {name: m for name, m in missing.items() if m}
    assert not missing, f"alerts without these scenarios in alerts.test.yaml: {missing}"


# Each alert broken in a copy of the rendered rules, and the scenarios of alerts.test.yaml
# that must then fail: the firing scenario when the alert can no longer fire, the silent one
# when a boundary it tests is gone (and the firing one too where its pending step moves).
BOTH = {"fires", "silent"}
MUTATIONS = [
    # (id, alert, field, old, new, scenarios that fail)
    ("disconnected-never", "PortcullisSidecarsDisconnected", "expr", "== 0", "< 0", {"fires"}),
    ("disconnected-for-9m", "PortcullisSidecarsDisconnected", "for", "10m", "9m", BOTH),
    ("status-wrong-result", "PortcullisStatusWritesFailing", "expr", 'result="error"', 'result="failed"', {"fires"}),
    ("status-for-14m", "PortcullisStatusWritesFailing", "for", "15m", "14m", BOTH),
    ("proxy-threshold-1000", "PortcullisProxyErrors", "expr", ") > 1\n", ") > 1000\n", {"fires"}),
    ("proxy-at-threshold", "PortcullisProxyErrors", "expr", ") > 1\n", ") >= 1\n", {"silent"}),
    ("proxy-app-stopping-counted", "PortcullisProxyErrors", "expr", '"maintenance|app_stopping"', '"maintenance"', {"silent"}),
    ("proxy-app-5xx-counted", "PortcullisProxyErrors", "expr", 'source="proxy", ', "", BOTH),
    ("past-end-an-hour-late", "PortcullisMaintenancePastItsEnd", "expr", "time() - 60", "time() - 3600", {"fires"}),
    ("past-end-no-grace", "PortcullisMaintenancePastItsEnd", "expr", "time() - 60", "time()", BOTH),
    ("past-end-open-ended", "PortcullisMaintenancePastItsEnd", "expr", "_seconds) > 0\n  and", "_seconds) >= 0\n  and", BOTH),
    ("too-long-per-pod", "PortcullisMaintenanceTooLong", "expr", "by (namespace, window)", "by (namespace, window, pod)", {"fires"}),
    ("too-long-per-namespace", "PortcullisMaintenanceTooLong", "expr", "by (namespace, window)", "by (namespace)", BOTH),
    ("injection-wrong-result", "PortcullisInjectionFailing", "expr", 'result="failed"', 'result="error"', {"fires"}),
    ("injection-window-5m", "PortcullisInjectionFailing", "expr", "[15m]", "[5m]", {"fires"}),
    ("injection-no-change", "PortcullisInjectionFailing", "expr", ") > 0", ") >= 0", BOTH),
    ("certificate-1-day", "PortcullisCertificateExpiring", "expr", "< 7 * 86400", "< 1 * 86400", {"fires"}),
    ("certificate-unloaded-counted", "PortcullisCertificateExpiring", "expr", "_seconds > 0)", "_seconds)", BOTH),
    ("certificate-for-39m", "PortcullisCertificateExpiring", "for", "1h", "39m", BOTH),
]


def test_every_alert_is_broken_by_a_mutation_of_each_kind():
    covered = {(alert, kind) for _, alert, _, _, _, fails in MUTATIONS for kind in fails}
    assert covered == {(alert, kind) for alert in alerts() for kind in ("fires", "silent")}


@pytest.mark.parametrize(
    "alert, field, old, new, fails", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_a_broken_rule_fails_its_tests(promtool, tmp_path, alert, field, old, new, fails):
    groups = rule_groups()
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == alert]
    assert rule[field].count(old) == 1, f"the mutation no longer applies to {rule[field]!r}"
    rule[field] = rule[field].replace(old, new)
    (tmp_path / RULES_NAME).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check = run(promtool, "check", "rules", RULES_NAME, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr  # still a valid rule

    scenarios = [g for g in alert_tests()["tests"] if group_kind(g)[0] == alert]
    result = promtool_test(promtool, tmp_path, scenarios)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"alerts.test.yaml passes with {alert} broken:\n{output}"
    assert "FAILED" in output
    expected = {g["name"] for g in scenarios if group_kind(g)[1] in fails}
    assert failed_groups(output) == expected, output
