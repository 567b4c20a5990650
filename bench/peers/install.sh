#!/usr/bin/env bash
# Install the benchmark peers into bench/peers/installed/ (git-ignored).
#
#   bench/peers/install.sh                 # every peer
#   bench/peers/install.sh ws-node nchan   # only these
#
# Idempotent: a peer whose installed_check file (see peers.json) exists is skipped;
# set PEERS_REINSTALL=1 to redo. A peer that fails is reported and skipped; the
# script exits 0 unless no requested peer ended up installed.
# Logs: bench/peers/installed/logs/<peer>.log. Versions: installed/<peer>/VERSION.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INST="$HERE/installed"
LOGS="$INST/logs"
ALL_PEERS=(ws-node socketio py-websockets nchan go-gorilla soketi sockudo)
SOCKUDO_VERSION="${SOCKUDO_VERSION:-5.2.0}"
SOKETI_VERSION="${SOKETI_VERSION:-1.6.1}"
export DEBIAN_FRONTEND=noninteractive
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

mkdir -p "$INST" "$LOGS"

# ---------------------------------------------------------------- helpers
say() { printf '[install] %s\n' "$*" >&2; }

apt_update_if_needed() {
  # Refresh the package lists once if they are missing or older than a day.
  local stamp=/var/lib/apt/periodic/update-success-stamp newest
  newest=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)
  if [[ -z "$newest" && ! ( -f "$stamp" && -n "$(find "$stamp" -mmin -1440)" ) ]]; then
    say "apt-get update"
    apt-get update -qq
  fi
}

# Keep apt from starting the system nginx service while packages install.
with_no_service_start() {
  local made=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made=1
  fi
  local rc=0
  "$@" || rc=$?
  if (( made )); then rm -f /usr/sbin/policy-rc.d; fi
  return $rc
}

npm_project() { # dir, package.json contents
  mkdir -p "$1"
  printf '%s\n' "$2" > "$1/package.json"
  (cd "$1" && npm install --no-audit --no-fund --loglevel=error)
}

node_pkg_version() { node -p "require('$1/package.json').version"; }

# ---------------------------------------------------------------- installed checks
# Same paths as "installed_check" in peers.json.
check_path() {
  case "$1" in
    sockudo)       echo "$INST/sockudo/bin/sockudo" ;;
    soketi)        echo "$INST/soketi/node_modules/@soketi/soketi/bin/server.js" ;;
    ws-node)       echo "$INST/ws-node/node_modules/ws/package.json" ;;
    socketio)      echo "$INST/socketio/node_modules/socket.io/package.json" ;;
    py-websockets) echo "$INST/py-websockets/VERSION" ;;
    go-gorilla)    echo "$INST/go-gorilla/hub" ;;
    nchan)         echo "$INST/nchan/VERSION" ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------- installers
install_ws-node() {
  npm_project "$INST/ws-node" '{"name":"bench-peer-ws-node","private":true,"type":"module",
 "dependencies":{"ws":"^8.18.0"}}'
  echo "ws $(node_pkg_version "$INST/ws-node/node_modules/ws"); node $(node --version)" > "$INST/ws-node/VERSION"
}

install_socketio() {
  npm_project "$INST/socketio" '{"name":"bench-peer-socketio","private":true,"type":"module",
 "dependencies":{"socket.io":"~4.8.0"}}'
  echo "socket.io $(node_pkg_version "$INST/socketio/node_modules/socket.io"); engine.io $(node_pkg_version "$INST/socketio/node_modules/engine.io"); ws $(node_pkg_version "$INST/socketio/node_modules/ws"); node $(node --version)" > "$INST/socketio/VERSION"
}

install_soketi() {
  # @soketi/soketi depends on uWebSockets.js from GitHub, which is unreachable here;
  # the registry's @trufflesuite/uws-js-unofficial ships the same binaries.
  npm_project "$INST/soketi" "{\"name\":\"bench-peer-soketi\",\"private\":true,
 \"dependencies\":{\"@soketi/soketi\":\"$SOKETI_VERSION\"},
 \"overrides\":{\"uWebSockets.js\":\"npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0\"}}"
  (cd "$INST/soketi" && node -e "require('uWebSockets.js')") # native binary loads on this node
  echo "soketi $(node_pkg_version "$INST/soketi/node_modules/@soketi/soketi"); uws-js-unofficial 20.30.0-unofficial.0; node $(node --version)" > "$INST/soketi/VERSION"
}

install_py-websockets() {
  local dir="$INST/py-websockets"
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check 'websockets>=17,<18'
  echo "websockets $("$dir/venv/bin/python" -c 'import websockets; print(websockets.__version__)'); $("$dir/venv/bin/python" --version)" > "$dir/VERSION"
}

install_nchan() {
  apt_update_if_needed
  with_no_service_start apt-get install -y -qq --no-install-recommends nginx-light libnginx-mod-nchan
  test -x /usr/sbin/nginx
  test -f /usr/lib/nginx/modules/ngx_nchan_module.so
  mkdir -p "$INST/nchan"
  echo "nginx $(dpkg-query -W -f='${Version}' nginx-light); nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan)" > "$INST/nchan/VERSION"
}

