//! QEMU runs jailed (its own uid, no capabilities, no_new_privs, its seccomp filter, its own
//! PID, mount and IPC namespaces holding only what it must open, and a cgroup), passt and
//! virtiofsd run confined too, and a zone whose kernel panics ends at once, with the panic
//! named.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Moat, BUSYBOX};

/// The first uid of the range zones' QEMU and passt run as (moat_zone::jail::ZONE_UID_BASE).
const ZONE_UID_BASE: u64 = 0x6000_0000;
/// From the panic on the console to QEMU gone, and to the CLI's answer. Measured: about 0.05 s.
const PANIC_BOUND: Duration = Duration::from_secs(5);

/// The fields of /proc/PID/status, by name.
fn status(pid: i32) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

fn first_uid(status: &std::collections::HashMap<String, String>) -> u64 {
    status["Uid"].split_whitespace().next().and_then(|u| u.parse().ok()).expect("a numeric uid")
}

/// A process that has exited, reaped or not, is gone.
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// The directory of QEMU's cgroup in the v1 hierarchy `controller`.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("the process is alive");
    let path = text
        .lines()
        .find_map(|l| l.splitn(3, ':').nth(2).filter(|_| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == controller))))
        .expect("a v1 hierarchy of that controller");
    Path::new("/sys/fs/cgroup").join(controller).join(path.trim_start_matches('/'))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Wait for the zone's directory, its QEMU and its console log; then poll until the console
