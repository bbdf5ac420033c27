#!/usr/bin/env bash
# Zone boot-to-ready against the bare-QEMU floor, measured in the same run.
#
# floor: qemu-system-x86_64 with moat's machine flags and the same kernel, booting a busybox
#        initramfs whose /init powers off at once (QEMU start to QEMU exit).
# moat:  `moat zone create` (CLI start to the guest init's hello), then an untimed rm.
#
# Usage: bench/zone-boot.sh [RUNS]   (default 5; prints medians and the ratio)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
moat=$(moat_binary)
assets="${MOAT_ASSETS:-/var/lib/moat/assets}"
# The kernel zones boot (moat's own once built, or MOAT_KERNEL's), so the floor is that kernel's.
kernel=$("$moat" info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["assets"]["kernel"] or "")')
[ -f "$kernel" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
echo "kernel: $kernel"

work=$(mktemp -d /tmp/moat-bench-XXXXXX)
trap '"$moat" --root "$work/root" zone rm -f $("$moat" --root "$work/root" zone ls --format json | python3 -c "import json,sys; print(\" \".join(z[\"name\"] for z in json.load(sys.stdin)))") >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The floor's initramfs: busybox and an /init that powers off, written as a newc archive.
python3 - "$work/bare.cpio" <<'PY'
import os, sys
def entry(name, mode, data=b""):
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)
busybox = open("/bin/busybox", "rb").read()
out = entry("bin", 0o40755) + entry("dev", 0o40755) + entry("bin/busybox", 0o100755, busybox)
out += entry("init", 0o100755, b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n") + entry("TRAILER!!!", 0)
open(sys.argv[1], "wb").write(out)
PY

tsc=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
cmdline="console=ttyS0 quiet panic=-1 tsc_early_khz=$tsc"

floor=() ; zone=()
for i in $(seq "$runs"); do
    start=$(now_ms)
    qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none \
        -M microvm,acpi=on,x-option-roms=off -accel tcg -cpu max -smp 1 -m 256M \
        -kernel "$kernel" -initrd "$work/bare.cpio" -append "$cmdline" -serial "file:$work/floor.log"
    floor+=( $(( $(now_ms) - start )) )

    start=$(now_ms)
    "$moat" --root "$work/root" zone create --name "bench$i" --accel tcg >/dev/null 2>&1
    zone+=( $(( $(now_ms) - start )) )
    "$moat" --root "$work/root" zone rm -f "bench$i" >/dev/null
done

echo "runs: $runs"
series "bare QEMU floor" "${floor[@]}"; floor_ms=$last_median
series "moat zone ready" "${zone[@]}"; zone_ms=$last_median
ratio "zone/floor" "$zone_ms" "$floor_ms" "target <= 1.15x"
