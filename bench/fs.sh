#!/usr/bin/env bash
# Reading files through the zone's virtio-fs share against the same EROFS on virtio-blk,
# measured in one zone in the same run.
#
# The image holds /data/tree (10,000 files of 1 KiB in 100 directories) and /data/big (200 MB).
#   blk:       the image's EROFS attached to the zone as a read-only virtio-blk disk at boot
#   root:      the container's own root: that EROFS file from the share, loop-mounted by init,
#              under the container's overlay (how every container gets its image)
#   vfs-erofs: the same EROFS file exposed in the share after boot, loop-mounted in the container
#   vfs-dir:   the unpacked image directory exposed read-only in the share (a volume)
# Per variant and round, with the zone's caches dropped first: walk (du -s: stat every file),
# small (cat every file of the tree), big (cat the 200 MB file). The host's page cache stays
# warm; virtio-blk bypasses it (cache=none), virtiofsd reads through it.
#
# Usage: bench/fs.sh [ROUNDS]   (default 3; prints medians in ms and the ratios to blk)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
. bench/lib.sh
moat=$(moat_binary)

work=$(mktemp -d /tmp/moat-bench-XXXXXX)
root="$work/root"
trap '"$moat" --root "$root" zone rm -f fsb >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The image: busybox plus /data, as one more layer.
tests/fixtures/busybox-image.sh "$work/layout"
umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
data="$work/bundle/rootfs/data"
mkdir -p "$data/tree"
python3 - "$data/tree" <<'PY'
import os, sys
for d in range(100):
    os.mkdir(os.path.join(sys.argv[1], f"d{d:02}"))
    for f in range(100):
        with open(os.path.join(sys.argv[1], f"d{d:02}", f"f{f:02}"), "wb") as out:
            out.write(os.urandom(1024))
PY
head -c 200000000 /dev/urandom > "$data/big"
umoci repack --image "$work/layout:latest" "$work/bundle" >/dev/null
"$moat" --root "$root" image import "$work/layout" --name fsbench:latest >/dev/null

script=$(cat <<EOF
set -e
mkdir -p /mnt/share /mnt/img /mnt/blk
for disk in /sys/block/vd*; do [ "\$(cat \$disk/serial)" = moat-extra-0 ] && mount -t erofs -o ro /dev/\${disk##*/} /mnt/blk; done
mount -t virtiofs moat-share /mnt/share
echo waiting
while [ ! -d /mnt/share/go ]; do sleep 0.1; done
mount -t erofs -o ro,loop /mnt/share/img/image.erofs /mnt/img
ms() { awk '{ printf "%d", \$1 * 1000 }' /proc/uptime; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for round in \$(seq $rounds); do
    for v in blk:/mnt/blk/data root:/data vfs-erofs:/mnt/img/data vfs-dir:/mnt/share/dir; do
        name=\${v%%:*}; dir=\${v#*:}
        [ "\$(find "\$dir/tree" -type f | wc -l)" = 10000 ] || { echo "\$dir: wrong tree"; exit 1; }
        cold; t=\$(ms); du -s "\$dir/tree" > /dev/null; echo "RESULT \$name walk \$(( \$(ms) - t ))"
        cold; t=\$(ms); find "\$dir/tree" -type f -exec cat {} + > /dev/null; echo "RESULT \$name small \$(( \$(ms) - t ))"
        cold; t=\$(ms); cat "\$dir/big" > /dev/null; echo "RESULT \$name big \$(( \$(ms) - t ))"
    done
done
umount /mnt/img /mnt/blk
EOF
)
# The EROFS the image converts to, made by a first run, becomes the zone's virtio-blk disk.
"$moat" --root "$root" run --rm fsbench:latest true >/dev/null 2>&1
erofs=$(find "$root" -name '*.erofs' -size +100M | head -1)
"$moat" --root "$root" zone create --name fsb --memory 1g --attach-disk "$erofs" >/dev/null 2>&1
"$moat" --root "$root" run -d --pod fsb --privileged --allow-privileged-in-pod --name reader fsbench:latest sh -c "$script" >/dev/null 2>&1
deadline=$(( $(date +%s) + 120 ))
until "$moat" --root "$root" logs reader 2>/dev/null | grep -q waiting; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "the container never started" >&2; exit 1; }
    sleep 0.2
done
"$moat" --root "$root" zone expose fsb "$erofs" img/image.erofs --read-only >/dev/null
"$moat" --root "$root" zone expose fsb "$data" dir --read-only >/dev/null
mkdir -p "$work/go"
"$moat" --root "$root" zone expose fsb "$work/go" go --read-only >/dev/null
"$moat" --root "$root" wait reader >/dev/null || { "$moat" --root "$root" logs reader >&2; exit 1; }

results=$("$moat" --root "$root" logs reader | grep '^RESULT')
med() { echo "$results" | awk -v v="$1" -v m="$2" '$2 == v && $3 == m { print $4 }' | median; }
echo "rounds: $rounds (ms, median; 10,000 x 1 KiB files, one 200 MB file; zone caches dropped)"
printf '%-10s %8s %8s %8s\n' variant walk small big
for v in blk root vfs-erofs vfs-dir; do
    printf '%-10s %8s %8s %8s\n' "$v" "$(med "$v" walk)" "$(med "$v" small)" "$(med "$v" big)"
done
for v in root vfs-erofs vfs-dir; do
    awk -v v="$v" -v w="$(med "$v" walk)" -v s="$(med "$v" small)" -v b="$(med "$v" big)" \
        -v bw="$(med blk walk)" -v bs="$(med blk small)" -v bb="$(med blk big)" \
        'BEGIN { printf "ratio %s/blk: walk %.2fx  small %.2fx  big %.2fx\n", v, w / bw, s / bs, b / bb }'
done
