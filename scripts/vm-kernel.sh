#!/usr/bin/env bash
# Fetches the kernel the cgroup v2 VM test boots (test/e2e/cgroupv2_vm_test.go):
# Debian's cloud kernel for this machine's architecture, unpacked from its
# package (nothing is installed), into DIR: vmlinuz and overlay.ko.
# Usage: scripts/vm-kernel.sh DIR   (does nothing if DIR has them already)
set -euo pipefail
dir=${1:?usage: vm-kernel.sh DIR}
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/overlay.ko" ]; then
	exit 0
fi
arch=$(dpkg --print-architecture)
meta=linux-image-cloud-$arch
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$pkg" ]; then
	echo "vm-kernel: no $meta in the apt lists; run apt-get update (the cgroup v2 VM test needs it)" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "vm-kernel: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$tmp"/*.deb "$tmp/x"
mkdir -p "$dir"
cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
cp "$(find "$tmp/x/lib/modules" -name 'overlay.ko*' | head -1)" "$dir/overlay.ko"
echo "$pkg" > "$dir/VERSION"
echo "vm-kernel: $pkg in $dir"
