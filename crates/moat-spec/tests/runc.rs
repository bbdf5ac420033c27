//! Runs specs built by moat-spec under a real OCI runtime (Debian's runc) on this machine, with
//! a busybox rootfs, and reads back what the container process really got: capability masks,
//! user namespace, seccomp mode, masked paths, and whether dmesg works.
//!
//! Needs root, `runc` and `busybox-static` (both in scripts/apt-packages.txt). This checks the
//! spec against a runtime; it does not stand in for the zone tests, which run it in a zone.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use moat_spec::caps::CapSet;
use moat_spec::devices::mask_host_links;
use moat_spec::profile::ZONE_ID_MAP_START;
use moat_spec::user::apply_user;
use moat_spec::{build_spec, is_privileged, to_json, RunOptions};
use oci_spec::image::ImageConfiguration;

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 8] = [
    "sh", "grep", "cat", "dmesg", "unshare", "echo", "true", "head",
];

/// What the container prints about itself.
const PROBE: &str = "grep -E '^(Cap|Seccomp:|NoNewPrivs)' /proc/self/status; \
    echo uid_map $(cat /proc/self/uid_map); \
    if dmesg >/dev/null 2>&1; then echo dmesg=ok; else echo dmesg=denied; fi; \
    if unshare -m true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi; \
    echo mount_sys $(grep ' /sys ' /proc/self/mountinfo | head -n 1); \
    echo masked_keys $(grep -c ' /proc/keys ' /proc/self/mountinfo); \
    echo id $(id -u 2>/dev/null)";

static RUNS: AtomicUsize = AtomicUsize::new(0);

struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A busybox rootfs owned by `owner`, as the zone must present it to a container whose
    /// root maps to that id.
    fn new(owner: u32) -> Bundle {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS.iter().chain(&["id"]) {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("applet link");
        }
        fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
        chown_tree(&rootfs, owner);
        Bundle { dir }
    }

    /// Builds the spec, applies the guest-side steps, runs it and returns its stdout.
    fn run(&self, opts: RunOptions) -> String {
        let image = ImageConfiguration::from_reader(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},
                "rootfs":{"type":"layers","diff_ids":[]}}"#
                .as_slice(),
        )
        .expect("image config");
        let opts = RunOptions {
            command: vec!["sh".into(), "-c".into(), PROBE.into()],
            ..opts
        };
        let mut spec = build_spec(&image, &opts, &BTreeMap::new()).expect("spec");
        let rootfs = self.dir.path().join("rootfs");
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
        let group = fs::read_to_string(rootfs.join("etc/group")).expect("group");
        apply_user(&mut spec, Some(&passwd), Some(&group)).expect("user");
        if is_privileged(&spec) {
            let names = ["null", "console", "ttyS0"].map(String::from);
            mask_host_links(&mut spec, &names, false).expect("masks");
        }
        fs::write(
            self.dir.path().join("config.json"),
            to_json(&spec).expect("json"),
        )
        .expect("write config.json");

        let id = format!(
            "moat-spec-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        );
        let state = self.dir.path().join("state");
        let output = Command::new(RUNC)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(self.dir.path())
            .arg(&id)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {RUNC}: {e} (install the runc package)"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "runc failed: {}\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

fn chown_tree(path: &Path, owner: u32) {
    std::os::unix::fs::lchown(path, Some(owner), Some(owner)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), owner);
        }
    }
}


fn field<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in output:\n{output}"))
}

fn mask(output: &str, key: &str) -> u64 {
    u64::from_str_radix(field(output, key), 16).expect("hex mask")
}

/// The bounding set runc itself runs with: no container can get more.
fn host_bounding() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    mask(&status, "CapBnd:")
}

fn require_root_and_runc() {
    assert!(
        Path::new(RUNC).exists(),
        "{RUNC} missing: apt-get install runc"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: apt-get install busybox-static"
    );
    let status = fs::read_to_string("/proc/self/status").expect("status");
    assert_eq!(
        field(&status, "Uid:").split_whitespace().next(),
        Some("0"),
        "needs root"
    );
}

