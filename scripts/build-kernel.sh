#!/usr/bin/env bash
# Build moat's own zone kernel: kernel/moat.config over `allnoconfig` of Debian's
# linux-source-6.1, as a PVH vmlinux (QEMU boots it without decompressing) plus the modules
# privileged containers load. It lands in ASSETS/kernel/moat-DIGEST, where DIGEST covers the
# config fragment, this script and the source package's version, and ASSETS/kernel/moat points
# at it. Idempotent: a kernel already built for that digest is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

assets="${MOAT_ASSETS:-/var/lib/moat/assets}"
fragment=kernel/moat.config
source_pkg=linux-source-6.1
tarball=/usr/src/$source_pkg.tar.xz

if ! dpkg-query -W -f='${Status}' "$source_pkg" 2>/dev/null | grep -q "ok installed"; then
    echo "build-kernel: $source_pkg is not installed (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
source_version=$(dpkg-query -W -f='${Version}' "$source_pkg")
digest=$( (cat "$fragment" "$0"; echo "$source_version") | sha256sum | cut -c1-12)
dest="$assets/kernel/moat-$digest"
if [ -f "$dest/release" ] && [ -f "$dest/vmlinux" ]; then
    echo "moat kernel $digest already built in $dest"
    ln -sfn "moat-$digest" "$assets/kernel/moat"
    exit 0
fi

jobs=$(nproc)
work="${MOAT_KERNEL_WORK:-/var/tmp/moat-kernel}"
src="$work/$source_pkg-$source_version"
log="$work/build.log"
mkdir -p "$work"
if [ ! -f "$src/Makefile" ]; then
    echo "unpacking $tarball"
    rm -rf "$src" "$work/$source_pkg"
    tar -C "$work" -xf "$tarball"
    mv "$work/$source_pkg" "$src"
fi

# Reproducible: the build's identity comes from the digest, not the machine or the clock.
export KBUILD_BUILD_USER=moat KBUILD_BUILD_HOST=moat KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_TIMESTAMP="Debian $source_version"
make -C "$src" -s allnoconfig KCONFIG_ALLCONFIG="$PWD/$fragment" >"$log" 2>&1

# allnoconfig drops a requested option whose dependencies are unmet; say which, and stop.
missing=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=*) ;; *) continue ;; esac
    if ! grep -qxF "$line" "$src/.config"; then
        echo "build-kernel: $fragment asks for $line, which the configured kernel does not have" >&2
        missing=1
    fi
done < "$fragment"
[ "$missing" = 0 ] || exit 1

echo "building the zone kernel with $jobs jobs (about 10 minutes on 2 cores; log: $log)"
make -C "$src" -j"$jobs" vmlinux modules >>"$log" 2>&1 &
build=$!
while kill -0 "$build" 2>/dev/null; do
    sleep 30
    kill -0 "$build" 2>/dev/null && echo "  kernel build: $(grep -c '^  CC' "$log" || true) files compiled"
done
if ! wait "$build"; then
    tail -n 40 "$log" >&2
    echo "build-kernel: the kernel build failed; the whole log is $log" >&2
    exit 1
fi

release=$(make -C "$src" -s kernelrelease)
staging="$assets/kernel/.staging-moat-$digest"
rm -rf "$staging"
mkdir -p "$staging"
make -C "$src" -s modules_install INSTALL_MOD_PATH="$staging" INSTALL_MOD_STRIP=1 >>"$log" 2>&1
rm -f "$staging/lib/modules/$release/build" "$staging/lib/modules/$release/source"
depmod -b "$staging" "$release"
cp "$src/vmlinux" "$staging/vmlinux"
cp "$src/.config" "$staging/config"
echo "$release" > "$staging/release"
rm -rf "$dest"
mv "$staging" "$dest"
ln -sfn "moat-$digest" "$assets/kernel/moat"
# Kernels of older configs: a running zone keeps the files it opened.
find "$assets/kernel" -maxdepth 1 -name 'moat-*' ! -name "moat-$digest" -exec rm -rf {} +
echo "moat kernel $release built in $dest"
