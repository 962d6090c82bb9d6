#!/usr/bin/env bash
# The portcullis image as an OCI archive, built from the binary that is already on this
# machine: no container engine, no daemon, no base image pulled, no root needed.
#
#   packaging/image-archive.sh [--binary PATH] [--out FILE] [--image NAME:TAG]
#
# or the same through the environment: BINARY (default target/release/portcullis), OUT
# (default target/image/portcullis.oci.tar), IMAGE (default the image the chart runs,
# ghcr.io/portcullis-dev/portcullis:<crate version>, so that `helm install` with its default
# pullPolicy IfNotPresent finds the loaded image and pulls nothing). SOURCE_DATE_EPOCH sets
# every timestamp in the image (default: the last commit's time), so that the same binary
# gives the same image digest. REVISION: the commit for the revision label (default HEAD).
#
# The image is what the Dockerfile's distroless `cc` base gives the binary, and no more: the
# binary at /usr/local/bin/portcullis, the shared libraries it links (as `ldd` names them,
# the dynamic loader included), the CA bundle, /etc/passwd and /etc/group with root and
# nonroot (65532), an /etc/nsswitch.conf, an empty /tmp; user 65532:65532; no shell and no
# other program. It loads with `kind load image-archive`, `k3d image import`, `k3s ctr
# images import` and `ctr -n k8s.io images import`, each without extra flags.
#
# Needs umoci, GNU tar and ldd (Debian: apt-get install umoci).
set -euo pipefail
# Modes in the image come from the staging tree: keep them independent of the caller's
# umask. Sorting and dates the same on every machine.
umask 022
export LC_ALL=C TZ=UTC

die() { echo "image-archive: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

binary=${BINARY:-}
out=${OUT:-}
image=${IMAGE:-}
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a path}; shift 2 ;;
    --image) image=${2:?--image needs NAME:TAG}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

for tool in umoci tar ldd sha256sum; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is not installed (Debian/Ubuntu: apt-get install umoci tar libc-bin coreutils)"
done
[[ $(tar --version 2>/dev/null) == *"GNU tar"* ]] || die "needs GNU tar (--sort, --mtime, --owner)"

# The crate's [package] fields, and the repository the chart pulls from: read from the files
# that own them, so that the default name follows a version bump or a move of the image.
package_field() {
  awk -F'"' -v key="$1" '/^\[/ { p = ($0 == "[package]") } p && $1 ~ "^" key " *= *$" { print $2; exit }' \
    "$repo/Cargo.toml"
}
version=$(package_field version)
description=$(package_field description)
license=$(package_field license)
[ -n "$version" ] || die "no [package] version in $repo/Cargo.toml"
chart_repository=$(awk '/^image:/ { f = 1; next } f && /^[^ #]/ { exit } f && $1 == "repository:" { print $2; exit }' \
  "$repo/charts/portcullis/values.yaml")
[ -n "$chart_repository" ] || die "no image.repository in charts/portcullis/values.yaml"
source_url=$(awk '$1 == "home:" { print $2; exit }' "$repo/charts/portcullis/Chart.yaml")

binary=${binary:-$repo/target/release/portcullis}
out=${out:-$repo/target/image/portcullis.oci.tar}
# The chart's default image tag is its appVersion, which a chart test keeps equal to the
# crate's version (tests/chart/test_version.py).
image=${image:-$chart_repository:$version}
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  die "no executable $binary (build it first: cargo build --release --locked --bin portcullis)"
fi

