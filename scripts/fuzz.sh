#!/usr/bin/env bash
# Run every fuzz target for N seconds each (default 30), on stable Rust without sanitizers.
# The budget is per target: `scripts/fuzz.sh 720` runs the five targets for an hour in all.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install --locked -q cargo-fuzz
fi
cd fuzz
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    seeds="corpus-seed/$target"
    [ -d "$seeds" ] || seeds=""
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run -s none "$target" "corpus/$target" $seeds -- -max_total_time="$seconds" -max_len=65536
done
