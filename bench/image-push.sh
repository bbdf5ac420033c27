#!/usr/bin/env bash
# Benchmark: pushing a 146 MB, 4-layer image to a docker-registry on loopback (htpasswd auth),
# moat against skopeo, in the same run.
#
#   baseline: skopeo copy oci:LAYOUT docker://REGISTRY/skopeo-N   (from the OCI layout)
#   moat:     moat push REGISTRY/moat-N                           (from moat's store)
#
# Each run pushes to a fresh repository, so every blob is sent (moat's image was imported from
# a file, so it knows of no repository to mount from). A second `moat push` of the same image,
# which sends no blob, is timed too. Prints each series, the medians and the ratio
# moat/baseline (target: <= 1.0).
#
# Usage: bench/image-push.sh [RUNS]   (root; needs docker-registry, skopeo, umoci, apache2-utils;
#        builds moat in release mode unless MOAT_BIN points at a binary)
set -euo pipefail
shopt -s inherit_errexit

RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/bench/lib.sh"
bench_workdir moat-bench-push

if [ -z "${MOAT_BIN:-}" ]; then
    (cd "$HERE" && cargo build --release -q -p moat)
    MOAT_BIN=${CARGO_TARGET_DIR:-$HERE/target}/release/moat
fi
moat() { "$MOAT_BIN" --root "$WORK/root" "$@"; }

echo "== building a 4-layer test image in $WORK"
bench_image "$WORK/src" bench
USER=moat-bench PASS=bench-pass
start_registry "$WORK/registry" "$USER" "$PASS"
mkdir -p "$WORK/docker"
printf '{"auths":{"%s":{"auth":"%s"}}}' "$REGISTRY" "$(printf %s "$USER:$PASS" | base64 -w0)" >"$WORK/docker/config.json"
export DOCKER_CONFIG=$WORK/docker
moat image import "$WORK/src" --name "$REGISTRY/bench:src" >/dev/null
echo "image: $(du -sm "$WORK/src/blobs" | cut -f1) MB of blobs, 4 layers"

baseline=() pushes=() again=()
echo "== $RUNS runs each, alternating"
for r in $(seq 1 "$RUNS"); do
    sync; t0=$(now_ms)
    skopeo --insecure-policy copy -q --dest-tls-verify=false --dest-creds "$USER:$PASS" "oci:$WORK/src:bench" "docker://$REGISTRY/skopeo-$r:latest"
    baseline+=($(( $(now_ms) - t0 )))

    moat image tag "$REGISTRY/bench:src" "$REGISTRY/moat-$r:latest"
    sync; t0=$(now_ms)
    out=$(moat push --quiet "$REGISTRY/moat-$r:latest")
    pushes+=($(( $(now_ms) - t0 )))
    case "$out" in *"uploaded 5 blobs"*) ;; *) echo "unexpected push report: $out" >&2; exit 1 ;; esac

    t0=$(now_ms)
    out=$(moat push --quiet "$REGISTRY/moat-$r:latest")
    again+=($(( $(now_ms) - t0 )))
    case "$out" in *"uploaded 0 blobs"*) ;; *) echo "a second push sent blobs: $out" >&2; exit 1 ;; esac
done
digest=$(skopeo inspect --tls-verify=false --creds "$USER:$PASS" "docker://$REGISTRY/moat-1:latest" | awk -F'"' '/"Digest"/ {print $4; exit}')
[ "$digest" = "$(moat image inspect "$REGISTRY/bench:src" | awk -F'"' '/"manifest_digest"/ {print $4}')" ] || { echo "the registry's digest differs from the store's" >&2; exit 1; }

series "skopeo copy oci: -> registry" "${baseline[@]}"; base=$last_median
series "moat push" "${pushes[@]}"; pushed=$last_median
series "moat push again (no blob)" "${again[@]}"
ratio "moat push / skopeo copy" "$pushed" "$base" "target <= 1.00"
