#!/usr/bin/env bash
# Through containerd's CRI: RunPodSandbox, then CreateContainer and StartContainer until CRI
# reports the container running, with the runtime handler `moat` against containerd's default
# runc. One private containerd (in a network namespace of its own, with a CNI bridge) serves
# both, alternating in the same run; the pods are removed between runs, untimed.
#
# Usage: bench/cri.sh [RUNS]   (default 5; prints medians and the ratio moat/runc)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
. bench/lib.sh
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p containerd-shim-moat --bins --examples
shim_dir="$(pwd)/$target/release"
client="$shim_dir/examples/cri_start"

bench_workdir moat-bench-cri
containerd_pid=
stop_containerd() {
    if [ -n "$containerd_pid" ]; then kill "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null || true; fi
    umount -R -l "$WORK/root" 2>/dev/null || true
    bench_cleanup
}
trap stop_containerd EXIT

# containerd's defaults made private to $WORK, as the shim's tests do (crates/containerd-shim-moat/tests/common).
image=docker.io/moat-bench/busybox
containerd config default | sed \
    -e "s|^root = .*|root = \"$WORK/root\"|" \
    -e "s|^state = .*|state = \"$WORK/state\"|" \
    -e "s|address = \"/run/containerd/containerd.sock\"|address = \"$WORK/containerd.sock\"|" \
    -e "s|sandbox_image = .*|sandbox_image = \"$image:pause\"|" \
    -e "s|bin_dir = \"/opt/cni/bin\"|bin_dir = \"/usr/lib/cni\"|" \
    -e "s|conf_dir = \"/etc/cni/net.d\"|conf_dir = \"$WORK/cni\"|" \
    -e "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|" \
    -e 's|^\( *\)\[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc\]$|\1[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.moat]\n\1  runtime_type = "io.containerd.moat.v2"\n&|' \
    >"$WORK/config.toml"
mkdir -p "$WORK/cni" "$WORK/logs"
cat >"$WORK/cni/10-bench.conflist" <<'CNI'
{"cniVersion":"0.4.0","name":"moat-bench","plugins":[{"type":"bridge","bridge":"moatbench0","isGateway":true,"ipMasq":false,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.78.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}}]}
CNI
# containerd 1.6 finds a CRI runtime's shim on its PATH only.
PATH="$shim_dir:$PATH" MOAT_ROOT="$WORK/moat" unshare --net sh -c 'ip link set lo up && exec containerd --config "$0"' "$WORK/config.toml" >"$WORK/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 1 200); do [ -S "$WORK/containerd.sock" ] && break; sleep 0.1; done

tests/fixtures/busybox-image.sh "$WORK/layout" >/dev/null
umoci config --image "$WORK/layout:latest" --tag pause --config.cmd sleep --config.cmd 1000000 >/dev/null
tar -C "$WORK/layout" -cf "$WORK/busybox.tar" .
ctr --address "$WORK/containerd.sock" -n k8s.io images import --base-name "$image" "$WORK/busybox.tar" >/dev/null

start_pods() { "$client" "$WORK/containerd.sock" "$1" "$image:latest" "$WORK/logs" "$2"; }

# Warm both paths once.
start_pods "" 1 >/dev/null; start_pods moat 1 >/dev/null

runc_ms=(); moat_ms=()
for _ in $(seq "$runs"); do
    runc_ms+=( "$(start_pods "" 1)" )
    moat_ms+=( "$(start_pods moat 1)" )
done
series "CRI pod + container, runc" "${runc_ms[@]}"; runc_median=$last_median
series "CRI pod + container, moat" "${moat_ms[@]}"; moat_median=$last_median
ratio "moat/runc" "$moat_median" "$runc_median" "a zone boot per pod, TCG"
