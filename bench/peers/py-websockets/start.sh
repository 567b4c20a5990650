#!/usr/bin/env bash
# Run this peer in the foreground on 127.0.0.1:PORT (exec: the server's PID is this script's PID).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(dirname "$HERE")"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT (a number, below 32768)" >&2; exit 2; }
not_installed() { echo "$(basename "$HERE"): not installed ($1 missing); run bench/peers/install.sh $(basename "$HERE")" >&2; exit 3; }
INST="$PEERS/installed/py-websockets"
[[ -f "$INST/VERSION" && -x "$INST/venv/bin/python" ]] || not_installed "$INST/venv"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec "$INST/venv/bin/python" "$HERE/server.py" "$PORT"
