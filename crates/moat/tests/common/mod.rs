//! Shared harness for end-to-end tests: a private state root, the real `moat` binary, and a
//! check that nothing a test started is left running.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod processes;
use processes::processes_mentioning;

/// Longest any single moat command may take in a test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

pub struct Moat {
    root: tempfile::TempDir,
}

impl Moat {
    pub fn new() -> Self {
        // Short paths: zone sockets must fit in a unix socket address.
        let root = tempfile::Builder::new().prefix("moat-e2e-").tempdir_in("/tmp").expect("temp root");
        Self { root }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// Run and return the output, whatever the exit status. A command still running after
    /// [`COMMAND_TIMEOUT`] is killed and the test fails, so a hang never stalls the suite.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_cmd(self.cmd(args), args)
    }

    /// [`Self::run`] with `name=value` in moat's environment.
    pub fn run_with_env(&self, (name, value): (&str, &str), args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        cmd.env(name, value);
        self.run_cmd(cmd, args)
    }

    fn run_cmd(&self, mut cmd: Command, args: &[&str]) -> Output {
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running moat");
        let pid = child.id();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let (done, fired) = (done.clone(), fired.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + COMMAND_TIMEOUT;
                while Instant::now() < deadline {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                fired.store(true, std::sync::atomic::Ordering::SeqCst);
                // SAFETY: kill(2) on the moat process this test started and still waits for.
                unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) };
            })
        };
        let out = child.wait_with_output().expect("waiting for moat");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = watchdog.join();
        assert!(!fired.load(std::sync::atomic::Ordering::SeqCst), "moat {args:?} still ran after {COMMAND_TIMEOUT:?}");
        out
    }

    /// Wait until the container's log shows `needle` on stdout.
    pub fn wait_for_log(&self, container: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stdout(&self.run(&["logs", container])).contains(needle) {
            assert!(Instant::now() < deadline, "{container} never printed {needle:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run, insist on a failure reported in one line (warnings aside), and return that line.
    pub fn one_error_line(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "moat {args:?} succeeded");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "moat {args:?} printed more than one line:\n{err}");
        assert!(err.starts_with("moat: "), "{err}");
        err
    }

    /// Run, insist on success, and return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "moat {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn inspect(&self, zone: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["zone", "inspect", zone])).expect("inspect prints JSON")
    }

    pub fn state(&self, zone: &str) -> (String, String) {
        let v = self.inspect(zone);
        (v["state"].as_str().unwrap_or_default().to_string(), v["reason"].as_str().unwrap_or_default().to_string())
    }

    /// Wait until the zone reaches `state`, or panic after `timeout`.
    pub fn wait_state(&self, zone: &str, state: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (now, reason) = self.state(zone);
            if now == state {
                return reason;
            }
            assert!(Instant::now() < deadline, "zone {zone} stayed {now} ({reason}), expected {state}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self, zone: &str, which: &str) -> Option<i32> {
        self.inspect(zone)["pids"][which].as_i64().and_then(|p| i32::try_from(p).ok())
    }

    /// Processes whose command line mentions this test's root: supervisors and QEMUs.
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(self.root())
    }

    /// Wait for every process of this root to end; panic naming them if any stay.
    pub fn assert_nothing_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.processes(), vec![], "processes left running");
    }

    /// Every file and directory below the zones directory, except the store's lock file.
    pub fn zone_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.root().join("zones"), &mut found);
        found.retain(|p| p.file_name().is_some_and(|n| n != ".lock"));
        found
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        for (pid, _) in self.processes() {
            // SAFETY: kill(2) on a pid whose command line names this test's private root.
            unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) };
        }
        // A test that failed half-way leaves zones: their shares stay mounted (so the root
        // cannot be deleted) and their cgroups stay, unless they are removed.
        for entry in std::fs::read_dir(self.root().join("zones")).into_iter().flatten().flatten() {
            if entry.file_name() != ".lock" {
                let _ = self.cmd(&["zone", "rm", "-f"]).arg(entry.file_name()).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
    }
}

/// The cgroup directories still holding (or made for) the QEMU of the zone with id `zone_id`:
/// `moat-ID` below the supervisor's cgroup in any v1 hierarchy.
pub fn zone_cgroups(zone_id: &str) -> Vec<PathBuf> {
    fn find(dir: &Path, name: &str, depth: u32, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name() == name {
                    found.push(path);
                } else if depth > 0 {
                    find(&path, name, depth - 1, found);
                }
            }
        }
    }
    let mut found = Vec::new();
    find(Path::new("/sys/fs/cgroup"), &format!("moat-{zone_id}"), 4, &mut found);
    found
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        }
        found.push(path);
    }
}


/// stderr without moat's warning lines (such as the TCG fallback note on hosts without usable KVM).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.starts_with("moat: warning:")).map(|l| format!("{l}\n")).collect()
}

pub fn stderr_raw(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The busybox test image (tests/fixtures/busybox-image.sh), built once per test binary.
pub fn busybox_layout() -> &'static Path {
    static LAYOUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    fixture_layout(&LAYOUT, "busybox")
}

/// The OCI layout `tests/fixtures/NAME-image.sh` builds, built once into `cell`.
fn fixture_layout(cell: &'static std::sync::OnceLock<PathBuf>, name: &str) -> &'static Path {
    cell.get_or_init(|| {
        remove_fixtures_of_ended_runs(name);
        let dir = std::env::temp_dir().join(format!("moat-e2e-{name}-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/{name}-image.sh"));
        let status = Command::new(script).arg(&dir).status().expect("running the image fixture script");
        assert!(status.success(), "building the {name} image failed");
        dir
    })
}

/// A fixture lives as long as its test binary's run (a static cannot clean up after itself),
/// so each run removes those of runs that ended.
fn remove_fixtures_of_ended_runs(name: &str) {
    let prefix = format!("moat-e2e-{name}-");
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The reference the busybox image is imported under.
pub const BUSYBOX: &str = "busybox:test";

/// The busybox image with `VOLUME /data`, holding /data/seed (tests/fixtures/volume-image.sh),
/// built once per test binary.
pub fn volume_image_layout() -> &'static Path {
    static LAYOUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    fixture_layout(&LAYOUT, "volume")
}

/// The Debian 12 image with podman, buildah, crun and runc (tests/fixtures/debian-image.sh),
/// built once per test binary from the fixture's cache.
pub fn debian_layout() -> &'static Path {
    static LAYOUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    fixture_layout(&LAYOUT, "debian")
}

/// The reference the Debian image is imported under.
pub const DEBIAN: &str = "debian-ci:test";

impl Moat {
    /// A state root with the busybox image imported.
    pub fn with_busybox() -> Self {
        let moat = Self::new();
        moat.ok(&["image", "import", &busybox_layout().to_string_lossy(), "--name", BUSYBOX]);
        moat
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
