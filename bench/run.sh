#!/usr/bin/env bash
# Herald's benchmark suite: Herald against its peers, side by side, and a readable report.
#
#   bench/run.sh quick   # small version of every scenario (small N, 2 s, 1 repetition; peers
#                        # only if installed); < 5 min; non-zero exit if a Herald scenario fails
#   bench/run.sh full    # everything (1k/10k/~19k, 3 repetitions in alternating order); long
#   bench/run.sh report [RESULTS_DIR]   # re-render bench/REPORT.md from results
#
# Binaries: HERALD_BIN / HERALD_BENCH_BIN (default target/release/*). When either is given,
# nothing is built (CI passes debug binaries). Extra arguments go to `herald-bench suite`
# (e.g. --only fanout,idle --targets herald,herald-sse,nchan --cases 10000 --reps 1 --duration 5s --no-peers;
# `herald-sse` is Herald with its idle and fan-out clients on uni SSE instead of WebSocket;
# `herald-postgres` is Herald on the PostgreSQL store for the durable-publish and webhook cases, a fresh
# schema per run in --postgres-url / HERALD_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),
# dropped afterwards; its rows are skipped, loudly, when PostgreSQL does not answer).
# Results: bench/results/<run-id>/ (JSON per scenario, SVG charts, server logs).
# Quick runs write their report to bench/results/<run-id>/REPORT.md, full runs to bench/REPORT.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-quick}
shift || true

if [[ -z "${HERALD_BIN:-}" && -z "${HERALD_BENCH_BIN:-}" ]]; then
  echo "== building (release)" >&2
  cargo build --release -p herald -p herald-bench >&2
fi
export HERALD_BIN=${HERALD_BIN:-target/release/herald}
BENCH=${HERALD_BENCH_BIN:-target/release/herald-bench}
for b in "$HERALD_BIN" "$BENCH"; do
  [[ -x "$b" ]] || { echo "bench/run.sh: $b is missing (build it or set HERALD_BIN / HERALD_BENCH_BIN)" >&2; exit 2; }
done

# One process may hold at most 20,000 descriptors here; ask for it.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

case "$MODE" in
  quick|full)
    RUN_ID=${RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$MODE}
    OUT=bench/results/$RUN_ID
    mkdir -p "$OUT"
    echo "== $MODE run $RUN_ID (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rc=0
    "$BENCH" suite --mode "$MODE" --out "$OUT" "$@" || rc=$?
    if [[ "$MODE" == full ]]; then REPORT=bench/REPORT.md; else REPORT=$OUT/REPORT.md; fi
    "$BENCH" report --results "$OUT" --out "$REPORT" || rc=$?
    echo "== results: $OUT; report: $REPORT (exit $rc)" >&2
    exit $rc
    ;;
  report)
    if [[ $# -gt 0 ]]; then "$BENCH" report --results "$1"; else "$BENCH" report; fi
    ;;
  *)
    echo "usage: bench/run.sh quick|full|report [args]" >&2
    exit 2
    ;;
esac
