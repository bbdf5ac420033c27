#!/usr/bin/env bash
# N idle zones, each a container sleeping in its own zone: the host memory they hold (PSS of
# every zone's QEMU, supervisor, virtiofsd with its sandboxed child, and passt: in all and per
# zone), the median and worst latency of `moat exec NAME true` across them, and the host's CPU
# while they idle (10 s of /proc/stat, with the share of it the zones' processes used). Then it
# removes them and checks that nothing leaked, as bench/load.sh does.
#
# Usage: bench/density.sh [N] [MEMORY]   (default 10 zones of moat's default memory; exits
#        non-zero on a failed start or exec, or any leak)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
memory=()
if [ -n "${2:-}" ]; then memory=(--memory "$2"); fi
. bench/lib.sh
moat=$(moat_binary)

bench_workdir moat-bench-density
root="$WORK/root"
image=moat-bench-busybox:latest
density_cleanup() {
    local rc=$?
    set +e
    remove_zones "$moat" "$root"
    (exit "$rc")
    bench_cleanup
}
trap density_cleanup EXIT

tests/fixtures/busybox-image.sh "$WORK/layout"
"$moat" --root "$root" image import "$WORK/layout" --name "$image" >/dev/null
"$moat" --root "$root" run --rm "${memory[@]}" "$image" true 2>/dev/null

# Start them all at once: the root's start slots bound how many boot together.
start=$(now_ms)
for i in $(seq "$n"); do
    ( rc=0; "$moat" --root "$root" run -d "${memory[@]}" --name "idle$i" "$image" sleep 3600 >"$WORK/out.$i" 2>&1 || rc=$?; echo "$rc" >"$WORK/rc.$i" ) &
done
wait
start_ms=$(( $(now_ms) - start ))
started=$(cat "$WORK"/rc.* | grep -cx 0 || true)
ls "$root/zones" >"$WORK/zone_ids"
root_processes "$root" >"$WORK/pids"

# Idle: the host's CPU over 10 s, and the CPU time of the zones' processes in it.
cpu_jiffies() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
zones_ticks() { for pid in $(root_processes "$root"); do awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
sleep 5
read -r busy0 total0 < <(cpu_jiffies); zones0=$(zones_ticks)
sleep 10
read -r busy1 total1 < <(cpu_jiffies); zones1=$(zones_ticks)
cpus=$(nproc)

exec_ms=(); exec_failed=0
pss_lines=()
for i in $(seq "$n"); do
    [ "$(cat "$WORK/rc.$i")" = 0 ] || continue
    t=$(now_ms)
    if "$moat" --root "$root" exec "idle$i" true; then exec_ms+=( $(( $(now_ms) - t )) ); else exec_failed=$(( exec_failed + 1 )); fi
    pss_lines+=( "$(zone_pss "$moat" "$root" "idle$i" | awk '{ s += $2 } END { print s }')" )
done
memory_mib=$("$moat" --root "$root" zone inspect idle1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory_mib"])')

echo "zones: $n idle (guest memory ${memory_mib} MiB each), started in $start_ms ms"
echo "started:                       $started of $n"
total_kb=$(printf '%s\n' "${pss_lines[@]}" | awk '{ s += $1 } END { print s + 0 }')
echo "total PSS:                     $(( total_kb / 1024 )) MiB (QEMU + supervisor + virtiofsd + passt)"
echo "PSS per zone:                  median $(( $(printf '%s\n' "${pss_lines[@]}" | median | cut -d. -f1) / 1024 )) MiB, largest $(( $(printf '%s\n' "${pss_lines[@]}" | sort -n | tail -1) / 1024 )) MiB"
echo "exec true (ms):                median $(printf '%s\n' "${exec_ms[@]}" | median), worst $(printf '%s\n' "${exec_ms[@]}" | sort -n | tail -1) (of ${#exec_ms[@]}; $exec_failed failed)"
awk -v b=$(( busy1 - busy0 )) -v t=$(( total1 - total0 )) -v z=$(( zones1 - zones0 )) -v c="$cpus" \
    'BEGIN { printf "host CPU while idle (10 s):    %.1f%% of %d CPUs busy; the zones%s processes %.1f%% of one CPU\n", 100 * b / t, c, "\047", 100 * z / (t / c) }'

failed=0
if [ "$started" != "$n" ] || [ "$exec_failed" != 0 ]; then
    echo "FAILED starts (exit status: count, then each distinct error line):"
    cat "$WORK"/rc.* | grep -vx 0 | sort | uniq -c || true
    grep -h '^moat: ' "$WORK"/out.* | grep -v '^moat: warning:' | sed 's/[0-9a-f]\{12\}/ID/g' | sort | uniq -c || true
    failed=1
fi
"$moat" --root "$root" rm -f $(seq -f 'idle%g' "$n") >/dev/null 2>&1 || failed=1
check_leaks "$root" "$WORK/pids" "$WORK/zone_ids" || failed=1
exit "$failed"
