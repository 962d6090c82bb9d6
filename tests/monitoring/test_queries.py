"""No dangling query (issue 23, item 6): a real Prometheus (Debian's package) on 127.0.0.1
scrapes a real controller and real sidecars (examples/metrics_fixture: the `portcullis`
binary against a fake Kubernetes API server, under a short load that makes 502s, 503s and
504s, then a trickle), and every PromQL expression of the chart's alerting rules and of its
Grafana dashboard, evaluated through Prometheus' HTTP API, returns at least one series.

An alert's expression returns series only while the alert fires, so each is evaluated
whole (it must not fail) and split at its top-level comparisons and set operators (by a
real PromQL parser): the vector side of a comparison with a scalar, both sides of a
comparison of two vectors, both sides of `and`, `or`, `unless`; each such operand must
return series. A dashboard's queries must return series whole.

Needs `target/debug/portcullis` and `target/debug/examples/metrics_fixture` built
(`cargo build --bin portcullis --example metrics_fixture`: the Makefile does it first) and
`prometheus` on the PATH."""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "portcullis" / "dashboards" / "portcullis.json"
FIXTURE = REPO / "target" / "debug" / "examples" / "metrics_fixture"
BINARY = REPO / "target" / "debug" / "portcullis"
BUILD = "cargo build --bin portcullis --example metrics_fixture"

# Grafana's variables, as a user who picks "All" gets them: every namespace and workload;
# the rate interval (and the other built-in ranges) a minute, which holds about 60 samples
# at the 1 s scrape interval used here.
VARIABLES = {
    "namespace": ".*",
    "workload": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
}
# `$name`, `${name}`, `${name:format}`, `[[name]]`; not `$1` (a label_replace group).
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]|\$([A-Za-z_]\w*)")

# Longest waits, for a loaded 2-core machine.
FIXTURE_READY = 150  # the fixture waits up to 60 s for each of its own steps
PROMETHEUS_READY = 60
SCRAPES = 60
# Every target must have been scraped this many times before any query: rates over a
# minute then have several samples.
MIN_SCRAPES = 5

COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPERATORS = {"and", "or", "unless"}

# What the fixture's load makes the sidecars answer themselves (docs/reference.md).
PROXY_RESPONSES = {
    ("502", "content_type_mismatch"),
    ("502", "malformed_response"),
    ("503", "maintenance"),
    ("503", "overloaded"),
    ("503", "queue_timeout"),
    ("504", "response_headers_timeout"),
}


# --- The expressions. ---------------------------------------------------------------


@dataclass
class Query:
    """One expression to evaluate: where it comes from, its text, and whether it must
    return series (an alert's whole expression need only evaluate)."""

    source: str
    expr: str
    needs_series: bool = True


def substitute(expr: str) -> tuple[str, list[str]]:
    """`expr` with Grafana's variables replaced; the names it uses that are unknown."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name in VARIABLES:
            return VARIABLES[name]
        unknown.append(name)
        return match.group(0)

    return VARIABLE.sub(replace, expr), unknown


def unparen(node: Any) -> Any:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def value_type(node: Any) -> str:
    """PromQL's type of an expression: scalar, string, vector or matrix."""
    node = unparen(node)
    if isinstance(node, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(node, promql_parser.StringLiteral):
        return "string"
    if isinstance(node, promql_parser.UnaryExpr):
        return value_type(node.expr)
    if isinstance(node, promql_parser.Call):
        returns = node.func.return_type
        if returns == promql_parser.ValueType.Scalar:
            return "scalar"
        if returns == promql_parser.ValueType.Matrix:
            return "matrix"
        if returns == promql_parser.ValueType.String:
            return "string"
        return "vector"
    if isinstance(node, promql_parser.BinaryExpr):
        sides = {value_type(node.lhs), value_type(node.rhs)}
        return "scalar" if sides == {"scalar"} else "vector"
    if isinstance(node, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr)):
        return "matrix"
    return "vector"


def operands(node: Any) -> list[Any]:
    """The vector operands of an alert's condition that must each return series: split at
    top-level set operators (both sides) and comparisons without `bool` (the vector sides)."""
    node = unparen(node)
    if isinstance(node, promql_parser.BinaryExpr):
        op = str(node.op).lower()
        returns_bool = node.modifier is not None and node.modifier.return_bool
        if op in SET_OPERATORS or (op in COMPARISONS and not returns_bool):
            sides = [s for s in (node.lhs, node.rhs) if value_type(s) != "scalar"]
            return [o for side in sides for o in operands(side)]
    return [node]


