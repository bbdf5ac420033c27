//! The checker on the bare host (this machine, as root, as CI runs): in workload mode every
//! isolation check must fail, because nothing separates this process from the host kernel; in
//! `--host` mode the same facts are information and only host hardening is judged.

mod support;

use std::process::Command;

use moat_check::Status;
use support::{assert_exit_matches, assert_kernel_log_names_the_running_kernel, assert_reason_contains, assert_verdicts, run_json, running_release, Outcome, ROOT_ON_THE_HOST_KERNEL};

fn host_checker(args: &[&str]) -> Outcome {
    run_json(Command::new(env!("CARGO_BIN_EXE_moat-check")).arg("--json").args(args))
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the bare-host setting is a root shell on the host; run the tests as root");
}

#[test]
fn workload_mode_on_the_bare_host_flags_the_host() {
    require_root();
    let outcome = host_checker(&[]);
    assert_verdicts(&outcome, ROOT_ON_THE_HOST_KERNEL);
    assert_reason_contains(&outcome, "host-namespaces", "found host namespaces: pid, net, ipc, uts, mnt, cgroup, user");
    assert_kernel_log_names_the_running_kernel(&outcome);
    assert_eq!(outcome.report.kernel.release, running_release());
    assert_eq!(outcome.report.kernel.zone, None);
    assert_eq!(outcome.exit, 1);
    assert_exit_matches(&outcome);
}

#[test]
fn host_mode_turns_isolation_failures_into_information() {
    require_root();
    let outcome = host_checker(&["--host"]);
    assert_verdicts(
        &outcome,
        &[
            ("virtualization-boundary", Status::Warn),
            ("host-namespaces", Status::Warn),
            ("capabilities", Status::Warn),
            ("root", Status::Warn),
        ],
    );
    let restrict = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict").expect("dmesg_restrict");
    let want = if restrict.trim() == "1" { Status::Pass } else { Status::Fail };
    assert_verdicts(&outcome, &[("kernel-log", want)]);
    assert_reason_contains(&outcome, "kernel-log", &format!("kernel.dmesg_restrict={}", restrict.trim()));
    assert_exit_matches(&outcome);
}

#[test]
fn text_output_flags_and_usage_errors() {
    let bin = env!("CARGO_BIN_EXE_moat-check");
    let run = |args: &[&str]| Command::new(bin).args(args).output().expect("run checker");

    let plain = run(&[]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(text.contains("High priority") && text.contains("host namespaces test"), "{text}");

    let failed = run(&["--only-failed", "--explain"]);
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(!text.contains("🟢") && !text.contains("🟡"), "only failures expected:\n{text}");
    assert!(text.contains("🔴") && text.contains("why: "), "{text}");
    assert_eq!(failed.status.code(), plain.status.code(), "filtering output does not change the verdict");

    let bad = run(&["--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.contains("--frobnicate"), "{err}");

    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--only-failed"));
}
