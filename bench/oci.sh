#!/usr/bin/env bash
# `podman --runtime moat-oci run --rm IMAGE true` against `podman --runtime runc run --rm IMAGE
# true`: the same podman, the same image and storage, alternating in the same run.
#
# Usage: bench/oci.sh [RUNS]   (default 5; prints medians and the ratio moat-oci/runc)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p moat-oci
oci="$(pwd)/$target/release/moat-oci"

bench_workdir moat-bench-oci
tests/fixtures/busybox-image.sh "$WORK/layout"
storage=(--root "$WORK/storage" --runroot "$WORK/run" --cgroup-manager cgroupfs)
image=localhost/moat-bench-oci/busybox:latest
skopeo copy -q "oci:$WORK/layout:latest" "containers-storage:[overlay@$WORK/storage+$WORK/run]$image"
# runc here needs these limits (the host lacks CAP_SYS_RESOURCE); moat-oci takes them as given.
run_flags=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
with_runc() { podman "${storage[@]}" --runtime runc run --rm "${run_flags[@]}" "$image" true; }
with_moat() { podman "${storage[@]}" --runtime "$oci" run --rm "${run_flags[@]}" "$image" true 2>/dev/null; }

# Warm both paths once.
with_runc; with_moat

runc_ms=(); moat_ms=()
for _ in $(seq "$runs"); do
    start=$(now_ms); with_runc; runc_ms+=( $(( $(now_ms) - start )) )
    start=$(now_ms); with_moat; moat_ms+=( $(( $(now_ms) - start )) )
done
series "podman + runc" "${runc_ms[@]}"; runc_median=$last_median
series "podman + moat-oci" "${moat_ms[@]}"; moat_median=$last_median
ratio "moat-oci/runc" "$moat_median" "$runc_median" "a zone boot per container, TCG"
