#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running zone:
# packages, build, guest kernel, then the main job (boot a zone and talk to it).
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
step "provisioning the guest kernel"
scripts/provision-kernel.sh

[ "$demo" = 1 ] || exit 0

target="${CARGO_TARGET_DIR:-target}"
moat="$target/release/moat"
step "main job: boot a zone and ping its init"
"$moat" zone rm -f demo >/dev/null 2>&1 || true
"$moat" zone create --name demo
"$moat" zone ping demo
"$moat" zone ls
"$moat" zone rm -f demo
