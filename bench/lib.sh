# Shared by the benchmark scripts: the binary, a scratch directory, a millisecond clock, the
# median of numbers on stdin, and the report lines (each series with its median, the ratio).
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The release build of moat, or a hint to make it.
moat_binary() {
    local moat="${CARGO_TARGET_DIR:-target}/release/moat"
    [ -x "$moat" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
    echo "$moat"
}

# `series LABEL VALUE...`: the values and their median, which it also leaves in $last_median.
series() {
    local label="$1"; shift
    last_median=$(printf '%s\n' "$@" | median)
    printf '%-30s %s  median %s\n' "$label (ms):" "$*" "$last_median"
}

# `ratio LABEL NUMERATOR DENOMINATOR [NOTE]`
ratio() {
    awk -v l="$1" -v a="$2" -v b="$3" -v n="${4:-}" 'BEGIN { printf "%-30s %.2fx%s\n", "ratio " l ":", a / b, (n == "" ? "" : " (" n ")") }'
}

# `bench_image LAYOUT TAG`: an OCI layout holding a 4-layer image of about 146 MB unpacked
# (random, compressible and small files, and busybox), as image-convert.sh and image-push.sh use.
bench_image() {
    local layout="$1" tag="$2" bundle
    bundle=$(mktemp -d)
    umoci init --layout "$layout" >/dev/null
    umoci new --image "$layout:$tag" >/dev/null
    for n in 1 2 3 4; do
        local dir=$bundle/b/rootfs/layer$n
        umoci unpack --image "$layout:$tag" "$bundle/b" >/dev/null
        mkdir -p "$dir/random" "$dir/text" "$dir/small" "$bundle/b/rootfs/bin"
        for i in $(seq 1 12); do head -c $((1536 * 1024)) /dev/urandom >"$dir/random/blob$i.bin"; done
        for i in $(seq 1 8); do
            head -c $((1536 * 1024)) < <(yes "layer $n line of very compressible configuration text, number $i") >"$dir/text/file$i.txt"
        done
        for i in $(seq 1 1500); do printf 'small file %d of layer %d\n' "$i" "$n" >"$dir/small/f$i"; done
        [ "$n" = 1 ] && cp /bin/busybox "$bundle/b/rootfs/bin/busybox"
        umoci repack --image "$layout:$tag" "$bundle/b" >/dev/null
        rm -rf "$bundle/b"
    done
    umoci config --image "$layout:$tag" --config.cmd /bin/busybox >/dev/null
    rm -rf "$bundle"
}

# `start_registry DIR [USER PASS]`: a docker-registry on a free loopback port, storing under DIR,
# with htpasswd auth when given a user. Sets REGISTRY_PID and REGISTRY (host:port).
start_registry() {
    local dir="$1" port
    port=$((30000 + RANDOM % 20000))
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((30000 + RANDOM % 20000)); done
    mkdir -p "$dir"
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$dir/data" "$port" >"$dir/registry.yml"
    if [ $# -ge 3 ]; then
        htpasswd -Bbc "$dir/htpasswd" "$2" "$3" 2>/dev/null
        printf 'auth:\n  htpasswd:\n    realm: moat-bench\n    path: %s\n' "$dir/htpasswd" >>"$dir/registry.yml"
    fi
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    REGISTRY=127.0.0.1:$port
}

# `bench_workdir PREFIX`: a scratch directory in $WORK, removed on exit with the registry that
# start_registry started, keeping the script's exit status.
bench_workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    REGISTRY_PID=
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local rc=$?
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit "$rc"
}