install_go-gorilla() {
  local dir="$INST/go-gorilla" root="$INST/go-gorilla/root" apt="$INST/go-gorilla/apt"
  mkdir -p "$dir/debs" "$root" "$apt/lists/partial" "$apt/cache/archives/partial"
  # Go 1.23 lives in bookworm-backports: use a private apt source list and cache so the
  # system's apt configuration is left alone.
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main' > "$apt/sources.list"
  local aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
                 -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  apt-get "${aptopts[@]}" update -qq
  apt_update_if_needed
  (cd "$dir/debs" && rm -f ./*.deb \
     && apt-get "${aptopts[@]}" download golang-1.23-go golang-1.23-src \
     && apt-get download golang-github-gorilla-websocket-dev)
  local deb
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  # Debian's GOROOT links point at absolute /usr/share paths; re-point them inside root.
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    if [[ "$target" == /* ]]; then ln -sfn "$root$target" "$link"; fi
  done < <(find "$root/usr/lib/go-1.23" -maxdepth 2 -type l)
  local go="$root/usr/lib/go-1.23/bin/go"
  "$go" version
  env GO111MODULE=off GOPATH="$root/usr/share/gocode" GOCACHE="$dir/cache" GOTOOLCHAIN=local \
      GOFLAGS= CGO_ENABLED=0 "$go" build -o "$dir/hub.new" "$HERE/go-gorilla/main.go"
  mv "$dir/hub.new" "$dir/hub"
  echo "$("$go" version | cut -d' ' -f3); gorilla/websocket $(dpkg-deb -f "$dir"/debs/golang-github-gorilla-websocket-dev_*.deb Version)" > "$dir/VERSION"
}

install_sockudo() {
  local cargo target="${SOCKUDO_TARGET_DIR:-$INST/sockudo/target}"
  cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
  # metrics-exporter-tcp's build script needs protoc and the well-known .proto files.
  if ! command -v protoc >/dev/null || [[ ! -f /usr/include/google/protobuf/timestamp.proto ]]; then
    apt_update_if_needed
    apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev
  fi
  # A kept target dir lets a failed or interrupted build resume; removed on success.
  nice -n 10 "$cargo" install --locked "sockudo@$SOCKUDO_VERSION" \
    --no-default-features --features local --root "$INST/sockudo" --target-dir "$target"
  rm -rf "$target"
  "$INST/sockudo/bin/sockudo" --version | head -1 > "$INST/sockudo/VERSION"
}

# ---------------------------------------------------------------- main
if (( $# )); then PEERS=("$@"); else PEERS=("${ALL_PEERS[@]}"); fi

# The suite's API scenario also drives every target with wrk (Debian package).
if ! command -v wrk >/dev/null; then
  say "installing wrk (load tool for the API scenario)"
  apt_update_if_needed
  apt-get install -y -qq --no-install-recommends wrk || say "wrk could not be installed: the API scenario's wrk rows will fail"
fi

declare -A RESULT TIME
ok_count=0
for peer in "${PEERS[@]}"; do
  if ! check=$(check_path "$peer"); then
    say "unknown peer '$peer' (known: ${ALL_PEERS[*]})"
    RESULT[$peer]="unknown"; TIME[$peer]=0
    continue
  fi
  if [[ -e "$check" && "${PEERS_REINSTALL:-0}" != 1 ]]; then
    # go-gorilla: rebuild when main.go changed since the last build.
    if [[ "$peer" != go-gorilla || ! "$HERE/go-gorilla/main.go" -nt "$check" ]]; then
      say "$peer: already installed ($(cat "$INST/$peer/VERSION" 2>/dev/null || echo present))"
      RESULT[$peer]="present"; TIME[$peer]=0; ok_count=$((ok_count + 1))
      continue
    fi
  fi
  log="$LOGS/$peer.log"
  say "$peer: installing (log: ${log#"$HERE"/})"
  start=$(date +%s)
  set +e
  ( set -euo pipefail; "install_$peer" ) > "$log" 2>&1
  rc=$?
  set -e
  TIME[$peer]=$(( $(date +%s) - start ))
  if (( rc == 0 )) && [[ -e "$check" ]]; then
    RESULT[$peer]="installed"; ok_count=$((ok_count + 1))
    say "$peer: installed in ${TIME[$peer]}s ($(cat "$INST/$peer/VERSION" 2>/dev/null))"
  else
    RESULT[$peer]="FAILED (rc=$rc)"
    say "$peer: FAILED after ${TIME[$peer]}s (rc=$rc); last lines of $log:"
    tail -n 15 "$log" | sed 's/^/    /' >&2
  fi
done

printf '\n%-14s %-18s %6s  %s\n' peer result secs version
for peer in "${PEERS[@]}"; do
  printf '%-14s %-18s %6s  %s\n' "$peer" "${RESULT[$peer]}" "${TIME[$peer]}" \
    "$(cat "$INST/$peer/VERSION" 2>/dev/null || true)"
done

if (( ok_count == 0 )); then
  say "no peer could be installed"
  exit 1
fi
