"""The image without Docker (issue 23, item 1): packaging/image-archive.sh packs a built
binary into an OCI archive, and this reads the archive back with skopeo and umoci, as a
registry client and a runtime would, not with the script's own tools.

It packs the debug binary (target/debug/portcullis, or PORTCULLIS_BIN): a release build
takes too long for CI, and the packing is the same. It needs umoci, skopeo, GNU tar and
chroot (Debian: apt-get install umoci skopeo); a missing one fails the tests, it does not
skip them. Running the unpacked root filesystem needs root (chroot) or, without root, user
namespaces (unshare)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "image-archive.sh"
BINARY = Path(os.environ.get("PORTCULLIS_BIN", REPO / "target" / "debug" / "portcullis"))
TOOLS = ("umoci", "skopeo", "tar", "ldd", "chroot", "unshare", "strip")
# Fixed, so that two runs can be compared byte for byte.
EPOCH = "1700000000"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ENTRYPOINT = "/usr/local/bin/portcullis"
USER = "65532:65532"
SHELLS = {"sh", "bash", "dash", "ash", "busybox", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"}


def crate_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def chart_image() -> str:
    """The image `helm install` runs by default: the chart's repository and appVersion."""
    values = yaml.safe_load((REPO / "charts/portcullis/values.yaml").read_text())
    chart = yaml.safe_load((REPO / "charts/portcullis/Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"


def run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def pack(out: Path, binary: Path, image: str | None = None) -> Path:
    env = {"BINARY": str(binary), "OUT": str(out), "SOURCE_DATE_EPOCH": EPOCH, "REVISION": REVISION}
    if image is not None:
        env["IMAGE"] = image
    else:
        # The script's default, not whatever the caller's environment holds.
        env["IMAGE"] = ""
    run("bash", SCRIPT, env=env)
    assert out.is_file()
    return out


def archive_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None, f"{name} is not a file in {archive}"
        return member.read()


@dataclass
class Image:
    binary: Path
    archive: Path
    rootfs: Path
    config: dict


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: the image tests need them "
            "(Debian/Ubuntu: apt-get install umoci skopeo tar coreutils util-linux binutils)"
        )
    if not (BINARY.is_file() and os.access(BINARY, os.X_OK)):
        pytest.fail(f"no binary at {BINARY}: run `cargo build --bin portcullis` first")
    tmp = tmp_path_factory.mktemp("image")
    # A stripped copy: a build running beside the tests cannot change it between packing it
    # and comparing with it, and the debug build's 300 MB of debug info, copied into each
    # layer, layout and root filesystem, filled a CI machine's disk. What is packed is the
    # same either way.
    binary = tmp / "portcullis"
    run("strip", "--strip-all", "-o", binary, BINARY)
    archive = pack(tmp / "portcullis.oci.tar", binary)

    config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{archive}").stdout)
    # Unpacked as a runtime would: skopeo reads the archive into an OCI layout, umoci
    # applies its layers to a root filesystem (as the files' owners when root).
    layout = tmp / "layout"
    tag = crate_version()
    run("skopeo", "copy", "--quiet", f"oci-archive:{archive}", f"oci:{layout}:{tag}")
    bundle = tmp / "bundle"
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    run("umoci", "unpack", *rootless, "--image", f"{layout}:{tag}", bundle)
    return Image(binary=binary, archive=archive, rootfs=bundle / "rootfs", config=config)


def in_root(rootfs: Path, argv: list[str], user: str | None, env: list[str]) -> subprocess.CompletedProcess[str]:
    """argv in the image's root filesystem with its environment only, as `user` ("UID:GID")
    or as root. As root: chroot, which sets the user as a runtime does (so that user 65532
    must be able to read and run every file it needs). Without root: a user namespace in
    which the caller is that user."""
    chroot, unshare = shutil.which("chroot"), shutil.which("unshare")
    assert chroot and unshare
    if os.geteuid() == 0:
        cmd = [chroot, *([f"--userspec={user}"] if user else []), str(rootfs)]
    elif user:
        uid, gid = user.split(":")
        cmd = [unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", "--keep-caps", chroot, str(rootfs)]
    else:
        cmd = [unshare, "--user", "--map-root-user", chroot, str(rootfs)]
    return subprocess.run(["env", "-i", *env, *cmd, *argv], capture_output=True, text=True, timeout=30)


def test_config_runs_the_binary_as_nonroot(image: Image) -> None:
    config = image.config["config"]
    assert config["User"] == USER
    assert config["Entrypoint"] == [ENTRYPOINT]
    assert config["Cmd"] == ["--help"]
    assert image.config["os"] == "linux"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == crate_version()
    assert labels["org.opencontainers.image.title"] == "portcullis"
    assert labels["org.opencontainers.image.source"] == "https://github.com/portcullis-dev/portcullis"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] == REVISION
    # One layer, and no history entry that claims a base image.
    assert len(image.config["rootfs"]["diff_ids"]) == 1
    assert image.config["created"] == "2023-11-14T22:13:20Z"


def test_index_names_the_image_as_the_chart_pulls_it(image: Image) -> None:
    # containerd (ctr images import, hence kind load image-archive, k3d image import and
    # k3s ctr images import) names an imported manifest by io.containerd.image.name; OCI
    # tools by org.opencontainers.image.ref.name, a tag.
    assert json.loads(archive_member(image.archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(archive_member(image.archive, "index.json"))
    [manifest] = index["manifests"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"] == {
        "io.containerd.image.name": chart_image(),
        "org.opencontainers.image.ref.name": crate_version(),
    }
    assert manifest["platform"] == {"architecture": image.config["architecture"], "os": "linux"}
    # Every blob the index reaches is in the archive, under its digest.
    with tarfile.open(image.archive) as tar:
        names = set(tar.getnames())
    blob = lambda digest: "blobs/" + digest.replace(":", "/")  # noqa: E731
    body = json.loads(archive_member(image.archive, blob(manifest["digest"])))
    for desc in [manifest, body["config"], *body["layers"]]:
        assert blob(desc["digest"]) in names
    # skopeo finds it by the tag.
    inspect = json.loads(run("skopeo", "inspect", f"oci-archive:{image.archive}:{crate_version()}").stdout)
    assert inspect["Digest"] == manifest["digest"]


def ldd_paths(binary: Path) -> list[str]:
    paths = []
    for line in run("ldd", binary).stdout.splitlines():
        fields = line.split()
        if "=>" in fields and fields[fields.index("=>") + 1].startswith("/"):
            paths.append(fields[fields.index("=>") + 1])
        elif fields and fields[0].startswith("/"):
            paths.append(fields[0])
    return paths


def files_in(rootfs: Path) -> dict[str, os.stat_result]:
    return {
        "/" + str(p.relative_to(rootfs)): p.lstat()
        for p in rootfs.rglob("*")
    }


def test_only_the_binary_its_libraries_and_etc(image: Image) -> None:
    libraries = ldd_paths(image.binary)
    assert any("ld-linux" in p or "ld-musl" in p for p in libraries), libraries
    for lib in libraries:
        inside = image.rootfs / lib.lstrip("/")
        assert inside.is_file() and not inside.is_symlink(), f"{lib} is not a file in the image"
        assert inside.read_bytes() == Path(lib).resolve().read_bytes(), lib
    regular = {path for path, st in files_in(image.rootfs).items() if not stat.S_ISDIR(st.st_mode)}
    assert regular == {
        ENTRYPOINT,
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
        "/etc/ssl/certs/ca-certificates.crt",
        *libraries,
    }
    # Every one of them a plain file: no links, devices or setuid bits.
    for path in regular:
        st = (image.rootfs / path.lstrip("/")).lstat()
        assert stat.S_ISREG(st.st_mode), path
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), path


def test_no_shell(image: Image) -> None:
    assert not (image.rootfs / "bin").exists()
    assert not (image.rootfs / "bin/sh").exists()
    assert not (image.rootfs / "usr/bin").exists()
    assert not (image.rootfs / "sbin").exists()
    named_like_a_shell = [p for p in files_in(image.rootfs) if Path(p).name in SHELLS]
    assert named_like_a_shell == []


def test_users(image: Image) -> None:
    passwd = (image.rootfs / "etc/passwd").read_text().splitlines()
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" in passwd
    assert "root:x:0:0:root:/root:/sbin/nologin" in passwd
    group = (image.rootfs / "etc/group").read_text().splitlines()
    assert "nonroot:x:65532:" in group
    home = (image.rootfs / "home/nonroot").lstat()
    assert stat.S_ISDIR(home.st_mode)
    if os.geteuid() == 0:  # umoci --rootless gives everything to the caller
        assert (home.st_uid, home.st_gid) == (65532, 65532)
        assert (image.rootfs / ENTRYPOINT.lstrip("/")).lstat().st_uid == 0


def test_ca_bundle(image: Image) -> None:
    bundle = (image.rootfs / "etc/ssl/certs/ca-certificates.crt").read_bytes()
    assert bundle == Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    assert bundle.count(b"-----BEGIN CERTIFICATE-----") > 50


def host_version(binary: Path) -> str:
    version = run(binary, "--version").stdout
    assert version.strip() == f"portcullis {crate_version()}", version
    return version


@pytest.mark.parametrize("user", [None, USER], ids=["root", "image-user"])
def test_version_from_the_unpacked_root(image: Image, user: str | None) -> None:
    # The entrypoint, the user and the environment the config gives, nothing from the host
    # (chroot is found before the environment is cleared, and runs from outside the root):
    # the binary finds its loader and libraries in the image.
    config = image.config["config"]
    proc = in_root(image.rootfs, [*config["Entrypoint"], "--version"], user, config["Env"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == host_version(image.binary)


def test_reproducible(image: Image, tmp_path: Path) -> None:
    again = pack(tmp_path / "again.oci.tar", image.binary)
    assert again.read_bytes() == image.archive.read_bytes()


@pytest.mark.parametrize(
    ("given", "name", "tag"),
    [
        # What the kubelet asks containerd for is the normalized name.
        ("portcullis:dev", "docker.io/library/portcullis:dev", "dev"),
        ("example/portcullis", "docker.io/example/portcullis:latest", "latest"),
        ("registry.example:5000/mirror/portcullis:1.2.3-rc.1", "registry.example:5000/mirror/portcullis:1.2.3-rc.1", "1.2.3-rc.1"),
    ],
)
def test_image_names(tmp_path: Path, given: str, name: str, tag: str) -> None:
    # A small binary: only the name is under test.
    archive = pack(tmp_path / "x.oci.tar", Path(shutil.which("true") or "/bin/true"), image=given)
    [manifest] = json.loads(archive_member(archive, "index.json"))["manifests"]
    assert manifest["annotations"] == {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}


@pytest.mark.parametrize("given", ["Portcullis:dev", "portcullis@sha256:" + "a" * 64, "portcullis:-x"])
def test_bad_image_names(tmp_path: Path, given: str) -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "BINARY": shutil.which("true") or "/bin/true", "OUT": str(tmp_path / "x.tar"), "IMAGE": given},
    )
    assert proc.returncode != 0
    assert "image-archive:" in proc.stderr
    assert not (tmp_path / "x.tar").exists()
