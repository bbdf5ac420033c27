#!/usr/bin/env bash
# Run the OCI project's runtime-tools validation executables against moat-oci, one at a time
# with a timeout (Perl's `prove` cannot parse their output), and summarise each as pass, fail
# or skip from its TAP lines.
#
# Usage: crates/moat-oci/runtime-tools.sh RUNTIME_TOOLS_DIR [MOAT_OCI] [OUT_DIR]
#   RUNTIME_TOOLS_DIR: a checkout of opencontainers/runtime-tools, built with
#   `make runtimetest validation-executables` (Go >= 1.21; see MACHINE.md for Go 1.26 on Debian 12).
set -uo pipefail
rtt=$(cd "$1" && pwd)
runtime="${2:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/moat-oci}"
out="${3:-$(mktemp -d /tmp/moat-oci-rtt.XXXXXX)}"
mkdir -p "$out"
cd "$rtt"
for test in validation/*/*.t; do
    name=$(basename "$test" .t)
    RUNTIME="$runtime" timeout -s KILL 300 "$test" >"$out/$name.tap" 2>&1
    rc=$?
    ok=$(grep -c '^ok ' "$out/$name.tap"); notok=$(grep -c '^not ok ' "$out/$name.tap")
    skip=$(grep -c '# SKIP' "$out/$name.tap")
    if [ "$rc" = 137 ]; then verdict=timeout
    elif [ "$notok" -gt 0 ] || [ "$rc" != 0 ]; then verdict=fail
    elif [ "$ok" = 0 ] || [ "$ok" = "$skip" ]; then verdict=skip
    else verdict=pass; fi
    printf '%-36s %-8s ok %3s  not-ok %3s  skip %3s  rc %s\n' "$name" "$verdict" "$ok" "$notok" "$skip" "$rc" | tee -a "$out/summary.txt"
done
echo "results in $out"