def rule_queries(rules_file: Path) -> tuple[list[Query], list[str]]:
    """Each rule's whole expression (an alert's need not return series), and each operand
    of an alert's condition; and the expressions the parser refuses."""
    queries: list[Query] = []
    problems: list[str] = []
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            expr = rule["expr"].strip()
            alert = "alert" in rule
            queries.append(Query(f"rule {name}", expr, needs_series=not alert))
            if not alert:
                continue
            try:
                tree = promql_parser.parse(expr)
            except ValueError as e:
                problems.append(f"rule {name}: {expr!r}: the PromQL parser refuses it: {e}")
                continue
            split = operands(tree)
            if not split:
                problems.append(f"rule {name}: {expr!r}: no vector operand")
            for operand in split:
                queries.append(Query(f"rule {name}, operand", str(operand)))
    return queries, problems


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


LABEL_VALUES = re.compile(
    r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$", re.S
)
QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def variable_query(query: str) -> str:
    """A template variable's query as the PromQL Grafana runs for it."""
    if match := LABEL_VALUES.match(query):
        label = match["label"]
        selector = (match["selector"] or "").strip() or f'{{{label}!=""}}'
        return f"group by ({label}) ({selector})"
    if match := QUERY_RESULT.match(query):
        return match["expr"]
    return query


