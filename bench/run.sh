#!/usr/bin/env bash
# `make bench`, two scenarios in one run:
# 1. Overhead: wrk against a tiny upstream directly, through nginx (one worker, keep-alive
#    upstream) and through `portcullis proxy` (one worker thread). Prints rps, p50 and p99
#    with ratios to nginx, CPU per request, and the sidecar's RSS idle and under load; then
#    the rps of the sidecar's own 503 (a maintenance window) against a proxied 200.
# 3. Controller: 10,000 pods and 1,000 resources indexed, 1,000 streams, one policy change.
# 2. Overload: an app with a fixed capacity (4 at a time, 20 ms each: 200 rps) offered twice
#    that, open loop, through the sidecar without and with `maxInFlight`. Prints the admitted
#    requests' p50/p99 and the share shed.
# Not a test: numbers depend on the machine. Needs wrk and nginx (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
UP=127.0.0.1:18080 NGINX=127.0.0.1:18081 PC=127.0.0.1:18082 PC_ADMIN=127.0.0.1:18092

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "installing wrk and nginx..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

# BIN_DIR points elsewhere to bench prebuilt binaries (another machine, say).
BIN_DIR=${BIN_DIR:-target/release}
if [ "$BIN_DIR" = target/release ]; then
  cargo build --quiet --release --bin portcullis --example bench_upstream --example bench_load --example bench_controller
fi
out=bench/out; mkdir -p "$out"; dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; return 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

$BIN_DIR/examples/bench_upstream "$UP" & pids+=($!)
sed -e "s#@DIR@#$dir#g" -e "s#@UPSTREAM@#$UP#" -e "s#@LISTEN@#$NGINX#" bench/nginx.conf.in > "$dir/nginx.conf"
"$NGINX_BIN" -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
nginx_master=$!
$BIN_DIR/portcullis proxy --listen "$PC" --upstream "$UP" --admin "$PC_ADMIN" --workers 1 2>"$dir/pc.log" & pc=$!; pids+=("$pc")
wait_port "$UP"; wait_port "$NGINX"; wait_port "$PC"
sleep 0.5
idle_rss=$(rss_kib "$pc")

# One wrk run: prints "rps p50_ms p99_ms cpu_us_per_request" (CPU of process $3, if given).
measure() {
  local name=$1 addr=$2 pid=${3:-} before=0 after=0
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$addr/" > "$out/wrk-$name.txt"
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /requests in/ { n=$1 }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    END { printf "%.0f %.3f %.3f %.2f\n", rps, p50, p99, (n > 0 ? ticks / hz * 1e6 / n : 0) }' "$out/wrk-$name.txt"
}

