#!/usr/bin/env bash
# make demo: Flick's main job on its embedded defaults, start to finish.
#  1. a flick daemon on a private data root and socket, with its embedded MQTT
#     broker: no other service;
#  2. a sample function (examples/functions/chime, C compiled to Wasm) bound
#     to an MQTT topic; button events fired at the broker; the results, and the
#     event-to-result latencies of a short load run against a native baseline;
#  3. the container-image side: a local registry with two releases of an app,
#     a pull with progress bars, an update that fetches only the changed
#     layer, images, disk usage, and the docker CLI against Flick's socket;
#     then an app container: flick run, ps, logs.
# Everything is stopped and removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY_BIN=${FLICK_TEST_REGISTRY_BIN:-/usr/bin/docker-registry}
FLICK=${FLICK:-$ROOT/bin/flick}
. "$ROOT/bench/lib.sh"

need=()
[ -x "$REGISTRY_BIN" ] || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
[ -f bin/functions/chime.wasm ] || command -v clang >/dev/null || need+=(clang lld wasi-libc libclang-rt-dev-wasm32)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	echo "Installing what the demo needs: ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
make -s build functions
lib_init demo
go build -o "$TMP/reflexload" ./bench/cmd/reflexload

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "flick daemon (data root $TMP/d/root, socket $TMP/d/flick.sock, embedded MQTT broker)"
start_flick "$TMP/d"
"$FLICK" version
echo "MQTT broker on $MQTT_ADDR, HTTP triggers on $HTTP_ADDR"
MQ_HOST=${MQTT_ADDR%:*} MQ_PORT=${MQTT_ADDR##*:}

step "flick fn deploy chime: a C function (WASI), one fresh sandbox per button press"
"$FLICK" fn deploy chime --wasm bin/functions/chime.wasm --on 'mqtt:home/+/button' --reply 'home/{1}/chime' --timeout 100ms --memory 2MiB
"$FLICK" fn ls

step "a speaker listens on home/+/chime; three buttons are pressed"
mosquitto_sub -h "$MQ_HOST" -p "$MQ_PORT" -t 'home/+/chime' -v -C 3 -W 10 >"$TMP/chimes" &
sub=$!
sleep 0.3
for ev in 'hall {"press":"single"}' 'porch {"press":"long"}' 'garage {"press":"double"}'; do
	room=${ev%% *} payload=${ev#* }
	echo "mosquitto_pub -t home/$room/button -m '$payload' -q 1"
	mosquitto_pub -h "$MQ_HOST" -p "$MQ_PORT" -t "home/$room/button" -m "$payload" -q 1
done
wait "$sub" || true
echo "results:"
sed 's/^/  /' "$TMP/chimes"
echo "the function's log:"
"$FLICK" fn logs chime | sed 's/^/  /'

step "latency: event published (QoS 1) -> result received, a fresh instance per event"
"$FLICK" fn deploy native --builtin echo --on 'mqtt:bench/native/in/+' --reply 'bench/native/out/{1}' --queue 10000 >/dev/null
"$FLICK" fn deploy echo --wasm bin/functions/echo.wasm --on 'mqtt:bench/echo/in/+' --reply 'bench/echo/out/{1}' --queue 10000 >/dev/null
for fn in native echo; do
	"$TMP/reflexload" -broker "$MQTT_ADDR" -in "bench/$fn/in" -out "bench/$fn/out" -events "${DEMO_EVENTS:-3000}" -clients 2 -warmup 200 \
		-label "$(printf '%-32s' "$([ $fn = native ] && echo 'native Go handler (the floor)' || echo 'Wasm (C echo), fresh instance')")"
done
echo "(full run with figures side by side: make bench-reflex)"
curl -fsS --unix-socket "$TMP/d/flick.sock" http://flick/metrics | grep -E '^flick_function_invocations_total\{function="chime"' || true

step "A local registry with two releases of an app (v2 changes only the top layer)"
start_registry
go build -o "$TMP/benchimage" ./bench/cmd/benchimage
"$TMP/benchimage" -registry "$REGISTRY" -ref demo/app:v1 -size 24MiB -files 400 -layers 3 -seed 1 >/dev/null
"$TMP/benchimage" -registry "$REGISTRY" -ref demo/app:v2 -size 24MiB -files 400 -layers 3 -seed 1 -top-seed 2 >/dev/null
echo "registry on $REGISTRY holds demo/app:v1 and demo/app:v2"

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

step "An app container from a busybox image: flick run (private namespaces, Docker's defaults)"
go build -o "$TMP/busyboximage" ./bench/cmd/busyboximage
"$TMP/busyboximage" -registry "$REGISTRY" -ref demo/busybox:1 >/dev/null
"$FLICK" pull -q "$REGISTRY/demo/busybox:1"
echo "+ flick run --rm --network none --memory 32m $REGISTRY/demo/busybox:1 sh -c '...'"
"$FLICK" run --rm --network none --memory 32m "$REGISTRY/demo/busybox:1" sh -c 'echo "hello from container $(hostname): pid $$, $(ls -d /proc/[0-9]* | wc -l) processes visible, $(grep CapEff /proc/self/status)"; echo "memory limit it sees at /sys/fs/cgroup: $(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null) bytes"'
"$FLICK" run -d --name ticker --network none --restart unless-stopped "$REGISTRY/demo/busybox:1" sh -c 'while true; do date; sleep 1; done' >/dev/null
sleep 2
"$FLICK" ps
"$FLICK" logs --tail 2 ticker
"$FLICK" rm -f ticker >/dev/null
"$FLICK" rmi "$REGISTRY/demo/busybox:1" >/dev/null

step "flick rmi demo/app:v1, then flick image prune -a"
"$FLICK" rmi "$REGISTRY/demo/app:v1"
"$FLICK" image prune -a -f
echo
echo "Demo done: everything it started is being stopped and removed."
