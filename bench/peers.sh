#!/usr/bin/env bash
# `bash bench/peers.sh [OUT_DIR]` (run by bench/run.sh as its last phase): what the sidecar,
# nginx, HAProxy and Envoy answer when the app misbehaves, the scenarios the demo shows,
# each proxy set up alike: connect timeout 0.5 s, response (headers) timeout 1 s, keep-alive
# to the app. The apps are bench/peers_app.py; one curl per proxy and scenario (--max-time 5).
# Prints a table: the status, whether Retry-After is there, and whether the answer says why
# (a Proxy-Status header, or a body that names the cause, not just the status text), then
# what each one says. Needs the release build (BIN_DIR), nginx, and haproxy and envoy where
# they are (HAPROXY_BIN, ENVOY_BIN; set empty to leave one out). Traffic goes to 127.0.0.1
# only; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-bench/out}; mkdir -p "$out"
BIN_DIR=${BIN_DIR:-target/release}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
HAPROXY_BIN=${HAPROXY_BIN-$(command -v haproxy || true)}
ENVOY_BIN=${ENVOY_BIN-$(ls target/bench-venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)}
[ -x "$BIN_DIR/portcullis" ] || { echo "no $BIN_DIR/portcullis: cargo build --release first" >&2; exit 1; }

# The scenarios, in the order shown, each with the app behind it (peers_app.py's modes; an
# `ok` app for `gone` that is stopped after one answer, nothing at all for `refused`).
scenarios=(refused gone stall garbage reset cut app503 overload maintenance)
declare -A what=(
  [refused]="(a) app port refused; the app never answered"
  [gone]="(a) app port refused; the app had answered before"
  [stall]="(b) app accepts, never answers (1 s timeout)"
  [garbage]="(c) app answers garbage, not HTTP"
  [reset]="(d) app resets before any byte"
  [cut]="(d) app resets mid-body, after a 200 head"
  [app503]="app's own 503 with Retry-After: 30"
  [overload]="(e) overload: limit 1 at the app, 2nd request"
  [maintenance]="(e) maintenance mode"
)
declare -A app_port=([gone]=18208 [refused]=18209 [stall]=18210 [garbage]=18211 [reset]=18212
  [cut]=18213 [app503]=18214 [overload]=18215 [maintenance]=18216)
NGINX=127.0.0.1:18200 HAPROXY=127.0.0.1:18201 ENVOY=127.0.0.1:18202 ENVOY_ADMIN_PORT=18203
PC_PORT0=18220 PC_ADMIN0=18240   # one sidecar per scenario (one upstream each), ports from these

dir=$(mktemp -d) pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; return 1; }

python3 bench/peers_app.py stall=127.0.0.1:${app_port[stall]} garbage=127.0.0.1:${app_port[garbage]} \
  reset=127.0.0.1:${app_port[reset]} cut=127.0.0.1:${app_port[cut]} app503=127.0.0.1:${app_port[app503]} \
  slow=127.0.0.1:${app_port[overload]} ok=127.0.0.1:${app_port[maintenance]} & pids+=($!)
python3 bench/peers_app.py ok=127.0.0.1:${app_port[gone]} & gone_app=$!; pids+=("$gone_app")

proxies=(portcullis nginx)

# The sidecar: connect 500ms, responseHeaders 1s; overload: maxInFlight 1, no queue (as the
# demo); maintenance: an open-ended MaintenanceWindow (as bench/run.sh's phase 4).
policy='apiVersion: portcullis.dev/v1alpha1
kind: UpstreamPolicy
metadata: {name: bench}
spec:
  timeouts: {connect: 500ms, responseHeaders: 1s}'
declare -A pc_addr
i=0
for s in "${scenarios[@]}"; do
  case $s in
    overload) printf '%s\n  overload: {maxInFlight: 1, retryAfter: 5s}\n' "$policy" ;;
    maintenance) printf '%s\n---\napiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: bench}\nspec: {message: bench}\n' "$policy" ;;
    *) printf '%s\n' "$policy" ;;
  esac > "$dir/pc-$s.yaml"
  pc_addr[$s]=127.0.0.1:$((PC_PORT0 + i))
  "$BIN_DIR/portcullis" proxy --listen "${pc_addr[$s]}" --upstream "127.0.0.1:${app_port[$s]}" \
    --admin "127.0.0.1:$((PC_ADMIN0 + i))" --config "$dir/pc-$s.yaml" 2>"$dir/pc-$s.log" & pids+=($!)
  i=$((i + 1))
done

# nginx: proxy_connect_timeout 500ms, proxy_read_timeout 1s; overload: limit_conn 1 (answers
# 503 at once); no maintenance mode of its own.
{
  cat <<EOF
worker_processes 1;
user root;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    # The key must not be empty (empty keys are not counted): the port, one for all.
    limit_conn_zone \$server_port zone=one:1m;
    proxy_connect_timeout 500ms;
    proxy_read_timeout 1s;
    proxy_send_timeout 1s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
  for s in "${scenarios[@]}"; do
    [ "$s" = maintenance ] || echo "    upstream $s { server 127.0.0.1:${app_port[$s]}; keepalive 8; }"
  done
  echo "    server {"
  echo "        listen $NGINX;"
  for s in "${scenarios[@]}"; do
    case $s in
      maintenance) ;;
      overload) echo "        location /$s { limit_conn one 1; proxy_pass http://$s/; }" ;;
      *) echo "        location /$s { proxy_pass http://$s/; }" ;;
    esac
  done
  echo "    }"
  echo "}"
} > "$dir/nginx.conf"
"$NGINX_BIN" -c "$dir/nginx.conf" -p "$dir" & pids+=($!)

