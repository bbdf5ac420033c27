//! The static checker in podman+runc containers on this host: a privileged container shares
//! the host kernel and must be flagged; the default container is hardened but still shares
//! the host's user namespace (podman uses none by default), which must be flagged too.

mod support;

use std::process::Command;

use moat_check::Status;
use support::{
    assert_exit_matches, assert_kernel_log_names_the_running_kernel, assert_reason_contains, assert_verdicts, podman_checker, run_json, static_checker,
    PODMAN_FLAGS, ROOT_ON_THE_HOST_KERNEL,
};

#[test]
fn privileged_container_shares_the_host_kernel() {
    let outcome = podman_checker(&["--privileged"], &[]);
    assert_verdicts(&outcome, ROOT_ON_THE_HOST_KERNEL);
    assert_reason_contains(&outcome, "host-namespaces", "user");
    assert_reason_contains(&outcome, "kernel-log", "host kernel log readable");
    assert_kernel_log_names_the_running_kernel(&outcome);
    assert_reason_contains(&outcome, "capabilities", "SYS_ADMIN");
    assert_eq!(outcome.exit, 1);
    assert_exit_matches(&outcome);
}

#[test]
fn default_container_is_hardened_but_shares_the_user_namespace() {
    let outcome = podman_checker(&[], &[]);
    assert_verdicts(
        &outcome,
        &[
            ("virtualization-boundary", Status::Fail),
            ("host-namespaces", Status::Fail),
            ("user-namespace", Status::Fail),
            ("kernel-log", Status::Pass),
            ("kernel-interfaces", Status::Pass),
            ("devices", Status::Pass),
            ("runtime-sockets", Status::Pass),
            ("host-mounts", Status::Pass),
            ("capabilities", Status::Pass),
            ("seccomp", Status::Pass),
        ],
    );
    assert_reason_contains(&outcome, "host-namespaces", "user");
    // podman's default set, not Docker's: no NET_RAW, MKNOD or AUDIT_WRITE.
    assert_reason_contains(&outcome, "capabilities", "CapEff 00000000800405fb");
    assert_exit_matches(&outcome);
}

#[test]
fn checker_alone_in_an_otherwise_empty_image() {
    // Nothing but the static binary in the image: no shell, no libc, no /etc.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join(".moat")).expect("mkdir");
    std::fs::copy(static_checker(), root.join(".moat/check")).expect("copy checker");
    let tar = dir.path().join("image.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar").success());
    let image = "localhost/moat-check-only:test";
    let import = Command::new("podman").arg("import").arg(&tar).arg(image).output().expect("podman");
    assert!(import.status.success(), "podman import: {}", String::from_utf8_lossy(&import.stderr));

    let mut cmd = Command::new("podman");
    cmd.args(["run", "--rm"]).args(PODMAN_FLAGS).args(["--privileged", image, "/.moat/check", "--json", "--only-failed"]);
    let outcome = run_json(&mut cmd);
    assert!(outcome.report.checks.iter().all(|c| c.status == Status::Fail), "--only-failed keeps failures only");
    assert_verdicts(&outcome, &[("kernel-log", Status::Fail), ("host-namespaces", Status::Fail)]);
    assert_exit_matches(&outcome);
}
