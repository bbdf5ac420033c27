//! What a privileged workload may do to its zone's kernel (loop devices and filesystems,
//! network interfaces, kernel modules, the kernel log, nested namespaces), each checked from the
//! host while the workload still holds it: none of it reaches the host.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{stdout, Moat, BUSYBOX};

/// How long a zone may take to boot and run a script's setup under TCG.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Printed once the script's setup is done; the workload then idles until stopped, so the host
/// can look for leaks while everything it made still exists.
const READY: &str = "ready";

/// The script, then a wait that `moat stop` ends with SIGTERM.
fn holding(script: &str) -> String {
    format!("set -e\n{script}\ntrap 'exit 0' TERM\necho {READY}\nwhile :; do sleep 1; done\n")
}

/// Run `script` privileged and detached, call `while_running` once it printed [`READY`], then
/// stop it; returns its stdout lines before the ready line.
fn run_privileged(moat: &Moat, name: &str, script: &str, while_running: impl FnOnce()) -> Vec<String> {
    moat.ok(&["run", "-d", "--privileged", "--name", name, BUSYBOX, "sh", "-c", &holding(script)]);
    let deadline = Instant::now() + READY_TIMEOUT;
    let lines = loop {
        let out = moat.run(&["logs", name]);
        let text = stdout(&out);
        if text.lines().any(|l| l == READY) {
            break text.lines().take_while(|l| *l != READY).map(str::to_string).collect::<Vec<_>>();
        }
        let finished = moat.ok(&["ps", "-a"]).lines().any(|l| l.contains(name) && l.contains("Exited"));
        assert!(!finished && Instant::now() < deadline, "{name} never got ready; stdout:\n{text}\nstderr:\n{}", common::stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    while_running();
    moat.ok(&["stop", name]);
    assert_eq!(moat.ok(&["wait", name]).trim(), "0", "{name} ends cleanly on stop");
    moat.ok(&["rm", name]);
    moat.assert_nothing_running();
    lines
}

/// The host's loop devices' backing files.
fn host_loop_backing_files() -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            files.push(file.trim().to_string());
        }
    }
    files
}

fn host_has(path: &str) -> bool {
    Path::new(path).exists()
}

fn host_proc_modules() -> String {
    std::fs::read_to_string("/proc/modules").unwrap_or_default()
}

#[test]
fn privileged_workload_mounts_a_loop_device_it_formatted() {
    let moat = Moat::with_busybox();
    let probe = format!("moat-probe-{}.img", std::process::id());
    // As on a Docker host, the zone has its loop devices before the container starts: no
    // modprobe, no mknod. busybox's `losetup -f FILE` takes the first free device through
    // /dev/loop-control and prints nothing (it has no --show), so `losetup -a` names it.
    let script = format!(
        "echo \"control: $(ls /dev/loop-control)\"
dd if=/dev/zero of=/tmp/{probe} bs=1M count=8 2>/dev/null
losetup -f /tmp/{probe}
dev=$(losetup -a | grep -F {probe} | cut -d: -f1)
echo \"device: $dev backing: $(cat /sys/block/${{dev#/dev/}}/loop/backing_file)\"
mke2fs $dev >/dev/null 2>&1
mkdir -p /mnt/probe
mount -t ext2 $dev /mnt/probe
echo hello > /mnt/probe/file
echo \"mounted: $(grep ' /mnt/probe ' /proc/mounts | cut -d' ' -f1,3) $(cat /mnt/probe/file)\""
    );
    let started = Instant::now();
    let lines = run_privileged(&moat, "loopfs", &script, || {
        let backing = host_loop_backing_files();
        assert!(!backing.iter().any(|f| f.contains(&probe)), "the host's loop devices show the zone's file: {backing:?}");
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(!mounts.contains("/mnt/probe"), "the zone's mount shows on the host");
    });
    eprintln!("loop device test: {:.1} s", started.elapsed().as_secs_f64());
    // The zone's first loop device holds the container's own image (from the zone's share), so
    // the container gets the next free one.
    let device = lines.get(1).and_then(|l| l.strip_prefix("device: ")).and_then(|l| l.split(' ').next()).unwrap_or_default().to_string();
    assert!(device.starts_with("/dev/loop") && device != "/dev/loop", "{lines:?}");
    assert_eq!(
        lines,
        ["control: /dev/loop-control".to_string(), format!("device: {device} backing: /tmp/{probe}"), format!("mounted: {device} ext2 hello")]
    );
}

