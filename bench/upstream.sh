#!/usr/bin/env bash
# bench/upstream.sh: forwarding to an upstream, Flick's durable route vs the
# raw client. In one run, against one local mosquitto (Debian's):
#   raw    publishers send QoS 1 straight to mosquitto: the peer, the ceiling
#   flick  publishers send QoS 1 to Flick's broker; a route appends each to its
#          outbox (fsync, group commit) before the PUBACK and forwards it
#   bridge the same job done by the usual tool: publishers send QoS 1 to a
#          second, local mosquitto bridged to the upstream (QoS 1 out); it
#          keeps messages in memory only, nothing is fsynced
# Both: 200-byte messages, a subscriber on mosquitto times each arrival.
# Then the same to a local nats-server: raw publishers vs a Flick route.
# Also the outbox's own append throughput with fsync (Go benchmark).
# Environment: MESSAGES (20000), NATS_MESSAGES (100000), CLIENTS (8), INFLIGHT (1: each publisher
# waits for its PUBACK before the next; more keeps that many in flight per
# connection, for both paths).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FLICK=${FLICK:-$ROOT/bin/flick}
MESSAGES=${MESSAGES:-20000}
CLIENTS=${CLIENTS:-8}
INFLIGHT=${INFLIGHT:-1}
NATS_MESSAGES=${NATS_MESSAGES:-100000} # NATS moves 10x faster: more messages for a steady figure
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
raw=$("$TMP/upstreamload" -pub "$UP" -sub "$UP" -pub-topic raw/x -sub-filter 'raw/#' -messages "$MESSAGES" -clients "$CLIENTS" -inflight "$INFLIGHT" -label raw)
# The peer doing the same job: a hub mosquitto with a bridge to the upstream.
bport=$((port + 2))
while ! port_free "$bport"; do bport=$((bport + 1)); done
printf 'listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nmax_inflight_messages 1000\nconnection up\naddress %s\nbridge_protocol_version mqttv50\ncleansession true\ntopic # out 1 bench/ fleet/bridge/\n' "$bport" "$UP" >"$TMP/bridge.conf"
mosquitto -c "$TMP/bridge.conf" >"$TMP/bridge.log" 2>&1 &
PIDS+=("$!:mosquitto-bridge")
for ((i = 0; i < 100; i++)); do port_free "$bport" || break; sleep 0.05; done
sleep 0.5 # the bridge connects
br=$("$TMP/upstreamload" -pub "127.0.0.1:$bport" -sub "$UP" -pub-topic bench/x -sub-filter 'fleet/bridge/#' -messages "$MESSAGES" -clients "$CLIENTS" -inflight "$INFLIGHT" -label bridge)
fl=$("$TMP/upstreamload" -pub "$MQTT_ADDR" -sub "$UP" -pub-topic bench/x -sub-filter 'fleet/bench/#' -messages "$MESSAGES" -clients "$CLIENTS" -inflight "$INFLIGHT" -label flick)
# Drain: the upstream is down while the outbox fills; when it comes back,
# how fast does the route empty it? (the forwarder alone, no ingest)
port2=$((port + 1))
while ! port_free "$port2"; do port2=$((port2 + 1)); done
mkdir -p "$TMP/m2"
printf 'listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 1000000\nmax_inflight_messages 65535\n' "$port2" "$TMP/m2" >"$TMP/m2.conf"
mosquitto -c "$TMP/m2.conf" >"$TMP/m2.log" 2>&1 &
m2=$!
for ((i = 0; i < 100; i++)); do port_free "$port2" || break; sleep 0.05; done
mosquitto_sub -V mqttv5 -h 127.0.0.1 -p "$port2" -c -i drain-sub -x 3600 -q 1 -t 'b/#' -E
kill -TERM "$m2"; wait "$m2" 2>/dev/null || true
"$FLICK" route add backlog --from 'backlog/#' --to "mqtt://127.0.0.1:$port2/b/{topic}" --batch 500 >/dev/null
"$TMP/upstreamload" -mode publish -pub "$MQTT_ADDR" -pub-topic backlog/x -messages "$MESSAGES" -clients "$CLIENTS"
t_up=$(date +%s%N)
mosquitto -c "$TMP/m2.conf" >>"$TMP/m2.log" 2>&1 &
PIDS+=("$!:mosquitto2")
drain=$("$TMP/upstreamload" -mode count -sub "127.0.0.1:$port2" -sub-filter 'b/#' -client-id drain-sub -persistent -messages "$MESSAGES" -label drain)
# NATS: the same devices, a route to a plain subject on a local nats-server,
# against raw publishers on that server (nats bench style: plain publishes,
# a flush every INFLIGHT messages).
command -v nats-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; }
nport=$((port + 3))
while ! port_free "$nport"; do nport=$((nport + 1)); done
nats-server -a 127.0.0.1 -p "$nport" >"$TMP/nats.log" 2>&1 &
PIDS+=("$!:nats-server")
for ((i = 0; i < 100; i++)); do port_free "$nport" || break; sleep 0.05; done
NURL=nats://127.0.0.1:$nport
"$FLICK" route add natsup --from 'nbench/#' --to "$NURL/fleet.{hub}.{topic}" --batch 500 >/dev/null
nraw=$("$TMP/upstreamload" -pub "$NURL" -sub "$NURL" -pub-topic nraw.x -sub-filter 'nraw.>' -messages "$NATS_MESSAGES" -clients "$CLIENTS" -inflight "$INFLIGHT" -label nats-raw)
nfl=$("$TMP/upstreamload" -pub "$MQTT_ADDR" -sub "$NURL" -pub-topic nbench/x -sub-filter 'fleet.bench.nbench.>' -messages "$NATS_MESSAGES" -clients "$CLIENTS" -inflight "$INFLIGHT" -label nats-flick)
# Draining to NATS: the route first points at a port nothing listens on, so
# its outbox fills; the subscriber is ready; the route is then replaced
# (same name, same outbox) by one to the live server.
dead=$((nport + 1))
while ! port_free "$dead"; do dead=$((dead + 1)); done
"$FLICK" route add nbacklog --from 'nbacklog/#' --to "nats://127.0.0.1:$dead/nb.{topic}" --batch 500 >/dev/null
"$TMP/upstreamload" -mode publish -pub "$MQTT_ADDR" -pub-topic nbacklog/x -messages "$NATS_MESSAGES" -clients "$CLIENTS"
"$TMP/upstreamload" -mode count -sub "$NURL" -sub-filter 'nb.>' -messages "$NATS_MESSAGES" -label nats-drain >"$TMP/ndrain.json" &
ndp=$!
sleep 0.3 # subscribed
"$FLICK" route add nbacklog --from 'nbacklog/#' --to "$NURL/nb.{topic}" --batch 500 >/dev/null
wait "$ndp"
ndrain=$(cat "$TMP/ndrain.json")
bench=$(go test -run '^$' -bench 'BenchmarkAppend200B' -benchtime 2s ./internal/outbox 2>/dev/null | grep -E '^Benchmark' | head -3)