def dashboard_queries(dashboard: dict[str, Any]) -> tuple[list[Query], list[str]]:
    """Every panel target's expression, every query variable's query and every annotation
    query, with the variables replaced; and the variables that are unknown."""
    raw: list[tuple[str, str]] = []
    for panel in walk_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                title = panel.get("title") or f"panel {panel.get('id')}"
                source = f"dashboard panel {title!r} ({target.get('refId', '?')})"
                raw.append((source, target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            raw.append((f"dashboard variable ${variable.get('name')}", variable_query(query)))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            raw.append((f"dashboard annotation {annotation.get('name')!r}", annotation["expr"]))
    queries: list[Query] = []
    problems: list[str] = []
    for source, expr in raw:
        text, unknown = substitute(expr)
        if unknown:
            problems.append(f"{source}: {expr!r}: unknown variables {sorted(set(unknown))}")
            continue
        queries.append(Query(source, text))
    return queries, problems


def test_the_split_is_at_the_top_level_comparisons_and_set_operators():
    """The operands taken from alert conditions, checked on the shapes the rules use."""
    split = lambda expr: [str(o) for o in operands(promql_parser.parse(expr))]  # noqa: E731
    assert split("max by (namespace, pod) (a) == 0") == ["max by (namespace, pod)(a{})"]
    assert split("sum(rate(a[10m])) > 0") == ["sum(rate(a{}[10m]))"]
    assert split("max(a) > 0 and max(a) < time() - 60") == ["max(a{})", "max(a{})"]
    assert split("min(a > 0) - time() < 7 * 86400") == ["min(a{} > 0) - time()"]
    assert split("(a > 1) or b unless c") == ["a{}", "b{}", "c{}"]
    assert split("a > b") == ["a{}", "b{}"]
    assert split("a > bool 1") == ["a{} > bool 1"]
    assert split("1 < a") == ["a{}"]
    assert split("rate(a[5m]) / rate(b[5m])") == ["rate(a{}[5m]) / rate(b{}[5m])"]
    assert variable_query("label_values(portcullis_responses_total, namespace)") == (
        "group by (namespace) (portcullis_responses_total)"
    )
    assert variable_query('label_values(up{namespace=~"$namespace"}, workload)') == (
        'group by (workload) (up{namespace=~"$namespace"})'
    )
    assert substitute('rate(a{namespace=~"$namespace",w=~"${workload}"}[$__rate_interval])') == (
        'rate(a{namespace=~".*",w=~".*"}[1m])',
        [],
    )
    assert substitute("a{pod=~\"$pod\"}") == ('a{pod=~"$pod"}', ["pod"])
    replace = 'label_replace(a, "b", "$1", "c", "(.*)")'
    assert substitute(replace) == (replace, [])


# --- The system under test and Prometheus. ------------------------------------------


def die_with_parent() -> None:
    """In a child between fork and exec: SIGKILL when this test process dies, however it
    dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, within: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Prometheus:
    """The Prometheus server, and the fixture it scrapes."""

    def __init__(self, address: str, logs: Path, fixture: subprocess.Popen, targets: int):
        self.address = address
        self.logs = logs
        self.fixture = fixture
        self.targets = targets

    def instant(self) -> float:
        """A time, two seconds back (longer than a scrape may take, so that no sample up
        to it is still to come), at which the last scrape of every target succeeded: every
        series is current there (a failed scrape would have marked them stale), and a
        query at it has the same answer whenever it is asked."""

        def every_target_up_then():
            at = time.time() - 2
            up = [r["value"][1] for r in self.query("up", at)["data"]["result"]]
            return at if len(up) == self.targets and set(up) == {"1"} else None

        what = "a time when every target's last scrape succeeded"
        return wait_for(what, SCRAPES, every_target_up_then, str(self.logs))

    def fixture_died(self) -> str | None:
        """What the fixture said, if it has exited: its targets are gone."""
        if self.fixture.poll() is None:
            return None
        log = (self.logs / "metrics_fixture.log").read_text(errors="replace")
        return f"metrics_fixture exited ({self.fixture.returncode}):\n{log[-4000:]}"

    def get(self, path: str, **params: str) -> Any:
        url = f"http://{self.address}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def query(self, expr: str, at: float) -> dict[str, Any]:
        """The API's answer to an instant query, errors included (400 and 422 carry JSON)."""
        data = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"}).encode()
        request = urllib.request.Request(f"http://{self.address}/api/v1/query", data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}: {body[:200]!r}"}


def read_line(process: subprocess.Popen, within: float, logs: Path) -> str:
    """The fixture's first line on stdout, waiting at most `within` seconds."""
    deadline = time.monotonic() + within
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or process.poll() is not None:
            stderr = logs.read_text(errors="replace")[-4000:] if logs.exists() else ""
            state = "exited" if process.poll() is not None else f"not ready in {within} s"
            pytest.fail(f"metrics_fixture {state}:\n{stderr}")
        ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk and process.poll() is not None:
                continue
            line += chunk
    return line.decode()


def wait_for(what: str, within: float, check, logs: str) -> Any:
    """Polls `check` every 250 ms until it returns something true; fails after `within`."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as e:  # not listening yet, or a half-written answer
            last = e
        else:
            if last and not isinstance(last, Exception):
                return last
        time.sleep(0.25)
    pytest.fail(f"{what} not within {within} s (last: {last!r}); logs in {logs}")


def prometheus_config(targets: dict[str, Any], rules_file: Path) -> dict[str, Any]:
    """Scrapes every second, with the labels the chart's ServiceMonitor (the controller)
    and PodMonitor (the sidecars) give the targets in a cluster; the chart's rules loaded."""
    controller = targets["controller"]
    sidecars = [
        {
            "targets": [s["address"]],
            "labels": {"namespace": s["namespace"], "pod": s["pod"], "workload": s["workload"]},
        }
        for s in targets["sidecars"]
    ]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": "portcullis",
                "static_configs": [
                    {
                        "targets": [controller["address"]],
                        "labels": {"namespace": controller["namespace"], "pod": controller["pod"]},
                    }
                ],
            },
            {"job_name": "portcullis-system/portcullis-sidecars", "static_configs": sidecars},
        ],
    }


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, rules_file) -> Iterator[Prometheus]:
    for path in (FIXTURE, BINARY):
        if not path.exists():
            pytest.fail(f"{path} is missing: `{BUILD}` first")
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on the PATH (Debian: apt-get install prometheus)")
    work = tmp_path_factory.mktemp("queries")
    logs = work / "logs"
    logs.mkdir()
    fixture_log = logs / "metrics_fixture.log"
    processes: list[subprocess.Popen] = []
    try:
        with fixture_log.open("wb") as stderr:
            fixture = subprocess.Popen(
                [str(FIXTURE), str(logs)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PORTCULLIS_BIN": str(BINARY)},
                preexec_fn=die_with_parent,
            )
        processes.append(fixture)
        targets = json.loads(read_line(fixture, FIXTURE_READY, fixture_log))
        config = work / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(targets, rules_file), sort_keys=False))
        address = f"127.0.0.1:{free_port()}"
        with (logs / "prometheus.log").open("wb") as out:
            server_process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address={address}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        processes.append(server_process)
        expected = 1 + len(targets["sidecars"])
        server = Prometheus(address, logs, fixture, expected)

        def ready():
            if server_process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{(logs / 'prometheus.log').read_text()}")
            with urllib.request.urlopen(f"http://{address}/-/ready", timeout=5) as response:
                return response.status == 200

        wait_for("Prometheus ready", PROMETHEUS_READY, ready, str(logs))

        def every_target_up():
            active = server.get("/api/v1/targets", state="active")["data"]["activeTargets"]
            return len(active) == expected and all(t["health"] == "up" for t in active)

        wait_for("every target up", SCRAPES, every_target_up, str(logs))

        def scraped_enough():
            result = server.query("count_over_time(up[1m])", time.time())["data"]["result"]
            scrapes = [float(r["value"][1]) for r in result]
            return len(scrapes) == expected and min(scrapes) >= MIN_SCRAPES

        wait_for(f"{MIN_SCRAPES} scrapes of every target", SCRAPES, scraped_enough, str(logs))
        yield server
    finally:
        if processes:
            processes[0].stdin.close()  # the fixture ends when its standard input closes
        for process in reversed(processes):
            stop(process)