# HAProxy: timeout connect 500ms, timeout server 1s (default retries: 3); overload: server
# maxconn 1, the rest queued for at most 100 ms; maintenance: the server `disabled`.
if [ -n "$HAPROXY_BIN" ]; then
  proxies+=(haproxy)
  {
    cat <<EOF
global
    nbthread 1
defaults
    mode http
    timeout connect 500ms
    timeout client 30s
    timeout server 1s
    timeout http-request 10s
    option http-keep-alive
    http-reuse always
frontend peers
    bind $HAPROXY
EOF
    for s in "${scenarios[@]}"; do echo "    use_backend $s if { path_beg /$s }"; done
    for s in "${scenarios[@]}"; do
      echo "backend $s"
      echo "    http-request set-path /"
      case $s in
        overload) echo "    timeout queue 100ms"; echo "    server app 127.0.0.1:${app_port[$s]} maxconn 1" ;;
        maintenance) echo "    server app 127.0.0.1:${app_port[$s]} disabled" ;;
        *) echo "    server app 127.0.0.1:${app_port[$s]}" ;;
      esac
    done
  } > "$dir/haproxy.cfg"
  "$HAPROXY_BIN" -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.log" & pids+=($!)
fi

# Envoy: cluster connect_timeout 0.5s, route timeout 1s; overload: a circuit breaker of one
# request at a time (max_requests 1; connections and pending requests free, else the 2nd
# request would wait for the 1st connection rather than overflow); no maintenance mode.
if [ -n "$ENVOY_BIN" ]; then
  proxies+=(envoy)
  {
    cat <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $ENVOY_ADMIN_PORT}}
static_resources:
  listeners:
  - name: peers
    address: {socket_address: {address: 127.0.0.1, port_value: ${ENVOY#*:}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: peers
          codec_type: AUTO
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: peers
              domains: ["*"]
              routes:
EOF
    for s in "${scenarios[@]}"; do
      [ "$s" = maintenance ] ||
        echo "              - {match: {prefix: /$s}, route: {cluster: $s, prefix_rewrite: /, timeout: 1s}}"
    done
    echo "  clusters:"
    for s in "${scenarios[@]}"; do
      [ "$s" != maintenance ] || continue
      cat <<EOF
  - name: $s
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: $s
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${app_port[$s]}}}}}]}]
EOF
      [ "$s" != overload ] ||
        echo "    circuit_breakers: {thresholds: [{max_connections: 100, max_pending_requests: 100, max_requests: 1}]}"
    done
  } > "$dir/envoy.yaml"
  "$ENVOY_BIN" -c "$dir/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level error \
    2>"$dir/envoy.log" & pids+=($!)
fi

for s in "${scenarios[@]}"; do
  [ "$s" = refused ] || wait_port "127.0.0.1:${app_port[$s]}"
  wait_port "${pc_addr[$s]}"
done
wait_port "$NGINX"
[ -z "$HAPROXY_BIN" ] || wait_port "$HAPROXY"
[ -z "$ENVOY_BIN" ] || wait_port "$ENVOY"

url() {  # PROXY SCENARIO
  case $1 in
    portcullis) echo "http://${pc_addr[$2]}/" ;;
    nginx) echo "http://$NGINX/$2" ;;
    haproxy) echo "http://$HAPROXY/$2" ;;
    envoy) echo "http://$ENVOY/$2" ;;
  esac
}
supported() {  # PROXY SCENARIO: whether the proxy has the feature at all
  [ "$2" != maintenance ] || [ "$1" = portcullis ] || [ "$1" = haproxy ]
}

# Each proxy answers once through the `gone` app, which then stops: the app had answered.
for p in "${proxies[@]}"; do curl -s -o /dev/null --max-time 5 "$(url "$p" gone)" || true; done
kill "$gone_app"; wait "$gone_app" 2>/dev/null || true
sleep 0.3

# probe PROXY SCENARIO: one GET; the head, body and "code seconds curl_exit" under $dir.
probe() {
  local f=$dir/r-$1-$2 rc=0
  : > "$f.body"; : > "$f.head"
  # --http0.9: an answer without a status line is read rather than refused.
  curl -s --http0.9 -o "$f.body" -D "$f.head" -w '%{http_code} %{time_total} %{size_download}' --max-time 5 "$(url "$1" "$2")" > "$f.code" || rc=$?
  echo " $rc" >> "$f.code"
}
for s in "${scenarios[@]}"; do
  for p in "${proxies[@]}"; do
    supported "$p" "$s" || continue
    if [ "$s" = overload ]; then
      # A slow request (2 s; cut at the 1 s timeout) holds the only turn while the probe runs.
      curl -s -o /dev/null --max-time 5 "$(url "$p" "$s")" & holder=$!
      sleep 0.3
      probe "$p" "$s"
      wait "$holder" || true
    else
      probe "$p" "$s"
    fi
  done
