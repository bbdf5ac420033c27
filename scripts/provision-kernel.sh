#!/usr/bin/env bash
# Provision the zone guest kernel from Debian's linux-image-cloud-amd64 into the assets directory.
# Idempotent: does nothing when the resolved kernel package is already unpacked there.
# Only the distribution's repository is used (apt-get download).
set -euo pipefail

assets="${MOAT_ASSETS:-/var/lib/moat/assets}"
meta=linux-image-cloud-amd64

pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
if [ -z "$pkg" ]; then
    echo "provision-kernel: cannot resolve $meta (run apt-get update?)" >&2
    exit 1
fi
release=${pkg#linux-image-}
dest="$assets/kernel/$release"
if [ -f "$dest/release" ] && [ -f "$dest/vmlinuz" ] && [ -f "$dest/lib/modules/$release/modules.dep" ]; then
    echo "kernel $release already provisioned in $dest"
    ln -sfn "$release" "$assets/kernel/debian"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading $pkg with apt-get"
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/root"

staging="$assets/kernel/.staging-$release"
rm -rf "$staging"
mkdir -p "$staging/lib/modules"
cp "$work/root/boot/vmlinuz-$release" "$staging/vmlinuz"
cp -a "$work/root/lib/modules/$release" "$staging/lib/modules/"
depmod -b "$staging" "$release"
dpkg-deb -f "$deb" Version > "$staging/package-version"
echo "$release" > "$staging/release"
rm -rf "$dest"
mv "$staging" "$dest"
ln -sfn "$release" "$assets/kernel/debian"
echo "kernel $release provisioned in $dest"
