//! The static checker as the only workload of a real QEMU VM (TCG) running the zone guest
//! kernel, booted with and without the moat zone marker. This is not `moat run`: it stands in
//! for the privileged zone setting until `moat run IMAGE --check` exists, and proves the
//! boundary verdict comes from real CPUID, ACPI and /proc facts, and fails closed without the
//! marker. Needs the kernel provisioned by scripts/provision-kernel.sh.

mod support;

use std::path::PathBuf;
use std::process::Command;

use moat_check::Status;
use support::{assert_exit_matches, assert_reason_contains, assert_verdicts, outcome_of, static_checker, Outcome, MOAT_PRIVILEGED};

const BEGIN: &str = "MOAT-CHECK-BEGIN";
const END: &str = "MOAT-CHECK-END";

/// Init for the VM: mount the pseudo-filesystems, run the checker, print its exit status.
const INIT: &str = "#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo MOAT-CHECK-BEGIN
/.moat/check --json
echo MOAT-CHECK-END $?
/bin/busybox poweroff -f
";

fn kernel_dir() -> PathBuf {
    let assets = std::env::var_os("MOAT_ASSETS").map_or_else(|| PathBuf::from("/var/lib/moat/assets"), PathBuf::from);
    let dir = assets.join("kernel/debian");
    assert!(dir.join("vmlinuz").exists(), "no guest kernel in {}: run scripts/provision-kernel.sh", dir.display());
    dir
}

fn boot(marker: &str) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    for sub in ["bin", "proc", "sys", "dev", ".moat"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    std::fs::copy(static_checker(), root.join(".moat/check")).expect("copy checker");
    std::fs::write(root.join("init"), INIT).expect("init");
    let status = Command::new("sh")
        .arg("-c")
        .arg("chmod 755 init && find . | /bin/busybox cpio -o -H newc > ../initrd.cpio 2>/dev/null")
        .current_dir(&root)
        .status()
        .expect("cpio");
    assert!(status.success(), "building the initramfs failed");

    let release = std::fs::read_to_string(kernel_dir().join("release")).expect("release").trim().to_string();
    let marker = marker.replace("{release}", &release);
    let cmdline = format!("console=ttyS0 loglevel=1 panic=-1 rdinit=/init {} {marker}", moat_zone::accel::tcg_tsc_kernel_args().unwrap_or_default());
    let output = Command::new("timeout")
        .args(["120", "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
        .args(["-M", "microvm,acpi=on", "-accel", "tcg", "-cpu", "max", "-m", "256", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel_dir().join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.path().join("initrd.cpio"))
        .args(["-append", &cmdline])
        .output()
        .expect("qemu-system-x86_64 is installed");
    let console = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    let start = console.find(BEGIN).unwrap_or_else(|| panic!("the checker never ran; console:\n{console}")) + BEGIN.len();
    let end = console[start..].find(END).map(|e| start + e).unwrap_or_else(|| panic!("no end marker; console:\n{console}"));
    let code: i32 = console[end + END.len()..].split_whitespace().next().and_then(|c| c.parse().ok()).expect("exit code");
    outcome_of(console[start..end].to_string(), String::from_utf8_lossy(&output.stderr).into_owned(), code)
}

#[test]
fn vm_with_the_zone_marker_passes_the_boundary_checks() {
    let outcome = boot("moat.zone=vmtest moat.kernel={release}");
    assert_verdicts(&outcome, MOAT_PRIVILEGED);
    assert_eq!(outcome.report.kernel.zone.as_deref(), Some("vmtest"));
    assert_reason_contains(&outcome, "virtualization-boundary", "CPUID hypervisor bit set");
    assert_reason_contains(&outcome, "kernel-log", "moat zone vmtest's kernel's");
    assert_eq!(outcome.exit, 0);
    assert_exit_matches(&outcome);
}

#[test]
fn vm_without_a_trusted_marker_fails_closed() {
    for marker in ["", "moat.zone=vmtest moat.kernel=0.0.0-not-this-kernel"] {
        let outcome = boot(marker);
        assert_verdicts(
            &outcome,
            &[("virtualization-boundary", Status::Fail), ("host-namespaces", Status::Fail), ("kernel-log", Status::Fail)],
        );
        assert_eq!(outcome.report.kernel.zone, None);
        assert_eq!(outcome.exit, 1);
    }
}
