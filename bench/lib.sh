# Shared by the benchmark scripts: the binary, a scratch directory, a millisecond clock, the
# median of numbers on stdin, and the report lines (each series with its median, the ratio).
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

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
