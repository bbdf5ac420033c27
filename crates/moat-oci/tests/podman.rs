//! podman 4.3 (through conmon) driving moat-oci by path: capabilities as the spec says, the
//! privileged profile inside the zone, exit codes, a tty, exec, stop, logs and rm -f.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, succeed, BIN, COMMAND_TIMEOUT_SECS};

const IMAGE: &str = "localhost/moat-oci-test/busybox:latest";

/// moat-oci's default state root, which podman's runtime calls use: podman does not hand
/// `--runtime-flag root=…` on to the cleanup process that deletes a container.
const DEFAULT_ROOT: &str = "/run/moat-oci";

/// podman with storage of its own.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("moat-oci-podman-").tempdir_in("/tmp").expect("podman dir");
        let podman = Self { dir };
        let storage = format!("containers-storage:[overlay@{}+{}]{IMAGE}", podman.dir.path().join("storage").display(), podman.dir.path().join("run").display());
        succeed(Command::new("skopeo").args(["copy", "-q", &format!("oci:{}:latest", fixture().layout.display()), &storage]), "copying the image into podman's storage");
        podman
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// podman in the foreground of the terminal it is given. Without `--foreground`, timeout
    /// puts itself in a process group of its own, which is a background one when no shell
    /// execs it (dash, the `sh` that `script` falls back to without `$SHELL`, does not), and
    /// podman then stops on SIGTTOU as it sets the terminal raw.
    fn tty_command(&self, args: &[&str]) -> Command {
        self.command_under(&["--foreground"], args)
    }

    fn command_under(&self, timeout_flags: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(timeout_flags)
            .args(["-s", "KILL", COMMAND_TIMEOUT_SECS, "podman", "--root"])
            .arg(self.dir.path().join("storage"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--cgroup-manager", "cgroupfs", "--runtime", BIN])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&succeed(&mut self.command(args), &format!("podman {args:?}")).stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f"]);
    }
}

#[test]
fn podman_runs_containers_through_moat_oci() {
    let before = entries_of_default_root();
    let podman = Podman::new();
    let caps = podman.ok(&["run", "--rm", IMAGE, "grep", "^Cap", "/proc/self/status"]);
    assert!(caps.contains("CapEff:\t00000000800405fb"), "podman's default capabilities, as its spec says: {caps}");

    let privileged = podman.ok(&["run", "--rm", "--privileged", IMAGE, "sh", "-c", "grep ^CapEff /proc/self/status; dmesg | head -1; ls /dev"]);
    assert!(privileged.contains("CapEff:\t000001ffffffffff"), "{privileged}");
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(privileged.contains("Linux version") && !privileged.contains(host_kernel.trim()), "dmesg shows the zone's kernel: {privileged}");
    assert!(privileged.lines().any(|l| l == "vda"), "the zone's devices, not the host's: {privileged}");

    let exited = podman.run(&["run", "--rm", IMAGE, "sh", "-c", "exit 42"]);
    assert_eq!(exited.status.code(), Some(42), "{}", String::from_utf8_lossy(&exited.stderr));
    let missing = podman.run(&["run", "--rm", IMAGE, "/no/such/command"]);
    assert!(!missing.status.success(), "a missing command fails");

    // -it through a pty of our own, as a user's terminal. The keys go in once the container's
    // terminal answers, and stdin stays open until it exits (no EOF racing the keys).
    let mut tty = Command::new("script")
        .args(["-qec", &format!("{} run --rm -it {IMAGE} sh -c 'tty; read line; echo got:$line; exit 3'", shell_words(&podman.tty_command(&[]))), "/dev/null"])
        .env_remove("SHELL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting script");
    let shown = OutputSoFar::collect(tty.stdout.take().unwrap());
    if !shown.wait_for("/dev/pts/0", std::time::Duration::from_secs(120)) {
        panic!("a tty in the container: {}\n{}", shown.text(), zone_logs());
    }
    let mut keys = tty.stdin.take().unwrap();
    std::io::Write::write_all(&mut keys, b"typed\n").unwrap();
    let status = tty.wait().unwrap();
    drop(keys);
    assert!(shown.wait_for("got:typed", std::time::Duration::from_secs(5)), "keys reach it: {}", shown.text());
    assert_eq!(status.code(), Some(3), "{}", shown.text());

    podman.ok(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo started; while true; do sleep 1; done"]);
    let exec = podman.run(&["exec", "web", "sh", "-c", "echo from-exec; exit 5"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "from-exec");
    assert_eq!(exec.status.code(), Some(5));
    podman.ok(&["stop", "-t", "20", "web"]);
    assert_eq!(podman.ok(&["inspect", "web", "--format", "{{.State.ExitCode}}"]).trim(), "7", "SIGTERM reached the trap");
    let logs = podman.ok(&["logs", "web"]);
    assert!(logs.contains("started") && logs.contains("got-term"), "{logs}");

    podman.ok(&["run", "-d", "--name", "stubborn", IMAGE, "sleep", "1000"]);
    podman.ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(podman.ok(&["inspect", "stubborn", "--format", "{{.State.ExitCode}}"]).trim(), "137", "SIGKILL after the timeout");

    podman.ok(&["run", "-d", "--name", "busy", IMAGE, "sleep", "1000"]);
    podman.ok(&["rm", "-f", "web", "stubborn", "busy"]);
    assert_eq!(podman.ok(&["ps", "-a", "-q"]).trim(), "");
    assert_eq!(entries_of_default_root(), before, "every zone and record the test made is gone");
}

/// The zones and records under moat-oci's default root.
fn entries_of_default_root() -> Vec<String> {
    let mut names: Vec<String> = ["zones", "oci"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(Path::new(DEFAULT_ROOT).join(dir)).into_iter().flatten().flatten())
        .map(|e| e.path().display().to_string())
        .collect();
    names.sort();
    names
}

/// A child's output, read by a thread as it comes.
struct OutputSoFar(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl OutputSoFar {
    fn collect(mut from: impl std::io::Read + Send + 'static) -> Self {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let filled = buffer.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut chunk) {
                filled.lock().expect("output buffer").extend_from_slice(&chunk[..n]);
            }
        });
        Self(buffer)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("output buffer")).replace('\r', "")
    }

    /// Whether `needle` shows up within `limit`.
    fn wait_for(&self, needle: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.text().contains(needle) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        true
    }
}

/// The last lines of every zone's logs under the default root, for a failure's message.
fn zone_logs() -> String {
    let mut shown = String::new();
    for zone in std::fs::read_dir(Path::new(DEFAULT_ROOT).join("zones")).into_iter().flatten().flatten() {
        for log in ["supervisor.log", "console.log", "qemu.log"] {
            let text = std::fs::read_to_string(zone.path().join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            shown += &format!("--- {}\n{}\n", zone.path().join(log).display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
    shown
}

/// The command line of `command`, quoted for `sh -c`.
fn shell_words(command: &Command) -> String {
    std::iter::once(command.get_program()).chain(command.get_args()).map(|a| format!("'{}'", Path::new(a).display())).collect::<Vec<_>>().join(" ")
}
