//! Shared harness for moat-oci's end-to-end tests: a private state root, a runc-style bundle
//! over the busybox fixture image, and a check that no zone is left.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Longest any single command may take in a test (`timeout` kills it after).
pub const COMMAND_TIMEOUT_SECS: &str = "240";

pub const BIN: &str = env!("CARGO_BIN_EXE_moat-oci");

/// The busybox fixture as an OCI layout and as an unpacked bundle, made once per test binary.
pub struct Fixture {
    pub layout: PathBuf,
    /// The unpacked image's config.json (umoci's runtime spec) and rootfs.
    pub bundle: PathBuf,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // A static is never dropped, so a temporary directory would outlive the run: the fixture
        // lives in cargo's scratch directory for tests instead, one per test binary, remade by
        // each run.
        let binary = std::env::current_exe().ok().and_then(|exe| Some(exe.file_stem()?.to_string_lossy().into_owned())).unwrap_or_default();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("moat-oci-fixture-{binary}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let layout = dir.join("layout");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/busybox-image.sh");
        succeed(Command::new("bash").arg(script).arg(&layout), "building the busybox image");
        let bundle = dir.join("bundle");
        succeed(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:latest", layout.display())).arg(&bundle), "unpacking the image");
        Fixture { layout, bundle }
    })
}

pub fn succeed(command: &mut Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// One moat-oci state root.
pub struct Oci {
    root: tempfile::TempDir,
}

impl Oci {
    pub fn new() -> Self {
        // Short paths: zone sockets must fit in a unix socket address.
        Self { root: tempfile::Builder::new().prefix("moat-oci-").tempdir_in("/tmp").expect("temp root") }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", COMMAND_TIMEOUT_SECS, BIN, "--root"]).arg(self.root()).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running moat-oci")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "moat-oci {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's OCI state.
    pub fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state prints JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().expect("a status").to_string()
    }

    /// A bundle in `dir` whose process runs `args`, over the fixture's rootfs.
    pub fn bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        let fixture = fixture();
        let text = std::fs::read_to_string(fixture.bundle.join("config.json")).expect("the fixture's config.json");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        config["process"]["args"] = serde_json::json!(args);
        config["process"]["terminal"] = serde_json::json!(false);
        config["root"]["path"] = serde_json::json!(fixture.bundle.join("rootfs"));
        let dir = self.root().join(format!("bundle-{name}"));
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::write(dir.join("config.json"), config.to_string()).expect("writing config.json");
        dir
    }

    /// No zone of this root is left, on disk or as a process.
    pub fn assert_no_zone_left(&self) {
        let zones: Vec<_> = std::fs::read_dir(self.root().join("zones")).map(|d| d.flatten().map(|e| e.file_name()).filter(|n| n != ".lock").collect()).unwrap_or_default();
        assert!(zones.is_empty(), "zones left: {zones:?}");
        let root = self.root().to_string_lossy().into_owned();
        let left: Vec<String> = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&root) && c.contains("qemu"))
            .collect();
        assert!(left.is_empty(), "QEMU still runs for this root: {left:?}");
    }
}

impl Drop for Oci {
    /// Whatever a failed test left: every container, with its zone.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.root().join("oci")) else { return };
        for id in entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()) {
            let _ = self.run(&["delete", "--force", &id]);
        }
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
