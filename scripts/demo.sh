#!/usr/bin/env bash
# make demo: Flick's main job on its embedded defaults, start to finish.
# A flick daemon on a private data root and socket, a local registry with two
# generated releases of an app, a pull with progress bars, an update pull that
# fetches only the changed layer, the image list, disk usage, and the docker
# CLI against Flick's socket. Everything is stopped and removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY_BIN=${FLICK_TEST_REGISTRY_BIN:-/usr/bin/docker-registry}
FLICK=${FLICK:-$ROOT/bin/flick}
. "$ROOT/bench/lib.sh"

need=()
[ -x "$REGISTRY_BIN" ] || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "Installing what the demo needs: ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
lib_init demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A local registry with two releases of an app (v2 changes only the top layer)"
start_registry
go build -o "$TMP/benchimage" ./bench/cmd/benchimage
"$TMP/benchimage" -registry "$REGISTRY" -ref demo/base:1 -size 24MiB -files 400 -layers 3 -seed 1 >/dev/null
"$TMP/benchimage" -registry "$REGISTRY" -ref demo/app:v1 -size 24MiB -files 400 -layers 3 -seed 1 >/dev/null
"$TMP/benchimage" -registry "$REGISTRY" -ref demo/app:v2 -size 24MiB -files 400 -layers 3 -seed 1 -top-seed 2 >/dev/null
echo "registry on $REGISTRY holds demo/app:v1 and demo/app:v2"

step "flick daemon (data root $TMP/flick, socket $TMP/flick.sock)"
"$FLICK" daemon --data-root "$TMP/flick" -H "unix://$TMP/flick.sock" --config-file /dev/null >"$TMP/daemon.log" 2>&1 &
PIDS+=("$!:flick daemon")
for ((i = 0; i < 100; i++)); do [ -S "$TMP/flick.sock" ] && break; sleep 0.1; done
export FLICK_HOST="unix://$TMP/flick.sock"
"$FLICK" version

ms() { echo $(($(date +%s%N) / 1000000)); }
step "flick pull $REGISTRY/demo/app:v1"
t0=$(ms); "$FLICK" pull "$REGISTRY/demo/app:v1"; t1=$(ms)
echo "pulled in $((t1 - t0)) ms"

step "flick pull $REGISTRY/demo/app:v2 (an update: shared layers are not fetched again)"
t0=$(ms); "$FLICK" pull "$REGISTRY/demo/app:v2"; t1=$(ms)
echo "updated in $((t1 - t0)) ms"

step "flick images"
"$FLICK" images --digests
step "flick system df"
"$FLICK" system df

if command -v docker >/dev/null; then
	step "the docker CLI against Flick's socket: DOCKER_HOST=$FLICK_HOST docker images"
	DOCKER_HOST=$FLICK_HOST docker images
fi

step "flick rmi demo/app:v1, then flick image prune -a"
"$FLICK" rmi "$REGISTRY/demo/app:v1"
"$FLICK" image prune -a -f
echo
echo "Demo done. The function engine (MQTT-triggered WebAssembly) joins this demo when it lands."
