#!/usr/bin/env bash
# `make demo`: a sample app behind the sidecar; shows a 200, the app's own 503, 504s, 502s,
# an overload 503 and a maintenance 503 exactly as a client sees them, then stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:18180}
APP_ADDR=${APP_ADDR:-127.0.0.1:18181}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:18190}

echo "Building..."
cargo build --quiet --bin portcullis --example demo_app
log=$(mktemp)
config=$(mktemp --suffix .yaml)
cp demo/portcullis.yaml "$config"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log" "$config"; }
trap cleanup EXIT

target/debug/examples/demo_app "$APP_ADDR" 2>/dev/null & app=$!; pids+=("$app")
target/debug/portcullis proxy --listen "$PROXY_ADDR" --upstream "$APP_ADDR" \
  --admin "$ADMIN_ADDR" --config "$config" --reload-interval 200ms 2>"$log" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://$ADMIN_ADDR/readyz" >/dev/null && break; sleep 0.1; done

show() {
  local what=$1; shift
  printf '\n\033[1m== %s\033[0m\n$ curl -si' "$what"; printf ' %q' "$@"; echo
  curl -si --max-time 5 "$@" | tr -d '\r'
}

show "200: the app answers" "http://$PROXY_ADDR/"
show "503 from the app itself: passed through untouched, Retry-After included" "http://$PROXY_ADDR/app-down"
show "504: the app sends no headers within responseHeaders (1s)" "http://$PROXY_ADDR/slow"
show "504 again, for an API client (RFC 9457 problem+json)" -H 'Accept: application/json' "http://$PROXY_ADDR/slow"
show "502: the app answers with a garbage status line" "http://$PROXY_ADDR/broken"
show "502: a route that allows only text/csv gets an HTML login page" "http://$PROXY_ADDR/report"
# Apply a change as `kubectl apply` would, and wait until the sidecar has it.
apply() {
  local before; before=$(curl -s "http://$ADMIN_ADDR/config" | grep -m1 '"generation"')
  cat demo/portcullis.yaml - > "$config"
  for _ in $(seq 50); do
    [ "$(curl -s "http://$ADMIN_ADDR/config" | grep -m1 '"generation"')" != "$before" ] && return 0
    sleep 0.1
  done
}

printf '\n\033[1m== Overload: maxInFlight 1, no queue; a slow request holds the only turn\033[0m\n'
apply <<'YAML'
  overload: {maxInFlight: 1, retryAfter: 5s}
YAML
curl -s -o /dev/null --max-time 5 "http://$PROXY_ADDR/slow" & slow=$!
sleep 0.3
show "503: shed, with a jittered Retry-After (5 to 7 s) and x-envoy-overloaded" "http://$PROXY_ADDR/"
wait "$slow" || true

printf '\n\033[1m== Maintenance: a MaintenanceWindow from a minute ago to two minutes from now\033[0m\n'
apply <<YAML
---
apiVersion: portcullis.dev/v1alpha1
kind: MaintenanceWindow
metadata: {name: upgrade, namespace: default}
spec:
  start: "$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)"
  end: "$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)"
  exemptPaths: [/healthz]
  message: "The demo is being upgraded; back in two minutes."
YAML
show "503: maintenance, Retry-After = whole seconds until the window ends" "http://$PROXY_ADDR/"
show "200: /healthz is exempt" "http://$PROXY_ADDR/healthz"

apply < /dev/null
kill "$app"; wait "$app" 2>/dev/null || true
show "502: the app is gone (connection refused; it answered before, so it is not starting)" -H 'Accept: text/html' "http://$PROXY_ADDR/"

printf '\n\033[1m== What the sidecar counted (admin /metrics)\033[0m\n'
curl -s "http://$ADMIN_ADDR/metrics" | grep '^portcullis_responses_total'
printf '\n\033[1m== What the sidecar logged\033[0m\n'
grep -E 'WARN' "$log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-200 || true