printf '\nforwarding %s QoS 1 messages of 200 B to a local mosquitto (%s publishers)\n' "$MESSAGES" "$CLIENTS"
printf '%-28s %12s %10s %10s\n' path msgs/s p50_us p99_us
printf '%-28s %12.0f %10.0f %10.0f\n' "raw client -> mosquitto" "$(field "$raw" perSecond)" "$(field "$raw" p50_us)" "$(field "$raw" p99_us)"
printf '%-28s %12.0f %10.0f %10.0f\n' "device -> mosquitto bridge" "$(field "$br" perSecond)" "$(field "$br" p50_us)" "$(field "$br" p99_us)"
printf '%-28s %12.0f %10.0f %10.0f\n' "device -> flick route -> up" "$(field "$fl" perSecond)" "$(field "$fl" p50_us)" "$(field "$fl" p99_us)"
drain_rate=$(awk -v n="$MESSAGES" -v last="$(field "$drain" lastNs)" -v t0="$t_up" 'BEGIN { printf "%.0f", n / ((last - t0) / 1e9) }')
printf '%-28s %12.0f   (first to last delivery; %s/s counting the reconnect back-off)\n' "route draining a backlog" "$(field "$drain" perSecond)" "$drain_rate"
awk -v a="$(field "$fl" perSecond)" -v d="$(field "$drain" perSecond)" -v b="$(field "$raw" perSecond)" -v m="$(field "$br" perSecond)" 'BEGIN {
	printf "flick / raw throughput: %.2f end to end (durable ingest included), %.2f draining (target: within 1.5x, i.e. >= 0.67)\n", a / b, d / b
	printf "flick / mosquitto bridge, end to end: %.2f (the bridge fsyncs nothing)\n", a / m }'
printf '\nforwarding %s messages of 200 B to a local nats-server (plain subject)\n' "$NATS_MESSAGES"
printf '%-28s %12s %10s %10s\n' path msgs/s p50_us p99_us
printf '%-28s %12.0f %10.0f %10.0f\n' "raw publish -> nats-server" "$(field "$nraw" perSecond)" "$(field "$nraw" p50_us)" "$(field "$nraw" p99_us)"
printf '%-28s %12.0f %10.0f %10.0f\n' "device -> flick route -> up" "$(field "$nfl" perSecond)" "$(field "$nfl" p50_us)" "$(field "$nfl" p99_us)"
printf '%-28s %12.0f\n' "route draining a backlog" "$(field "$ndrain" perSecond)"
awk -v a="$(field "$nfl" perSecond)" -v d="$(field "$ndrain" perSecond)" -v b="$(field "$nraw" perSecond)" 'BEGIN {
	printf "flick / raw throughput: %.2f end to end (the devices speak MQTT QoS 1, acknowledged after the fsync; the raw peer waits for nothing), %.2f draining\n", a / b, d / b }'
printf '\noutbox append, 200 B messages, fsync on (group commit), this disk:\n%s\n' "$bench"
"$FLICK" route ls