#[test]
fn unprivileged_container_gets_dockers_caps_in_a_user_namespace() {
    require_root_and_runc();
    let out = Bundle::new(ZONE_ID_MAP_START).run(RunOptions::default());
    println!("{out}");
    assert_eq!(mask(&out, "CapEff:"), 0xa80425fb);
    assert_eq!(mask(&out, "CapPrm:"), 0xa80425fb);
    assert_eq!(mask(&out, "CapBnd:"), 0xa80425fb);
    assert_eq!(mask(&out, "CapInh:"), 0);
    assert_eq!(mask(&out, "CapAmb:"), 0);
    assert_eq!(field(&out, "Seccomp:"), "2");
    assert_eq!(field(&out, "NoNewPrivs:"), "0");
    assert_eq!(field(&out, "uid_map"), "0 100000 65536");
    assert_eq!(field(&out, "unshare="), "denied");
    assert_eq!(field(&out, "dmesg="), "denied");
    assert!(
        field(&out, "mount_sys").contains(" ro"),
        "/sys is read-only"
    );
    assert_eq!(field(&out, "masked_keys"), "1");
    assert_eq!(field(&out, "id"), "0");
}

#[test]
fn cap_add_syslog_still_cannot_read_the_kernel_log() {
    require_root_and_runc();
    let restrict = fs::read_to_string("/proc/sys/kernel/dmesg_restrict").expect("dmesg_restrict");
    assert_eq!(
        restrict.trim(),
        "1",
        "the CAP_SYSLOG lesson holds only with kernel.dmesg_restrict=1 (see MACHINE.md)"
    );
    let out = Bundle::new(ZONE_ID_MAP_START).run(RunOptions {
        cap_add: vec!["SYSLOG".into()],
        ..RunOptions::default()
    });
    println!("{out}");
    assert_eq!(mask(&out, "CapEff:"), 0xa80425fb | (1 << 34));
    assert_eq!(field(&out, "uid_map"), "0 100000 65536");
    assert_eq!(field(&out, "dmesg="), "denied");
}

#[test]
fn cap_add_sys_admin_lets_unshare_through_seccomp() {
    require_root_and_runc();
    let out = Bundle::new(ZONE_ID_MAP_START).run(RunOptions {
        cap_add: vec!["SYS_ADMIN".into()],
        ..RunOptions::default()
    });
    println!("{out}");
    assert_eq!(field(&out, "unshare="), "ok");
}

#[test]
fn privileged_container_gets_every_cap_and_no_seccomp() {
    require_root_and_runc();
    // runc cannot grant what it lacks itself (these machines run without CAP_SYS_RESOURCE),
    // so drop exactly that: it also exercises --privileged with --cap-drop.
    let all = CapSet::all().mask() & host_bounding();
    let missing = CapSet::from_mask(!all).names();
    let out = Bundle::new(0).run(RunOptions {
        privileged: true,
        cap_drop: missing.iter().map(|name| name.to_string()).collect(),
        ..RunOptions::default()
    });
    println!("{out}");
    assert_eq!(mask(&out, "CapEff:"), all);
    assert_eq!(mask(&out, "CapPrm:"), all);
    assert_eq!(mask(&out, "CapBnd:"), all);
    assert_eq!(mask(&out, "CapInh:"), 0);
    assert_eq!(field(&out, "Seccomp:"), "0");
    assert_eq!(field(&out, "uid_map"), "0 0 4294967295");
    assert_eq!(field(&out, "masked_keys"), "0");
    assert!(field(&out, "mount_sys").contains(" rw"), "/sys is writable");
    // No user namespace: CAP_SYSLOG counts, so dmesg reads this machine's kernel log. In a
    // zone that is the zone's kernel, which is the point of running privileged there.
    assert_eq!(field(&out, "dmesg="), "ok");
}
