#!/usr/bin/env bash
# SDK conformance suite: runs the official Centrifugo SDKs (centrifuge-js over `ws`, JSON and
# protobuf; centrifuge-python, JSON and protobuf; cent) against a Herald server.
#
# Usage: conformance/run.sh            (from anywhere)
# Environment:
#   HERALD_BIN        herald binary (default: target/debug/herald under the repository root)
#   CONFORMANCE_PORT  port Herald listens on (default 18000, from conformance/herald.toml)
#   CONFORMANCE_ONLY  "node" or "python" to run one half only
#   CONFORMANCE_DEBUG=1  centrifuge-js debug logging
# Needs node 20 + npm and python3 (3.11); installs the pinned SDKs on first use.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

bin="${HERALD_BIN:-target/debug/herald}"
case "$bin" in
  /*) ;;
  *) bin="$root/$bin" ;;
esac
# Herald reads HERALD_* variables as config overrides and refuses unknown keys: HERALD_BIN
# must not reach it (nor the `herald token` processes the tests start).
unset HERALD_BIN
# Same for HERALD_CONFIG (clap reads it for --config, the config loader sees an unknown key).
unset HERALD_CONFIG

if [[ ! -x "$bin" ]]; then
  echo "conformance: herald binary not found at $bin (build it with: cargo build -p herald)" >&2
  exit 2
fi

port="${CONFORMANCE_PORT:-18000}"
config="$here/herald.toml"
only="${CONFORMANCE_ONLY:-}"

export CONFORMANCE_BIN="$bin"
export CONFORMANCE_CONFIG="$config"
export CONFORMANCE_HTTP="http://127.0.0.1:$port"
export CONFORMANCE_API_KEY="conformance-api-key"
export CONFORMANCE_SECRET="conformance-secret-key"
# Read by herald serve, and by `herald publish` started from the tests.
export HERALD_SERVER__LISTEN="127.0.0.1:$port"

log() { echo "conformance: $*" >&2; }

# 0 when GET <path> on the Herald port answers 200 (bash /dev/tcp: no curl needed).
http_ok() {
  (
    exec 3<> "/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" "$port" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == "HTTP/1."?" 200"* ]]
  ) 2> /dev/null
}

# ---------------------------------------------------------------------------------------
# Dependencies (skipped when already installed from the same lockfiles)

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_node() {
  local dir="$here/node"
  local want
  want="$(stamp_of "$dir/package.json" "$dir/package-lock.json")"
  if [[ -f "$dir/node_modules/.conformance-stamp" && "$(cat "$dir/node_modules/.conformance-stamp")" == "$want" ]]; then
    log "node dependencies up to date"
    return
  fi
  log "installing node dependencies (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$dir/node_modules/.conformance-stamp"
}

install_python() {
  local dir="$here/python"
  local venv="$dir/.venv"
  local want
  want="$(stamp_of "$dir/requirements.txt")"
  if [[ -f "$venv/.conformance-stamp" && "$(cat "$venv/.conformance-stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    log "python dependencies up to date"
    return
  fi
  local py="${PYTHON:-}"
  if [[ -z "$py" ]]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" > /dev/null; then py="$candidate"; break; fi
    done
  fi
  log "creating $venv with $py and installing requirements.txt"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
  echo "$want" > "$venv/.conformance-stamp"
}

if [[ "$only" != "python" ]]; then install_node; fi
if [[ "$only" != "node" ]]; then install_python; fi

# ---------------------------------------------------------------------------------------
# Server

workdir="$(mktemp -d)"
server_log="$workdir/herald.log"
server_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2> /dev/null; then
    kill -TERM "$server_pid" 2> /dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$server_log" ]]; then
    log "last lines of the herald log ($server_log):"
    tail -n 40 "$server_log" >&2 || true
  elif [[ $rc -eq 0 ]]; then
    rm -rf "$workdir"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
  log "something already listens on port $port; stop it or set CONFORMANCE_PORT"
  exit 2
fi

log "starting $bin serve --config $config on 127.0.0.1:$port (log: $server_log)"
"$bin" serve --config "$config" > "$server_log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 200); do
  if ! kill -0 "$server_pid" 2> /dev/null; then
    log "herald exited during startup"
    cat "$server_log" >&2
    exit 1
  fi
  if http_ok /readyz; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  log "herald not ready after 20s ($CONFORMANCE_HTTP/readyz)"
  exit 1
fi
log "herald ready"

# ---------------------------------------------------------------------------------------
# Tests

status=0
if [[ "$only" != "python" ]]; then
  log "running centrifuge-js tests (node --test)"
  if ! (cd "$here/node" && node --test --test-concurrency=4 --test-reporter=spec test/*.test.mjs); then
    status=1
  fi
fi
if [[ "$only" != "node" ]]; then
  log "running centrifuge-python and cent tests (pytest)"
  if ! (cd "$here/python" && .venv/bin/python -m pytest -q); then
    status=1
  fi
fi

if [[ $status -ne 0 ]]; then
  log "FAILED"
else
  log "all conformance tests passed"
fi
exit $status
