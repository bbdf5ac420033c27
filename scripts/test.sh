#!/usr/bin/env bash
# The whole test suite: prepares the machine (as setup does), then lints, unit tests,
# end-to-end tests that boot real zones, and a bounded fuzz run of the host-side decoders.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --no-demo

printf '\n==> clippy\n'
cargo clippy --workspace --all-targets -q -- -D warnings

printf '\n==> tests\n'
# The checker's tests use the static build that setup made, rather than building their own.
export MOAT_CHECK_STATIC="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-gnu/guest/moat-check"
cargo test --workspace

printf '\n==> fuzzing the host-side decoders\n'
scripts/fuzz.sh "${MOAT_FUZZ_SECONDS:-30}"
