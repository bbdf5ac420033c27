#!/usr/bin/env bash
# A CI job's image build: the same `buildah bud` (FROM scratch, COPY, a RUN step, under
# --network none) in a privileged moat container against a privileged podman+runc container on
# the host, both from the Debian fixture (tests/fixtures/debian-image.sh), same run. Each build
# is an `exec` into a container already running; the start of each container is printed once.
#
# Usage: bench/ci-build.sh [RUNS]   (default 5; prints medians and the ratio)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
moat=$(moat_binary)

bench_workdir moat-bench-ci
root="$WORK/root"
host_name="moat-bench-ci-$$"
image=localhost/moat-bench-debian:latest
podman_flags=(--runtime runc --cgroup-manager cgroupfs)
cleanup() {
    "$moat" --root "$root" rm -f ci >/dev/null 2>&1 || true
    podman "${podman_flags[@]}" rm -f -v -t 0 "$host_name" >/dev/null 2>&1 || true
    podman rmi -f "$image" >/dev/null 2>&1 || true
    bench_cleanup
}
trap cleanup EXIT

tests/fixtures/debian-image.sh "$WORK/layout"
"$moat" --root "$root" image import "$WORK/layout" --name moat-bench-debian:latest >/dev/null
skopeo copy -q "oci:$WORK/layout:latest" "containers-storage:$image"

start=$(now_ms)
"$moat" --root "$root" run -d --privileged --memory 1g --name ci moat-bench-debian:latest sleep infinity >/dev/null 2>&1
moat_start=$(( $(now_ms) - start ))
start=$(now_ms)
podman "${podman_flags[@]}" run -d --privileged --name "$host_name" --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "$image" sleep infinity >/dev/null
podman_start=$(( $(now_ms) - start ))

prepare='mkdir -p /ctx && cp /bin/busybox /ctx/
printf "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n" > /ctx/Containerfile'
build=(buildah bud --network none -q -t ci-img /ctx)
"$moat" --root "$root" exec ci sh -ec "$prepare"
podman exec "$host_name" sh -ec "$prepare"
# Warm both once (storage set-up on the image's /var/lib/containers volume).
"$moat" --root "$root" exec ci "${build[@]}" >/dev/null
podman exec "$host_name" "${build[@]}" >/dev/null 2>&1

moat_ms=(); podman_ms=()
for _ in $(seq "$runs"); do
    start=$(now_ms); podman exec "$host_name" "${build[@]}" >/dev/null 2>&1; podman_ms+=( $(( $(now_ms) - start )) )
    start=$(now_ms); "$moat" --root "$root" exec ci "${build[@]}" >/dev/null; moat_ms+=( $(( $(now_ms) - start )) )
done

echo "runs: $runs"
echo "container start (once):        moat run -d --privileged ${moat_start} ms, podman+runc run -d --privileged ${podman_start} ms"
series "podman+runc exec buildah bud" "${podman_ms[@]}"; podman_med=$last_median
series "moat exec buildah bud" "${moat_ms[@]}"; moat_med=$last_median
ratio "moat/podman" "$moat_med" "$podman_med"
