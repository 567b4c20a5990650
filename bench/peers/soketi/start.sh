#!/usr/bin/env bash
# Run this peer in the foreground on 127.0.0.1:PORT (exec: the server's PID is this script's PID).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(dirname "$HERE")"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT (a number, below 32768)" >&2; exit 2; }
not_installed() { echo "$(basename "$HERE"): not installed ($1 missing); run bench/peers/install.sh $(basename "$HERE")" >&2; exit 3; }
INST="$PEERS/installed/soketi"
SERVER="$INST/node_modules/@soketi/soketi/bin/server.js"
[[ -f "$SERVER" ]] || not_installed "$SERVER"
# Soketi always opens a metrics/health listener besides the main one: bind it to
# 127.0.0.1:PORT+1 (the runner must leave PORT+1 free).
export SOKETI_HOST=127.0.0.1 SOKETI_PORT="$PORT" \
  SOKETI_METRICS_ENABLED=false SOKETI_METRICS_HOST=127.0.0.1 SOKETI_METRICS_SERVER_PORT=$((PORT + 1)) \
  SOKETI_DEFAULT_APP_ID=bench-app SOKETI_DEFAULT_APP_KEY=bench-key SOKETI_DEFAULT_APP_SECRET=bench-secret \
  SOKETI_DEFAULT_APP_MAX_CONNS=-1 SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC=-1 \
  SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC=-1 SOKETI_DEBUG=0
cd "$INST"
exec node "$SERVER" start
