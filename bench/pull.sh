#!/usr/bin/env bash
# Pull benchmark: Docker (dockerd + containerd from Debian's docker.io) against
# Flick, pulling the same two images from a local docker-registry.
#
#   bench/pull.sh                      # everything
#   BENCH_ONLY_SETUP=1 bench/pull.sh   # registry and images only
#
# Steps: start docker-registry on a free loopback port (temporary config and
# storage); generate and push two deterministic images with
# bench/cmd/benchimage (small: ~10 MiB in one layer; large: ~300 MiB of many
# files in several layers); then for each engine, start its daemon on its own
# data root and socket in the temporary directory, pull each image once (cold),
# and measure:
#   wall     wall-clock time of the pull command
#   peakrss  peak resident memory of the daemon's process tree (dockerd +
#            containerd + shims; flick daemon), polled every 100 ms
#   written  bytes the daemon's process tree caused to be written to storage
#            (/proc/PID/io write_bytes, summed, after minus before; only
#            meaningful when the data roots are on a real disk, not tmpfs)
#   disk     size of the data root after the pull (du)
# and print a side-by-side table with flick/docker ratios.
#
# Needs root (dockerd), /usr/bin/docker-registry (apt-get install
# docker-registry), Go, and for the Docker side /usr/sbin/dockerd and
# /usr/bin/docker (apt-get install docker.io). Everything it starts is stopped,
# and its temporary directory removed, on exit.
#
# Environment:
#   BENCH_TMPDIR            parent of the temporary directory (default: $TMPDIR or /tmp);
#                           put it on a real disk for meaningful write numbers
#   BENCH_ONLY_SETUP=1      stop after pushing the images
#   BENCH_SKIP_DOCKER=1     do not run Docker
#   BENCH_SKIP_FLICK=1      do not run Flick
#   BENCH_SMALL_SIZE        default 10MiB          BENCH_SMALL_FILES   default 20
#   BENCH_LARGE_SIZE        default 300MiB         BENCH_LARGE_FILES   default 3000
#   BENCH_LARGE_LAYERS      default 5
#   BENCH_COMPRESSION       gzip (default), zstd or none
#   FLICK_TEST_REGISTRY_BIN registry binary (default /usr/bin/docker-registry)
#   DOCKERD, DOCKER         dockerd and docker binaries (default /usr/sbin/dockerd, docker in PATH)
#   DOCKER_STORAGE_DRIVER   passed to dockerd as --storage-driver if set
#   FLICK                   flick binary (default bin/flick, built by `make` or `go build -o bin/flick ./cmd/flick`)
#   FLICK_DAEMON_ARGS       extra arguments for `flick daemon`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

REGISTRY_BIN=${FLICK_TEST_REGISTRY_BIN:-/usr/bin/docker-registry}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-$(command -v docker || echo /usr/bin/docker)}
FLICK=${FLICK:-$ROOT/bin/flick}
SMALL_SIZE=${BENCH_SMALL_SIZE:-10MiB}
SMALL_FILES=${BENCH_SMALL_FILES:-20}
LARGE_SIZE=${BENCH_LARGE_SIZE:-300MiB}
LARGE_FILES=${BENCH_LARGE_FILES:-3000}
LARGE_LAYERS=${BENCH_LARGE_LAYERS:-5}
COMPRESSION=${BENCH_COMPRESSION:-gzip}

. "$ROOT/bench/lib.sh"
[ -x "$REGISTRY_BIN" ] || die "docker-registry not found at $REGISTRY_BIN: apt-get install docker-registry"
command -v go >/dev/null || die "go not found"
lib_init pull-bench

command -v curl >/dev/null || die "curl not found"
start_registry

# ---------------------------------------------------------------- images

log "building benchimage"
go build -o "$TMP/benchimage" ./bench/cmd/benchimage

push() { # push REF SIZE FILES LAYERS SEED
	local out
	out=$("$TMP/benchimage" -registry "$REGISTRY" -ref "$1" -size "$2" -files "$3" -layers "$4" \
		-seed "$5" -compression "$COMPRESSION")
	log "pushed $out"
}
push bench/small:v1 "$SMALL_SIZE" "$SMALL_FILES" 1 1
push bench/large:v1 "$LARGE_SIZE" "$LARGE_FILES" "$LARGE_LAYERS" 2
IMAGES=(bench/small:v1 bench/large:v1)
log "registry holds $(du -sh "$TMP/registry/storage" | cut -f1)"

