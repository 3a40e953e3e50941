#!/usr/bin/env bash
# bench/start.sh: start-to-exit latency of /bin/true in a small busybox image,
# Flick against crun and dockerd, side by side in one run.
#
# One image, built by bench/cmd/busyboximage from Debian's busybox-static
# (imagegen.Busybox, the e2e tests' image) and pushed to a docker-registry on a
# free loopback port; each engine pulls it from there. Then, timed from the
# shell (bash's EPOCHREALTIME, no fork), each path runs WARMUP untimed and RUNS
# timed containers, one after the other, each GAP seconds after the previous
# one ended (default 0.05), so that every engine starts each container on a
# machine that has finished the previous one's work, as a hub's event-driven
# starts usually find it. The same GAP for every path; flick-api-burst is the
# exception that shows the other case:
#   flick-cli          flick run --rm --network none IMAGE true
#   flick-api-curl     the Docker Engine API on Flick's socket, one curl process
#                      (--next): create, start, wait, delete
#   flick-api-client   the same requests as flick run --rm (create, attach,
#                      wait for removal, start, the stream to its end) from
#                      one long-lived client process (bench/cmd/apirun):
#                      the engine's own latency, without a client process's
#                      start
#   flick-api-burst    flick-api-client with no gap: starts back to back, a
#                      burst, where each start shares the two CPUs with the
#                      previous container's removal and the warm pool's refill
#   flick-docker-cli   the real docker CLI on Flick's socket:
#                      docker run --rm --network none IMAGE true
#   crun               crun run of an OCI bundle (crun spec, args true, no
#                      terminal) whose rootfs is the image's layer tar. crun
#                      refuses a hybrid cgroup layout whose cgroup2 hierarchy
#                      holds a controller, whatever its --cgroup-manager: then
#                      it runs through nsenter in a mount namespace without
#                      /sys/fs/cgroup/unified (pure v1), and the nsenter-true
#                      row shows what nsenter alone costs
#   docker-api-curl    as flick-api-curl, on dockerd's socket
#   docker-api-client  as flick-api-client, on dockerd's socket
#   docker             docker run --rm --network none IMAGE true on dockerd
# Flick's default network is a loopback-only namespace, as --network none;
# crun's default spec has its own network namespace too.
# Memory: the flick daemon's VmRSS when idle, SETTLE seconds (default 5)
# after its last request (after the pull, and again after all the runs; once
# quiet the daemon gives its free heap back and drops the mappings of code
# it does not run: docs/RATIONALE.md), and the VmRSS of one
# container's monitor (`flick-monitor __shim ...`) while `flick run -d IMAGE
# sleep 60` runs; for comparison dockerd + containerd when idle and
# containerd-shim-runc-v2 for one container.
#
# Needs root, Go, /usr/bin/docker-registry (apt-get install docker-registry),
# busybox-static, crun (installed with apt-get if missing), and for the Docker
# side /usr/sbin/dockerd and a docker CLI (apt-get install docker.io).
# Everything it starts (daemons, containers) is stopped and removed, and its
# temporary directory deleted, on exit.
#
# Environment:
#   RUNS (30), WARMUP (3)    timed and untimed runs per path
#   GAP (0.05)               seconds of idle time before each run (0: back to back)
#   BENCH_SKIP_DOCKER=1      no dockerd side        BENCH_SKIP_CRUN=1  no crun side
#   BENCH_TMPDIR             parent of the temporary directory (default $TMPDIR or /tmp)
#   CRUN_CGROUP_MANAGER      force crun's --cgroup-manager (default: crun's own
#                            choice, falling back to "disabled" if that fails)
#   DOCKER_STORAGE_DRIVER    passed to dockerd as --storage-driver if set
#   FLICK                    flick binary (default: bin/flick, built with make -s build)
#   DOCKERD, DOCKER, CRUN    binaries (default /usr/sbin/dockerd, docker and crun in PATH)
#   FLICK_TEST_REGISTRY_BIN  registry binary (default /usr/bin/docker-registry)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LC_ALL=C
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
GAP=${GAP:-0.05}
REGISTRY_BIN=${FLICK_TEST_REGISTRY_BIN:-/usr/bin/docker-registry}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-$(command -v docker || echo /usr/bin/docker)}
. "$ROOT/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (containers, dockerd)"
[[ $RUNS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] || die "RUNS and WARMUP must be numbers"
[[ $GAP =~ ^[0-9]*\.?[0-9]+$ ]] || die "GAP must be a number of seconds"
command -v curl >/dev/null || die "curl not found"
[ -x /bin/busybox ] || die "/bin/busybox not found: apt-get install busybox-static"
if [ -z "${FLICK:-}" ]; then
	make -s build >/dev/null
	FLICK=$ROOT/bin/flick
fi
if [ "${BENCH_SKIP_CRUN:-}" != 1 ] && [ -z "${CRUN:-}" ] && ! command -v crun >/dev/null; then
	log "crun not found: apt-get install -y crun"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq crun >/dev/null || die "could not install crun"
fi
CRUN=${CRUN:-$(command -v crun || echo /usr/bin/crun)}

lib_init start
export DOCKER_CONFIG=$TMP/docker-config # keep the docker CLI off ~/.docker
mkdir -p "$DOCKER_CONFIG"

# Containers outlive their daemons (Flick's monitor, containerd's shim): remove
# them before lib.sh's cleanup stops the daemons.
remove_containers() {
	if [ -n "${FSOCK:-}" ] && [ -S "$FSOCK" ]; then
		"$FLICK" -H "unix://$FSOCK" ps -aq 2>/dev/null | xargs -r "$FLICK" -H "unix://$FSOCK" rm -f >/dev/null 2>&1 || true
	fi
	if [ -n "${DSOCK:-}" ] && [ -S "$DSOCK" ]; then
		"$DOCKER" -H "unix://$DSOCK" ps -aq 2>/dev/null | xargs -r "$DOCKER" -H "unix://$DSOCK" rm -f >/dev/null 2>&1 || true
	fi
	if [ -d "$TMP/crun/state" ]; then
		"$CRUN" --root "$TMP/crun/state" list -q 2>/dev/null | while read -r id; do
			"$CRUN" --root "$TMP/crun/state" delete -f "$id" >/dev/null 2>&1 || true
		done
	fi
}
trap 'rc=$?; set +e; remove_containers; (exit $rc); cleanup' EXIT

# ---------------------------------------------------------------- image

start_registry
go build -o "$TMP/busyboximage" ./bench/cmd/busyboximage
go build -o "$TMP/apirun" ./bench/cmd/apirun
IMAGE=$REGISTRY/bench/busybox:1
log "pushed $("$TMP/busyboximage" -registry "$REGISTRY" -ref bench/busybox:1 -rootfs-tar "$TMP/rootfs.tar")"

# ---------------------------------------------------------------- timing

declare -A MED P95 MIN NOTE
PATHS=()

us() { echo "${1//[!0-9]/}"; } # EPOCHREALTIME -> microseconds

# record KEY NOTE: the statistics of $TMP/times.KEY (µs, one per line) to
# MED/P95/MIN, and KEY to the report.
record() {
	local key=$1 note=$2
	read -r MED[$key] P95[$key] MIN[$key] < <(sort -n "$TMP/times.$key" | awk '
		{ v[NR] = $1 }
		END {
			med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			r = int(0.95 * NR); if (r < 0.95 * NR) r++ # nearest rank
			printf "%.1f %.1f %.1f\n", med / 1000, v[r] / 1000, v[1] / 1000 }')
	NOTE[$key]=$note
	PATHS+=("$key")
	log "$key: median ${MED[$key]} ms, p95 ${P95[$key]} ms"
}

# bench_path KEY NOTE CMD...: WARMUP + RUNS runs of CMD, which must succeed;
# the timed ones go to $TMP/times.KEY (µs), their statistics to MED/P95/MIN.
bench_path() {
	local key=$1 note=$2 i t0 t1 f=$TMP/times.$1
	shift 2
	: >"$f"
	log "$key: $WARMUP warm-up + $RUNS timed runs of: $note"
	for ((i = 0; i < WARMUP + RUNS; i++)); do
		[[ $GAP =~ ^0*\.?0*$ ]] || sleep "$GAP"
		t0=$EPOCHREALTIME
		if ! "$@" >"$TMP/out.$key" 2>&1; then
			cat "$TMP/out.$key" >&2
			die "$key: run $i failed: $*"
		fi
		t1=$EPOCHREALTIME
		((i < WARMUP)) || echo $(($(us "$t1") - $(us "$t0"))) >>"$f"
	done
	record "$key" "$note"
}

# bench_series KEY NOTE CMD...: CMD does the warm-up and timed runs itself
# and prints each timed run's latency in microseconds, one per line.
bench_series() {
	local key=$1 note=$2 f=$TMP/times.$1
	shift 2
	log "$key: $WARMUP warm-up + $RUNS timed runs of: $note"
	"$@" >"$f" || die "$key: $* failed"
	record "$key" "$note"
}

# api_once SOCK: create, start, wait, delete through the Docker Engine API, in
# one curl process; fails unless every status is the
# expected one and the container exited 0.
API_N=0
api_once() {
	local sock=$1 name codes
	name=bench-api-$$-$((API_N++))
	local u="http://engine/v1.41/containers"
	codes=$(curl -sS --unix-socket "$sock" -o /dev/null -w '%{http_code} ' -X POST \
		-H 'Content-Type: application/json' \
		-d '{"Image":"'"$IMAGE"'","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}' "$u/create?name=$name" \
		--next -sS --unix-socket "$sock" -o /dev/null -w '%{http_code} ' -X POST "$u/$name/start" \
		--next -sS --unix-socket "$sock" -o "$TMP/wait.json" -w '%{http_code} ' -X POST "$u/$name/wait" \
		--next -sS --unix-socket "$sock" -o /dev/null -w '%{http_code}' -X DELETE "$u/$name")
	if [ "$codes" != "201 204 200 204" ] || ! grep -q '"StatusCode":0[,}]' "$TMP/wait.json"; then
		echo "statuses $codes (want 201 204 200 204), wait: $(cat "$TMP/wait.json" 2>/dev/null)"
		return 1
	fi
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

# ---------------------------------------------------------------- Flick

start_flick "$TMP/flick" --log-level warn
FSOCK=$TMP/flick/flick.sock
"$FLICK" pull -q "$IMAGE" >/dev/null
SETTLE=${SETTLE:-5}
sleep "$SETTLE"
FLICK_IDLE0=$(rss_kb "$FLICK_PID" VmRSS)
log "flick daemon $FLICK_PID, idle VmRSS ${FLICK_IDLE0} KiB after the pull"

bench_path flick-cli "flick run --rm --network none IMAGE true" "$FLICK" run --rm --network none "$IMAGE" true
bench_path flick-api-curl "API create+start+wait+delete (curl)" api_once "$FSOCK"
bench_series flick-api-client "API run --rm from one client process (apirun)" \
	"$TMP/apirun" -socket "$FSOCK" -image "$IMAGE" -warmup "$WARMUP" -runs "$RUNS" -gap "${GAP}s"
bench_series flick-api-burst "the same, back to back (no gap)" \
	"$TMP/apirun" -socket "$FSOCK" -image "$IMAGE" -warmup "$WARMUP" -runs "$RUNS"
HAVE_DOCKER_CLI=
if [ -x "$DOCKER" ]; then
	HAVE_DOCKER_CLI=1
	bench_path flick-docker-cli "docker run --rm --network none IMAGE true" \
		"$DOCKER" -H "unix://$FSOCK" run --rm --network none "$IMAGE" true
else
	log "no docker CLI at $DOCKER: skipping flick-docker-cli"
fi

# One detached container: its monitor's memory.
cid=$("$FLICK" run -d "$IMAGE" sleep 60)
shim_pid=
for ((i = 0; i < 50; i++)); do
	# The monitor records its pid in the bundle (a warm one was started
	# before the container existed, so its command line does not name it).
	shim_pid=$(sed -n 's/.*"shimPid":\([0-9]*\).*/\1/p' "$TMP/flick/root/containers/$cid/state.json" 2>/dev/null || true)
	[ -n "$shim_pid" ] && [ "$shim_pid" != 0 ] && break
	sleep 0.1
done
[ -n "$shim_pid" ] && [ "$shim_pid" != 0 ] || { ps -eo pid,ppid,rss,args | grep __shim >&2 || true; die "no monitor pid in $cid's state.json"; }
sleep 0.5
MON_RSS=$(rss_kb "$shim_pid" VmRSS)
MON_ANON=$(rss_kb "$shim_pid" RssAnon)
log "monitor $shim_pid ($(tr '\0' ' ' <"/proc/$shim_pid/cmdline")): VmRSS $MON_RSS KiB, RssAnon $MON_ANON KiB"
# The warm monitors and their inits, waiting for the next start (--warm-monitors;
# the back-to-back runs above are a burst, so there may be two pairs for 30 s).
WARM_RSS=0 WARM_ANON=0 WARM_N=0
for p in $(ps -eo pid=,ppid=,args= | awk -v d="$FLICK_PID" -v s="$shim_pid" '$2 == d && $1 != s && $4 == "__shim" && $7 == "--warm" { print $1 }'); do
	for q in $p $(ps -eo pid=,ppid=,args= | awk -v m="$p" '$2 == m && $4 == "__init" { print $1 }'); do
		WARM_RSS=$((WARM_RSS + $(rss_kb "$q" VmRSS))) WARM_ANON=$((WARM_ANON + $(rss_kb "$q" RssAnon))) WARM_N=$((WARM_N + 1))
	done
done
log "warm monitors + inits: $WARM_N processes, VmRSS $WARM_RSS KiB, RssAnon $WARM_ANON KiB"
WARM_PAIRS=$((WARM_N / 2 > 0 ? WARM_N / 2 : 1))
"$FLICK" rm -f "$cid" >/dev/null
sleep "$SETTLE"
FLICK_IDLE1=$(rss_kb "$FLICK_PID" VmRSS)
FLICK_IDLE1_ANON=$(rss_kb "$FLICK_PID" RssAnon)
log "flick daemon idle VmRSS ${FLICK_IDLE1} KiB after all the runs (RssAnon ${FLICK_IDLE1_ANON} KiB)"

# ---------------------------------------------------------------- crun

CRUN_MODE=
if [ "${BENCH_SKIP_CRUN:-}" = 1 ]; then
	log "BENCH_SKIP_CRUN=1: skipping crun"
else
	B=$TMP/crun/bundle
	mkdir -p "$B/rootfs" "$TMP/crun/state"
	tar -xf "$TMP/rootfs.tar" -C "$B/rootfs"
	(cd "$B" && "$CRUN" spec) || die "crun spec failed"
	# The default spec runs "sh" on a terminal: run true, without one.
	sed -i -e 's/"terminal": true/"terminal": false/' \
		-e '/"args": \[/,/\]/ s/"sh"/"true"/' "$B/config.json"
	grep -q '"terminal": false' "$B/config.json" && grep -q '"true"' "$B/config.json" ||
		die "could not edit $B/config.json"
	CRUN_N=0
	CRUN_PREFIX=()
	crun_once() { "${CRUN_PREFIX[@]}" "$CRUN" --root "$TMP/crun/state" ${CRUN_CGROUP_MANAGER:+--cgroup-manager="$CRUN_CGROUP_MANAGER"} run --bundle "$B" "bench-$$-$((CRUN_N++))"; }
	if ! crun_once >"$TMP/crun/probe" 2>&1; then
		# crun refuses a hybrid layout whose cgroup2 hierarchy holds a
		# controller (here hugetlb), whatever its cgroup manager. Run it
		# in a private mount namespace without /sys/fs/cgroup/unified:
		# pure cgroup v1 there, as Flick and dockerd use on this host.
		log "crun failed: $(head -c 300 "$TMP/crun/probe")"
		if grep -q 'hybrid mode' "$TMP/crun/probe" && awk '$3 == "cgroup2" && $2 == "/sys/fs/cgroup/unified"' /proc/mounts | grep -q .; then
			mkdir -p "$TMP/crun/ns"
			mount --bind "$TMP/crun/ns" "$TMP/crun/ns" && mount --make-private "$TMP/crun/ns"
			touch "$TMP/crun/ns/mnt"
			unshare --mount="$TMP/crun/ns/mnt" --propagation private umount /sys/fs/cgroup/unified
			CRUN_PREFIX=(nsenter --mount="$TMP/crun/ns/mnt")
			CRUN_NS="a private mount namespace without /sys/fs/cgroup/unified (nsenter --mount, cgroup v1 only)"
			log "retrying crun in $CRUN_NS"
		fi
		if ! crun_once >"$TMP/crun/probe" 2>&1 && [ -z "${CRUN_CGROUP_MANAGER:-}" ]; then
			log "crun failed: $(head -c 300 "$TMP/crun/probe"): retrying with --cgroup-manager=disabled"
			CRUN_CGROUP_MANAGER=disabled
			crun_once >"$TMP/crun/probe" 2>&1 || { cat "$TMP/crun/probe" >&2; die "crun run failed"; }
		fi
	fi
	CRUN_MODE="cgroup manager ${CRUN_CGROUP_MANAGER:-default (cgroupfs)}${CRUN_NS:+, in $CRUN_NS}"
	log "crun $("$CRUN" --version | head -1 | awk '{ print $3 }'), $CRUN_MODE"
	if [ -n "${CRUN_NS:-}" ]; then
		# What nsenter itself adds to each run.
		bench_path nsenter-true "nsenter --mount=NS /bin/true (the crun row's nsenter overhead)" "${CRUN_PREFIX[@]}" /bin/true
	fi
	bench_path crun "crun run of an OCI bundle (crun spec)" crun_once
fi

# ---------------------------------------------------------------- Docker

DOCKER_INFO=
if [ "${BENCH_SKIP_DOCKER:-}" = 1 ]; then
	log "BENCH_SKIP_DOCKER=1: skipping Docker"
elif [ ! -x "$DOCKERD" ] || [ -z "$HAVE_DOCKER_CLI" ]; then
	log "dockerd or docker not found ($DOCKERD, $DOCKER): apt-get install docker.io for the Docker side"
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
	DOCKER_INFO=$("$DOCKER" -H "unix://$DSOCK" info --format \
		'dockerd {{.ServerVersion}}, storage driver {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}, runtime {{.DefaultRuntime}}' 2>/dev/null)
	log "$DOCKER_INFO"
	"$DOCKER" -H "unix://$DSOCK" pull -q "$IMAGE" >/dev/null
	sleep "$SETTLE"
	# dockerd's own containerd is its child; the idle figure is dockerd + containerd.
	DOCKER_IDLE=$(($(rss_kb "$DPID" VmRSS) + $(for p in $(pgrep -P "$DPID" -x containerd || true); do rss_kb "$p" VmRSS; done | awk '{ s += $1 } END { print s + 0 }')))
	bench_path docker-api-curl "API create+start+wait+delete (curl)" api_once "$DSOCK"
	bench_series docker-api-client "API run --rm from one client process (apirun)" \
		"$TMP/apirun" -socket "$DSOCK" -image "$IMAGE" -warmup "$WARMUP" -runs "$RUNS" -gap "${GAP}s"
	bench_path docker "docker run --rm --network none IMAGE true" \
		"$DOCKER" -H "unix://$DSOCK" run --rm --network none "$IMAGE" true
	dcid=$("$DOCKER" -H "unix://$DSOCK" run -d --network none "$IMAGE" sleep 60)
	dshim=$(ps -eo pid=,args= | awk -v id="$dcid" '$2 ~ /containerd-shim/ && index($0, id) { print $1; exit }')
	sleep 0.5
	DSHIM_RSS=${dshim:+$(rss_kb "$dshim" VmRSS)}
	"$DOCKER" -H "unix://$DSOCK" rm -f "$dcid" >/dev/null
fi

# ---------------------------------------------------------------- report

ratio() { # ratio A B: A/B, or - if B is unknown
	[ -n "${2:-}" ] || { echo -; return; }
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'
}
echo
printf 'start-to-exit of /bin/true in a busybox image: %d timed runs per path after %d warm-up runs, each %ss after the last, %d CPUs\n' \
	"$RUNS" "$WARMUP" "$GAP" "$(nproc)"
printf '%-17s %10s %10s %10s %8s %9s  %s\n' path median_ms p95_ms min_ms x_crun x_docker what
for k in "${PATHS[@]}"; do
	printf '%-17s %10s %10s %10s %8s %9s  %s\n' "$k" "${MED[$k]}" "${P95[$k]}" "${MIN[$k]}" \
		"$(ratio "${MED[$k]}" "${MED[crun]:-}")" "$(ratio "${MED[$k]}" "${MED[docker]:-}")" "${NOTE[$k]}"
done
echo "(x_crun, x_docker: the path's median over crun's and over docker's, the docker CLI on dockerd)"
[ -n "$CRUN_MODE" ] && echo "crun: $("$CRUN" --version | head -1), $CRUN_MODE"
[ -n "$DOCKER_INFO" ] && echo "docker: $DOCKER_INFO; CLI $("$DOCKER" --version | awk '{ print $3 }' | tr -d ,)"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
verdict() { # verdict OK: met or MISSED
	if [ "$1" = 1 ]; then echo met; else echo MISSED; fi
}
echo
echo "memory (VmRSS):"
printf '  flick daemon idle:        %s after the pull, %s after all the runs (%s of it anonymous: the rest is the binary'"'"'s pages it runs, shared with every flick command)\n' "$(mib "$FLICK_IDLE0")" "$(mib "$FLICK_IDLE1")" "$(mib "$FLICK_IDLE1_ANON")"
printf '  flick monitor:            %s for one running container (%s of it anonymous: the rest is the binary'"'"'s pages, shared)\n' "$(mib "$MON_RSS")" "$(mib "$MON_ANON")"
printf '  warm monitor + its init:  %s a pair while they wait (%s anonymous; %d processes waiting)\n' "$(mib $((WARM_RSS / WARM_PAIRS)))" "$(mib $((WARM_ANON / WARM_PAIRS)))" "$WARM_N"
[ -n "${DOCKER_IDLE:-}" ] && printf '  dockerd + containerd idle: %s\n' "$(mib "$DOCKER_IDLE")"
[ -n "${DSHIM_RSS:-}" ] && printf '  containerd-shim-runc-v2:  %s for one running container\n' "$(mib "$DSHIM_RSS")"

echo
echo "targets:"
if [ -n "${MED[crun]:-}" ]; then
	for k in flick-cli flick-api-curl flick-api-client flick-api-burst; do
		ok=$(awk -v f="${MED[$k]}" -v c="${MED[crun]}" 'BEGIN { print (f <= c) ? 1 : 0 }')
		printf '  %-15s median no slower than crun:  %s ms vs %s ms (%sx)  %s\n' "$k" "${MED[$k]}" "${MED[crun]}" \
			"$(ratio "${MED[$k]}" "${MED[crun]}")" "$(verdict "$ok")"
	done
else
	echo "  Flick median no slower than crun: not measured (crun skipped)"
fi
idle_max=$((FLICK_IDLE0 > FLICK_IDLE1 ? FLICK_IDLE0 : FLICK_IDLE1))
printf '  monitor RSS under 4 MiB:          %s  %s\n' "$(mib "$MON_RSS")" "$(verdict $((MON_RSS < 4096)))"
printf '  daemon idle RSS under 20 MiB:     %s (the larger idle figure)  %s\n' "$(mib "$idle_max")" "$(verdict $((idle_max < 20480)))"
