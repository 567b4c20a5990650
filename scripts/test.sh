#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and integration tests, and
# bounded fuzzing of the untrusted-input parsers (fuzz/README.md), conformance with the official
# SDKs (installed on first use by conformance/run.sh) and the quick benchmark suite.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

# ensure_tool COMMAND DEBIAN_PACKAGE: install a tool the suite drives when it is missing (as
# root, from Debian's packages). One that cannot be had is reported loudly; the suite then skips
# what needs it and says so again in its summary.
ensure_tool() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" > /dev/null && return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null; then
    echo "installing $pkg (apt-get) for $cmd" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$pkg" > /dev/null 2>&1 \
      || { apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$pkg" > /dev/null; } \
      || true
  fi
  if ! command -v "$cmd" > /dev/null; then
    echo "!!! WARNING: $cmd is not installed and could not be installed (Debian package $pkg): what needs it is SKIPPED !!!" >&2
  fi
}

step "tools the suite drives (wrk for the server API benchmark, curl for the uni-directional transports)"
ensure_tool wrk wrk
ensure_tool curl curl

# ensure_postgres: the PostgreSQL store's tests use the machine's PostgreSQL (127.0.0.1:5432,
# database test, a schema per test). Start it when it is installed but stopped.
ensure_postgres() {
  command -v pg_isready > /dev/null && pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  if command -v pg_ctlcluster > /dev/null && [[ -d /etc/postgresql ]]; then
    echo "starting PostgreSQL (pg_ctlcluster)" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start > /dev/null 2>&1 || true
    for _ in $(seq 1 50); do
      pg_isready -q -h 127.0.0.1 -p 5432 && return 0
      sleep 0.2
    done
  fi
  echo "!!! WARNING: PostgreSQL is not running on 127.0.0.1:5432 and could not be started: the PostgreSQL store tests will FAIL !!!" >&2
}

step "services the tests use (PostgreSQL)"
ensure_postgres

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd fuzz && cargo clippy --all-targets --locked --target-dir ../target/fuzz-clippy -- -D warnings)

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --workspace --locked
fi

step "fuzz targets, 20 s each (WebSocket framing, protocol commands, server API bodies)"
scripts/fuzz.sh 20

step "SDK conformance (centrifuge-js, centrifuge-python, cent)"
# Same (dev) profile as the tests above, so the binary reuses their build artifacts.
cargo build -p herald --locked
HERALD_BIN="$PWD/target/debug/herald" conformance/run.sh

step "benchmark suite, quick (every scenario, small; figures from here are not reported)"
cargo build -p herald -p herald-bench --locked
HERALD_BIN="$PWD/target/debug/herald" HERALD_BENCH_BIN="$PWD/target/debug/herald-bench" RUN_ID=ci-quick \
  bench/run.sh quick

step "all tests passed"
