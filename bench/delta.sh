#!/usr/bin/env bash
# Delta benchmark: bytes on the wire for an app update, Flick's delta against a
# Docker-style layer pull and a balena-style rsync delta, on five realistic
# update pairs pushed to a local docker-registry.
#
#   bench/delta.sh                   # all scenarios
#   BENCH_DELTA_ONLY=bd bench/delta.sh
#
# Scenarios (BASE -> TARGET, gzip layers as docker build makes them):
#   a  app code: a few KB of source changed in the top layer, Debian below
#   b  a ~11 MB statically linked Go program (bench/cmd/benchimage) rebuilt
#      after a one-line change (go build -overlay, the tree is not touched)
#   c  a Debian bookworm minbase layer (debootstrap) after the security
#      update of its packages (apt-get upgrade from bookworm-security: 9
#      packages when this was written)
#   d  a dependency tree of 2,000 files / ~20 MB with ~5% of files changed
#   e  d's BASE rebuilt: identical contents, new timestamps, every layer
#      digest different
#   g  b's program built stripped (-ldflags "-s -w"): without the
#      zlib-compressed DWARF sections, which change whole on any rebuild
#   f  (opt-in, BENCH_DELTA_ONLY=f) a 1 GB image: Debian, the Go program and
#      seven ~128 MB dependency layers; the program is rebuilt and 5% of the
#      files of two layers change. It is the memory figure: peak RSS while
#      applying a delta to a 1 GB image.
#
# For each pair it prints:
#   layer pull   compressed bytes of TARGET's layers that BASE lacks (what
#                docker pull downloads with BASE present)
#   balena       an rsync delta as balenaEngine ships it: librsync-go, 512-byte
#                blocks, BLAKE2, the whole BASE image as basis, gzip
#                (bench/cmd/deltabench balena), computed in this run
#   flick        'flick delta create' output: delta blobs plus the artifact
#                manifest a hub fetches
#   apply        wall time of 'flick pull TARGET' on a hub holding BASE, with
#                the delta and with --no-delta, and the daemon's peak RSS
#                (VmHWM of a daemon started just for that pull)
#
# Needs root, docker-registry, debootstrap and access to the Debian mirror
# (scenario c; the two root filesystems are cached in BENCH_CACHE).
#
# Environment:
#   BENCH_DELTA_ONLY   scenarios to run (default abcdeg)
#   BENCH_CACHE        where the Debian trees are kept (default /var/cache/flick-bench)
#   BENCH_TMPDIR       parent of the temporary directory
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
#   FLICK              flick binary (default bin/flick)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY_BIN=${FLICK_TEST_REGISTRY_BIN:-/usr/bin/docker-registry}
FLICK=${FLICK:-$ROOT/bin/flick}
ONLY=${BENCH_DELTA_ONLY:-abcdeg}
CACHE=${BENCH_CACHE:-/var/cache/flick-bench}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

. "$ROOT/bench/lib.sh"
lib_init delta
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, flick daemon)"
[ -x "$FLICK" ] || die "no flick binary at $FLICK: run 'make build'"

