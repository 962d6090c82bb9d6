"""One version everywhere (issue 23, item 3): the crate's version, the chart's appVersion and
the image tag the chart deploys by default agree, so that `helm install` runs the release
it was packaged with."""

from __future__ import annotations

import pathlib
import tomllib

import yaml

from conftest import container

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_one_version_everywhere(render):
    crate = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    chart = yaml.safe_load((ROOT / "charts/portcullis/Chart.yaml").read_text())
    assert chart["appVersion"] == crate
    image = container(render().one("Deployment", "portcullis"))["image"]
    assert image.rsplit(":", 1)[1] == crate, image
