//! A private containerd for the shim's tests: its root, state and socket in a temp dir, moat's
//! zones under the same dir, and the busybox test image imported. With CRI, it runs in a network
//! namespace of its own, so the CNI bridge and the pods' addresses never touch the host's.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../moat/tests/common/processes.rs"]
mod processes;
use processes::processes_mentioning;

/// The containerd namespace `ctr` tests use; CRI uses its own.
pub const NAMESPACE: &str = "moat-test";
const CRI_NAMESPACE: &str = "k8s.io";
pub const BUSYBOX: &str = "busybox:test";
/// The busybox image, and the same image sleeping, as the pods' sandbox (pause) image.
pub const CRI_BUSYBOX: &str = "docker.io/moat-test/busybox:latest";
const CRI_PAUSE: &str = "docker.io/moat-test/busybox:pause";
/// The pods' CNI network (inside containerd's own network namespace).
pub const POD_SUBNET: &str = "10.88.77.0/24";
/// Longest one `ctr` command may take (a zone boots in about 3 s under TCG).
const CTR_TIMEOUT: Duration = Duration::from_secs(180);

pub fn shim() -> &'static str {
    env!("CARGO_BIN_EXE_containerd-shim-moat-v2")
}

pub struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    namespace: &'static str,
}

impl Containerd {
    /// A running containerd, CRI off, with the busybox image imported.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A running containerd with CRI, the runtime handler `moat`, a CNI bridge network, and the
    /// busybox and pause images imported.
    pub fn start_with_cri() -> Self {
        Self::launch(true)
    }

