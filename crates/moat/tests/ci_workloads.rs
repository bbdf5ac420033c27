//! A CI job's userland in a privileged container (the Debian fixture, default storage
//! settings): the kernel objects it makes without a manual modprobe, none of them on the host;
//! an image built with buildah; nested podman with crun and runc; and a nested memory limit
//! whose OOM kill ends the nested container only. One zone holds every step.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{stdout, Moat, DEBIAN};

const NAME: &str = "ci";

/// A `FROM scratch` image: busybox copied in, its applets made by a RUN step, so a nested run of
/// `echo` proves the RUN step happened.
const CONTAINERFILE: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"#;

/// Run `script` with `sh -e` in the container; insist on success and return stdout.
fn in_ci(moat: &Moat, script: &str) -> String {
    let started = Instant::now();
    let out = moat.run(&["exec", NAME, "sh", "-ec", script]);
    eprintln!("{:.1} s: {}", started.elapsed().as_secs_f64(), script.lines().next().unwrap_or_default());
    assert!(out.status.success(), "{script}\nfailed: {}\nstdout:\n{}\nstderr:\n{}", out.status, stdout(&out), common::stderr(&out));
    stdout(&out)
}

/// A host command's stdout; the host must have the tool (scripts/apt-packages.txt installs it).
fn host(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program} on the host: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed on the host: {}", String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

/// The host's links, nftables ruleset (without counters, which move) and iptables NAT rules.
fn host_network() -> [String; 3] {
    [host("ip", &["-o", "link"]), host("nft", &["-s", "list", "ruleset"]), host("iptables-save", &["-t", "nat"])]
}

/// Lines of `after` that `before` lacks.
fn added<'a>(before: &str, after: &'a str) -> Vec<&'a str> {
    after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect()
}

#[test]
fn a_ci_userland_builds_nests_and_makes_kernel_objects_that_stay_in_its_zone() {
    let started = Instant::now();
    let moat = Moat::new();
    moat.ok(&["image", "import", &common::debian_layout().to_string_lossy(), "--name", DEBIAN]);
    eprintln!("fixture and import: {:.1} s", started.elapsed().as_secs_f64());
    let host_before = host_network();
    moat.ok(&["run", "-d", "--privileged", "--memory", "1g", "--name", NAME, DEBIAN, "sleep", "infinity"]);

    // No modprobe before these: the zone's kernel asks init's modprobe for each module.
    let kernel = in_ci(
        &moat,
        "echo \"loaded before: $(grep -c -E '^(bridge|veth|nf_tables|tun) ' /proc/modules || true)\"
ip link add br0 type bridge
ip link add v0 type veth peer name v1
nft add table inet t
iptables -t nat -A POSTROUTING -j MASQUERADE
echo \"loaded after: $(grep -o -E '^(bridge|veth|nf_tables|nft_chain_nat|xt_MASQUERADE) ' /proc/modules | sort | tr -d '\\n')\"
echo \"links: $(ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' ' | sort | tr '\\n' ' ')\"
echo \"nft: $(nft list tables | grep -x 'table inet t')\"
echo \"iptables: $(iptables -t nat -S POSTROUTING | grep -x -- '-A POSTROUTING -j MASQUERADE')\"
[ -e /dev/net/tun ] || echo 'tun: absent'
modprobe tun
[ -c /dev/net/tun ] && echo 'tun: appeared'",
    );
    assert_eq!(
        kernel.lines().collect::<Vec<_>>(),
        [
            "loaded before: 0",
            "loaded after: bridge nf_tables nft_chain_nat veth xt_MASQUERADE ",
            "links: br0 eth0 lo v0 v1 ",
            "nft: table inet t",
            "iptables: -A POSTROUTING -j MASQUERADE",
            "tun: absent",
            "tun: appeared",
        ]
    );
    // Whatever else changed on this shared host meanwhile, none of the zone's objects is there.
    let host_after = host_network();
    let [links, ruleset, nat] = [0, 1, 2].map(|i| added(&host_before[i], &host_after[i]));
    let link_name = |l: &&str| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or_default().to_string()).unwrap_or_default();
    assert!(!links.iter().any(|l| ["br0", "v0", "v1"].contains(&link_name(l).as_str())), "the zone's links show on the host: {links:?}");
    assert!(!ruleset.iter().any(|l| l.trim() == "table inet t {"), "the zone's nftables table shows on the host: {ruleset:?}");
    assert!(!nat.contains(&"-A POSTROUTING -j MASQUERADE"), "the zone's NAT rule shows on the host: {nat:?}");

    // buildah with the default storage (overlay on the image's /var/lib/containers volume, on
    // the zone's ext4), the RUN step without a network.
    let containerfile = CONTAINERFILE.replace('\n', "\\n").replace('"', "\\\"");
    let built = in_ci(
        &moat,
        &format!(
            "mkdir -p /ctx && cp /bin/busybox /ctx/
printf \"{containerfile}\" > /ctx/Containerfile
buildah bud --network none -q -t ci-img /ctx >/dev/null
echo \"driver: $(buildah info --format '{{{{.store.GraphDriverName}}}}')\"
echo \"images: $(buildah images --format '{{{{.Name}}}}:{{{{.Tag}}}}' | tr '\\n' ' ')\""
        ),
    );
    assert_eq!(built, "driver: overlay\nimages: localhost/ci-img:latest \n");

    // Nested podman with each runtime; `echo` is one of the RUN step's links.
    let nested = in_ci(
        &moat,
        "for runtime in crun runc; do
podman run --name nested-$runtime --runtime $runtime --network none localhost/ci-img echo \"hello from $runtime\"
echo \"ran with: $(podman inspect -f '{{.OCIRuntime}}' nested-$runtime)\"
podman rm nested-$runtime >/dev/null
done",
    );
    assert_eq!(nested, "hello from crun\nran with: crun\nhello from runc\nran with: runc\n");

    // Past its 64 MiB, the nested container is OOM-killed: 137, and the outer one carries on.
    let oom = moat.run(&[
        "exec",
        NAME,
        "podman",
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        "localhost/ci-img",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max; dd if=/dev/zero of=/dev/null bs=100M count=1",
    ]);
    assert_eq!((oom.status.code(), stdout(&oom).as_str()), (Some(137), "67108864\n"), "{}", common::stderr(&oom));
    assert_eq!(in_ci(&moat, "echo \"outer: $(cat /proc/1/comm)\""), "outer: sleep\n");
    assert!(moat.ok(&["ps"]).lines().any(|l| l.ends_with(&format!(" {NAME}")) && l.contains("Up")), "the outer container carried on");

    moat.ok(&["rm", "-f", NAME]);
    moat.assert_nothing_running();
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
