#!/usr/bin/env bash
# `make hot-symbols`: writes packaging/hot-symbols.txt, the functions a sidecar runs, hottest
# first, which build.rs hands to the linker so that they lie together in the release binary.
#
# Why: code is mapped from the binary's file, and the kernel maps 64 KiB around each page
# run (fault-around). The sidecar's few hundred functions, scattered over 14 MiB of code
# (the controller, the webhook and every dependency share the binary), kept 6-7 MiB of it
# resident after a load; gathered in one place they keep about 1 MiB.
#
# How: the release sidecar runs under callgrind (symbols not demangled) in front of
# bench_upstream, and serves what a sidecar serves: HTTP/1.1 GETs and POSTs, HTTP/2 with
# prior knowledge, its own error answers (502s: the app is stopped for the last part), and
# the admin endpoints that probes and Prometheus read.
# Every function of the binary with a cost is listed, by cost. Needs valgrind and h2load.
#
# Regenerate after a dependency update: a function's symbol carries a hash of its crate's
# version and its own path, not of its code, so edits inside functions keep the list valid
# while new versions of crates rename theirs (`make bench` reports how many are found).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The binary as it ships: built on its own, since an example in the same build would bring
# the dev-dependencies' features in, and with them other symbols.
cargo build --quiet --release --bin portcullis
cargo build --quiet --release --example bench_upstream
bin=target/release/portcullis
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

UP=127.0.0.1:18680 PC=127.0.0.1:18682 ADMIN=127.0.0.1:18692
target/release/examples/bench_upstream "$UP" & app=$!; pids+=("$app")
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/callgrind.out" \
  "$bin" proxy --listen "$PC" --upstream "$UP" --admin "$ADMIN" >/dev/null 2>"$dir/valgrind.log" &
pc=$!; pids+=("$pc")
for _ in $(seq 300); do curl -s -o /dev/null "http://$PC/" && break; sleep 0.2; done

head -c 1024 /dev/zero > "$dir/body"
h2load --h1 -n 5000 -c 8 "http://$PC/" >/dev/null
h2load --h1 -n 1000 -c 8 -d "$dir/body" "http://$PC/" >/dev/null
h2load -n 2000 -c 2 -m 10 "http://$PC/" >/dev/null
for path in /readyz /livez /metrics; do curl -s -o /dev/null "http://$ADMIN$path"; done
kill "$app"; wait "$app" 2>/dev/null || true
for _ in $(seq 20); do curl -s -o /dev/null "http://$PC/"; done
curl -s -o /dev/null "http://$ADMIN/metrics"
kill -INT "$pc"; wait "$pc" 2>/dev/null || true

# Functions of the binary itself ("???:symbol [path]"), hottest first, as callgrind_annotate
# sorts them.
callgrind_annotate --threshold=100 "$dir/callgrind.out" |
  grep -F "[$(readlink -f "$bin")]" | sed -nE 's/.* \?\?\?:([^ ]+) \[.*/\1/p' > packaging/hot-symbols.txt
echo "packaging/hot-symbols.txt: $(wc -l < packaging/hot-symbols.txt) functions"
