#!/usr/bin/env bash
# Benchmark: pushing a 4-layer image (146 MB unpacked, 74 MB of blobs) to a docker-registry on loopback (htpasswd auth),
# moat against skopeo, in the same run.
#
#   baseline: skopeo copy oci:LAYOUT docker://REGISTRY/skopeo-N   (from the OCI layout)
#   moat:     moat push REGISTRY/moat-N                           (from moat's store)
#
# Each push goes to a fresh registry, so every blob is sent. A second `moat push` of the same image,
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
mkdir -p "$WORK/docker"
export DOCKER_CONFIG=$WORK/docker
moat image import "$WORK/src" --name bench/src:latest >/dev/null
echo "image: $(du -sm "$WORK/src/blobs" | cut -f1) MB of blobs, 4 layers"

# A registry of its own for each push: neither tool can mount what an earlier push left, and
# skopeo's blob-info cache (which remembers where it sent blobs) names only registries gone.
fresh_registry() { # $1 = name
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true; fi
    rm -rf "$WORK/registry"
    start_registry "$WORK/registry" "$USER" "$PASS"
    printf '{"auths":{"%s":{"auth":"%s"}}}' "$REGISTRY" "$(printf %s "$USER:$PASS" | base64 -w0)" >"$WORK/docker/config.json"
}

baseline=() pushes=() again=()
echo "== $RUNS runs each, alternating"
for r in $(seq 1 "$RUNS"); do
    fresh_registry
    sync; t0=$(now_ms)
    skopeo --insecure-policy copy -q --dest-tls-verify=false --dest-creds "$USER:$PASS" "oci:$WORK/src:bench" "docker://$REGISTRY/bench:latest"
    baseline+=($(( $(now_ms) - t0 )))

    fresh_registry
    moat image tag bench/src:latest "$REGISTRY/bench:latest"
    sync; t0=$(now_ms)
    out=$(moat push --quiet "$REGISTRY/bench:latest")
    pushes+=($(( $(now_ms) - t0 )))
    case "$out" in *"uploaded 5 blobs"*) ;; *) echo "unexpected push report: $out" >&2; exit 1 ;; esac

    t0=$(now_ms)
    out=$(moat push --quiet "$REGISTRY/bench:latest")
    again+=($(( $(now_ms) - t0 )))
    case "$out" in *"uploaded 0 blobs"*) ;; *) echo "a second push sent blobs: $out" >&2; exit 1 ;; esac
    digest=$(skopeo inspect --tls-verify=false --creds "$USER:$PASS" "docker://$REGISTRY/bench:latest" | awk -F'"' '/"Digest"/ {print $4; exit}')
    [ "$digest" = "$(moat image inspect bench/src:latest | awk -F'"' '/"manifest_digest"/ {print $4}')" ] || { echo "the registry's digest differs from the store's" >&2; exit 1; }
done

series "skopeo copy oci: -> registry" "${baseline[@]}"; base=$last_median
series "moat push" "${pushes[@]}"; pushed=$last_median
series "moat push again (no blob)" "${again[@]}"
ratio "moat push / skopeo copy" "$pushed" "$base" "target <= 1.00"
