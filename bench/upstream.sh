#!/usr/bin/env bash
# bench/upstream.sh: forwarding to an upstream, Flick's durable route vs the
# raw client. In one run, against one local mosquitto (Debian's):
#   raw    publishers send QoS 1 straight to mosquitto: the peer, the ceiling
#   flick  publishers send QoS 1 to Flick's broker; a route appends each to its
#          outbox (fsync, group commit) before the PUBACK and forwards it
# Both: 200-byte messages, a subscriber on mosquitto times each arrival.
# Also the outbox's own append throughput with fsync (Go benchmark).
# Environment: MESSAGES (20000), CLIENTS (8).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FLICK=${FLICK:-$ROOT/bin/flick}
MESSAGES=${MESSAGES:-20000}
CLIENTS=${CLIENTS:-8}
. "$ROOT/bench/lib.sh"
command -v mosquitto >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
lib_init upstream
make -s build >/dev/null
go build -o "$TMP/upstreamload" ./bench/cmd/upstreamload

port=$((20000 + RANDOM % 40000))
while ! port_free "$port"; do port=$((20000 + RANDOM % 40000)); done
printf 'listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nmax_inflight_messages 0\n' "$port" >"$TMP/mosquitto.conf"
mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
PIDS+=("$!:mosquitto")
for ((i = 0; i < 100; i++)); do port_free "$port" || break; sleep 0.05; done
UP=127.0.0.1:$port
start_flick "$TMP/d" --log-level warn --hub-id bench ${FLICK_DAEMON_ARGS:-}
"$FLICK" route add up --from 'bench/#' --to "mqtt://$UP/fleet/{hub}/{topic}" --batch 500 >/dev/null
log "mosquitto on $UP, flick broker on $MQTT_ADDR; $MESSAGES messages of 200 B from $CLIENTS clients"

field() { sed -n "s/.*\"$2\":\([0-9.e+]*\).*/\1/p" <<<"$1"; }
raw=$("$TMP/upstreamload" -pub "$UP" -sub "$UP" -pub-topic raw/x -sub-filter 'raw/#' -messages "$MESSAGES" -clients "$CLIENTS" -label raw)
fl=$("$TMP/upstreamload" -pub "$MQTT_ADDR" -sub "$UP" -pub-topic bench/x -sub-filter 'fleet/bench/#' -messages "$MESSAGES" -clients "$CLIENTS" -label flick)
bench=$(go test -run '^$' -bench 'BenchmarkAppend200B' -benchtime 2s ./internal/outbox 2>/dev/null | grep -E '^Benchmark' | head -3)

printf '\nforwarding %s QoS 1 messages of 200 B to a local mosquitto (%s publishers)\n' "$MESSAGES" "$CLIENTS"
printf '%-28s %12s %10s %10s\n' path msgs/s p50_us p99_us
printf '%-28s %12.0f %10.0f %10.0f\n' "raw client -> mosquitto" "$(field "$raw" perSecond)" "$(field "$raw" p50_us)" "$(field "$raw" p99_us)"
printf '%-28s %12.0f %10.0f %10.0f\n' "device -> flick route -> up" "$(field "$fl" perSecond)" "$(field "$fl" p50_us)" "$(field "$fl" p99_us)"
awk -v a="$(field "$fl" perSecond)" -v b="$(field "$raw" perSecond)" 'BEGIN { printf "flick / raw throughput: %.2f (target: within 1.5x, i.e. >= 0.67)\n", a / b }'
printf '\noutbox append, 200 B messages, fsync on (group commit), this disk:\n%s\n' "$bench"
"$FLICK" route ls
