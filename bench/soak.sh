#!/usr/bin/env bash
# `make soak` (not CI): SOAK_MINUTES (30) of mixed traffic through the sidecar, to show
# that nothing builds up: its RSS, open file descriptors and tokio tasks stay flat.
#
# The sidecar runs as a user would run it: `portcullis proxy` with its default flags and
# `--config FILE`, in front of an app that misbehaves on request (examples/soak_load.rs,
# which is also the load). The load, about RATE scenarios a second (some send several
# requests; with the overload bursts about RATE x 1.1 + 10 requests a second): HTTP/1.1 on
# keep-alive and fresh connections, HTTP/2 with prior knowledge, Upgrades, 200s, the app's
# own 503, every fault that makes the sidecar answer 502 or 504 itself or cut a stream
# short, requests it must refuse (400), clients that give up half-way. Meanwhile:
# - every CONFIG_SECONDS the config file is replaced, in a cycle of six: no limit; an
#   in-flight limit with a queue (503 overloaded / queue_timeout under the bursts); the same
#   as the first plus a maintenance window with an end (503 maintenance, /ok exempt); an
#   adaptive limit; an invalid file (refused, the last good one stays); the limit plus an
#   open-ended window;
# - every RESTART_SECONDS the app is killed (SIGKILL) and restarted after a second of
#   nothing listening (502 connection_refused); every other time, for two seconds more, a
#   listener stands in for it that never accepts (504 connect_timeout).
# Each minute one line: the requests so far by status as the clients saw them (err: failed
# before a status; cut: the body broke off after one), the sidecar's RSS (VmRSS), open fds,
# threads and `portcullis_runtime_alive_tasks`. At the end, a verdict on growth: the median
# of the last 5 minutes against the median of minutes 2-6 (after warm-up), with the
# tolerances below; and, with the load stopped for IDLE_SECONDS, fds and tasks against their
# idle values before it started. Fails (exit 1) on growth past a tolerance, or if the
# sidecar or the load died. Also lists which of the sidecar's own answers were seen.
# Lines and verdict go to stdout and bench/out/soak.txt; the tail of the sidecar's log to
# bench/out/soak-portcullis.log. Traffic goes to 127.0.0.1 only; every process started here
# is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_MINUTES=${SOAK_MINUTES:-30}
RATE=${RATE:-200}                      # load scenarios a second
CONFIG_SECONDS=${CONFIG_SECONDS:-5}    # config file replaced this often
RESTART_SECONDS=${RESTART_SECONDS:-60} # app killed and restarted this often
IDLE_SECONDS=${IDLE_SECONDS:-10}       # quiet time after the load, before the idle check
# Tolerated growth, last 5 minutes' median over minutes 2-6's: RSS by the larger of
# RSS_PCT percent and RSS_MIB MiB; fds and tasks by a count. Idle after the load against
# idle before it: fds and tasks by IDLE_SLACK.
RSS_PCT=${RSS_PCT:-20} RSS_MIB=${RSS_MIB:-4} FDS_SLACK=${FDS_SLACK:-16}
TASKS_SLACK=${TASKS_SLACK:-32} IDLE_SLACK=${IDLE_SLACK:-8}
PROXY=${PROXY:-127.0.0.1:18280} APP=${APP:-127.0.0.1:18281} ADMIN=${ADMIN:-127.0.0.1:18290}

# BIN_DIR points elsewhere to soak prebuilt binaries (target/debug, to try the script out).
BIN=${BIN_DIR:-target/release}
if [ "$BIN" = target/release ]; then
  echo "building (release, fat LTO: this takes a while)..." >&2
  cargo build --quiet --release --bin portcullis --example soak_load
fi
out=bench/out; mkdir -p "$out"; report=$out/soak.txt; : > "$report"
dir=$(mktemp -d); config=$dir/portcullis.yaml; stats=$dir/stats; log=$dir/portcullis.log

