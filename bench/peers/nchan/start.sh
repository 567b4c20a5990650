#!/usr/bin/env bash
# Run this peer in the foreground on 127.0.0.1:PORT (exec: the server's PID is this script's PID).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(dirname "$HERE")"
PORT="${1:-}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "usage: $0 PORT (a number, below 32768)" >&2; exit 2; }
not_installed() { echo "$(basename "$HERE"): not installed ($1 missing); run bench/peers/install.sh $(basename "$HERE")" >&2; exit 3; }
INST="$PEERS/installed/nchan"
MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
[[ -f "$INST/VERSION" ]] || not_installed "$INST/VERSION"
[[ -x /usr/sbin/nginx ]] || not_installed /usr/sbin/nginx
[[ -f "$MODULE" ]] || not_installed "$MODULE"
# One prefix per port so several instances can run side by side.
PREFIX="$INST/run-$PORT"
mkdir -p "$PREFIX/tmp" "$PREFIX/logs"
sed -e "s|@PORT@|$PORT|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@NCHAN_MODULE@|$MODULE|g" \
  "$HERE/nginx.conf.template" > "$PREFIX/nginx.conf"
exec /usr/sbin/nginx -p "$PREFIX" -c "$PREFIX/nginx.conf" -e stderr
