#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running zone:
# packages, build, guest kernel, then the main job: boot a zone and talk to it, then run a
# container (unprivileged and privileged) from a test image built locally, then a pod of two.
# Pass --no-demo to stop after preparing everything (the test script does).
set -euo pipefail
cd "$(dirname "$0")/.."

demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

step() { printf '\n==> %s\n' "$*"; }

step "installing Debian packages"
scripts/install-deps.sh
step "building moat (release)"
cargo build --release --bins
step "building the static guest binaries"
scripts/build-guest.sh
step "provisioning Debian's guest kernel (the fallback)"
scripts/provision-kernel.sh
step "building moat's guest kernel (once; cached by the digest of kernel/moat.config)"
scripts/build-kernel.sh

[ "$demo" = 1 ] || exit 0

target="${CARGO_TARGET_DIR:-target}"
moat="$target/release/moat"
step "main job: boot a zone and ping its init"
"$moat" zone rm -f demo >/dev/null 2>&1 || true
"$moat" zone create --name demo
"$moat" zone ping demo
"$moat" zone ls
"$moat" zone rm -f demo

step "main job: a container in its own zone (the test image, built from busybox-static)"
image_dir=$(mktemp -d)
tests/fixtures/busybox-image.sh "$image_dir/layout"
"$moat" image import "$image_dir/layout" --name moat-demo/busybox:latest >/dev/null
rm -rf "$image_dir"
echo "\$ moat run --rm moat-demo/busybox grep ^Cap /proc/self/status"
"$moat" run --rm moat-demo/busybox:latest grep ^Cap /proc/self/status
echo "\$ moat run --rm --privileged moat-demo/busybox dmesg | head -1"
"$moat" run --rm --privileged moat-demo/busybox:latest dmesg | head -1

step "main job: a pod, two containers sharing its loopback"
"$moat" pod rm -f demo-pod >/dev/null 2>&1 || true
"$moat" pod create --name demo-pod
"$moat" run -d --pod demo-pod --name demo-web moat-demo/busybox:latest sh -c 'mkdir /www; echo hello from the pod > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www'
echo "\$ moat run --rm --pod demo-pod moat-demo/busybox wget -qO- http://127.0.0.1:8080/"
"$moat" run --rm --pod demo-pod moat-demo/busybox:latest sh -c 'for i in 1 2 3 4 5; do wget -qO- http://127.0.0.1:8080/ && exit; sleep 0.5; done; exit 1'
"$moat" pod rm -f demo-pod
