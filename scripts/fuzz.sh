#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that take untrusted input (see fuzz/README.md).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET defaults to 20 (what the test command runs); targets default to all.
# Each target starts from its committed seeds (fuzz/corpus/<target>, read only) and writes the
# inputs it discovers to a temporary folder, so a run never changes the checkout. A crash,
# panic, hang (-timeout) or memory blow-up (-rss_limit_mb) fails the script; the input that did
# it is kept under fuzz/artifacts/<target>/ and printed, to be replayed with
#   cargo fuzz run --fuzz-dir fuzz -s none --debug-assertions --target-dir target/fuzz \
#     <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-20}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(websocket_frames protocol_commands server_api_bodies)
fi

if ! cargo fuzz --version > /dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install --locked)" >&2
  cargo install cargo-fuzz --locked --quiet
fi

# cargo fuzz passes nightly-only flags (-Z) to rustc. On a stable toolchain RUSTC_BOOTSTRAP lets
# them through; the code is the same, only the instrumentation flags need it.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

# No sanitizer: none of our crates has `unsafe` code, so AddressSanitizer would only slow every
# run (about 2x) to watch code the targets do not reach. Panics, overflows (debug assertions are
# turned on below), hangs and unbounded memory are what the targets look for.
build_opts=(--fuzz-dir fuzz -s none --debug-assertions --target-dir target/fuzz)

cargo fuzz build "${build_opts[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  echo "fuzzing $t for ${seconds}s (seeds: fuzz/corpus/$t)" >&2
  if ! cargo fuzz run "${build_opts[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" > "$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    echo "!!! fuzz target $t FAILED; the input is in fuzz/artifacts/$t/ !!!" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)|^Done [0-9]+ runs' "$work/$t.log" >&2 || true
done
