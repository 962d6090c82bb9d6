"""`make image` (packaging/image.sh) picks docker, else podman, else buildah (issue 23,
item 1). Each engine is a stub here that records its arguments: nothing is built."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "image.sh"
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$ENGINE_LOG"
if [ "$1" = info ]; then exit "${DOCKER_INFO_RC:-0}"; fi
exit 0
"""


def image_sh(tmp_path: Path, engines: list[str], *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Only what the script needs besides the engines.
    for tool in ("dirname", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    for engine in engines:
        (bin_dir / engine).write_text(STUB)
        (bin_dir / engine).chmod(0o755)
    log = tmp_path / "engine.log"
    log.touch()
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), *args],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={"PATH": str(bin_dir), "ENGINE_LOG": str(log), **env},
    )
    return proc, log.read_text().splitlines()


@pytest.mark.parametrize(
    ("engines", "env", "build"),
    [
        (["docker", "podman", "buildah"], {}, "docker build -t portcullis:dev -f Dockerfile ."),
        (["podman", "buildah"], {}, "podman build -t portcullis:dev -f Dockerfile ."),
        (["buildah"], {}, "buildah bud -t portcullis:dev -f Dockerfile ."),
        # A docker client whose daemon does not answer gives way to a daemonless engine...
        (["docker", "buildah"], {"DOCKER_INFO_RC": "1"}, "buildah bud -t portcullis:dev -f Dockerfile ."),
        # ...and is used, to say why it fails, when it is all there is.
        (["docker"], {"DOCKER_INFO_RC": "1"}, "docker build -t portcullis:dev -f Dockerfile ."),
        (["docker", "podman"], {"ENGINE": "podman", "IMAGE": "x/y:1"}, "podman build -t x/y:1 -f Dockerfile ."),
    ],
)
def test_engine(tmp_path: Path, engines: list[str], env: dict[str, str], build: str) -> None:
    proc, calls = image_sh(tmp_path, engines, **env)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if not c.endswith(" info")] == [build]


def test_name_and_flags_as_arguments(tmp_path: Path) -> None:
    # As `make image` calls it: the name first, then anything for the engine's build.
    proc, calls = image_sh(tmp_path, ["podman"], "registry.example/p:2", "--platform", "linux/arm64", IMAGE="ignored:1")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["podman build -t registry.example/p:2 -f Dockerfile --platform linux/arm64 ."]


def test_no_engine(tmp_path: Path) -> None:
    proc, calls = image_sh(tmp_path, [])
    assert proc.returncode != 0
    assert calls == []
    for name in ("docker", "podman", "buildah", "make image-archive"):
        assert name in proc.stderr


def test_unknown_engine(tmp_path: Path) -> None:
    proc, calls = image_sh(tmp_path, ["docker"], ENGINE="nerdctl")
    assert proc.returncode != 0
    assert calls == []
    assert "ENGINE must be docker, podman or buildah" in proc.stderr
