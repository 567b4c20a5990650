#!/usr/bin/env bash
# curl against the uni-directional HTTP transports, as the README shows them: a client with no
# SDK gets pushes from /connection/uni_http_stream (JSON lines) and /connection/uni_sse (SSE),
# resumes with Last-Event-ID, and gets an HTTP error for a bad token.
# Run by conformance/run.sh (which sets CONFORMANCE_HTTP, CONFORMANCE_API_KEY, CONFORMANCE_BIN
# and CONFORMANCE_CONFIG and starts Herald).
set -euo pipefail

http="${CONFORMANCE_HTTP:?run through conformance/run.sh}"
key="${CONFORMANCE_API_KEY:?}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "uni_curl: FAIL: $*" >&2
  for f in "$work"/*.out; do [[ -f "$f" ]] && { echo "--- $f" >&2; cat "$f" >&2; }; done
  exit 1
}
pass() { echo "uni_curl: ok - $*"; }

# wait_for FILE PATTERN: until FILE has a line matching PATTERN (grep -E), 10 s at most.
wait_for() {
  for _ in $(seq 1 100); do
    grep -qE "$2" "$1" 2> /dev/null && return 0
    sleep 0.1
  done
  fail "no line matching '$2' in $1"
}

publish() {
  curl -sS --max-time 5 -X POST "$http/api/publish" -H "X-API-Key: $key" \
    -d "{\"channel\":\"$1\",\"data\":{\"n\":$2}}" > /dev/null
}

suffix="$(date +%s%N)"
channel="live:curl-$suffix"
token="$("$CONFORMANCE_BIN" token --config "$CONFORMANCE_CONFIG" --user "curl-$suffix" --channels "$channel" | tail -n 1)"

# --- uni HTTP stream: POST the connect request, read JSON lines.
curl -sN --max-time 20 -X POST "$http/connection/uni_http_stream" -d "{\"token\":\"$token\"}" > "$work/stream.out" &
pids+=($!)
wait_for "$work/stream.out" '^\{"connect":\{'
publish "$channel" 1
wait_for "$work/stream.out" "^\{\"channel\":\"$channel\",\"pub\":\{\"data\":\{\"n\":1\},\"offset\":1\}\}$"
pass "uni_http_stream: connect push, then the publication as a JSON line"

# --- uni SSE: GET with cf_connect, read events.
curl -sN --max-time 20 -G "$http/connection/uni_sse" --data-urlencode "cf_connect={\"token\":\"$token\"}" \
  > "$work/sse.out" &
sse_pid=$!
pids+=($sse_pid)
wait_for "$work/sse.out" '^data: \{"connect":\{'
publish "$channel" 2
wait_for "$work/sse.out" "^data: \{\"channel\":\"$channel\",\"pub\":\{\"data\":\{\"n\":2\},\"offset\":2\}\}$"
last_id="$(grep '^id: ' "$work/sse.out" | tail -n 1 | cut -c5-)"
[[ "$last_id" == *"\"$channel\":[2,"* ]] || fail "the last event id holds the channel's position: '$last_id'"
pass "uni_sse: data events, and an id with the stream position"

# --- Stop, miss two publications, resume with Last-Event-ID.
kill "$sse_pid" 2> /dev/null || true
publish "$channel" 3
publish "$channel" 4
curl -sN --max-time 20 -G "$http/connection/uni_sse" --data-urlencode "cf_connect={\"token\":\"$token\"}" \
  -H "Last-Event-ID: $last_id" > "$work/resume.out" &
pids+=($!)
wait_for "$work/resume.out" '^data: \{"connect":\{'
connect_line="$(grep '^data: {"connect"' "$work/resume.out")"
[[ "$connect_line" == *'"recovered":true'* ]] || fail "resume recovers: $connect_line"
[[ "$connect_line" == *'{"data":{"n":3},"offset":3}'*'{"data":{"n":4},"offset":4}'* ]] \
  || fail "the two missed publications come in the connect push: $connect_line"
pass "uni_sse: Last-Event-ID resumes with exactly the missed publications"

# --- A bad token is an HTTP error with a JSON body, not a stream.
code="$(curl -s --max-time 5 -o "$work/refused.out" -w '%{http_code}' -X POST "$http/connection/uni_http_stream" \
  -d '{"token":"not-a-token"}')"
[[ "$code" == 401 ]] || fail "bad token answered $code"
grep -q '"code":3500' "$work/refused.out" || fail "the refusal says why"
pass "a bad token is refused with 401 and a JSON error"
