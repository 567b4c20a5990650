#!/usr/bin/env bash
# Before/after: the same load tool against Herald built at REV and at the working tree, in
# alternating rounds, for a refactor that must not cost speed or memory.
#
#   bench/ab.sh REV [ROUNDS] [-- extra herald-bench suite args]
#
# Builds REV in a temporary worktree (its own target dir), builds the working tree, then runs
# `herald-bench suite --mode full --only fanout,idle --targets herald --no-peers --reps 1
#  --max-conns 10000 --duration 4s` ROUNDS times (default 2) per side, before/after alternating.
# Results: bench/results/ab-<REV>-<time>/{before,after}-<round>/ and a summary table of server
# CPU per delivery (fan-out) and bytes per idle connection, medians per case, after/before.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REV=${1:?usage: bench/ab.sh REV [ROUNDS] [-- suite args]}
shift
ROUNDS=${1:-2}
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
EXTRA=("$@")

short=$(git rev-parse --short "$REV")
work=$(mktemp -d)
trap 'git worktree remove --force "$work/src" > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/src" "$REV" > /dev/null
echo "== building $short (before) and the working tree (after), release" >&2
(cd "$work/src" && CARGO_TARGET_DIR="$work/target" cargo build --release -p herald >&2)
cargo build --release -p herald -p herald-bench >&2

out=bench/results/ab-$short-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
ulimit -n 20000 2>/dev/null || true
for round in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    if [[ $side == before ]]; then bin="$work/target/release/herald"; else bin=target/release/herald; fi
    echo "== $side, round $round" >&2
    target/release/herald-bench suite --mode full --herald-bin "$bin" --out "$out/$side-$round" \
      --only fanout,idle --targets herald --no-peers --reps 1 --max-conns 10000 --duration 4s \
      "${EXTRA[@]}" > "$out/$side-$round.log" 2>&1
  done
done

python3 - "$out" <<'EOF' | tee "$out/SUMMARY.md"
import json, statistics, sys, glob, os
out = sys.argv[1]
cases = {}
for run_dir in sorted(glob.glob(os.path.join(out, '*-*/'))):
    side = os.path.basename(run_dir.rstrip('/')).split('-')[0]
    fan = os.path.join(run_dir, 'fanout.json')
    if os.path.exists(fan):
        for r in json.load(open(fan))['runs']:
            res = r['result']
            value = res['server']['cpu_secs'] / res['delivered'] * 1e6
            cases.setdefault(('fan-out, server CPU per delivery (µs)', r['case']), {}).setdefault(side, []).append(value)
    idle = os.path.join(run_dir, 'idle.json')
    if os.path.exists(idle):
        for r in json.load(open(idle))['runs']:
            value = r['result']['server']['bytes_per_conn']
            cases.setdefault(('idle, server bytes per connection', r['case']), {}).setdefault(side, []).append(value)
print('| measure | case | before (median) | after (median) | after / before | runs each |')
print('|---|---|---|---|---|---|')
for (measure, case), sides in cases.items():
    b, a = statistics.median(sides.get('before', [0])), statistics.median(sides.get('after', [0]))
    ratio = f'{a / b:.3f}' if b else '-'
    print(f'| {measure} | {case} | {b:.3f} | {a:.3f} | {ratio} | {len(sides.get("after", []))} |')
EOF
echo "== results: $out" >&2