pc='' load='' app='' hole=''
cleanup() {
  for p in $load $hole $app $pc; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$log" ] && tail -n 300 "$log" | sed -E 's/\x1b\[[0-9;]*m//g' > "$out/soak-portcullis.log"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" | tee -a "$report"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; return 1; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
threads() { ls "/proc/$1/task" | wc -l; }
tasks() { curl -s --max-time 5 "http://$ADMIN/metrics" | awk '$1 == "portcullis_runtime_alive_tasks" {print $2}'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
# A count from the load's stats line: count KEY.
count() { tr ' ' '\n' < "$stats" 2>/dev/null | awk -F= -v k="$1" '$1 == k {print $2}'; }

# --- The config: six states, one every CONFIG_SECONDS --------------------------------------
policy() { # $1: an overload section, or nothing
  cat <<YAML
apiVersion: portcullis.dev/v1alpha1
kind: UpstreamPolicy
metadata: {name: soak, namespace: default}
spec:
  timeouts: {connect: 250ms, responseHeaders: 2s, idle: 2s, upstreamIdle: 2s}
  routes:
  - match: {pathPrefix: /stall}
    timeouts: {responseHeaders: 300ms}
  - match: {pathPrefix: /deadline}
    timeouts: {request: 250ms}
  - match: {pathPrefix: /stall-body}
    timeouts: {idle: 300ms}
  - match: {pathPrefix: /report}
    validation: {contentTypes: [text/csv]}
${1:-}
YAML
}
LIMIT='  overload: {maxInFlight: 8, queue: {size: 4, timeout: 100ms}, retryAfter: 2s}'
ADAPTIVE='  overload: {adaptive: {enabled: true, minLimit: 4, maxLimit: 64}, queue: {size: 8, timeout: 50ms}}'
window() { # $1: extra spec lines (start/end), or nothing for an open-ended window
  cat <<YAML
---
apiVersion: portcullis.dev/v1alpha1
kind: MaintenanceWindow
metadata: {name: soak, namespace: default}
spec:
  exemptPaths: [/ok]
  message: "soak: maintenance"
${1:-}
YAML
}
state=0
write_config() {
  case $((state % 6)) in
    0) policy ;;
    1) policy "$LIMIT" ;;
    2) policy; window "  start: \"$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)\"
  end: \"$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)\"" ;;
    3) policy "$ADAPTIVE" ;;
    4) printf 'apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\nmetadata: {name: soak}\nspec: {timeouts: {connect: soon}}\n' ;;
    5) policy "$LIMIT"; window ;;
  esac > "$config.tmp"
  mv "$config.tmp" "$config" # whole files only: a rename, never a half-written one
  state=$((state + 1))
}

# --- The app, killed and restarted ----------------------------------------------------------
start_app() { "$BIN/examples/soak_load" app "$APP" 2>>"$dir/app.log" & app=$!; wait_port "$APP"; }
restarts=0
restart_app() {
  restarts=$((restarts + 1))
  kill -KILL "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; app=''
  sleep 1 # nothing listens: 502 connection_refused
  if ((restarts % 2 == 0)); then
    "$BIN/examples/soak_load" blackhole "$APP" & hole=$!
    sleep 2 # connects hang: 504 connect_timeout
    kill -KILL "$hole" 2>/dev/null || true; wait "$hole" 2>/dev/null || true; hole=''
  fi
  start_app
}

write_config
start_app
"$BIN/portcullis" proxy --listen "$PROXY" --upstream "$APP" --admin "$ADMIN" --config "$config" 2>"$log" & pc=$!
for _ in $(seq 100); do curl -sf "http://$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$ADMIN/readyz" >/dev/null || { say "FAIL: the sidecar never got ready"; exit 1; }
sleep 1
idle0_rss=$(rss_kib "$pc") idle0_fds=$(fds "$pc") idle0_tasks=$(tasks)

say "soak: $SOAK_MINUTES min, $RATE scenarios/s, config every ${CONFIG_SECONDS}s, app restart every ${RESTART_SECONDS}s; sidecar $PROXY -> app $APP, admin $ADMIN, $(nproc) CPUs"
say "idle before load: rss $(mib "$idle0_rss") MiB  fds $idle0_fds  threads $(threads "$pc")  tasks $idle0_tasks"
"$BIN/examples/soak_load" load "$PROXY" "$RATE" "$stats" 2>"$dir/load.log" & load=$!

declare -a S_RSS=() S_FDS=() S_TASKS=()
died=''
t0=$(date +%s) minute=0 next_config=$CONFIG_SECONDS next_restart=$((RESTART_SECONDS / 2))
while ((minute < SOAK_MINUTES)); do
  now=$(($(date +%s) - t0))
  if ! kill -0 "$pc" 2>/dev/null; then
    wait "$pc" && code=0 || code=$?
    died="the sidecar died at ${now}s (exit status $code)"; break
  fi
  if ! kill -0 "$load" 2>/dev/null; then died="the load died at ${now}s"; break; fi
  if ((now >= next_config)); then write_config; next_config=$((next_config + CONFIG_SECONDS)); fi
  if ((now >= next_restart)); then restart_app; next_restart=$((next_restart + RESTART_SECONDS)); fi
  if ((now >= (minute + 1) * 60)); then
    minute=$((minute + 1))
    r=$(rss_kib "$pc") f=$(fds "$pc") th=$(threads "$pc") tk=$(tasks)
    tk=${tk:-0}
    S_RSS+=("$r") S_FDS+=("$f") S_TASKS+=("$tk")
    say "$(printf 'min %2d  req %7s (101 %5s 2xx %7s 4xx %4s 502 %6s 503 %6s 504 %5s err %4s cut %5s)  rss %5s MiB  fds %3s  threads %2s  tasks %4s' \
      "$minute" "$(count total)" "$(count 1xx)" "$(count 2xx)" "$(count 4xx)" "$(count 502)" "$(count 503)" \
      "$(count 504)" "$(count err)" "$(count cut)" "$(mib "$r")" "$f" "$th" "$tk")"
  fi
  sleep 0.5
done

