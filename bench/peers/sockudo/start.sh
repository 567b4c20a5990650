#!/usr/bin/env bash
# Run this peer in the foreground on 127.0.0.1:PORT (exec: the server's PID is this script's PID).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(dirname "$HERE")"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT (a number, below 32768)" >&2; exit 2; }
not_installed() { echo "$(basename "$HERE"): not installed ($1 missing); run bench/peers/install.sh $(basename "$HERE")" >&2; exit 3; }
INST="$PEERS/installed/sockudo"
BIN="$INST/bin/sockudo"
[[ -x "$BIN" ]] || not_installed "$BIN"
# Without these Sockudo caps the default app at 100 connections and rate-limits clients.
export HOST=127.0.0.1 PORT="$PORT" \
  ADAPTER_DRIVER=local CACHE_DRIVER=memory QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory \
  RATE_LIMITER_ENABLED=false \
  SOCKUDO_DEFAULT_APP_ENABLED=true \
  SOCKUDO_DEFAULT_APP_ID=bench-app SOCKUDO_DEFAULT_APP_KEY=bench-key SOCKUDO_DEFAULT_APP_SECRET=bench-secret \
  SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 \
  SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
  SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=1000000 \
  SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=1000000 \
  METRICS_ENABLED=false METRICS_HOST=127.0.0.1 METRICS_PORT=$((PORT + 1))
# Run from a directory without config/config.{toml,json} so only the environment applies.
mkdir -p "$INST/run"
cd "$INST/run"
exec "$BIN"