if [ "${BENCH_ONLY_SETUP:-}" = 1 ]; then
	for img in "${IMAGES[@]}"; do
		curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
			-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			"http://$REGISTRY/v2/${img%%:*}/manifests/${img##*:}" || die "$img not in the registry"
	done
	log "setup only: registry on $REGISTRY holds ${IMAGES[*]}"
	exit 0
fi

# ---------------------------------------------------------------- measuring

tree_pids() { # tree_pids "PID...": the PIDs and all their descendants
	ps -e -o pid=,ppid= | awk -v roots="$1" '
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1
			changed = 1
			while (changed) {
				changed = 0
				for (i in pids) { p = pids[i]; if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 } }
			}
			for (p in want) print p
		}'
}

tree_rss_kib() { # sum of VmRSS (KiB) over the tree
	local total=0 pid v
	for pid in $(tree_pids "$1"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

tree_write_bytes() { # sum of write_bytes over the tree
	local total=0 pid v
	for pid in $(tree_pids "$1"); do
		v=$(awk '/^write_bytes:/ { print $2 }' "/proc/$pid/io" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# start_sampler PID FILE: write the peak tree RSS (KiB) seen to FILE, every 100 ms.
start_sampler() {
	local root=$1 file=$2
	(
		peak=0
		trap 'echo "$peak" >"$file"; exit 0' TERM
		while :; do
			r=$(tree_rss_kib "$root")
			[ "$r" -gt "$peak" ] && { peak=$r; echo "$peak" >"$file"; }
			sleep 0.1
		done
	) &
	SAMPLER_PID=$!
}

stop_sampler() {
	kill -TERM "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=
}

now_ns() { date +%s%N; }

declare -A RESULT # RESULT[engine,image,metric]

# measure ENGINE IMAGE "DAEMON_PIDS" DATA_ROOT -- PULL COMMAND...
# (the daemons' process trees are measured)
measure() {
	local engine=$1 image=$2 dpid=$3 root=$4
	shift 5
	local peakfile="$TMP/peak.$engine" w0 w1 t0 t1
	echo 0 >"$peakfile"
	sync
	w0=$(tree_write_bytes "$dpid")
	start_sampler "$dpid" "$peakfile"
	t0=$(now_ns)
	if ! "$@" >"$TMP/pull.$engine.log" 2>&1; then
		stop_sampler
		cat "$TMP/pull.$engine.log" >&2
		die "$engine: pull of $image failed: $*"
	fi
	t1=$(now_ns)
	sync
	sleep 0.2 # let a last sample and writeback accounting land
	stop_sampler
	w1=$(tree_write_bytes "$dpid")
	RESULT[$engine,$image,wall]=$(((t1 - t0) / 1000000))          # ms
	RESULT[$engine,$image,peakrss]=$(($(cat "$peakfile") / 1024)) # MiB
	RESULT[$engine,$image,written]=$(((w1 - w0) / 1048576))       # MiB
	RESULT[$engine,$image,disk]=$(($(du -sk "$root" | cut -f1) / 1024)) # MiB
	log "$engine $image: ${RESULT[$engine,$image,wall]} ms, peak RSS ${RESULT[$engine,$image,peakrss]} MiB, wrote ${RESULT[$engine,$image,written]} MiB"
}

wait_for_socket() { # wait_for_socket SOCK PID NAME LOG
	local i
	for ((i = 0; i < 300; i++)); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$3 exited"; }
		sleep 0.1
	done
	cat "$4" >&2
	die "$3 did not create $1"
}

# ---------------------------------------------------------------- Docker

RAN_DOCKER=
if [ "${BENCH_SKIP_DOCKER:-}" = 1 ]; then
	log "BENCH_SKIP_DOCKER=1: skipping Docker"
elif [ ! -x "$DOCKERD" ] || [ ! -x "$DOCKER" ]; then
	log "dockerd or docker not found ($DOCKERD, $DOCKER): install docker.io (apt-get install docker.io) for the Docker side"
else
	mkdir -p "$TMP/docker/root" "$TMP/docker/exec"
	DSOCK=$TMP/docker/docker.sock
	dargs=(--data-root "$TMP/docker/root" --exec-root "$TMP/docker/exec" --pidfile "$TMP/docker/docker.pid"
		-H "unix://$DSOCK" --bridge=none --iptables=false --ip6tables=false
		--insecure-registry "$REGISTRY" --log-level=warn)
	[ -n "${DOCKER_STORAGE_DRIVER:-}" ] && dargs+=(--storage-driver "$DOCKER_STORAGE_DRIVER")
	"$DOCKERD" "${dargs[@]}" >"$TMP/docker/log" 2>&1 &
	DPID=$!
	PIDS+=("$DPID:dockerd")
	wait_for_socket "$DSOCK" "$DPID" dockerd "$TMP/docker/log"
	for ((i = 0; i < 100; i++)); do
		"$DOCKER" -H "unix://$DSOCK" version >/dev/null 2>&1 && break
		sleep 0.1
	done
	log "dockerd ($DPID) up: $("$DOCKER" -H "unix://$DSOCK" info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null)"
	# dockerd starts its own containerd, as its child, unless a system
	# containerd answers on /run/containerd/containerd.sock: then it uses that
	# one, which must be measured too.
	DROOTS=$DPID
	if ! tree_pids "$DPID" | xargs -r ps -o comm= -p | grep -qx containerd; then
		sys=$(pgrep -x containerd | tr "\n" " " || true)
		if [ -n "$sys" ]; then
			log "dockerd uses the system containerd ($sys): measuring it too (its other work included)"
			DROOTS="$DPID $sys"
		fi
	fi
	for img in "${IMAGES[@]}"; do
		measure docker "$img" "$DROOTS" "$TMP/docker/root" -- "$DOCKER" -H "unix://$DSOCK" pull --quiet "$REGISTRY/$img"
	done
	RAN_DOCKER=1
fi

# ---------------------------------------------------------------- Flick

RAN_FLICK=
if [ "${BENCH_SKIP_FLICK:-}" = 1 ]; then
	log "BENCH_SKIP_FLICK=1: skipping Flick"
elif [ ! -x "$FLICK" ]; then
	log "flick not found at $FLICK: build it (go build -o bin/flick ./cmd/flick) or set FLICK"
else
	mkdir -p "$TMP/flick/root"
	FSOCK=$TMP/flick/flick.sock
	# shellcheck disable=SC2086 # FLICK_DAEMON_ARGS is a list of words
	"$FLICK" daemon --data-root "$TMP/flick/root" --host "unix://$FSOCK" ${FLICK_DAEMON_ARGS:-} >"$TMP/flick/log" 2>&1 &
	FPID=$!
	PIDS+=("$FPID:flick daemon")
	wait_for_socket "$FSOCK" "$FPID" "flick daemon" "$TMP/flick/log"
	log "flick daemon ($FPID) up"
	for img in "${IMAGES[@]}"; do
		measure flick "$img" "$FPID" "$TMP/flick/root" -- "$FLICK" --host "unix://$FSOCK" pull --quiet "$REGISTRY/$img"
	done
	RAN_FLICK=1
fi

# ---------------------------------------------------------------- report

ratio() { # ratio FLICK DOCKER
	if [ -z "$1" ] || [ -z "$2" ] || [ "$1" = - ] || [ "$2" = - ]; then echo -; return; fi
	awk -v f="$1" -v d="$2" 'BEGIN { if (d == 0) print (f == 0 ? "1.00" : "inf"); else printf "%.2f\n", f / d }'
}

echo
printf '%-16s %-12s %12s %12s %12s\n' image metric docker flick flick/docker
printf '%-16s %-12s %12s %12s %12s\n' ---------------- ------------ ------------ ------------ ------------
for img in "${IMAGES[@]}"; do
	for m in wall:ms peakrss:MiB written:MiB disk:MiB; do
		key=${m%%:*} unit=${m#*:}
		d=${RESULT[docker,$img,$key]:--}
		f=${RESULT[flick,$img,$key]:--}
		printf '%-16s %-12s %12s %12s %12s\n' "$img" "$key($unit)" "$d" "$f" "$(ratio "$f" "$d")"
	done
done
[ -n "$RAN_DOCKER" ] || log "note: Docker was not measured"
[ -n "$RAN_FLICK" ] || log "note: Flick was not measured"
