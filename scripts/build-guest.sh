#!/usr/bin/env bash
# Build the static guest binaries (glibc with +crt-static; there is no musl target here):
# moat-init, the zone's PID 1, and moat-check, the isolation checker. They land in
# target/x86_64-unknown-linux-gnu/guest/ (the size-optimised `guest` profile), where `moat`
# looks for them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile guest --target x86_64-unknown-linux-gnu -p moat-init -p moat-check "$@"
