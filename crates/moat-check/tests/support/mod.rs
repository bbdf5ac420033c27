//! Shared helpers for the checker's integration tests: run the real checker somewhere real,
//! parse its `--json` report and assert verdicts by check id.
//!
//! # Adding the two moat settings (for whoever lands `moat run IMAGE --check`)
//!
//! 1. Build the static checker with [`static_checker`] (or point `MOAT_CHECK_STATIC` at one)
//!    and have `moat run` bind it read-only at `/.moat/check` as the container's process.
//! 2. Run it with `--json` and turn the output into an [`Outcome`] with [`outcome_from`] or
//!    [`outcome_of`] (tests/vm.rs shows a run whose output arrives on a VM console).
//! 3. Assert [`MOAT_UNPRIVILEGED`] for a default workload (user namespace, Docker caps, seccomp)
//!    and [`MOAT_PRIVILEGED`] for `--privileged`, both with [`assert_verdicts`], plus
//!    `outcome.exit == 0` (no high-priority failure in either). `lsm`, `no-new-privs` and
//!    `rwx-memory` are informational and left out on purpose.
//! 4. The report's `kernel.zone` must be the zone id, and the `kernel-log` reason names the
//!    zone: [`assert_reason_contains`] with the zone id.
//!
//! The boundary passes only if the zone kernel's command line carries
//! `moat.zone=<id> moat.kernel=<uname -r>`; without the marker every zone check fails closed.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use moat_check::{Report, Status};

/// Flags podman needs on these machines (no CAP_SYS_RESOURCE, hybrid cgroups: see MACHINE.md).
pub const PODMAN_FLAGS: [&str; 8] = [
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

/// Where moat mounts the checker inside a workload.
pub const CHECKER_PATH: &str = "/.moat/check";

pub const IMAGE: &str = "localhost/moat-check-busybox:test";

/// Expected in a default moat workload: everything green except informational lines.
pub const MOAT_UNPRIVILEGED: &[(&str, Status)] = &[
    ("virtualization-boundary", Status::Pass),
    ("host-namespaces", Status::Pass),
    ("kernel-log", Status::Pass),
    ("kernel-interfaces", Status::Pass),
    ("devices", Status::Pass),
    ("runtime-sockets", Status::Pass),
    ("host-mounts", Status::Pass),
    ("kernel-vulnerabilities", Status::Pass),
    ("capabilities", Status::Pass),
    ("user-namespace", Status::Pass),
    ("root", Status::Pass),
    ("seccomp", Status::Pass),
];

/// Expected in a `--privileged` moat workload: the privileges are flagged, yet the boundary and
/// the namespace checks pass because the initial namespaces are the zone kernel's.
pub const MOAT_PRIVILEGED: &[(&str, Status)] = &[
    ("virtualization-boundary", Status::Pass),
    ("host-namespaces", Status::Pass),
    ("kernel-log", Status::Pass),
    ("runtime-sockets", Status::Pass),
    ("capabilities", Status::Fail),
    ("user-namespace", Status::Fail),
    ("root", Status::Fail),
    ("seccomp", Status::Fail),
];

/// Expected wherever a root process with every capability shares the host kernel: the bare
/// host itself and a `--privileged` podman+runc container.
pub const ROOT_ON_THE_HOST_KERNEL: &[(&str, Status)] = &[
    ("virtualization-boundary", Status::Fail),
    ("host-namespaces", Status::Fail),
    ("kernel-log", Status::Fail),
    ("capabilities", Status::Fail),
    ("user-namespace", Status::Fail),
    ("root", Status::Fail),
    ("seccomp", Status::Fail),
];

/// The release of the kernel the tests run on, read independently of the checker.
pub fn running_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease").trim().to_string()
}

/// One run of the checker.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn outcome_from(output: Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    outcome_of(stdout, stderr, output.status.code().unwrap_or(-1))
}