    fn launch(cri: bool) -> Self {
        // Short paths: zone sockets must fit in a unix socket address.
        let dir = tempfile::Builder::new().prefix("moat-ctd-").tempdir_in("/tmp").expect("temp dir");
        let config = private_config(dir.path(), cri);
        std::fs::write(dir.path().join("config.toml"), config).expect("writing containerd's config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("containerd's log");
        let mut command = if cri {
            std::fs::create_dir_all(dir.path().join("cni")).expect("the CNI config dir");
            std::fs::write(dir.path().join("cni/10-moat-test.conflist"), cni_config()).expect("the CNI config");
            let mut command = Command::new("unshare");
            command.args(["--net", "sh", "-c", "ip link set lo up && exec containerd --config \"$0\""]);
            command
        } else {
            let mut command = Command::new("containerd");
            command.arg("--config");
            command
        };
        // containerd 1.6 finds a CRI runtime's shim on its PATH only.
        let shim_dir = Path::new(shim()).parent().expect("the shim's directory");
        let path = format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap_or_default());
        let daemon = command
            .arg(dir.path().join("config.toml"))
            .env("MOAT_ROOT", dir.path().join("moat"))
            .env("PATH", path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd (install the containerd package)");
        let namespace = if cri { CRI_NAMESPACE } else { NAMESPACE };
        let containerd = Containerd { dir, daemon, namespace };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.socket().exists() {
            assert!(Instant::now() < deadline, "containerd did not start: {}", containerd.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        containerd.import_busybox(cri);
        containerd
    }

    pub fn socket_path(&self) -> PathBuf {
        self.socket()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in the tests' namespace; killed after [`CTR_TIMEOUT`].
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ctr");
        let deadline = Instant::now() + CTR_TIMEOUT;
        while child.try_wait().expect("waiting for ctr").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ctr {args:?} still ran after {CTR_TIMEOUT:?}; containerd's log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("ctr's output")
    }

    /// `ctr` against this containerd, left running with its stdout piped (`ctr events`).
    pub fn spawn_ctr(&self, args: &[&str]) -> Child {
        Command::new("ctr").arg("--address").arg(self.socket()).args(["-n", self.namespace]).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("running ctr")
    }

    /// `ctr run` with moat's shim.
    pub fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", shim()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[BUSYBOX, id]);
        args.extend_from_slice(command);
        self.ctr(&args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn import_busybox(&self, cri: bool) {
        let layout = self.dir().join("layout");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/busybox-image.sh");
        assert!(Command::new(script).arg(&layout).status().expect("the busybox fixture").success(), "building the busybox image");
        if cri {
            let image = format!("{}:latest", layout.display());
            let pause = ["config", "--image", &image, "--tag", "pause", "--config.cmd", "sleep", "--config.cmd", "1000000"];
            assert!(Command::new("umoci").args(pause).stdout(Stdio::null()).status().expect("umoci").success(), "tagging the pause image");
        }
        let archive = self.dir().join("busybox.tar");
        assert!(Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).arg(".").status().expect("tar").success());
        let archive = archive.to_string_lossy();
        if cri {
            self.ok(&["images", "import", "--base-name", CRI_BUSYBOX.trim_end_matches(":latest"), &archive]);
        } else {
            self.ok(&["images", "import", "--index-name", BUSYBOX, &archive]);
        }
    }

    /// Processes that name this containerd's dir, other than containerd itself: shims,
    /// zone supervisors, QEMUs, virtiofsds.
    pub fn leftovers(&self) -> Vec<String> {
        processes_mentioning(self.dir()).into_iter().filter(|(pid, _)| *pid != self.daemon.id()).map(|(pid, cmdline)| format!("{pid} {cmdline}")).collect()
    }

    /// Nothing of a finished container is left: no process, no zone, no container record.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.leftovers().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.leftovers(), Vec::<String>::new(), "processes left running");
        let zones: Vec<_> = std::fs::read_dir(self.dir().join("moat/zones")).into_iter().flatten().flatten().filter(|e| e.file_name() != ".lock").map(|e| e.path()).collect();
        assert_eq!(zones, Vec::<PathBuf>::new(), "zones left behind");
        assert_eq!(self.ok(&["containers", "ls", "-q"]).trim(), "", "containers left in containerd");
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for line in self.leftovers() {
            if let Some(pid) = line.split(' ').next().and_then(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) on a process whose command line names this test's own dir.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // Snapshots stay mounted under the root if a test failed half-way.
        let _ = Command::new("umount").arg("-R").arg("-l").arg(self.dir().join("root")).stderr(Stdio::null()).status();
    }
}

/// containerd's defaults, made private to `dir`; CRI off unless `cri`, and then the runtime
/// handler `moat`, the busybox pause image and the CNI config in `dir/cni`.
fn private_config(dir: &Path, cri: bool) -> String {
    let defaults = Command::new("containerd").args(["config", "default"]).output().expect("containerd config default");
    assert!(defaults.status.success(), "containerd config default failed");
    let d = dir.display();
    String::from_utf8_lossy(&defaults.stdout)
        .lines()
        .map(|line| match line.trim_start() {
            l if l.starts_with("root = ") => format!("root = \"{d}/root\""),
            l if l.starts_with("state = ") => format!("state = \"{d}/state\""),
            l if l.starts_with("disabled_plugins = ") && !cri => "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]".to_string(),
            l if l.starts_with("sandbox_image = ") => format!("    sandbox_image = \"{CRI_PAUSE}\""),
            "bin_dir = \"/opt/cni/bin\"" => "      bin_dir = \"/usr/lib/cni\"".to_string(),
            "conf_dir = \"/etc/cni/net.d\"" => format!("      conf_dir = \"{d}/cni\""),
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]" => format!(
                "        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\n          runtime_type = \"io.containerd.moat.v2\"\n          pod_annotations = [\"moat.*\"]\n{line}"
            ),
            "address = \"/run/containerd/containerd.sock\"" => format!("  address = \"{d}/containerd.sock\""),
            // The host lacks CAP_SYS_RESOURCE: runc may not raise a score (MACHINE.md).
            "restrict_oom_score_adj = false" => "    restrict_oom_score_adj = true".to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bridge with a gateway and a default route: the veth's address, which the zone takes over.
fn cni_config() -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"moat-test","plugins":[{{"type":"bridge","bridge":"moatcri0","isGateway":true,"ipMasq":false,
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{POD_SUBNET}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}]}}"#
    )
}

pub fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("the host's kernel release").trim().to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
