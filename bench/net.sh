#!/usr/bin/env bash
# Networking, moat against podman (runc, its default bridge network) on the same machine, in
# the same run, with the same busybox image:
#   - TCP throughput from a container to a sink on the host (the host's own address);
#   - requests per second to a published port (busybox httpd, ab on the host, 127.0.0.1);
#   - the host CPU the zone's passt spent on the transfer, against its QEMU's.
# Under TCG the zone's side is bound by the emulated guest CPU, not by passt.
#
# Usage: bench/net.sh [RUNS] [MIB]   (default 3 runs of 32 MiB; prints medians and ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
mib="${2:-32}"
. bench/lib.sh
moat=$(moat_binary)
command -v ab >/dev/null || { echo "ab (package apache2-utils) is needed" >&2; exit 1; }

bench_workdir moat-bench-net
root="$WORK/root"
image=moat-bench-busybox:latest
podman_flags=(--runtime runc --cgroup-manager cgroupfs)
run_flags=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
host_ip=$(ip -4 route get 1.1.1.1 | awk '{ for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1) }')
cleanup_net() {
    kill $(jobs -p) 2>/dev/null || true
    "$moat" --root "$root" rm -f web >/dev/null 2>&1 || true
    podman rm -f moat-bench-web >/dev/null 2>&1 || true
    podman rmi -f "localhost/$image" >/dev/null 2>&1 || true
    bench_cleanup
}
trap cleanup_net EXIT

tests/fixtures/busybox-image.sh "$WORK/layout"
"$moat" --root "$root" image import "$WORK/layout" --name "$image" >/dev/null
skopeo copy -q "oci:$WORK/layout:latest" "containers-storage:localhost/$image"

# `sink PORT`: accept one connection on the host and print its throughput in MB/s.
sink() {
    python3 - "$1" <<'PYEOF' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); n = 0; start = None
while True:
    data = c.recv(1 << 20)
    if not data:
        break
    start = start or time.time(); n += len(data)
print(int(n / (time.time() - start) / 1e6 * 10) / 10)
PYEOF
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
send="dd if=/dev/zero bs=1M count=$mib 2>/dev/null | nc $host_ip"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

moat_mbs=(); podman_mbs=(); passt_ticks=0; qemu_ticks=0
for _ in $(seq "$runs"); do
    port=$(free_port); out="$WORK/sink.out"; sink "$port" >"$out"; sleep 0.3
    podman "${podman_flags[@]}" run --rm "${run_flags[@]}" "localhost/$image" sh -c "$send $port"; wait; podman_mbs+=( "$(cat "$out")" )
    port=$(free_port); sink "$port" >"$out"; sleep 0.3
    "$moat" --root "$root" run -d --name web "$image" sh -c "sleep 2; $send $port; sleep 600" >/dev/null 2>&1
    pids=$("$moat" --root "$root" zone inspect web | python3 -c 'import json,sys; p=json.load(sys.stdin)["pids"]; print(p["passt"], p["qemu"])')
    before_passt=$(cpu_ticks "${pids% *}"); before_qemu=$(cpu_ticks "${pids#* }")
    wait; moat_mbs+=( "$(cat "$out")" )
    passt_ticks=$(( passt_ticks + $(cpu_ticks "${pids% *}") - before_passt )); qemu_ticks=$(( qemu_ticks + $(cpu_ticks "${pids#* }") - before_qemu ))
    "$moat" --root "$root" rm -f web >/dev/null 2>&1
done

# Requests per second to a published port.
rps() { ab -q -n 300 -c 4 "http://127.0.0.1:$1/i.txt" 2>/dev/null | awk '/^Requests per second/ { print int($4) }'; }
serve='mkdir -p /w && echo hello > /w/i.txt && exec httpd -f -p 8080 -h /w'
port=$(free_port)
podman "${podman_flags[@]}" run -d --name moat-bench-web "${run_flags[@]}" -p "127.0.0.1:$port:8080" "localhost/$image" sh -c "$serve" >/dev/null
sleep 1; rps "$port" >/dev/null; podman_rps=(); for _ in $(seq "$runs"); do podman_rps+=( "$(rps "$port")" ); done
port=$(free_port)
"$moat" --root "$root" run -d --name web -p "127.0.0.1:$port:8080" "$image" sh -c "$serve" >/dev/null 2>&1
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/i.txt" >/dev/null 2>&1 && break; sleep 0.2; done
rps "$port" >/dev/null; moat_rps=(); for _ in $(seq "$runs"); do moat_rps+=( "$(rps "$port")" ); done

median_of() { printf '%s\n' "$@" | median; }
echo "runs: $runs, $mib MiB per transfer, sink at $host_ip"
printf '%-34s %s  median %s\n' "podman TCP to host (MB/s):" "${podman_mbs[*]}" "$(median_of "${podman_mbs[@]}")"
printf '%-34s %s  median %s\n' "moat TCP to host (MB/s):" "${moat_mbs[*]}" "$(median_of "${moat_mbs[@]}")"
ratio "moat/podman throughput" "$(median_of "${moat_mbs[@]}")" "$(median_of "${podman_mbs[@]}")"
printf '%-34s %s  median %s\n' "podman published port (req/s):" "${podman_rps[*]}" "$(median_of "${podman_rps[@]}")"
printf '%-34s %s  median %s\n' "moat published port (req/s):" "${moat_rps[*]}" "$(median_of "${moat_rps[@]}")"
ratio "moat/podman requests" "$(median_of "${moat_rps[@]}")" "$(median_of "${podman_rps[@]}")"
echo "host CPU during moat's transfers:  passt ${passt_ticks} ticks, QEMU ${qemu_ticks} ticks (of $(getconf CLK_TCK)/s)"
