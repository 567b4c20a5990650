#!/usr/bin/env bash
# Webhook measurements after the dispatcher and store fixes; one fresh server per run.
set -u
cd /work/main
run() {
  name=$1; shift
  rm -rf /tmp/wh/data; sed 's#DATA_DIR#/tmp/wh/data#' bench/results/first-full/herald.toml > /tmp/wh/herald.toml
  target/release/herald --config /tmp/wh/herald.toml serve > /tmp/wh/$name.log 2>&1 &
  pid=$!
  for i in $(seq 50); do curl -sf http://127.0.0.1:18000/readyz > /dev/null && break; sleep 0.1; done
  target/release/herald-bench webhook --api http://127.0.0.1:18000 --token bench-mgmt-token --server-pid $pid --out /tmp/wh/$name.json "$@" 2>&1 | tail -3
  kill $pid; wait $pid 2>/dev/null
}
run ordered-1000 --rate 1000 --duration 10s
run conc16-1000 --rate 1000 --duration 10s --endpoint-concurrency 16
run conc64-max --rate max --duration 10s --endpoint-concurrency 64
run ordered-failhalf-500 --rate 500 --duration 5s --fail-half
