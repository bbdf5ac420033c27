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

# `root_processes ROOT`: pids of the processes whose command line names ROOT, and of their
# children (passt and virtiofsd's sandbox do not name it), one per line.
root_processes() {
    ps -eo pid=,ppid=,args= | ROOT="$1" awk '
        { pid[NR] = $1; ppid[NR] = $2; if (index($0, ENVIRON["ROOT"])) mine[$1] = 1 }
        END { for (i = 1; i <= NR; i++) if (mine[pid[i]] || mine[ppid[i]]) print pid[i] }'
}

# `remove_zones MOAT ROOT`: force-remove every zone of ROOT and lazily unmount what is left under it.
remove_zones() {
    local zone
    for zone in $(ls "$2/zones" 2>/dev/null); do "$1" --root "$2" zone rm -f "$zone" >/dev/null 2>&1 || true; done
    grep -o " $2[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# `check_leaks ROOT PIDS_FILE ZONE_IDS_FILE`, once every zone of ROOT is gone: reports what is
# left (a zone directory, scratch disk or temporary file under ROOT, a process of ROOT or one seen
# in PIDS_FILE, a mount under ROOT, a moat-ZONE cgroup of a zone in ZONE_IDS_FILE); fails if any.
check_leaks() {
    local root="$1" pid cmdline path mount id dir leaks=()
    sleep 3  # killed QEMUs get their 3 s to go
    for pid in $( (sort -u "$2" 2>/dev/null; root_processes "$root") | sort -u); do
        cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-120) || true
        [ -n "$cmdline" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] && leaks+=("process $pid: $cmdline")
    done
    while read -r path; do leaks+=("zone file $path"); done < <(find "$root/zones" -mindepth 1 ! -name .lock)
    while read -r path; do leaks+=("scratch file $path"); done < <(find "$root" -name 'scratch*' ; find "$root/images/tmp" -mindepth 1)
    while read -r mount; do leaks+=("mount $mount"); done < <(grep -o " $root[^ ]*" /proc/self/mountinfo || true)
    for id in $(sort -u "$3" 2>/dev/null | grep -v '^\.lock$'); do
        while read -r dir; do leaks+=("cgroup $dir"); done < <(find /sys/fs/cgroup -maxdepth 5 -type d -name "moat-$id")
    done
    echo "zones, processes seen:         $(sort -u "$3" 2>/dev/null | grep -cv '^\.lock$' || true), $(sort -u "$2" 2>/dev/null | wc -l)"
    if [ "${#leaks[@]}" -gt 0 ]; then
        echo "LEAKED (${#leaks[@]}):"
        printf '  %s\n' "${leaks[@]}" | head -40
        return 1
    fi
    echo "leaks:                         none (zone dirs, scratch files, processes, mounts, cgroups)"
}

# `zone_pss MOAT ROOT ZONE`: the PSS in KiB of each host process of the zone, as lines
# "ROLE KIB": qemu, supervisor, virtiofsd (with the sandboxed child it forks), and passt when
# the zone has a network.
zone_pss() {
    local qemu supervisor virtiofsd passt
    read -r qemu supervisor virtiofsd passt < <("$1" --root "$2" zone inspect "$3" | python3 -c 'import json,sys; p=json.load(sys.stdin)["pids"]; print(p["qemu"], p["supervisor"], p["virtiofsd"], p["passt"] or "")')
    pss_kb() { local pid kb=0; for pid in "$@"; do kb=$(( kb + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup") )); done; echo "$kb"; }
    echo "qemu $(pss_kb "$qemu")"
    echo "supervisor $(pss_kb "$supervisor")"
    echo "virtiofsd $(pss_kb "$virtiofsd" $(pgrep -P "$virtiofsd"))"
    [ -z "$passt" ] || echo "passt $(pss_kb "$passt")"
}