done

header() { awk -v n="$1" '{ sub(/\r$/, "") } tolower($0) ~ "^" tolower(n) ":" { sub(/^[^:]*:[ \t]*/, ""); print; exit }' "$2"; }
# The body as text: tags and the status line's words (and a server token) taken out; what is
# left names a cause, if anything does.
body_text() { sed -e 's/<[^>]*>/ /g' "$1" | tr -s ' \t\r\n' ' ' | sed -e 's/^ //' -e 's/ $//' | cut -c1-120; }
cause_text() {  # CODE BODY_TEXT
  local reason
  reason=$(awk -v c="$1" 'BEGIN { split("200 OK|502 Bad Gateway|503 Service Unavailable|503 Service Temporarily Unavailable|504 Gateway Timeout|504 Gateway Time-out", a, "|"); for (i in a) if (index(a[i], c " ") == 1) print substr(a[i], 5) }')
  local t=$2
  while read -r r; do [ -z "$r" ] || t=${t//$r/}; done <<< "$reason"
  t=${t//$1/}
  sed -E -e 's#(nginx|haproxy|envoy)(/[0-9.]+)?##gI' -e 's/[^[:alnum:]]//g' <<< "$t"
}
# One cell: "STATUS [RA=N] PS|text|-" (PS: a Proxy-Status header; text: a body that says more
# than the status; -: nothing but the status), or how the exchange ended.
declare -A cell detail
for s in "${scenarios[@]}"; do
  for p in "${proxies[@]}"; do
    if ! supported "$p" "$s"; then cell[$p,$s]="n/a"; detail[$p,$s]="no maintenance mode (only a hand-written 503)"; continue; fi
    f=$dir/r-$p-$s
    read -r code secs size rc < "$f.code"
    ra=$(header retry-after "$f.head") ps=$(header proxy-status "$f.head") ov=$(header x-envoy-overloaded "$f.head")
    text=$(body_text "$f.body")
    c=$code
    [ -z "$ra" ] || c="$c RA=$ra"
    if [ "$code" = 000 ] && [ "$size" -gt 0 ]; then c="app's bytes, no status"
    elif [ "$code" = 000 ] && [ "$rc" = 28 ]; then c="no answer in 5 s"
    elif [ "$code" = 000 ]; then c="closed (curl exit $rc)"
    elif [ "$rc" != 0 ]; then c="$c cut"
    elif [ -n "$ps" ]; then c="$c PS"
    elif [ -n "$(cause_text "$code" "$text")" ]; then c="$c text"
    else c="$c -"
    fi
    cell[$p,$s]=$c
    d=$(printf '%.2fs' "$secs")
    [ "$rc" = 0 ] || d="$d, $size bytes then curl exit $rc"
    [ "$code" != 000 ] || [ "$size" = 0 ] || d="$d (relayed as an HTTP/0.9 response: no status line, no framing)"
    [ -z "$ps" ] || d="$d; Proxy-Status: $ps"
    [ -z "$ov" ] || d="$d; x-envoy-overloaded: $ov"
    [ -z "$text" ] || [ "$s" = cut ] || d="$d; body: $text"
    detail[$p,$s]=$d
  done
done

echo
echo "== 502/503/504 side by side: connect timeout 0.5 s, response (headers) timeout 1 s for each proxy; one curl each"
versions="nginx $("$NGINX_BIN" -v 2>&1 | sed 's#.*nginx/##')"
[ -z "$HAPROXY_BIN" ] || versions="$versions, haproxy $("$HAPROXY_BIN" -v | awk 'NR == 1 {print $3}')"
[ -z "$ENVOY_BIN" ] || versions="$versions, envoy $("$ENVOY_BIN" --version | sed -n 's#.*version: [^/]*/\([^/]*\)/.*#\1#p')"
echo "$versions; the sidecar: one \`portcullis proxy\` per scenario (one upstream each), the peers route by path"
echo "cell: status; RA=Retry-After; PS = a Proxy-Status header (RFC 9209) says why; text = the body names a cause"
echo "(more than the status text); - = the status alone; cut = the body ended short; app's bytes = no status line,"
echo "the app's garbage relayed. nginx and Envoy have no maintenance mode (n/a)."
printf '%-50s' scenario; for p in "${proxies[@]}"; do printf ' %-24s' "$p"; done; echo
for s in "${scenarios[@]}"; do
  printf '%-50s' "${what[$s]}"
  for p in "${proxies[@]}"; do printf ' %-24s' "${cell[$p,$s]}"; done
  echo
done
echo
echo "what each one says (time to the answer; Proxy-Status; the body, tags removed, cut at 120 characters):"
for s in "${scenarios[@]}"; do
  echo "${what[$s]}"
  for p in "${proxies[@]}"; do printf '  %-11s %s\n' "$p" "${detail[$p,$s]}"; done
done
