#!/usr/bin/env bash
# `make image`: the image from the Dockerfile (a Rust build stage, then distroless), with
# whichever engine this machine has: docker, else podman, else buildah.
#
#   packaging/image.sh [NAME:TAG] [extra build flags, e.g. --platform linux/arm64]
#
# NAME:TAG, or else IMAGE, names it (default portcullis:dev, as docs/development.md loads
# it; `make image` passes its IMAGE); ENGINE=docker,
# podman or buildah picks the engine instead. A docker command whose daemon does not answer
# (a client without an engine, as on CI machines) counts as absent when podman or buildah is
# there: they need no daemon. Without any engine at all, `make image-archive` packs the
# binary this machine built into an OCI archive instead (packaging/image-archive.sh).
set -euo pipefail

die() { echo "image: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
image=${IMAGE:-portcullis:dev}
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  image=$1
  shift
fi
engine=${ENGINE:-}

have() { command -v "$1" >/dev/null 2>&1; }

if [ -z "$engine" ]; then
  if have docker && docker info >/dev/null 2>&1; then
    engine=docker
  elif have podman; then
    engine=podman
  elif have buildah; then
    engine=buildah
  elif have docker; then
    # Installed but not answering, and nothing else: let docker say why.
    engine=docker
  else
    die "no container engine: install docker, podman or buildah (or run \`make image-archive\`, which needs none)"
  fi
fi

case $engine in
  docker | podman) build=("$engine" build) ;;
  # `bud` (build-using-dockerfile) is what every buildah release understands; newer ones
  # also call it `build`.
  buildah) build=(buildah bud) ;;
  *) die "ENGINE must be docker, podman or buildah, not $engine" ;;
esac
have "$engine" || die "ENGINE=$engine, but $engine is not installed"

echo "image: building $image with $engine"
"${build[@]}" -t "$image" -f Dockerfile "$@" .

case $engine in
  docker) echo "image: $image; into kind: kind load docker-image $image" ;;
  # podman and buildah keep it in containers-storage (a name without a registry there gets
  # localhost/); a docker-archive carries the name as the kubelet asks for it
  # (docker.io/library/... for a short name), which containerd reads.
  *) echo "image: $image; into kind: $engine push $image docker-archive:portcullis.tar:$image" \
    "&& kind load image-archive portcullis.tar" ;;
esac