# --- The verdict ------------------------------------------------------------------------------
fail=()
[ -n "$died" ] && fail+=("$died")
if [ -z "$died" ]; then
  # What the sidecar answered itself, and the streams it cut, before the load stops.
  metrics=$(curl -s --max-time 5 "http://$ADMIN/metrics")
  seen=$(grep '^portcullis_responses_total{' <<<"$metrics" | grep 'source="proxy"' |
    sed -E 's/.*status="([0-9]+)",reason="([a-z_]+)".*\} ([0-9]+).*/\1 \2 \3/' | sort -k2 || true)
  ended=$(grep '^portcullis_streams_ended_total{' <<<"$metrics" | sed -E 's/.*reason="([a-z_]+)".*\} ([0-9]+).*/\1 \2/' || true)
  reloads=$(grep '^portcullis_config_reloads_total{' <<<"$metrics" | sed -E 's/.*result="([a-z]+)".*\} ([0-9]+).*/\1 \2/' || true)
  say "client totals: $(cat "$stats")"
  say "sidecar's own answers: $(awk '{printf "%s%s %s %s", (NR > 1 ? ", " : ""), $1, $2, $3}' <<<"$seen")"
  say "streams cut short: $(tr '\n' ' ' <<<"$ended")  config reloads: $(tr '\n' ' ' <<<"$reloads") app restarts: $restarts"
  missing=()
  for reason in connection_refused connection_terminated malformed_response response_headers_too_large \
    content_type_mismatch connect_timeout response_headers_timeout request_timeout maintenance \
    overloaded queue_timeout ambiguous_framing; do
    grep -q " $reason " <<<"$seen" || missing+=("$reason")
  done
  [ ${#missing[@]} -eq 0 ] || say "warning: never seen: ${missing[*]}"

  # Idle again: the load stopped, its connections closed, the app's pooled ones reaped.
  kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true; load=''
  sleep "$IDLE_SECONDS"
  if kill -0 "$pc" 2>/dev/null; then
    idle1_rss=$(rss_kib "$pc") idle1_fds=$(fds "$pc") idle1_tasks=$(tasks)
    say "idle after load (${IDLE_SECONDS}s): rss $(mib "$idle1_rss") MiB  fds $idle1_fds  threads $(threads "$pc")  tasks $idle1_tasks"
    ((idle1_fds <= idle0_fds + IDLE_SLACK)) || fail+=("idle fds $idle0_fds -> $idle1_fds (allowed +$IDLE_SLACK)")
    ((${idle1_tasks:-0} <= idle0_tasks + IDLE_SLACK)) || fail+=("idle tasks $idle0_tasks -> $idle1_tasks (allowed +$IDLE_SLACK)")
  else
    fail+=("the sidecar died after the load")
  fi
fi

n=${#S_RSS[@]}
if ((n > 0)); then
  # Baseline: minutes 2-6 (or what there is); end: the last 5 minutes.
  b0=$((n >= 2 ? 1 : 0)); b1=$((n < 6 ? n : 6)); e0=$((n > 5 ? n - 5 : 0))
  base_rss=$(median "${S_RSS[@]:b0:b1-b0}") end_rss=$(median "${S_RSS[@]:e0}")
  base_fds=$(median "${S_FDS[@]:b0:b1-b0}") end_fds=$(median "${S_FDS[@]:e0}")
  base_tasks=$(median "${S_TASKS[@]:b0:b1-b0}") end_tasks=$(median "${S_TASKS[@]:e0}")
  rss_allowed=$((base_rss * RSS_PCT / 100)); ((rss_allowed >= RSS_MIB * 1024)) || rss_allowed=$((RSS_MIB * 1024))
  ((n >= 11)) || say "note: $n minutes only; the baseline (minutes $((b0 + 1))-$b1) and the end (minutes $((e0 + 1))-$n) overlap"
  ((end_rss - base_rss <= rss_allowed)) || fail+=("rss grew $(mib "$base_rss") -> $(mib "$end_rss") MiB (allowed +$(mib "$rss_allowed"))")
  ((end_fds - base_fds <= FDS_SLACK)) || fail+=("fds grew $base_fds -> $end_fds (allowed +$FDS_SLACK)")
  ((end_tasks - base_tasks <= TASKS_SLACK)) || fail+=("tasks grew $base_tasks -> $end_tasks (allowed +$TASKS_SLACK)")
  growth="minutes $((b0 + 1))-$b1 -> $((e0 + 1))-$n medians: rss $(mib "$base_rss") -> $(mib "$end_rss") MiB (allowed +$(mib "$rss_allowed")), fds $base_fds -> $end_fds (+$FDS_SLACK), tasks $base_tasks -> $end_tasks (+$TASKS_SLACK)"
else
  growth="no minute sampled"
  fail+=("no samples")
fi
if grep -q 'panicked' "$log" 2>/dev/null; then fail+=("the sidecar's log shows a panic"); fi
if [ ${#fail[@]} -eq 0 ]; then
  say "verdict: PASS: $growth"
else
  say "verdict: FAIL: $(IFS=';'; echo "${fail[*]}" | sed 's/;/; /g') [$growth]"
  exit 1
fi
