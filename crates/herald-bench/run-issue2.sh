#!/usr/bin/env bash
# Issue 2 baseline: idle memory per connection (1k, 10k) and publish fan-out (1k and 10k
# subscribers, at max rate and at a fixed 100 publishes/s, 10 s each) against a release Herald.
#
# Each measurement gets a freshly started server, so RSS baselines are not skewed by memory the
# allocator kept from the previous run. Results (JSON, server logs, config) land in $OUT.
#
#   crates/herald-bench/run-issue2.sh                 # everything
#   DURATION=5s ONLY="idle-1k fanout-1k-max" crates/herald-bench/run-issue2.sh
#   PERF=1 ...   # also record `perf record -g` of the server during each run
#   SKIP_BUILD=1 # use the binaries already in target/release
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PORT=${PORT:-18100}
KEY=${KEY:-bench-key}
DURATION=${DURATION:-10s}
HOLD=${HOLD:-10s}
ONLY=${ONLY:-"idle-1k idle-10k fanout-1k-max fanout-1k-100 fanout-10k-max fanout-10k-100"}
OUT=${OUT:-$(mktemp -d /tmp/herald-issue2.XXXXXX)}
mkdir -p "$OUT"
URL="ws://127.0.0.1:$PORT/connection/websocket"
API="http://127.0.0.1:$PORT"

ulimit -n 20000 2>/dev/null || true
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building (release)" >&2
  cargo build --release -p herald -p herald-bench >&2
fi
HERALD=target/release/herald
BENCH=target/release/herald-bench

CONF="$OUT/herald.toml"
cat >"$CONF" <<TOML
[server]
listen = "127.0.0.1:$PORT"
max_connections = 20000

[log]
level = "warn"

[api]
key = "$KEY"

[client]
allow_anonymous = true

[channel.defaults]
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
TOML

SERVER_PID=""
start_server() {
  local name=$1
  "$HERALD" serve --config "$CONF" >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      sleep 0.5 # let it settle before the RSS baseline
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited at startup; log:" >&2
      cat "$OUT/server-$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "server did not start listening on $PORT" >&2
  exit 1
}
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT

PERF_PID=""
perf_start() {
  if [[ "${PERF:-0}" == 1 ]] && command -v perf >/dev/null; then
    perf record -g -o "$OUT/perf-$1.data" -p "$SERVER_PID" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
}
perf_stop() {
  if [[ -n "$PERF_PID" ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
  fi
}

run() {
  local name=$1
  shift
  [[ " $ONLY " == *" $name "* ]] || return 0
  echo >&2
  echo "== $name: herald-bench $*" >&2
  start_server "$name"
  perf_start "$name"
  "$BENCH" "$@" --server-pid "$SERVER_PID" --out "$OUT/$name.json" >/dev/null || echo "!! $name failed" >&2
  perf_stop
  stop_server
  sleep 1 # let TIME_WAIT sockets and the kernel settle
}

run idle-1k idle --url "$URL" --conns 1000 --hold "$HOLD"
run idle-10k idle --url "$URL" --conns 10000 --hold "$HOLD"
run fanout-1k-max fanout --url "$URL" --api "$API" --api-key "$KEY" --subs 1000 --rate max --duration "$DURATION"
run fanout-1k-100 fanout --url "$URL" --api "$API" --api-key "$KEY" --subs 1000 --rate 100 --duration "$DURATION"
run fanout-10k-max fanout --url "$URL" --api "$API" --api-key "$KEY" --subs 10000 --rate max --duration "$DURATION"
run fanout-10k-100 fanout --url "$URL" --api "$API" --api-key "$KEY" --subs 10000 --rate 100 --duration "$DURATION"

echo >&2
echo "== results in $OUT" >&2
if command -v jq >/dev/null; then
  for f in "$OUT"/idle-*.json; do
    [[ -e "$f" ]] || continue
    jq -r --arg n "$(basename "$f" .json)" \
      '"\($n): \(.connected)/\(.conns_requested) conns, \(.connect_rate_per_s) conn/s, server rss \(.server.rss_before_bytes) -> \(.server.rss_after_hold_bytes) B = \(.server.bytes_per_conn) B/conn (after close \(.server.rss_after_close_bytes) B), \(.server.cpu_us_per_connect) us cpu/connect"' "$f"
  done
  for f in "$OUT"/fanout-*.json; do
    [[ -e "$f" ]] || continue
    jq -r --arg n "$(basename "$f" .json)" \
      '"\($n): \(.publishes_per_s) pub/s, \(.deliveries_per_s) deliv/s, delivered \(.delivered)/\(.expected_deliveries) (lost \(.lost)), latency p50 \(.latency.p50_ms) p99 \(.latency.p99_ms) p99.9 \(.latency.p999_ms) max \(.latency.max_ms) ms, server \(.server.cpu_us_per_delivery) us cpu/delivery (\(.server.cpu_cores_used) cores), bench \(.bench.cpu_cores_used) cores, other procs \(.machine.other_cores_used) cores, peak rss \(.server.rss_peak_sampled_bytes) B"' "$f"
  done
else
  cat "$OUT"/*.json
fi
