#!/usr/bin/env bash
# A container started in an existing pod (`moat run --rm --pod P IMAGE true`: no zone boot)
# against a fresh `moat run --rm IMAGE true` (its own zone), same image, same run.
#
# Usage: bench/pod-start.sh [RUNS]   (default 5; prints medians and the ratio; target <= 0.5x)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
moat=$(moat_binary)

work=$(mktemp -d /tmp/moat-bench-XXXXXX)
root="$work/root"
cleanup() {
    "$moat" --root "$root" pod rm -f bench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/fixtures/busybox-image.sh "$work/layout"
"$moat" --root "$root" image import "$work/layout" --name moat-bench-busybox:latest >/dev/null
"$moat" --root "$root" pod create --name bench >/dev/null 2>&1

# Warm both paths once (image conversion, the pod's first container sets up its namespaces).
"$moat" --root "$root" run --rm moat-bench-busybox:latest true 2>/dev/null
"$moat" --root "$root" run --rm --pod bench moat-bench-busybox:latest true 2>/dev/null

fresh_ms=(); pod_ms=()
for _ in $(seq "$runs"); do
    start=$(now_ms); "$moat" --root "$root" run --rm moat-bench-busybox:latest true 2>/dev/null; fresh_ms+=( $(( $(now_ms) - start )) )
    start=$(now_ms); "$moat" --root "$root" run --rm --pod bench moat-bench-busybox:latest true 2>/dev/null; pod_ms+=( $(( $(now_ms) - start )) )
done

echo "runs: $runs"
series "moat run --rm, own zone" "${fresh_ms[@]}"; fresh_med=$last_median
series "moat run --rm --pod" "${pod_ms[@]}"; pod_med=$last_median
ratio "pod/fresh" "$pod_med" "$fresh_med" "target <= 0.50x"