def evaluate(prometheus: Prometheus, queries: list[Query]) -> list[str]:
    """Every query at one instant; what went wrong with each, all of them."""
    at = prometheus.instant()
    failures: list[str] = []
    for query in queries:
        answer = prometheus.query(query.expr, at)
        where = f"{query.source}: {query.expr!r}"
        if answer.get("status") != "success":
            failures.append(f"{where}: {answer.get('errorType')}: {answer.get('error')}")
            continue
        kind, result = answer["data"]["resultType"], answer["data"]["result"]
        if not query.needs_series:
            continue
        if kind not in ("vector", "matrix"):
            failures.append(f"{where}: a {kind} ({result}), not series")
        elif not result:
            failures.append(f"{where}: no series")
    return failures


def report(prometheus: Prometheus, failures: list[str]) -> None:
    """Every failure at once, each with its expression."""
    if died := prometheus.fixture_died():
        failures.append(died)
    if failures:
        heading = f"{len(failures)} failures (logs in {prometheus.logs}):"
        pytest.fail("\n".join([heading, *failures]), pytrace=False)


def test_the_load_made_the_sidecars_answer_502_503_and_504(prometheus):
    """The system under test did what the queries need, as Prometheus sees it: every
    sidecar scraped with its labels, and the sidecars' own 5xx by reason."""
    assert not (died := prometheus.fixture_died()), died
    at = prometheus.instant()

    def series(expr: str, *labels: str) -> list[tuple[str, ...]]:
        answer = prometheus.query(expr, at)
        assert answer["status"] == "success", answer
        return sorted(tuple(r["metric"][label] for label in labels) for r in answer["data"]["result"])

    made = series('sum by (status, reason) (portcullis_responses_total{source="proxy"})', "status", "reason")
    assert made == sorted(PROXY_RESPONSES)
    assert series("group by (namespace, pod, workload) (portcullis_responses_total)", "pod", "workload") == [
        ("maint-1", "maint"),
        ("web-1", "web"),
        ("web-2", "web"),
        ("web-3", "web"),
    ]
    assert series("portcullis_controller_connected == 1", "pod") == [("maint-1",), ("web-1",), ("web-2",)]
    assert series("portcullis_controller_connected == 0", "pod") == [("web-3",)]


def test_every_rule_expression_returns_series(prometheus, rules_file):
    queries, failures = rule_queries(rules_file)
    failures += evaluate(prometheus, queries)

    # Prometheus evaluates the rules too: none may fail.
    def evaluated():
        rules = [r for g in prometheus.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return rules if rules and not any(r["lastEvaluation"].startswith("0001") for r in rules) else None

    rules = wait_for("every rule evaluated", SCRAPES, evaluated, str(prometheus.logs))
    for rule in rules:
        if rule["health"] != "ok":
            failures.append(f"rule {rule['name']}: Prometheus' evaluation: {rule.get('lastError')}")
    report(prometheus, failures)


def test_every_dashboard_expression_returns_series(prometheus, request):
    if not DASHBOARD.exists():
        pytest.fail(f"{DASHBOARD.relative_to(REPO)} is missing")
    queries, failures = dashboard_queries(request.getfixturevalue("dashboard"))
    assert queries, "the dashboard has no query"
    failures += evaluate(prometheus, queries)
    report(prometheus, failures)
