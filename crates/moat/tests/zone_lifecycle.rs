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

#[test]
fn killed_qemu_and_killed_supervisor() {
    let moat = Moat::new();
    moat.ok(&["zone", "create", "--name", "q"]);
    moat.ok(&["zone", "create", "--name", "s"]);

    let qemu = moat.pid("q", "qemu").expect("qemu pid");
    // SAFETY: a pid moat reported for this test's zone.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    let reason = moat.wait_state("q", "failed", Duration::from_secs(20));
    assert!(reason.starts_with("QEMU was killed by signal 9"), "{reason}");

    let supervisor = moat.pid("s", "supervisor").expect("supervisor pid");
    // SAFETY: as above.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    let reason = moat.wait_state("s", "failed", Duration::from_secs(20));
    assert_eq!(reason, "stale: the zone's supervisor is gone");

    moat.assert_nothing_running();
    moat.ok(&["zone", "rm", "q", "s"]);
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new());
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
