# Shared by bench/*.sh and scripts/demo.sh: logging, a temporary directory
# cleaned up on exit with every daemon started in it, and a docker-registry on
# a free loopback port. Callers set REGISTRY_BIN and call lib_init NAME first.

log() { printf '[%s] %s\n' "${LIB_NAME:-flick}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || die "go not found"


stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 20 s, then SIGKILL
	local pid=$1 name=$2 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name ($pid) did not stop: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	[ -n "${SAMPLER_PID:-}" ] && { kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; }
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]%%:*}" "${PIDS[i]#*:}"
	done
	# Whatever a daemon left mounted under our directory (overlay layers, netns).
	if [ -d "$TMP" ]; then
		awk -v t="$TMP" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
		rm -rf "$TMP" 2>/dev/null || log "could not remove all of $TMP"
	fi
	exit "$rc"
}
lib_init() { # lib_init NAME: temporary directory and exit trap
	LIB_NAME=$1
	TMP=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/flick-$1.XXXXXX")
	PIDS=() # daemons we started, stopped in reverse order on exit
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

# ---------------------------------------------------------------- registry

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_registry() {
	local port try
	[ -x "${REGISTRY_BIN:-}" ] || die "docker-registry not found at ${REGISTRY_BIN:-}: apt-get install docker-registry"
	mkdir -p "$TMP/registry/storage"
	for ((try = 0; try < 10; try++)); do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		cat >"$TMP/registry/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: $TMP/registry/storage
			  delete:
			    enabled: true
			  maintenance:
			    uploadpurging:
			      enabled: false
			http:
			  addr: 127.0.0.1:$port
			  secret: flick-bench-secret
			health:
			  storagedriver:
			    enabled: false
		EOF
		"$REGISTRY_BIN" serve "$TMP/registry/config.yml" >"$TMP/registry/log" 2>&1 &
		local pid=$!
		local i
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "$pid" 2>/dev/null; then break; fi
			if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
				PIDS+=("$pid:docker-registry")
				REGISTRY=127.0.0.1:$port
				log "docker-registry ($pid) on $REGISTRY, storage $TMP/registry/storage"
				return 0
			fi
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	cat "$TMP/registry/log" >&2 || true
	die "docker-registry did not start"
}


# ---------------------------------------------------------------- flick daemon

# start_flick DIR [ARGS...]: a flick daemon on DIR/root and DIR/flick.sock with
# the broker and HTTP triggers on free loopback ports and no bridge network
# (benchmarks leave the host's networking alone); sets FLICK_HOST,
# FLICK_PID, MQTT_ADDR and HTTP_ADDR.
start_flick() {
	local dir=$1 i
	shift
	mkdir -p "$dir"
	"$FLICK" daemon --data-root "$dir/root" -H "unix://$dir/flick.sock" --config-file /dev/null \
		--mqtt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --metrics-addr "" --bridge none "$@" >"$dir/daemon.log" 2>&1 &
	FLICK_PID=$!
	PIDS+=("$FLICK_PID:flick daemon")
	export FLICK_HOST="unix://$dir/flick.sock"
	for ((i = 0; i < 200; i++)); do
		curl -fsS --unix-socket "$dir/flick.sock" -o "$dir/info.json" http://flick/flick/v1/info 2>/dev/null && break
		kill -0 "$FLICK_PID" 2>/dev/null || { cat "$dir/daemon.log" >&2; die "flick daemon exited"; }
		sleep 0.05
	done
	MQTT_ADDR=$(sed -n 's/.*"mqtt":\["\([^"]*\)".*/\1/p' "$dir/info.json")
	HTTP_ADDR=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$dir/info.json")
	[ -n "$MQTT_ADDR" ] || die "no broker address in $(cat "$dir/info.json")"
}

# rss_kb PID FIELD: VmRSS or VmHWM of a process, in KiB.
rss_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