/// shows the panic, then until QEMU is gone. The log is read through a descriptor opened early:
/// an `--rm` zone's directory goes as soon as it ends. Returns both instants.
fn panic_then_gone(zone_dir: impl Fn() -> Option<PathBuf>, deadline: Instant) -> (Instant, Instant) {
    let (pid, mut console) = loop {
        let found = zone_dir().and_then(|dir| Some((qemu_of(&dir)?, std::fs::File::open(dir.join("console.log")).ok()?)));
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "the zone never started QEMU");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut log = Vec::new();
    let panicked = loop {
        std::io::Read::read_to_end(&mut console, &mut log).expect("reading the console log");
        if log.windows(12).any(|w| w == b"Kernel panic") {
            break Instant::now();
        }
        assert!(Instant::now() < deadline && !gone(pid), "the console never showed the panic");
        std::thread::sleep(Duration::from_millis(10));
    };
    while !gone(pid) {
        assert!(panicked.elapsed() < PANIC_BOUND * 4, "QEMU {pid} still runs {:?} after the panic", panicked.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    (panicked, Instant::now())
}

fn qemu_of(zone_dir: &Path) -> Option<i32> {
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(zone_dir.join("zone.json")).ok()?).ok()?;
    record["qemu"]["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

#[test]
fn a_zones_qemu_is_jailed_and_its_kernel_panic_ends_it_at_once() {
    let moat = Moat::with_busybox();
    moat.ok(&["run", "-d", "--privileged", "--memory", "256m", "--name", "jailed", BUSYBOX, "sleep", "600"]);
    let zone = moat.inspect("jailed");
    let pid = |which: &str| i32::try_from(zone["pids"][which].as_i64().unwrap()).unwrap();
    let (qemu, passt, supervisor) = (pid("qemu"), pid("passt"), pid("supervisor"));

    let s = status(qemu);
    println!("QEMU {qemu}: Uid {} CapEff {} CapBnd {} Seccomp {} NoNewPrivs {}", s["Uid"], s["CapEff"], s["CapBnd"], s["Seccomp"], s["NoNewPrivs"]);
    let uid = first_uid(&s);
    assert_eq!(uid, ZONE_UID_BASE + 2 * u64::try_from(supervisor).unwrap(), "a uid of the zone's own");
    assert!(s["Uid"].split_whitespace().all(|u| u == uid.to_string()) && s["Gid"].split_whitespace().all(|g| g == uid.to_string()), "{s:?}");
    assert_eq!(s["Groups"], "");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(s[caps], "0000000000000000", "{caps}");
    }
    assert_eq!((s["Seccomp"].as_str(), s["NoNewPrivs"].as_str()), ("2", "1"));
    let p = status(passt);
    assert_eq!(first_uid(&p), uid + 1, "passt has a uid of its own too");
    assert_eq!((p["CapEff"].as_str(), p["Seccomp"].as_str()), ("0000000000000000", "2"));
    // virtiofsd's own sandbox: the process that serves the guest has a seccomp filter,
    // no_new_privs, a file server's capabilities only, and namespaces whose root is the share.
    let monitor = pid("virtiofsd");
    let children = read_trimmed(Path::new(&format!("/proc/{monitor}/task/{monitor}/children")));
    let server: i32 = children.split_whitespace().next().and_then(|c| c.parse().ok()).expect("virtiofsd's serving process");
    let v = status(server);
    assert_eq!((v["Seccomp"].as_str(), v["NoNewPrivs"].as_str()), ("2", "1"), "{v:?}");
    let caps = u64::from_str_radix(&v["CapEff"], 16).unwrap();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_MKNOD: u64 = 1 << 27;
    assert_eq!(caps & (CAP_SYS_ADMIN | CAP_MKNOD), 0, "CapEff {caps:x}");
    for ns in ["mnt", "pid", "net"] {
        let link = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(link(&server.to_string()), link("self"), "virtiofsd's {ns} namespace");
    }
    assert!(!Path::new(&format!("/proc/{server}/root/etc/passwd")).exists(), "virtiofsd's root is the share");

    // Its own namespaces, whose root holds the system's /usr, a few devices and the zone's
    // kernel and initramfs, and nothing of the host's state.
    for ns in ["mnt", "ipc", "pid"] {
        let link = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(link(&qemu.to_string()), link("self"), "{ns} namespace");
    }
    assert_eq!(s["NSpid"], format!("{qemu}\t1"), "QEMU is process 1 of its PID namespace, alone there");
    let supervisor_ns = std::fs::read_link(format!("/proc/{supervisor}/ns/pid")).unwrap();
    assert_eq!(supervisor_ns, std::fs::read_link("/proc/self/ns/pid").unwrap(), "only QEMU moved");
    assert_eq!(std::fs::read_link(format!("/proc/{passt}/ns/pid")).unwrap(), supervisor_ns, "passt's spawn stayed in the host's");
    let root = PathBuf::from(format!("/proc/{qemu}/root"));
    let mut top: Vec<String> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    top.retain(|t| !["lib", "lib64", "bin"].contains(&t.as_str()));
    assert_eq!(top, ["dev", "etc", "usr", "zone"]);
    let mut zone_files: Vec<String> = std::fs::read_dir(root.join("zone")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    zone_files.sort();
    assert_eq!(zone_files, ["initrd", "vmlinuz"]);
    for host_file in ["etc/passwd", "etc/shadow", "var/lib/moat", "tmp", "proc/1", "root"] {
        assert!(!root.join(host_file).exists(), "/{host_file} is visible to QEMU");
    }
    assert!(!root.join(moat.root().strip_prefix("/").unwrap()).exists(), "the state root is visible to QEMU");
    assert!(std::fs::write(root.join("zone/new"), b"x").is_err(), "QEMU's root is read-only");
    // QEMU's uid could not read the store's image, the zone's scratch disk or a host secret
    // even if it reached their paths.
    let image = std::fs::read_dir(moat.root().join("images/erofs")).unwrap().next().unwrap().unwrap().path();
    let zone_dir = moat.root().join("zones").join(zone["id"].as_str().unwrap());
    for file in [image.as_path(), &zone_dir.join("scratch.img"), Path::new("/etc/shadow")] {
        let read = std::process::Command::new("/bin/cat").arg(file).uid(u32::try_from(uid).unwrap()).gid(u32::try_from(uid).unwrap()).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(!read.success(), "QEMU's uid reads {}", file.display());
    }
    // The store is reached through descriptors only: no path of it is on QEMU's command line,
    // whose only mention of the root is its name (the zone's directory, a label for `ps`).
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap()).into_owned();
    let args: Vec<&str> = cmdline.split('\0').collect();
    let mentions: Vec<&[&str]> = args.windows(2).filter(|w| w[1].contains(&*moat.root().to_string_lossy())).collect();
    assert_eq!(mentions, [["-name", format!("guest={}", zone_dir.display()).as_str()]], "{cmdline}");

    // A cgroup of its own, bounding memory (guest + 256 MiB + TCG's 128 MiB translation cache),
    // CPU (1 vCPU + half a CPU) and threads.
    let memory = cgroup_dir(qemu, "memory");
    assert!(memory.file_name().unwrap().to_string_lossy().starts_with("moat-"), "{}", memory.display());
    assert_eq!(read_trimmed(&memory.join("memory.limit_in_bytes")), ((256u64 + 256 + 128) << 20).to_string());
    assert_eq!(read_trimmed(&cgroup_dir(qemu, "cpu").join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read_trimmed(&cgroup_dir(qemu, "pids").join("pids.max")), "256");

    // A kernel panic: QEMU is gone within the bound, the zone failed naming the panic.
    let started = Instant::now();
    let exec = moat.cmd(&["exec", "jailed", "sh", "-c", "echo c > /proc/sysrq-trigger"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (panicked, ended) = panic_then_gone(|| Some(zone_dir.clone()), started + Duration::from_secs(60));
    let out = exec.wait_with_output().unwrap();
    let answered = panicked.elapsed();
    println!("exec: panic on the console after {:?}, QEMU gone {:?} later, exec answered {answered:?} after the panic", panicked - started, ended - panicked);
    assert!(ended - panicked <= PANIC_BOUND, "QEMU took {:?}", ended - panicked);
    assert!(answered <= PANIC_BOUND, "exec answered after {answered:?}");
    assert!(common::stderr(&out).contains("guest kernel panic: Kernel panic - not syncing: sysrq triggered crash"), "{}", common::stderr(&out));
    // Clients hear the reason first; the record follows as the supervisor ends.
    let reason = moat.wait_state("jailed", "failed", PANIC_BOUND);
    assert_eq!(reason, "guest kernel panic: Kernel panic - not syncing: sysrq triggered crash");
    moat.assert_nothing_running();
    assert!(!memory.exists(), "the zone's cgroup is removed with it");
    moat.ok(&["zone", "rm", "jailed"]);
}

#[test]
fn a_panicking_run_returns_within_seconds_every_time() {
    let moat = Moat::with_busybox();
    let zones = moat.root().join("zones");
    for run in 1..=3 {
        let before: Vec<PathBuf> = std::fs::read_dir(&zones).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let started = Instant::now();
        let cli = moat
            .cmd(&["run", "--rm", "--privileged", BUSYBOX, "sh", "-c", "echo c > /proc/sysrq-trigger"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let new_zone = || std::fs::read_dir(&zones).into_iter().flatten().flatten().map(|e| e.path()).find(|p| p.is_dir() && !before.contains(p));
        let (panicked, ended) = panic_then_gone(new_zone, started + Duration::from_secs(60));
        let out = cli.wait_with_output().unwrap();
        let answered = panicked.elapsed();
        println!("run {run}: panic on the console after {:?}, QEMU gone {:?} later, the CLI answered {answered:?} after the panic", panicked - started, ended - panicked);
        assert!(ended - panicked <= PANIC_BOUND, "run {run}: QEMU took {:?}", ended - panicked);
        assert!(answered <= PANIC_BOUND, "run {run}: the CLI answered after {answered:?}");
        assert_eq!(out.status.code(), Some(125), "run {run}");
        assert_eq!(common::stderr(&out).trim(), "moat: the zone ended before the container did: guest kernel panic: Kernel panic - not syncing: sysrq triggered crash");
        assert!(new_zone().is_none(), "run {run}: the --rm zone goes with its container");
    }
    moat.assert_nothing_running();
}