# The name containerd files the image under must be the one the kubelet asks for, and the
# CRI asks for the normalized reference (portcullis:dev is docker.io/library/portcullis:dev):
# normalize as Docker does, since nothing on the import side will.
case $image in *@*) die "IMAGE must be NAME:TAG, not a digest: $image" ;; esac
if [[ ${image##*/} == *:* ]]; then
  name=${image%:*} tag=${image##*:}
else
  name=$image tag=latest
fi
domain=${name%%/*}
if [[ $name != */* ]]; then
  name=docker.io/library/$name
elif [[ $domain != *.* && $domain != *:* && $domain != localhost ]]; then
  name=docker.io/$name
elif [[ $domain == docker.io && ${name#docker.io/} != */* ]]; then
  name=docker.io/library/${name#docker.io/}
fi
[[ $name =~ ^[a-z0-9]+([._:-][a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+$ ]] ||
  die "not a valid image name: $name"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "not a valid image tag: $tag"
image=$name:$tag

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH is not a number of seconds: $epoch"
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# REVISION (the org.opencontainers.image.revision label; empty: none) defaults to the commit
# checked out, which may not be what the binary was built from in a dirty tree.
revision=${REVISION-$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)}

# The image's architecture is the binary's (ELF e_machine, 2 bytes at offset 18), not the
# machine's that packs it; the names are Go's, as in every image config.
[ "$(head -c 4 "$binary" | od -An -c | tr -d ' ')" = '177ELF' ] || die "$binary is not an ELF binary"
case $(od -An -tu2 -j18 -N2 "$binary" | tr -d ' ') in
  62) arch=amd64 ;;
  183) arch=arm64 ;;
  243) arch=riscv64 ;;
  21) arch=ppc64le ;;
  22) arch=s390x ;;
  *) die "$binary: an ELF machine this script has no OCI name for" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
layout=$work/layout
mkdir -p "$root"

install -D -m 0755 "$binary" "$root/usr/local/bin/portcullis"

# Every shared object the binary loads, at the path that ldd (that is, the dynamic loader
# itself) resolves, which is where the loader looks in the image too: the loader at the
# PT_INTERP path, the libraries in its default directories (there is no ld.so.cache in the
# image). Copied through any symlinks, as files: the image needs the paths, not the links.
if ! ldd_out=$(ldd "$binary" 2>&1); then
  # A static binary needs nothing; a dynamic one that ldd cannot read (another machine's)
  # would give an image that cannot start, so stop here.
  # (No `head | grep -q` under pipefail: grep quitting early would fail the pipe.)
  if grep -qa -e '/ld-linux' -e '/ld-musl' -e '/ld64' < <(head -c 4096 "$binary"); then
    die "ldd cannot read $binary, which has a dynamic loader (built for another architecture?): $ldd_out"
  fi
  ldd_out=
fi
if grep -q 'not found' <<<"$ldd_out"; then
  die "libraries of $binary that this machine lacks: $ldd_out"
fi
while read -r lib; do
  [ -n "$lib" ] || continue
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)

# The CA bundle, where Debian, distroless and Go and OpenSSL look for it (the binary's TLS
# trusts what it is given, but a bundle in the usual place costs nothing and matches the
# Dockerfile's image).
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle (Debian/Ubuntu: apt-get install ca-certificates)"
install -D -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"

# Users as distroless writes them: root, and nonroot (65532) which the image runs as and
# which the chart's runAsUser names. /sbin/nologin does not exist: there is no shell.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
# glibc resolves names itself (its files and dns services are built into libc.so.6 since
# 2.34), but without this file it asks DNS before /etc/hosts, which the kubelet writes.
cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
# The chart runs the root filesystem read-only and the binary writes nothing; /tmp is there
# as in the distroless image, for a run outside the chart. /home/nonroot (nonroot's $HOME)
# is added below with its owner.
install -d -m 1777 "$root/tmp"
install -d -m 0755 "$root/home"

# One layer, built by tar rather than by umoci from a directory, so that owners (root, and
# nonroot for its home, whoever runs this), modes, order and times are fixed: the same
# binary gives the same layer digest.
tar_flags=(--sort=name --mtime="@$epoch" --numeric-owner --format=posix
  "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")
layer=$work/layer.tar
(cd "$root" && tar "${tar_flags[@]}" --owner=0 --group=0 -cf "$layer" -- *)
install -d -m 0700 "$work/home/nonroot"
tar "${tar_flags[@]}" --owner=65532 --group=65532 -C "$work" -rf "$layer" home/nonroot

# umoci writes the OCI layout: the blobs, the manifest and the config with their digests.
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" \
  --history.created "$created" --history.created_by "packaging/image-archive.sh" \
  --history.comment "portcullis $version: the binary, its libraries, CA certificates, users" \
  "$layer"
labels=(
  --config.label "org.opencontainers.image.title=portcullis"
  --config.label "org.opencontainers.image.description=$description"
  --config.label "org.opencontainers.image.version=$version"
  --config.label "org.opencontainers.image.licenses=$license"
  --config.label "org.opencontainers.image.created=$created"
)
[ -z "$source_url" ] || labels+=(--config.label "org.opencontainers.image.source=$source_url")
[ -z "$revision" ] || labels+=(--config.label "org.opencontainers.image.revision=$revision")
umoci config --image "$layout:$tag" --no-history \
  --created "$created" --architecture "$arch" --os linux \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/portcullis --config.cmd --help \
  --config.workingdir / \
  --config.env PATH=/usr/local/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  "${labels[@]}"
# Drop the blobs of the intermediate configs and manifests.
umoci gc --layout "$layout"

# The name. containerd's importer (core/images/archive and the import in client/import.go,
# used by ctr in 1.x; core/transfer/image/imagestore.go, used by ctr in 2.x) names each
# manifest in index.json by its annotation io.containerd.image.name, as it stands, and only
# without that by org.opencontainers.image.ref.name, which OCI means as a tag only: ctr then
# prefixes it with "import-<date>" unless given --base-name. `kind load image-archive`
# (`ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=... -`),
# `k3d image import` and `k3s ctr images import` all go through that importer without a
# base name. So the manifest carries both, as `docker save` and containerd's own exporter
# write them: the full normalized name for containerd, the tag for OCI tools (skopeo and
# umoci address the image in the layout as oci:DIR:TAG). The platform on the descriptor
# lets an importer pick the manifest without opening the config.
#
# umoci's index.json has the one manifest; its descriptor is rewritten whole (the name and
# tag passed the checks above, so nothing in them needs escaping in JSON), with the digest
# checked against the blob rather than trusted as text.
manifests=$(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' "$layout/index.json" | cut -d'"' -f4)
[ "$(wc -l <<<"$manifests")" -eq 1 ] || die "expected one manifest in umoci's index.json: $manifests"
manifest=$manifests
blob=$layout/blobs/sha256/${manifest#sha256:}
[ "sha256:$(sha256sum <"$blob" | cut -d' ' -f1)" = "$manifest" ] || die "manifest blob $blob does not match its digest"
size=$(stat -c %s "$blob")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{%s,%s,%s,%s,%s}]}' \
  '"mediaType":"application/vnd.oci.image.manifest.v1+json"' \
  "\"digest\":\"$manifest\"" "\"size\":$size" \
  "\"annotations\":{\"io.containerd.image.name\":\"$image\",\"org.opencontainers.image.ref.name\":\"$tag\"}" \
  "\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"}" >"$layout/index.json"

# An OCI archive is the layout in a tar (the format of skopeo's oci-archive: and what ctr
# reads: oci-layout, index.json, blobs/sha256/*). Written aside and moved, so that an
# interrupted run leaves no half archive under the final name.
mkdir -p "$(dirname "$out")"
tar "${tar_flags[@]}" --owner=0 --group=0 --mode=u+rw,go+r,go-w -C "$layout" \
  -cf "$out.partial" oci-layout index.json blobs
mv -f "$out.partial" "$out"

echo "image-archive: $out: $image ($arch, manifest $manifest)"