wrk -t1 -c"$CONNECTIONS" -d2s "http://$PC/" >/dev/null   # warm-up
nginx_worker=$(pgrep -P "$nginx_master" | head -n1)
read -r d_rps d_p50 d_p99 _ < <(measure direct "$UP")
read -r n_rps n_p50 n_p99 n_cpu < <(measure nginx "$NGINX" "$nginx_worker")
peak=0
( while kill -0 "$pc" 2>/dev/null; do r=$(rss_kib "$pc"); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$dir/peak"; sleep 0.2; done ) & sampler=$!
read -r p_rps p_p50 p_p99 p_cpu < <(measure portcullis "$PC" "$pc")
kill "$sampler" 2>/dev/null || true
load_rss=$(cat "$dir/peak" 2>/dev/null || echo 0)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# The sidecar's own 503: every request falls in an open-ended maintenance window.
MW=127.0.0.1:18084
printf 'apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: bench}\nspec: {message: bench}\n' > "$dir/mw.yaml"
$BIN_DIR/portcullis proxy --listen "$MW" --upstream "$UP" --admin 127.0.0.1:18094 --workers 1 --config "$dir/mw.yaml" 2>/dev/null & pids+=($!)
wait_port "$MW"
read -r m_rps _ < <(measure maintenance503 "$MW")

# Overload: twice the capacity of a 200 rps app, without and with a limit.
SLOW=127.0.0.1:18085 OPEN=127.0.0.1:18086 LIMITED=127.0.0.1:18087
RATE=${RATE:-400} SECONDS_OF_LOAD=${SECONDS_OF_LOAD:-8}
$BIN_DIR/examples/bench_upstream "$SLOW" 20 4 & pids+=($!)
printf 'apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\nmetadata: {name: bench}\nspec:\n  timeouts: {responseHeaders: 60s}\n' > "$dir/open.yaml"
printf 'apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\nmetadata: {name: bench}\nspec:\n  timeouts: {responseHeaders: 60s}\n  overload: {maxInFlight: 4, queue: {size: 4, timeout: 10ms}, retryAfter: 1s}\n' > "$dir/limited.yaml"
$BIN_DIR/portcullis proxy --listen "$OPEN" --upstream "$SLOW" --admin 127.0.0.1:18096 --workers 1 --config "$dir/open.yaml" 2>/dev/null & pids+=($!)
$BIN_DIR/portcullis proxy --listen "$LIMITED" --upstream "$SLOW" --admin 127.0.0.1:18097 --workers 1 --config "$dir/limited.yaml" 2>/dev/null & pids+=($!)
wait_port "$SLOW"; wait_port "$OPEN"; wait_port "$LIMITED"
read -r o_sent o_ok o_shed o_other o_p50 o_p99 < <($BIN_DIR/examples/bench_load "http://$OPEN/" "$RATE" "$SECONDS_OF_LOAD")
sleep 2
read -r l_sent l_ok l_shed l_other l_p50 l_p99 < <($BIN_DIR/examples/bench_load "http://$LIMITED/" "$RATE" "$SECONDS_OF_LOAD")

{
  echo "wrk -t1 -c$CONNECTIONS -d$DURATION, $(nproc) cores, proxies on one worker"
  printf '%-22s %10s %9s %9s %12s %12s\n' target rps p50_ms p99_ms rps/nginx p99/nginx
  printf '%-22s %10s %9s %9s %12s %12s\n' direct "$d_rps" "$d_p50" "$d_p99" "$(ratio "$d_rps" "$n_rps")" "$(ratio "$d_p99" "$n_p99")"
  printf '%-22s %10s %9s %9s %12s %12s\n' "nginx (1 worker)" "$n_rps" "$n_p50" "$n_p99" 1.00 1.00
  printf '%-22s %10s %9s %9s %12s %12s\n' "portcullis (1 thread)" "$p_rps" "$p_p50" "$p_p99" "$(ratio "$p_rps" "$n_rps")" "$(ratio "$p_p99" "$n_p99")"
  echo "portcullis vs direct: rps $(ratio "$p_rps" "$d_rps"), p99 $(ratio "$p_p99" "$d_p99")"
  echo "CPU per request: nginx ${n_cpu} us, portcullis ${p_cpu} us (ratio $(ratio "$p_cpu" "$n_cpu"))"
  awk -v i="$idle_rss" -v l="$load_rss" 'BEGIN { printf "portcullis RSS: idle %.1f MiB, under load %.1f MiB\n", i/1024, l/1024 }'
  echo "sidecar 503 (maintenance): $m_rps rps, $(ratio "$m_rps" "$p_rps") x a proxied 200"
  echo
  echo "overload: app capacity 200 rps (4 at a time x 20 ms), offered $RATE rps open loop for ${SECONDS_OF_LOAD}s"
  printf '%-34s %8s %8s %8s %8s %11s %11s\n' through sent ok shed other ok_p50_ms ok_p99_ms
  printf '%-34s %8s %8s %8s %8s %11s %11s\n' "portcullis, no limit" "$o_sent" "$o_ok" "$o_shed" "$o_other" "$o_p50" "$o_p99"
  printf '%-34s %8s %8s %8s %8s %11s %11s\n' "portcullis, maxInFlight 4, queue 4" "$l_sent" "$l_ok" "$l_shed" "$l_other" "$l_p50" "$l_p99"
  awk -v s="$l_shed" -v n="$l_sent" -v p="$l_p99" 'BEGIN { printf "with the limit: %.0f%% shed; admitted p99 %.1f ms = %.2f x the 20 ms service time\n", 100*s/n, p, p/20 }'
} | tee "$out/summary.txt"

# The controller: 1,000 streams in one process need more than the default 1,024 descriptors.
echo
(ulimit -n 8192 2>/dev/null; "$BIN_DIR/examples/bench_controller") | tee -a "$out/summary.txt"