/// Parse the checker's `--json` stdout, however it was captured (a pipe, a VM console).
pub fn outcome_of(stdout: String, stderr: String, exit: i32) -> Outcome {
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("checker output is not a JSON report ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    Outcome { report, exit, stdout, stderr }
}

/// Run `cmd` (which must already ask for `--json`) and parse its report.
pub fn run_json(cmd: &mut Command) -> Outcome {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    outcome_from(output)
}

fn render(report: &Report) -> String {
    let mut text = Vec::new();
    report.write_text(&mut text, moat_check::TextOptions::default()).expect("render");
    String::from_utf8_lossy(&text).into_owned()
}

/// Every listed check has the listed status; on a mismatch, show the whole report.
pub fn assert_verdicts(outcome: &Outcome, expected: &[(&str, Status)]) {
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|(id, want)| match outcome.report.get(id) {
            Some(c) if c.status == *want => None,
            Some(c) => Some(format!("{id}: want {want:?}, got {:?}: {}", c.status, c.reason)),
            None => Some(format!("{id}: missing from the report")),
        })
        .collect();
    assert!(mismatches.is_empty(), "{}\n\nfull report:\n{}", mismatches.join("\n"), render(&outcome.report));
}

pub fn assert_reason_contains(outcome: &Outcome, id: &str, needle: &str) {
    let check = outcome.report.get(id).unwrap_or_else(|| panic!("{id} missing"));
    assert!(check.reason.contains(needle), "{id} reason lacks {needle:?}: {}", check.reason);
}

/// The kernel-log check names the running kernel's banner, or, when the host's ring buffer no
/// longer holds one (a long-running CI host), says that it rotated out.
pub fn assert_kernel_log_names_the_running_kernel(outcome: &Outcome) {
    let dmesg = Command::new("dmesg").output().expect("running dmesg");
    if String::from_utf8_lossy(&dmesg.stdout).contains("Linux version") {
        assert_reason_contains(outcome, "kernel-log", &format!("Linux version {}", running_release()));
    } else {
        assert_reason_contains(outcome, "kernel-log", "its Linux version banner has rotated out");
    }
}

/// The exit status agrees with the report: 1 exactly when a high-priority check failed.
pub fn assert_exit_matches(outcome: &Outcome) {
    let want = if outcome.report.high_failed() { 1 } else { 0 };
    assert_eq!(outcome.exit, want, "exit status vs report\n{}", render(&outcome.report));
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when an ELF file asks for a dynamic loader (has a PT_INTERP program header).
pub fn has_interpreter(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    assert!(bytes.len() > 64 && &bytes[..4] == b"\x7fELF" && bytes[4] == 2, "not a 64-bit ELF file");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
    let phoff = usize::try_from(u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes"))).expect("offset");
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP
    })
}

/// The static checker: `MOAT_CHECK_STATIC` if set, else built here exactly as released
/// (glibc target, +crt-static) into its own target directory, so it cannot contend for the
/// lock of the `cargo test` that runs us.
pub fn static_checker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = match std::env::var_os("MOAT_CHECK_STATIC") {
            Some(path) => PathBuf::from(path),
            None => {
                let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from);
                let target = target.join("moat-check-static");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .current_dir(workspace())
                    .env("CARGO_TARGET_DIR", &target)
                    .env("RUSTFLAGS", "-C target-feature=+crt-static")
                    .args(["build", "--release", "-p", "moat-check", "--target", "x86_64-unknown-linux-gnu"])
                    .status()
                    .expect("run cargo build");
                assert!(status.success(), "static build of moat-check failed");
                target.join("x86_64-unknown-linux-gnu/release/moat-check")
            }
        };
        let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {}: {e}", bin.display()));
        assert!(!has_interpreter(&bytes), "{} is dynamically linked", bin.display());
        bin
    })
}

/// A tiny local image made from busybox-static with `podman import` (no registry involved).
pub fn podman_image() -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
        let tar = dir.path().join("image.tar");
        let status = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar");
        assert!(status.success(), "tar failed");
        let out = Command::new("podman").arg("import").arg(&tar).arg(IMAGE).output().expect("podman is installed");
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
    });
    IMAGE
}

/// `podman run` of the checker bind-mounted read-only at [`CHECKER_PATH`], with `--json`.
pub fn podman_checker(extra: &[&str], args: &[&str]) -> Outcome {
    let mount = format!("{}:{CHECKER_PATH}:ro", static_checker().display());
    let mut cmd = Command::new("podman");
    cmd.arg("run").arg("--rm").args(PODMAN_FLAGS).args(extra).args(["-v", &mount, "--entrypoint", CHECKER_PATH]);
    cmd.arg(podman_image()).arg("--json").args(args);
    run_json(&mut cmd)
}
