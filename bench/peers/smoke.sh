#!/usr/bin/env bash
# Smoke-test every installed peer (or the ones named): start it, 2 subscribers,
# 3 publications, both must receive all 3 verbatim, stop it. Exit 1 if any fails.
#   bench/peers/smoke.sh [peer ...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."
exec node "$HERE/smoke.mjs" "$@"