# ------------------------------------------------------------ Debian trees
debian_trees() {
	mkdir -p "$CACHE"
	if [ ! -f "$CACHE/debian-target/.done" ]; then
		command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
		rm -rf "$CACHE/debian-base" "$CACHE/debian-target"
		log "debootstrap bookworm minbase into $CACHE/debian-base (once; about a minute)"
		debootstrap --variant=minbase --include=ca-certificates,openssl bookworm "$CACHE/debian-base" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 ||
			{ tail -20 "$TMP/debootstrap.log" >&2; die "debootstrap failed"; }
		rm -rf "$CACHE/debian-base"/var/cache/apt/archives/*.deb "$CACHE/debian-base"/var/lib/apt/lists/* "$CACHE/debian-base"/var/cache/apt/*.bin
		cp -a "$CACHE/debian-base" "$CACHE/debian-target"
		echo "deb ${MIRROR%/debian}/debian-security bookworm-security main" >"$CACHE/debian-target/etc/apt/sources.list.d/security.list"
		log "security update of the target tree"
		chroot "$CACHE/debian-target" apt-get -qq update
		DEBIAN_FRONTEND=noninteractive chroot "$CACHE/debian-target" apt-get -y -q upgrade | grep -E '^(Unpacking|[0-9]+ upgraded)' >&2
		rm -rf "$CACHE/debian-target"/var/cache/apt/archives/*.deb "$CACHE/debian-target"/var/lib/apt/lists/* "$CACHE/debian-target"/var/cache/apt/*.bin
		touch "$CACHE/debian-target/.done"
	fi
}

# ------------------------------------------------------------ Go program
go_programs() {
	local src=bench/cmd/benchimage/main.go
	CGO_ENABLED=0 go build -trimpath -o "$TMP/gobin1" ./bench/cmd/benchimage
	# One line of code added after 'func main() {'.
	awk '{ print } /^func main\(\) \{/ { print "\tfmt.Fprintln(os.Stderr, \"benchimage starting\")" }' "$src" >"$TMP/main.go"
	grep -q '"fmt"' "$TMP/main.go" || die "$src does not import fmt"
	printf '{"Replace":{"%s":"%s"}}' "$ROOT/$src" "$TMP/main.go" >"$TMP/overlay.json"
	CGO_ENABLED=0 go build -trimpath -overlay "$TMP/overlay.json" -o "$TMP/gobin2" ./bench/cmd/benchimage
	cmp -s "$TMP/gobin1" "$TMP/gobin2" && die "the rebuilt program is identical"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$TMP/gobin1s" ./bench/cmd/benchimage
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -overlay "$TMP/overlay.json" -o "$TMP/gobin2s" ./bench/cmd/benchimage
	log "Go program: $(stat -c %s "$TMP/gobin1") bytes"
}

# ------------------------------------------------------------ hub pulls
# hub_pull NAME BASE TARGET [ARGS]: on a fresh hub, pull BASE, restart the
# daemon (so its peak RSS is the target pull's alone), time the pull of
# TARGET; sets PULL_S and PEAK_MB.
hub_pull() {
	local dir=$TMP/hub-$1 t0 t1
	start_flick "$dir"
	"$FLICK" pull -q "$2" >/dev/null
	stop_pid "$FLICK_PID" "flick daemon"
	start_flick "$dir"
	t0=$(date +%s.%N)
	"$FLICK" pull "${@:4}" "$3" >"$dir/pull.out" || { cat "$dir/pull.out" "$dir/daemon.log" >&2; die "pull of $3 failed"; }
	t1=$(date +%s.%N)
	PULL_S=$(echo "$t1 - $t0" | bc -l)
	PEAK_MB=$(echo "$(rss_kb "$FLICK_PID" VmHWM) / 1024" | bc -l)
	stop_pid "$FLICK_PID" "flick daemon"
	rm -rf "$dir"
}

human() { numfmt --to=iec --suffix=B --format='%.1f' "$1"; }

debian_trees
go_programs
start_registry
go build -o "$TMP/deltabench" ./bench/cmd/deltabench
"$TMP/deltabench" corpus -registry "$REGISTRY" -only "$ONLY" -debian-base "$CACHE/debian-base" -debian-target "$CACHE/debian-target" \
	-gobin1 "$TMP/gobin1" -gobin2 "$TMP/gobin2" -gobin1s "$TMP/gobin1s" -gobin2s "$TMP/gobin2s"

declare -A DESC=([a]="app code, few KB changed" [b]="Go program rebuilt" [c]="Debian security update" [d]="deps tree, 5% changed" [e]="rebuild, new timestamps" [g]="Go program, stripped" [f]="1 GB image, 3 layers changed")
ROWS=()
for s in $(echo "$ONLY" | grep -o .); do
	base=$REGISTRY/bench/$s:1 target=$REGISTRY/bench/$s:2
	log "$s: ${DESC[$s]}"
	"$FLICK" delta create --push --json --tmp-dir "$TMP" "$base" "$target" >"$TMP/$s.json"
	layer=$(jq .layerPullBytes "$TMP/$s.json")
	flick=$(jq .deltaPullBytes "$TMP/$s.json")
	create_s=$(jq .seconds "$TMP/$s.json")
	create_mb=$(jq .peakRSSMiB "$TMP/$s.json")
	balena=$("$TMP/deltabench" balena -tmp "$TMP" -base "$base" -target "$target")
	hub_pull "$s-delta" "$base" "$target"
	grep -q "Using delta" "$TMP/hub-$s-delta.out" 2>/dev/null || true
	d_s=$PULL_S d_mb=$PEAK_MB
	hub_pull "$s-full" "$base" "$target" --no-delta
	f_s=$PULL_S f_mb=$PEAK_MB
	ROWS+=("$(printf '%-1s %-26s %10s %10s %10s %8.1fx %8.2fx %6.2fs %6.2fs %6.1f %6.1f %6.1fs %6.1f' \
		"$s" "${DESC[$s]}" "$(human "$layer")" "$(human "$balena")" "$(human "$flick")" \
		"$(echo "$layer / $flick" | bc -l)" "$(echo "$balena / $flick" | bc -l)" \
		"$d_s" "$f_s" "$d_mb" "$f_mb" "$create_s" "$create_mb")")
	RATIO+=("$(echo "$layer / $flick" | bc -l)")
	PCT+=("$(echo "100 * $flick / $layer" | bc -l)")
done

echo
echo "Bytes a hub holding BASE downloads to get TARGET (this run, local docker-registry)"
printf '%-1s %-26s %10s %10s %10s %9s %9s %7s %7s %6s %6s %7s %6s\n' "" scenario "layer pull" balena flick "layer/fl" "balena/fl" "apply" "full" "rssD" "rssF" "create" "rssC"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "apply/full: wall time of 'flick pull TARGET' with the delta / with --no-delta; rssD/rssF: daemon peak RSS (MiB) for that pull."
echo "create/rssC: wall time and peak RSS (MiB) of 'flick delta create --push'."
echo "layer/fl: how many times fewer bytes than a layer pull; balena/fl: how many times fewer than the balena-style delta."
i=0
for s in $(echo "$ONLY" | grep -o .); do
	printf '%s: flick = %.3f%% of the layer pull\n' "$s" "${PCT[$i]}"
	i=$((i + 1))
done
