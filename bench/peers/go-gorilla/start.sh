#!/usr/bin/env bash
# Run this peer in the foreground on 127.0.0.1:PORT (exec: the server's PID is this script's PID).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(dirname "$HERE")"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT (a number, below 32768)" >&2; exit 2; }
not_installed() { echo "$(basename "$HERE"): not installed ($1 missing); run bench/peers/install.sh $(basename "$HERE")" >&2; exit 3; }
INST="$PEERS/installed/go-gorilla"
[[ -x "$INST/hub" ]] || not_installed "$INST/hub"
if [[ "$HERE/main.go" -nt "$INST/hub" ]]; then
  echo "go-gorilla: warning: main.go is newer than the built hub; rerun bench/peers/install.sh go-gorilla" >&2
fi
exec "$INST/hub" "$PORT"
