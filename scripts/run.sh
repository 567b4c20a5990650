#!/usr/bin/env bash
# Build and run Herald on its embedded default, with the commented example config.
# Usage: scripts/run.sh [extra herald serve args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p herald --locked
exec target/release/herald --config "${HERALD_CONFIG_FILE:-herald.example.toml}" serve "$@"
