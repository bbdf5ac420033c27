#!/usr/bin/env bash
# N concurrent `moat run --rm --memory 256m IMAGE true`, each in its own zone, in one state
# root: the total wall time, how many succeeded, and the host memory they took at peak
# (MemAvailable sampled every 0.2 s, against its level just before the run). Then it checks
# that nothing leaked: no zone directory, scratch disk or temporary file under the root, no
# process of the root (supervisors, QEMUs, virtiofsd and the passt each supervisor started),
# no mount under the root, no moat-ZONE cgroup of a zone the run made.
#
# Usage: bench/load.sh [N]   (default 50; exits non-zero on any failed run or any leak)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-50}"
. bench/lib.sh
moat=$(moat_binary)

bench_workdir moat-bench-load
root="$WORK/root"
image=moat-bench-busybox:latest
mem_available_kb() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
load_cleanup() {
    local rc=$?
    set +e  # the cleanup runs to its end, and bench_cleanup reads the status from $?
    [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
    remove_zones "$moat" "$root"
    (exit "$rc")
    bench_cleanup
}
trap load_cleanup EXIT

tests/fixtures/busybox-image.sh "$WORK/layout"
"$moat" --root "$root" image import "$WORK/layout" --name "$image" >/dev/null
# Warm once: the image's EROFS is made here, not by 50 runs at once.
"$moat" --root "$root" run --rm --memory 256m "$image" true 2>/dev/null

# The sampler: the lowest MemAvailable, and every zone id and process of the root it sees.
idle_kb=$(mem_available_kb)
(
    low=$idle_kb
    while :; do
        now=$(mem_available_kb); [ "$now" -lt "$low" ] && low=$now && echo "$low" >"$WORK/low_kb"
        ls "$root/zones" 2>/dev/null >>"$WORK/zone_ids"
        root_processes "$root" >>"$WORK/pids"
        sleep 0.2
    done
) &
sampler=$!

start=$(now_ms)
for i in $(seq "$n"); do
    ( rc=0; "$moat" --root "$root" run --rm --memory 256m "$image" true >"$WORK/out.$i" 2>&1 || rc=$?; echo "$rc" >"$WORK/rc.$i" ) &
done
wait $(jobs -p | grep -vx "$sampler")
wall_ms=$(( $(now_ms) - start ))
kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=

ok=$(cat "$WORK"/rc.* | grep -cx 0 || true)
low_kb=$(cat "$WORK/low_kb" 2>/dev/null || echo "$idle_kb")
total_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
echo "runs: $n concurrent 'moat run --rm --memory 256m IMAGE true'"
echo "wall time:                     $wall_ms ms"
echo "succeeded:                     $ok of $n"
echo "peak host memory used:         $(( (idle_kb - low_kb) / 1024 )) MiB above the idle host (lowest MemAvailable $(( low_kb / 1024 )) of $(( total_kb / 1024 )) MiB)"
failed=0
if [ "$ok" != "$n" ]; then
    echo "FAILED runs (exit status: count, then each distinct error line):"
    cat "$WORK"/rc.* | grep -vx 0 | sort | uniq -c
    grep -h '^moat: ' "$WORK"/out.* | grep -v '^moat: warning:' | sed 's/[0-9a-f]\{12\}/ID/g' | sort | uniq -c
    failed=1
fi

check_leaks "$root" "$WORK/pids" "$WORK/zone_ids" || failed=1
exit "$failed"
