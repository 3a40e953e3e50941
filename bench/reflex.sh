#!/usr/bin/env bash
# bench/reflex.sh: event-to-result latency and throughput of the reflex path.
#
# One flick daemon; a separate load-generator process (bench/cmd/reflexload)
# publishes QoS 1 events to the embedded broker from CLIENTS connections and
# times each until its result arrives on the reply topic. The same run
# measures, side by side:
#   native  a builtin Go echo handler: the floor set by broker, queue and network
#   wasm-c  a fresh Wasm instance per event (examples/functions/echo, C)
#   wasm-go a Go wasip1 module (examples/functions/goecho), fewer events:
#           Go's runtime start dominates, so it is shown, not recommended
# Environment: EVENTS (default 20000), CLIENTS (default 2: more clients raise
# throughput a little and latency a lot on 2 cores, the load generator being
# on the same machine), GO_EVENTS (300).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FLICK=${FLICK:-$ROOT/bin/flick}
EVENTS=${EVENTS:-20000}
CLIENTS=${CLIENTS:-2}
GO_EVENTS=${GO_EVENTS:-300}
. "$ROOT/bench/lib.sh"
lib_init reflex

make -s build functions >/dev/null
go build -o "$TMP/reflexload" ./bench/cmd/reflexload
start_flick "$TMP/d" --log-level warn
log "daemon $FLICK_PID, broker $MQTT_ADDR; $EVENTS events from $CLIENTS clients per run"

"$FLICK" fn deploy native --builtin echo --on 'mqtt:bench/native/in/+' --reply 'bench/native/out/{1}' --concurrency 2 --queue 10000 >/dev/null
"$FLICK" fn deploy wasm-c --wasm bin/functions/echo.wasm --on 'mqtt:bench/wasm-c/in/+' --reply 'bench/wasm-c/out/{1}' --concurrency 2 --queue 10000 >/dev/null
"$FLICK" fn deploy wasm-go --wasm bin/functions/goecho.wasm --on 'mqtt:bench/wasm-go/in/+' --reply 'bench/wasm-go/out/{1}' --concurrency 2 --queue 10000 --timeout 2s >/dev/null
idle_rss=$(rss_kb "$FLICK_PID" VmRSS)

declare -A P50 P99 MAX RATE RSS
run() { # run NAME EVENTS CLIENTS
	local out
	log "run $1: $2 events from $3 clients"
	out=$("$TMP/reflexload" -broker "$MQTT_ADDR" -in "bench/$1/in" -out "bench/$1/out" -events "$2" -clients "$3" -warmup 200 -label "$1" -json)
	P50[$1]=$(sed -n 's/.*"p50_us":\([0-9.]*\).*/\1/p' <<<"$out")
	P99[$1]=$(sed -n 's/.*"p99_us":\([0-9.]*\).*/\1/p' <<<"$out")
	MAX[$1]=$(sed -n 's/.*"max_us":\([0-9.]*\).*/\1/p' <<<"$out")
	RATE[$1]=$(sed -n 's/.*"eventsPerSecond":\([0-9.]*\).*/\1/p' <<<"$out")
	RSS[$1]=$(rss_kb "$FLICK_PID" VmRSS)
}
run native "$EVENTS" "$CLIENTS"
run wasm-c "$EVENTS" "$CLIENTS"
run wasm-go "$GO_EVENTS" 2
peak=$(rss_kb "$FLICK_PID" VmHWM)

printf '\nreflex: MQTT QoS 1 event published -> result received, fresh instance per event (%s events, %s clients)\n' "$EVENTS" "$CLIENTS"
printf '%-8s %10s %10s %10s %10s %12s\n' path p50_us p99_us max_us events/s daemon_RSS
for n in native wasm-c wasm-go; do
	printf '%-8s %10.0f %10.0f %10.0f %10.0f %9d MiB\n' "$n" "${P50[$n]}" "${P99[$n]}" "${MAX[$n]}" "${RATE[$n]}" $((RSS[$n] / 1024))
done
awk -v a="${P50[wasm-c]}" -v b="${P50[native]}" -v r="${RATE[wasm-c]}" -v p="${P99[wasm-c]}" 'BEGIN {
	printf "\nwasm-c / native at p50: %.2fx (target <= 2x)\n", a / b
	printf "wasm-c p50 %.0f us (target <= 1000), p99 %.0f us (target <= 5000), %.0f events/s (target >= 5000)\n", a, p, r }'
printf 'daemon RSS: idle with 3 functions %d MiB, peak %d MiB\n' $((idle_rss / 1024)) $((peak / 1024))
