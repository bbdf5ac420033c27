#!/usr/bin/env bash
# `moat run --rm IMAGE true` against `podman run --rm IMAGE true` (runc), same image, same run,
# cold (a zone booted for the run) and warm (a zone from the pool), plus the host memory (PSS)
# of one idle zone: its QEMU, its supervisor, its virtiofsd and passt.
#
# Usage: bench/run.sh [RUNS]   (default 5; prints medians and the ratio)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
moat=$(moat_binary)

work=$(mktemp -d /tmp/moat-bench-XXXXXX)
root="$work/root"
cleanup() {
    "$moat" --root "$root" rm -f idle >/dev/null 2>&1 || true
    "$moat" --root "$root" pool set --size 0 >/dev/null 2>&1 || true
    for _ in $(seq 100); do pgrep -f -- "$root pool keep" >/dev/null || break; sleep 0.3; done
    podman rmi -f localhost/moat-bench-busybox:latest >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-image.sh "$work/layout"
"$moat" --root "$root" image import "$work/layout" --name moat-bench-busybox:latest >/dev/null
skopeo copy -q "oci:$work/layout:latest" containers-storage:localhost/moat-bench-busybox:latest
podman_flags=(--runtime runc --cgroup-manager cgroupfs)
run_flags=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
image_id=localhost/moat-bench-busybox:latest

# Warm both paths once (image conversion, podman storage).
"$moat" --root "$root" run --rm moat-bench-busybox:latest true 2>/dev/null
podman "${podman_flags[@]}" run --rm "${run_flags[@]}" "$image_id" true

moat_ms=(); podman_ms=()
for _ in $(seq "$runs"); do
    start=$(now_ms); podman "${podman_flags[@]}" run --rm "${run_flags[@]}" "$image_id" true; podman_ms+=( $(( $(now_ms) - start )) )
    start=$(now_ms); "$moat" --root "$root" run --rm moat-bench-busybox:latest true 2>/dev/null; moat_ms+=( $(( $(now_ms) - start )) )
done

# Warm: the same run taking a zone the pool booted ahead. Each run waits for the keeper's
# refill first, as a pool sized to the load would have one ready.
"$moat" --root "$root" pool set --size 1 >/dev/null
pool_ready() { "$moat" --root "$root" pool ls --format json | python3 -c 'import json,sys; z=json.load(sys.stdin)["zones"]; sys.exit(0 if any(x["state"] == "running" for x in z) else 1)'; }
warm_ms=()
for _ in $(seq "$runs"); do
    until pool_ready; do sleep 0.2; done
    start=$(now_ms); "$moat" --root "$root" run --rm moat-bench-busybox:latest true 2>/dev/null; warm_ms+=( $(( $(now_ms) - start )) )
done
"$moat" --root "$root" pool set --size 0 >/dev/null
while "$moat" --root "$root" pool ls --format json | python3 -c 'import json,sys; p=json.load(sys.stdin); sys.exit(0 if p["zones"] or p["keeper"] else 1)'; do sleep 0.2; done

# One idle zone: a container sleeping in its zone; the PSS of its QEMU, its supervisor, its
# virtiofsd (with the sandboxed child it forks) and its passt, and their sum.
"$moat" --root "$root" run -d --name idle moat-bench-busybox:latest sleep 3600 >/dev/null 2>&1
sleep 2
split=$(zone_pss "$moat" "$root" idle)
pss_kb=$(awk '{ s += $2 } END { print s }' <<<"$split")
memory_mib=$("$moat" --root "$root" zone inspect idle | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory_mib"])')

echo "runs: $runs"
series "podman+runc run --rm" "${podman_ms[@]}"; podman_med=$last_median
series "moat run --rm" "${moat_ms[@]}"; moat_med=$last_median
ratio "moat/podman" "$moat_med" "$podman_med"
series "moat run --rm, warm pool" "${warm_ms[@]}"; warm_med=$last_median
ratio "warm moat/podman" "$warm_med" "$podman_med"
echo "idle zone PSS:                 $(( pss_kb / 1024 )) MiB (QEMU + supervisor + virtiofsd + passt; guest memory ${memory_mib} MiB)"
while read -r role kb; do printf '  %-28s %s MiB\n' "$role:" "$(( kb / 1024 ))"; done <<<"$split"
