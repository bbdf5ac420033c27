#!/usr/bin/env bash
# Benchmark: registry image -> flattened EROFS, moat versus the pipeline a user would script.
#
#   baseline: skopeo copy docker://… oci:DIR  ->  umoci unpack  ->  mkfs.erofs
#   moat:     moat image pull …                 (download, verify, flatten, mkfs.erofs)
#
# Both start from the same multi-layer image (>= 100 MB uncompressed, built here from random
# and compressible files) served by a docker-registry on loopback, both produce an EROFS
# image with the same mkfs.erofs options, and each run starts from an empty cache. Prints the
# median of RUNS timings for each and the ratio moat/baseline (target: <= 1.0).
#
# Usage: bench/image-convert.sh [RUNS]   (root; needs docker-registry, skopeo, umoci,
#        erofs-utils; builds moat in release mode unless MOAT_BIN points at a binary)
set -euo pipefail
shopt -s inherit_errexit

RUNS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=bench/lib.sh
source "$HERE/bench/lib.sh"
bench_workdir moat-bench-image
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
if [ -n "${MOAT_BIN:-}" ]; then
    pull() { "$MOAT_BIN" --root "$1" image pull --quiet "$2"; }
elif (cd "$HERE" && cargo build --release -q -p moat); then
    pull() { "$TARGET/release/moat" --root "$1" image pull --quiet "$2"; }
else
    # The same library call `moat image pull` makes, when another crate keeps the CLI from building.
    echo "warning: the moat binary does not build; timing moat-image's examples/pull.rs instead" >&2
    (cd "$HERE" && cargo build --release -q -p moat-image --example pull)
    pull() { "$TARGET/release/examples/pull" "$1" "$2"; }
fi

echo "== building a multi-layer test image in $WORK"
bench_image "$WORK/src" bench
start_registry "$WORK/registry"
REF=$REGISTRY/bench:latest
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/src:bench" "docker://$REF"
rm -rf "$WORK/src"

UUID=01234567-89ab-cdef-0123-456789abcdef
now() { date +%s.%N; }
baseline_once() { # $1 = run
    local d=$WORK/base$1 t0 t1
    mkdir -p "$d"
    sync; t0=$(now)
    skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$REF" "oci:$d/oci:bench"
    umoci unpack --image "$d/oci:bench" "$d/bundle" >/dev/null
    mkfs.erofs --quiet -T0 -U"$UUID" "$d/image.erofs" "$d/bundle/rootfs" >/dev/null
    t1=$(now)
    du -sm "$d/bundle/rootfs" | cut -f1 >"$WORK/size"
    rm -rf "$d"
    echo "$t1 - $t0" | bc
}
moat_once() { # $1 = run
    local d=$WORK/moat$1 t0 t1
    sync; t0=$(now)
    pull "$d" "$REF" >/dev/null
    t1=$(now)
    rm -rf "$d"
    echo "$t1 - $t0" | bc
}

echo "== $RUNS runs each, alternating"
: >"$WORK/base.times"; : >"$WORK/moat.times"
for r in $(seq 1 "$RUNS"); do
    b=$(baseline_once "$r"); m=$(moat_once "$r")
    echo "run $r: baseline ${b}s  moat ${m}s"
    echo "$b" >>"$WORK/base.times"; echo "$m" >>"$WORK/moat.times"
done
B=$(median <"$WORK/base.times"); M=$(median <"$WORK/moat.times")
echo "image: $(cat "$WORK/size") MB unpacked, 4 layers"
printf 'median baseline (skopeo+umoci+mkfs.erofs): %.2fs\n' "$B"
printf 'median moat image pull:                    %.2fs\n' "$M"
printf 'ratio moat/baseline: %.2fx (target <= 1.00)\n' "$(echo "$M / $B" | bc -l)"
