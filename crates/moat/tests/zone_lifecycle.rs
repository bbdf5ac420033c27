//! Zones end to end: real QEMU, the real guest kernel, our initramfs and moat-init.

mod common;

use std::time::Duration;

use common::{stderr, stderr_raw, Moat};

const BOOT: Duration = Duration::from_secs(120);

fn kernel_release() -> String {
    use moat_zone::assets::{self, Assets};
    assets::kernel_release(&Assets::default_dir()).expect("guest kernel provisioned")
}

#[test]
fn boot_ping_inspect_stop_and_remove_leave_nothing() {
    let moat = Moat::new();
    let created = moat.run(&["zone", "create", "--name", "web", "--cpus", "1", "--memory", "192m"]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "web");

    let info = moat.inspect("web");
    assert_eq!(info["state"], "running");
    assert_eq!(info["kernel_release"], kernel_release().as_str(), "the hello carries the zone kernel's release");
    assert_eq!(info["cpus"], 1);
    assert_eq!(info["memory_mib"], 192);
    assert!(info["accel"] == "tcg" || info["accel"] == "kvm");
    assert!(info["boot_ms"].as_u64().is_some_and(|ms| ms > 0));
    assert!(info["pids"]["supervisor"].as_u64().is_some() && info["pids"]["qemu"].as_u64().is_some());
    let console = std::fs::read_to_string(info["paths"]["console_log"].as_str().unwrap()).unwrap();
    assert!(console.contains("moat-init: hello sent"), "console log holds init's messages:\n{console}");

    let pong = moat.ok(&["zone", "ping", "web"]);
    assert!(pong.starts_with("pong from web in "), "{pong}");

    let listed: serde_json::Value = serde_json::from_str(&moat.ok(&["zone", "ls", "--format", "json"])).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(moat.ok(&["zone", "ls"]).lines().nth(1).is_some_and(|l| l.contains("web") && l.contains("running")));

    let stopped = moat.ok(&["zone", "stop", "web"]);
    assert_eq!(stopped.trim(), "web: stopped (stopped on request)");
    moat.assert_nothing_running();
    assert_eq!(mounts_under(moat.root()), Vec::<String>::new(), "the share is unmounted when the zone stops");
    moat.ok(&["zone", "rm", "web"]);

    // A running zone removed with -f goes just as cleanly.
    moat.ok(&["zone", "create", "--name", "quick"]);
    let refused = moat.run(&["zone", "rm", "quick"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is running: stop it first, or use --force"), "{}", stderr(&refused));
    moat.ok(&["zone", "rm", "-f", "quick"]);

    moat.assert_nothing_running();
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new(), "no socket or file left behind");
}

#[test]
fn zones_boot_moats_kernel_and_debians_when_named() {
    use moat_zone::assets::{Assets, GuestKernel};
    let moat = Moat::with_busybox();
    let assets = Assets::default_dir();
    if std::env::var_os("MOAT_KERNEL").is_none() {
        assert_eq!(GuestKernel::chosen(&assets).unwrap(), GuestKernel::Moat, "scripts/setup.sh builds moat's kernel, and it is the default");
    }
    // Both keep the TSC as their clock past the watchdog's first checks (a second or two
    // after boot), so their timers are high-resolution and their idle is tickless.
    let script = "uname -r; sleep 3; cat /sys/devices/system/clocksource/clocksource0/current_clocksource";
    for kernel in [GuestKernel::Moat, GuestKernel::Debian] {
        let release = kernel.release(&assets).unwrap();
        let out = moat.run_with_env(("MOAT_KERNEL", &kernel.to_string()), &["run", "--rm", common::BUSYBOX, "sh", "-c", script]);
        assert!(out.status.success(), "{kernel}: {}", stderr(&out));
        let shown = common::stdout(&out);
        assert_eq!(shown.lines().collect::<Vec<_>>(), [release.as_str(), "tsc"], "a container on {kernel}'s kernel");
    }
    assert!(GuestKernel::Moat.release(&assets).unwrap().ends_with("-moat"));

    let out = moat.run_with_env(("MOAT_KERNEL", "vanilla"), &["zone", "create", "--name", "v"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), r#"moat: MOAT_KERNEL: unknown kernel "vanilla" (moat or debian)"#);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty(), "a bad kernel name leaves no zone");
}

#[test]
fn garbage_on_the_channel_ends_only_that_zone() {
    let moat = Moat::new();
    moat.ok(&["zone", "create", "--name", "bad", "--debug-hooks"]);
    moat.ok(&["zone", "create", "--name", "good"]);

    moat.ok(&["zone", "debug", "bad", "write-garbage"]);
    let reason = moat.wait_state("bad", "failed", Duration::from_secs(20));
    assert_eq!(reason, "protocol error on the control channel: frame of 4294967295 bytes exceeds the limit of 1048576 bytes");
    assert!(moat.pid("bad", "qemu").is_none() && moat.pid("bad", "supervisor").is_none());

    assert_eq!(moat.state("good").0, "running");
    assert!(moat.ok(&["zone", "ping", "good"]).starts_with("pong"));
    moat.ok(&["zone", "rm", "-f", "bad", "good"]);
    moat.assert_nothing_running();
}

#[test]
fn guest_kernel_panic_shows_as_failed() {
    let moat = Moat::new();
    moat.ok(&["zone", "create", "--name", "p", "--debug-hooks"]);
    moat.run(&["zone", "debug", "p", "kernel-panic"]);
    let reason = moat.wait_state("p", "failed", Duration::from_secs(30));
    assert!(reason.starts_with("guest kernel panic: Kernel panic - not syncing: sysrq triggered crash"), "{reason}");
    moat.assert_nothing_running();
    moat.ok(&["zone", "rm", "p"]);
}

#[test]
fn debug_requests_are_refused_without_the_hook() {
    let moat = Moat::new();
    moat.ok(&["zone", "create", "--name", "plain"]);
    let answer = moat.ok(&["zone", "debug", "plain", "kernel-panic"]);
    assert!(answer.contains("debug requests are disabled in this zone"), "{answer}");
    assert_eq!(moat.state("plain").0, "running");
    moat.ok(&["zone", "rm", "-f", "plain"]);
    moat.assert_nothing_running();
}

/// The pids of `zone` once QEMU has started, while the zone is still booting.
fn pids_while_booting(moat: &Moat, zone: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + BOOT;
    loop {
        let info: serde_json::Value = serde_json::from_slice(&moat.run(&["zone", "inspect", zone]).stdout).unwrap_or_default();
        if info["pids"]["qemu"].is_u64() {
            assert_eq!(info["state"], "creating", "the zone booted before the test saw its QEMU");
            return info["pids"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "zone {zone} never started QEMU");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_qemu_supervisor_virtiofsd_and_container() {
    let moat = Moat::with_busybox();

    // The supervisor killed while the zone boots: `zone create` says so in one line, and the
    // QEMU, virtiofsd and passt it started go with it.
    let create = moat.cmd(&["zone", "create", "--name", "s"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("running moat");
    let supervisor = pids_while_booting(&moat, "s")["supervisor"].as_i64().and_then(|p| i32::try_from(p).ok()).expect("supervisor pid");
    // SAFETY: a pid moat reported for this test's zone.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    let created = create.wait_with_output().expect("waiting for zone create");
    assert!(!created.status.success());
    assert_eq!(stderr(&created), "moat: zone s failed: stale: the zone's supervisor is gone\n");
    assert_eq!(moat.state("s"), ("failed".to_string(), "stale: the zone's supervisor is gone".to_string()));
    moat.assert_nothing_running();

    // A container whose process is killed reports 137 to its attached `run`; QEMU killed under
    // a running container fails the zone, and each container shows why, its log kept.
    moat.ok(&["pod", "create", "--name", "q"]);
    moat.ok(&["run", "-d", "--pod", "q", "--name", "r", common::BUSYBOX, "sh", "-c", "echo before; sleep 1000"]);
    let attached = moat.cmd(&["run", "--pod", "q", "--name", "k", common::BUSYBOX, "sh", "-c", "echo up; sleep 1000"]).stdout(std::process::Stdio::piped()).spawn().expect("running moat");
    moat.wait_for_log("k", "up");
    moat.wait_for_log("r", "before");
    moat.ok(&["kill", "k"]);
    let killed = attached.wait_with_output().expect("waiting for moat run");
    assert_eq!((killed.status.code(), common::stdout(&killed).as_str()), (Some(137), "up\n"));
    let qemu = moat.pid("q", "qemu").expect("qemu pid");
    assert!(!common::zone_cgroups(moat.inspect("q")["id"].as_str().expect("zone id")).is_empty(), "QEMU runs in its own cgroup");
    // SAFETY: as above.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    let reason = moat.wait_state("q", "failed", Duration::from_secs(20));
    assert!(reason.starts_with("QEMU was killed by signal 9"), "{reason}");
    let ps = moat.ok(&["ps", "-a"]);
    assert!(ps.lines().any(|l| l.ends_with(" k") && l.contains("Exited (137)")), "{ps}");
    assert!(ps.lines().any(|l| l.ends_with(" r") && l.contains("Zone failed")), "{ps}");
    assert_eq!(moat.ok(&["logs", "r"]), "before\n");

    // A zone whose file server dies fails, rather than run on with a share that never answers.
    moat.ok(&["zone", "create", "--name", "v"]);
    let virtiofsd = moat.pid("v", "virtiofsd").expect("virtiofsd pid");
    // SAFETY: as above.
    unsafe { libc::kill(virtiofsd, libc::SIGKILL) };
    let reason = moat.wait_state("v", "failed", Duration::from_secs(20));
    assert!(reason.starts_with("the zone's file server (virtiofsd) exited while the zone ran (signal: 9"), "{reason}");

    moat.assert_nothing_running();
    let ids: Vec<String> = ["q", "s", "v"].iter().map(|z| moat.inspect(z)["id"].as_str().expect("zone id").to_string()).collect();
    moat.ok(&["rm", "-f", "r", "k"]);
    moat.ok(&["zone", "rm", "-f", "q", "s", "v"]);
    for id in &ids {
        assert_eq!(common::zone_cgroups(id), Vec::<std::path::PathBuf>::new(), "zone {id}'s cgroups are removed with it");
    }
    assert_eq!(moat.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new());
    assert_eq!(mounts_under(moat.root()), Vec::<String>::new());
}

#[test]
fn bad_input_is_one_clear_line_and_changes_nothing() {
    let moat = Moat::new();
    let cases: &[(&[&str], &str)] = &[
        (&["zone", "create", "--memory", "64m"], "--memory 64m: below the zone minimum of 128m"),
        (&["zone", "create", "--memory", "lots"], "--memory lots: expected a number"),
        (&["zone", "create", "--cpus", "0"], "--cpus 0: must be between 1 and 64"),
        (&["zone", "create", "--accel", "hvf"], "unknown accelerator \"hvf\""),
        (&["zone", "create", "--name", "../escape"], "zone name \"../escape\" is invalid"),
        (&["zone", "inspect", "nope"], "no zone named or with id \"nope\""),
        (&["zone", "rm", "nope"], "no zone named or with id \"nope\""),
    ];
    for (args, expected) in cases {
        let out = moat.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("moat: warning:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line, got {err}");
        assert!(lines[0].contains(expected), "{args:?}: {err}");
    }
    assert!(moat.zone_files().is_empty());
}

#[test]
fn accel_kvm_fails_fast_where_kvm_cannot_run_the_guest() {
    let facts = moat_zone::accel::HostFacts::probe();
    let Err(why) = facts.kvm_usable() else {
        eprintln!("KVM is usable on this host; the refusal path does not apply");
        return;
    };
    let moat = Moat::new();
    let started = std::time::Instant::now();
    let out = moat.run(&["zone", "create", "--accel", "kvm"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("--accel kvm: KVM cannot run a zone on this host: {why}")), "{}", stderr(&out));
    assert!(moat.zone_files().is_empty());

    // auto falls back to TCG, says why in one warning line, and does not hang.
    let out = moat.run(&["zone", "create", "--name", "auto", "--accel", "auto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr_raw(&out).lines().filter(|l| l.starts_with("moat: warning: using TCG")).map(String::from).collect();
    assert_eq!(warnings.len(), 1, "{}", stderr_raw(&out));
    assert_eq!(moat.inspect("auto")["accel"], "tcg");
    assert!(started.elapsed() < BOOT);
    moat.ok(&["zone", "rm", "-f", "auto"]);
    moat.assert_nothing_running();
}

/// Mount points in this process's namespace (the host's) that lie under `root`.
fn mounts_under(root: &std::path::Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo").lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).map(String::from).collect()
}

/// What init read at `path` in the share, and whether it could open it for writing.
fn probe(moat: &Moat, zone: &str, path: &str) -> (Result<String, String>, Result<(), String>) {
    let answer: serde_json::Value = serde_json::from_str(moat.ok(&["zone", "debug", zone, "probe-share", "--path", path]).trim()).expect("probe prints JSON");
    let probed = &answer["probed"];
    assert!(probed.is_object(), "{answer}");
    let read = match &probed["read"] {
        v if v.get("Ok").is_some() => Ok(v["Ok"].as_str().unwrap_or_default().to_string()),
        v => Err(v["Err"].as_str().unwrap_or_default().to_string()),
    };
    let write = match &probed["write"] {
        v if v.get("Ok").is_some() => Ok(()),
        v => Err(v["Err"].as_str().unwrap_or_default().to_string()),
    };
    (read, write)
}

#[test]
fn the_share_brings_host_files_into_a_running_zone_and_leaves_no_mount() {
    use moat_zone::share::{Share, ShareError};
    use moat_zone::state::ZoneDir;

    let moat = Moat::new();
    let host = moat.root().join("host");
    std::fs::create_dir_all(host.join("vol")).unwrap();
    std::fs::write(host.join("image.erofs"), "IMAGE-BYTES").unwrap();
    std::fs::write(host.join("vol/data.txt"), "VOLUME").unwrap();
    std::fs::write(host.join("secret"), "HOST-SECRET").unwrap();
    std::os::unix::fs::symlink(host.join("secret"), host.join("vol/absolute")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../..".to_string() + &host.join("secret").to_string_lossy(), host.join("vol/relative")).unwrap();

    moat.ok(&["zone", "create", "--name", "s", "--debug-hooks"]);
    let info = moat.inspect("s");
    let virtiofsd = moat.pid("s", "virtiofsd").expect("every zone has a virtiofsd");
    let share = Share::new(&ZoneDir { path: info["paths"]["dir"].as_str().unwrap().into() });

    // Exposed after boot, read-only on the host's side: root in the zone reads, cannot write.
    let seen = share.expose(&host.join("image.erofs"), "c1/rootfs.erofs", true).unwrap();
    assert_eq!(seen, std::path::Path::new("/run/moat/share/c1/rootfs.erofs"));
    let (read, write) = probe(&moat, "s", "c1/rootfs.erofs");
    assert_eq!(read.as_deref(), Ok("IMAGE-BYTES"));
    assert!(write.as_ref().is_err_and(|e| e.contains("Read-only file system")), "{write:?}");

    // A writable volume, and the same directory read-only under a second name.
    share.expose(&host.join("vol"), "vol", false).unwrap();
    share.expose(&host.join("vol"), "vol-ro", true).unwrap();
    assert_eq!(probe(&moat, "s", "vol/data.txt"), (Ok("VOLUME".into()), Ok(())));
    assert_eq!(probe(&moat, "s", "vol/made-in-zone").1, Ok(()));
    assert!(host.join("vol/made-in-zone").is_file(), "the guest's write reached the host directory");
    let (read, write) = probe(&moat, "s", "vol-ro/planted");
    assert!(read.is_err() && write.is_err_and(|e| e.contains("Read-only file system")));
    assert!(!host.join("vol/planted").exists());
    // The skeleton is read-only to the guest: nothing can be planted where mount points go.
    assert!(probe(&moat, "s", "c2").1.is_err_and(|e| e.contains("Read-only file system")));

    // Symlinks in a shared directory resolve in the guest, never to the host's files.
    for link in ["vol/absolute", "vol/relative"] {
        let (read, _) = probe(&moat, "s", link);
        assert!(!read.as_ref().is_ok_and(|r| r.contains("HOST-SECRET")), "{link}: {read:?}");
    }

    // Names are checked, and exposures do not nest.
    assert!(matches!(share.expose(&host.join("vol"), "../x", false), Err(ShareError::BadName { .. })));
    assert!(matches!(share.expose(&host.join("vol"), "vol/inner", false), Err(ShareError::Taken { .. })));
    assert!(matches!(share.expose(&host.join("vol"), "vol", false), Err(ShareError::Taken { .. })));

    // Withdrawn: gone from the guest once its 1 s cache of the name runs out.
    share.withdraw("vol-ro").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(probe(&moat, "s", "vol-ro/data.txt").0.is_err());
    assert!(matches!(share.withdraw("vol-ro"), Err(ShareError::NotExposed { .. })));

    // A supervisor that dies leaves its mounts; `rm` takes them off before deleting anything.
    assert!(!mounts_under(moat.root()).is_empty());
    let supervisor = moat.pid("s", "supervisor").expect("supervisor pid");
    // SAFETY: a pid moat reported for this test's zone.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    moat.wait_state("s", "failed", Duration::from_secs(20));
    moat.ok(&["zone", "rm", "s"]);
    assert_eq!(mounts_under(moat.root()), Vec::<String>::new());
    moat.assert_nothing_running();
    let state = std::fs::read_to_string(format!("/proc/{virtiofsd}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')), "virtiofsd ended with its zone: {state}");
    assert_eq!(std::fs::read_to_string(host.join("vol/data.txt")).unwrap(), "VOLUME", "removing the zone left the volume alone");
    assert!(host.join("image.erofs").is_file());
}

/// A tmpfs of `size` mounted on `path` for the life of the value.
struct SmallFileSystem(std::path::PathBuf);

impl SmallFileSystem {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status().expect("running mount");
        assert!(status.success(), "mounting a tmpfs on {}", path.display());
        Self(path.to_path_buf())
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_host_file_system_is_enospc_in_the_container_and_the_state_stays_whole() {
    let moat = Moat::new();
    let _small = SmallFileSystem::mount(moat.root(), "200m");
    moat.ok(&["image", "import", &common::busybox_layout().to_string_lossy(), "--name", common::BUSYBOX]);

    // The container writes more than the host holds: it sees ENOSPC, goes on, and the zone ends
    // as usual (QEMU would otherwise pause the VM for good).
    let script = "dd if=/dev/zero of=/big bs=1M count=400 2>&1 | grep -o 'No space left on device' | head -n1; rm /big; echo after > /after && cat /after";
    assert_eq!(moat.ok(&["run", "--rm", common::BUSYBOX, "sh", "-c", script]), "No space left on device\nafter\n");
    assert_eq!(moat.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new());

    // Too little room for any scratch disk: one line, and nothing left behind.
    let filler = moat.root().join("filler");
    let free = nix::sys::statvfs::statvfs(moat.root()).unwrap();
    let fill = (free.blocks_available() * free.fragment_size()).saturating_sub(40 << 20);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    let line = moat.one_error_line(&["run", "--rm", common::BUSYBOX, "true"]);
    assert!(line.contains("MiB free; a zone's scratch disk needs at least"), "{line}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(moat.ok(&["run", "--rm", common::BUSYBOX, "echo", "room again"]), "room again\n");
    moat.assert_nothing_running();
}
