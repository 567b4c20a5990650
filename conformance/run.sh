#!/usr/bin/env bash
# SDK conformance suite: runs the official Centrifugo SDKs (centrifuge-js over `ws`, JSON and
# protobuf; centrifuge-python, JSON and protobuf; cent) and the official Svix SDKs and Standard
# Webhooks verifiers (npm and PyPI `svix`, `standardwebhooks`) against a Herald server.
#
# Usage: conformance/run.sh            (from anywhere)
# Environment:
#   HERALD_BIN        herald binary (default: target/debug/herald under the repository root)
#   CONFORMANCE_PORT  port Herald listens on (default 18000, from conformance/herald.toml); a
#                     second Herald, sending `svix-*` webhook headers, listens on the next port
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
# The second server: same config, but webhooks.header_style = "svix".
svix_port=$((port + 1))
export CONFORMANCE_HTTP_SVIX_HEADERS="http://127.0.0.1:$svix_port"
# The browser test serves its page from this port: a cross-origin page that Herald must allow.
page_port=$((port + 2))
export CONFORMANCE_PAGE_PORT="$page_port"
# A third server on the PostgreSQL store (its own schema in the machine's PostgreSQL), for the
# Svix and Standard Webhooks tests: they must pass on both backends.
pg_port=$((port + 3))
pg_url="${CONFORMANCE_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_schema="conformance_$$_$(date +%s)"

log() { echo "conformance: $*" >&2; }

# 0 when GET <path> on 127.0.0.1:<port> answers 200 (bash /dev/tcp: no curl needed).
http_ok() {
  (
    exec 3<> "/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
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

# The browser test drives Debian's Chromium (never a downloaded browser).
if [[ "$only" != "python" && ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null; then
    log "installing chromium (apt-get) for the browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium > /dev/null 2>&1 \
      || { apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq chromium > /dev/null 2>&1; } || true
  fi
  if [[ ! -x /usr/bin/chromium ]]; then
    log "!!! WARNING: /usr/bin/chromium is not installed and could not be installed: the browser test is SKIPPED !!!"
  fi
fi
if [[ "$only" != "python" ]]; then install_node; fi
if [[ "$only" != "node" ]]; then install_python; fi

# ---------------------------------------------------------------------------------------
# Servers

workdir="$(mktemp -d)"
server_log="$workdir/herald.log"
svix_server_log="$workdir/herald-svix-headers.log"
pg_server_log="$workdir/herald-postgres.log"
server_pids=()

drop_pg_schema() {
  command -v psql > /dev/null && psql "$pg_url" -q -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" > /dev/null 2>&1 || true
}

stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill -0 "$pid" 2> /dev/null && kill -TERM "$pid" 2> /dev/null || true
  done
  for pid in "${server_pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  done
}

cleanup() {
  local rc=$?
  stop_servers
  drop_pg_schema
  if [[ $rc -ne 0 ]]; then
    for f in "$server_log" "$svix_server_log" "$pg_server_log"; do
      if [[ -f "$f" ]]; then
        log "last lines of the herald log ($f):"
        tail -n 40 "$f" >&2 || true
      fi
    done
  else
    rm -rf "$workdir"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in "$port" "$svix_port" "$page_port" "$pg_port"; do
  if (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then
    log "something already listens on port $p; stop it or set CONFORMANCE_PORT (uses it and the next port)"
    exit 2
  fi
done

# start_server PORT LOG DATA_DIR [VAR=VALUE...]: herald serve with a fresh store, waits for /readyz.
start_server() {
  local p="$1" logfile="$2" data="$3"
  shift 3
  mkdir -p "$data"
  log "starting $bin serve --config $config on 127.0.0.1:$p${*:+ with $*} (log: $logfile)"
  env HERALD_SERVER__LISTEN="127.0.0.1:$p" HERALD_STORE__DATA_DIR="$data" "$@" \
    "$bin" serve --config "$config" > "$logfile" 2>&1 &
  local pid=$!
  server_pids+=("$pid")
  for _ in $(seq 1 200); do
    if ! kill -0 "$pid" 2> /dev/null; then
      log "herald exited during startup"
      cat "$logfile" >&2
      exit 1
    fi
    if http_ok "$p" /readyz; then
      log "herald ready on port $p"
      return
    fi
    sleep 0.1
  done
  log "herald not ready after 20s (http://127.0.0.1:$p/readyz)"
  exit 1
}

start_server "$port" "$server_log" "$workdir/data" \
  HERALD_CLIENT__ALLOWED_ORIGINS="[\"http://127.0.0.1:$page_port\"]"
start_server "$svix_port" "$svix_server_log" "$workdir/data-svix-headers" HERALD_WEBHOOKS__HEADER_STYLE=svix
start_server "$pg_port" "$pg_server_log" "$workdir/data-postgres" HERALD_STORE__BACKEND=postgres \
  HERALD_STORE__POSTGRES_URL="$pg_url" HERALD_STORE__POSTGRES_SCHEMA="$pg_schema"

# ---------------------------------------------------------------------------------------
# Tests

status=0
if [[ "$only" != "python" ]]; then
  log "running centrifuge-js and svix (node) tests (node --test)"
  if ! (cd "$here/node" && node --test --test-concurrency=4 --test-reporter=spec test/*.test.mjs); then
    status=1
  fi
fi
if [[ "$only" != "python" ]]; then
  log "running curl against the uni-directional HTTP transports (shell/uni_curl.sh)"
  if ! "$here/shell/uni_curl.sh"; then
    status=1
  fi
fi
if [[ "$only" != "node" ]]; then
  log "running centrifuge-python, cent and svix (python) tests (pytest)"
  if ! (cd "$here/python" && .venv/bin/python -m pytest -q); then
    status=1
  fi
fi

log "running the Svix and Standard Webhooks tests again on the PostgreSQL store (schema $pg_schema)"
if [[ "$only" != "python" ]]; then
  if ! (cd "$here/node" && CONFORMANCE_HTTP="http://127.0.0.1:$pg_port" node --test --test-reporter=spec test/webhooks.test.mjs); then
    status=1
  fi
fi
if [[ "$only" != "node" ]]; then
  if ! (cd "$here/python" && CONFORMANCE_HTTP="http://127.0.0.1:$pg_port" .venv/bin/python -m pytest -q tests/test_webhooks.py); then
    status=1
  fi
fi

if [[ $status -ne 0 ]]; then
  log "FAILED"
else
  log "all conformance tests passed"
fi
exit $status