#[test]
fn privileged_workload_loads_modules_adds_interfaces_reads_dmesg_and_nests() {
    let moat = Moat::with_busybox();
    let modules_before = host_proc_modules();
    let host_had = |name: &str| host_has(&format!("/sys/module/{name}"));
    let (had_dummy, had_veth) = (host_had("dummy"), host_had("veth"));
    let interfaces = ["mprobe0", "mprobe1", "veth0"];
    let host_interfaces_before: Vec<bool> = interfaces.iter().map(|i| host_has(&format!("/sys/class/net/{i}"))).collect();
    assert!(!host_interfaces_before[0] && !host_interfaces_before[1], "the host already has a probe interface");

    // busybox's ip names a veth's peer veth0 whatever it is asked.
    let script = "modprobe dummy
modprobe veth
echo \"modules: $(grep -o '^dummy ' /proc/modules)$(grep -o '^veth ' /proc/modules)\"
ip link add mprobe0 type dummy
ip link add mprobe1 type veth
ip addr add 10.213.0.1/24 dev mprobe0
ip link set mprobe0 up
echo \"links: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\\n' ' ')\"
echo \"address: $(ip -o -4 addr show mprobe0 | grep -o '10.213.0.1/24')\"
echo \"dmesg: $(dmesg | grep -o -m1 'Linux version [^ ]*')\"
before=$(hostname)
unshare -U -r -m -u -i -n -p -f --mount-proc sh -c 'hostname nested; echo \"nested: $(hostname) pid=$$ uid=$(id -u) links=$(ip -o link | wc -l)\"'
[ \"$(hostname)\" = \"$before\" ] && echo 'hostname: kept'";
    let started = Instant::now();
    let lines = run_privileged(&moat, "kernel", script, || {
        for (name, had) in [("dummy", had_dummy), ("veth", had_veth)] {
            if !had {
                assert!(!host_had(name), "the zone's {name} module shows on the host");
            }
        }
        let modules_now = host_proc_modules();
        for name in ["dummy", "veth"] {
            let loaded = |text: &str| text.lines().any(|l| l.split_whitespace().next() == Some(name));
            assert_eq!(loaded(&modules_now), loaded(&modules_before), "the host's /proc/modules changed for {name}");
        }
        for (name, had) in interfaces.iter().zip(&host_interfaces_before) {
            assert_eq!(host_has(&format!("/sys/class/net/{name}")), *had, "the zone's interface {name} shows on the host");
        }
        // A process exec'd into the privileged container is as privileged as its main process,
        // in the same network namespace.
        let exec = moat.ok(&["exec", "kernel", "sh", "-c", "grep ^CapEff /proc/self/status; ip -o -4 addr show mprobe0 | grep -o '10.213.0.1/24'"]);
        assert_eq!(exec, "CapEff:\t000001ffffffffff\n10.213.0.1/24\n");
    });
    eprintln!("kernel test: {:.1} s", started.elapsed().as_secs_f64());

    let zone_kernel = moat_zone::assets::kernel_release(&moat_zone::assets::Assets::default_dir()).unwrap();
    let host_kernel = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    assert_ne!(zone_kernel, host_kernel);
    assert_eq!(
        lines,
        [
            "modules: dummy veth ".to_string(),
            "links: lo eth0 mprobe0 veth0@mprobe1 mprobe1@veth0 ".to_string(),
            "address: 10.213.0.1/24".to_string(),
            format!("dmesg: Linux version {zone_kernel}"),
            "nested: nested pid=1 uid=0 links=1".to_string(),
            "hostname: kept".to_string(),
        ]
    );
}

fn host_loaded(proc_modules: &str, name: &str) -> bool {
    proc_modules.lines().any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn privileged_workload_autoloads_modules_and_sees_a_live_dev_without_the_hosts_links() {
    let moat = Moat::with_busybox();
    let modules_before = host_proc_modules();
    let links = ["br0", "v0"];
    let host_links_before: Vec<bool> = links.iter().map(|l| host_has(&format!("/sys/class/net/{l}"))).collect();
    assert!(!host_links_before.iter().any(|had| *had), "the host already has a probe link");

    // No modprobe before `ip link add`: the zone's kernel asks init's modprobe for
    // rtnl-link-bridge and rtnl-link-veth. tun is loaded after the container started, and its
    // node must then appear in the container's /dev. /dev/ttyS0 and /dev/console are masked
    // with /dev/null (1:3).
    let script = "echo \"autoload: $(cat /proc/sys/kernel/modprobe)\"
echo \"before: $(grep -c -E '^(bridge|veth|tun) ' /proc/modules) $(ls /dev/net/tun 2>/dev/null)\"
ip link add br0 type bridge
ip link add v0 type veth peer name v1
echo \"links: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\\n' ' ')\"
echo \"loaded: $(grep -o -E '^(bridge|veth) ' /proc/modules | sort | tr -d '\\n')\"
[ -c /dev/fuse ] && : <> /dev/fuse && echo 'fuse: opens'
modprobe tun
[ -c /dev/net/tun ] && echo 'tun: appeared'
echo \"ports: $(ls /dev | grep -c -E '^(vport|hvc)')\"
echo \"masked: $(stat -c %t:%T /dev/ttyS0) $(stat -c %t:%T /dev/console)\"";
    let started = Instant::now();
    let lines = run_privileged(&moat, "live", script, || {
        for (link, had) in links.iter().zip(&host_links_before) {
            assert_eq!(host_has(&format!("/sys/class/net/{link}")), *had, "the zone's link {link} shows on the host");
        }
        let modules_now = host_proc_modules();
        for name in ["bridge", "veth", "tun"] {
            assert_eq!(host_loaded(&modules_now, name), host_loaded(&modules_before, name), "the host's /proc/modules changed for {name}");
        }
        // An exec sees devices the zone's kernel made after the container started, too.
        let exec = moat.ok(&["exec", "live", "sh", "-c", "losetup -f; ls /dev/net/tun /dev/fuse"]);
        assert!(exec.contains("/dev/net/tun") && exec.contains("/dev/fuse"), "{exec}");
    });
    eprintln!("autoload and live /dev test: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(
        lines,
        [
            "autoload: /usr/lib/moat/modprobe",
            "before: 0 ",
            "links: lo eth0 br0 veth0@v0 v0@veth0 ",
            "loaded: bridge veth ",
            "fuse: opens",
            "tun: appeared",
            "ports: 0",
            "masked: 1:3 1:3",
        ]
    );
}

#[test]
fn unprivileged_zone_has_no_module_autoload() {
    let moat = Moat::with_busybox();
    // The kernel's default modprobe path names nothing in the zone: no request loads a module.
    let out = moat.ok(&["run", "--rm", BUSYBOX, "sh", "-c", "cat /proc/sys/kernel/modprobe; grep -c -E '^(bridge|veth) ' /proc/modules; exit 0"]);
    assert_eq!(out, "/sbin/modprobe\n0\n");
    moat.assert_nothing_running();
}

#[test]
fn a_privileged_container_delegates_its_cgroup_and_an_unprivileged_one_cannot_write_it() {
    let moat = Moat::with_busybox();
    // One zone for both: a pod of 256 MiB, whose containers each get a limit of 144 MiB.
    moat.ok(&["pod", "create", "--name", "cg", "--memory", "256m"]);
    let script = "echo \"cgroup: $(cat /proc/self/cgroup)\"
echo \"root processes: $(wc -l < /sys/fs/cgroup/cgroup.procs)\"
echo \"subtree: $(cat /sys/fs/cgroup/cgroup.subtree_control)\"
echo \"limit: $(cat /sys/fs/cgroup/memory.max)\"
mkdir /sys/fs/cgroup/child
echo 20M > /sys/fs/cgroup/child/memory.max
echo \"child limit: $(cat /sys/fs/cgroup/child/memory.max)\"
sh -c 'echo $$ > /sys/fs/cgroup/child/cgroup.procs; exec dd if=/dev/zero of=/dev/null bs=64M count=1' || echo \"nested: $?\"
echo \"child $(grep oom_kill /sys/fs/cgroup/child/memory.events)\"";
    moat.ok(&["run", "-d", "--pod", "cg", "--privileged", "--allow-privileged-in-pod", "--name", "nest", BUSYBOX, "sh", "-c", &holding(script)]);
    moat.wait_for_log("nest", READY);
    let log = moat.ok(&["logs", "nest"]);
    let lines: Vec<&str> = log.lines().take_while(|l| *l != READY).collect();
    let subtree = lines.iter().find_map(|l| l.strip_prefix("subtree: ")).unwrap_or_default().split(' ').collect::<Vec<_>>();
    for controller in ["cpu", "io", "memory", "pids"] {
        assert!(subtree.contains(&controller), "{controller} is not delegated: {lines:?}");
    }
    let limit = 144u64 << 20;
    assert_eq!(
        lines.iter().filter(|l| !l.starts_with("subtree: ")).copied().collect::<Vec<_>>(),
        ["cgroup: 0::/init.scope", "root processes: 0", &format!("limit: {limit}"), "child limit: 20971520", "nested: 137", "child oom_kill 1"],
        "the container's processes sit in a leaf, its cgroup's root delegates, and a child's limit kills only inside the child"
    );

    // An exec'd process joins the leaf too. An OOM kill under a child's own limit is the
    // child's: 137, without moat's OOM line. Past the container's limit, from a child cgroup
    // without one, it is the container's: the limit covers everything below it.
    assert_eq!(moat.ok(&["exec", "nest", "cat", "/proc/self/cgroup"]).trim(), "0::/init.scope");
    let nested = moat.run(&["exec", "nest", "sh", "-c", "echo $$ > /sys/fs/cgroup/child/cgroup.procs; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]);
    assert_eq!(nested.status.code(), Some(137), "{}", common::stderr(&nested));
    assert!(!common::stderr(&nested).contains("OOM-killed"), "{}", common::stderr(&nested));
    let past = moat.run(&["exec", "nest", "sh", "-c", "mkdir /sys/fs/cgroup/big && echo $$ > /sys/fs/cgroup/big/cgroup.procs && exec dd if=/dev/zero of=/dev/null bs=200M count=1"]);
    assert_eq!(past.status.code(), Some(137), "{}", common::stderr(&past));
    assert!(common::stderr(&past).contains("OOM-killed"), "{}", common::stderr(&past));

    // An unprivileged container sits at the root of its cgroup namespace, read-only.
    let unprivileged = moat.ok(&["run", "--rm", "--pod", "cg", BUSYBOX, "sh", "-c", "cat /proc/self/cgroup; mkdir /sys/fs/cgroup/x 2>&1; echo \"mkdir: $?\""]);
    assert_eq!(unprivileged, "0::/\nmkdir: can't create directory '/sys/fs/cgroup/x': Read-only file system\nmkdir: 1\n");

    assert!(moat.ok(&["ps"]).lines().any(|l| l.ends_with(" nest") && l.contains("Up")), "the privileged container carried on");
    moat.ok(&["stop", "nest"]);
    assert_eq!(moat.ok(&["wait", "nest"]).trim(), "0");
    moat.ok(&["pod", "rm", "-f", "cg"]);
    moat.assert_nothing_running();
}

#[test]
fn an_rm_container_goes_with_its_zone_even_when_the_zone_panics() {
    let moat = Moat::with_busybox();
    let out = moat.run(&["run", "--rm", "--privileged", BUSYBOX, "sh", "-c", "echo c > /proc/sysrq-trigger"]);
    assert_eq!(out.status.code(), Some(125), "Docker's code when the runtime, not the process, ended it");
    let said = common::stderr(&out);
    assert!(said.contains("the zone ended before the container did: guest kernel panic: Kernel panic - not syncing: sysrq triggered crash"), "the reason, though the record is gone: {said}");
    assert_eq!(moat.ok(&["ps", "-a", "-q"]).trim(), "", "no container left");
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new(), "no zone files (the sparse scratch disk included)");
    moat.assert_nothing_running();
}
