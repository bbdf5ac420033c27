//! Device nodes and device cgroup rules.
//!
//! Unprivileged containers get Docker's default devices. Privileged ones get every device of
//! their zone; only the guest can list those, so it calls [`add_zone_devices`] with what it
//! finds under the zone's /dev.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Spec};

/// Most zone devices accepted. A zone has a few hundred; the list ends up in the spec.
pub const MAX_ZONE_DEVICES: usize = 4096;

/// Longest device path accepted.
const MAX_DEVICE_PATH: usize = 256;

/// Sub-directories of /dev never passed through, as containerd's `HostDevices` skips them:
/// the container gets its own pts, shm and mqueue mounts.
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Docker's default device nodes: (path, major, minor). All are character devices, mode 0666.
const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Character devices the default cgroup rules allow besides DEFAULT_DEVICES: /dev/console
/// (5:1), /dev/pts/ptmx (5:2) and every pty (136:*).
const TERMINAL_DEVICES: [(i64, Option<i64>); 3] = [(5, Some(1)), (5, Some(2)), (136, None)];

/// Full access for a device cgroup rule.
const RWM: &str = "rwm";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("zone device path {0:?} is not a plain absolute path under /dev")]
    BadPath(String),
    #[error("{count} zone devices, more than the {max} allowed")]
    TooMany { count: usize, max: usize },
    #[error("the spec has no linux section to add devices to")]
    NoLinux,
}

/// The kind of a device node found in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

/// One device node under the zone's /dev, as the guest runner stats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDevice {
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// st_mode; only the permission bits are used.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Docker's default device nodes.
pub fn default_devices() -> Vec<LinuxDevice> {
    DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| {
            let mut device = LinuxDevice::default();
            device
                .set_path(PathBuf::from(path))
                .set_typ(LinuxDeviceType::C)
                .set_major(*major)
                .set_minor(*minor)
                .set_file_mode(Some(0o666))
                .set_uid(Some(0))
                .set_gid(Some(0));
            device
        })
        .collect()
}

/// Device cgroup rules for the default devices: deny everything, allow mknod of any node (as
/// runc does), then full access to the default devices, the console and ptys.
pub fn default_cgroup_rules() -> Vec<LinuxDeviceCgroup> {
    let mut rules = vec![
        rule(false, None, None, None, RWM),
        rule(true, Some(LinuxDeviceType::C), None, None, "m"),
        rule(true, Some(LinuxDeviceType::B), None, None, "m"),
    ];
    for (_, major, minor) in DEFAULT_DEVICES {
        rules.push(rule(
            true,
            Some(LinuxDeviceType::C),
            Some(major),
            Some(minor),
            RWM,
        ));
    }
    for (major, minor) in TERMINAL_DEVICES {
        rules.push(rule(
            true,
            Some(LinuxDeviceType::C),
            Some(major),
            minor,
            RWM,
        ));
    }
    rules
}

/// The single rule of a privileged container: every device, full access.
pub fn allow_all_rule() -> LinuxDeviceCgroup {
    rule(true, None, None, None, RWM)
}

/// The zone's devices as spec entries, skipped as containerd skips host devices: fifos,
/// /dev/console, and the pts, shm, fd and mqueue directories. Duplicate paths keep the first.
pub fn privileged_devices(found: &[ZoneDevice]) -> Result<Vec<LinuxDevice>, DeviceError> {
    if found.len() > MAX_ZONE_DEVICES {
        return Err(DeviceError::TooMany {
            count: found.len(),
            max: MAX_ZONE_DEVICES,
        });
    }
    let mut seen = HashSet::new();
    let mut devices = Vec::new();
    for node in found {
        check_path(&node.path)?;
        let typ = match node.kind {
            DeviceKind::Char => LinuxDeviceType::C,
            DeviceKind::Block => LinuxDeviceType::B,
            DeviceKind::Fifo => continue,
        };
        if skipped(&node.path) || !seen.insert(node.path.clone()) {
            continue;
        }
        let mut device = LinuxDevice::default();
        device
            .set_path(node.path.clone())
            .set_typ(typ)
            .set_major(i64::from(node.major))
            .set_minor(i64::from(node.minor))
            .set_file_mode(Some(node.mode & 0o7777))
            .set_uid(Some(node.uid))
            .set_gid(Some(node.gid));
        devices.push(device);
    }
    Ok(devices)
}

/// Gives a privileged container's spec the zone's devices and an allow-all cgroup rule.
pub fn add_zone_devices(spec: &mut Spec, found: &[ZoneDevice]) -> Result<(), DeviceError> {
    let devices = privileged_devices(found)?;
    let linux = spec.linux_mut().as_mut().ok_or(DeviceError::NoLinux)?;
    linux.set_devices(Some(devices));
    let resources = linux.resources_mut().get_or_insert_with(Default::default);
    resources.set_devices(Some(vec![allow_all_rule()]));
    Ok(())
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow)
        .set_typ(typ.or(Some(LinuxDeviceType::A)))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    rule
}

fn check_path(path: &Path) -> Result<(), DeviceError> {
    let text = path.to_string_lossy();
    let plain = path.starts_with("/dev")
        && path != Path::new("/dev")
        && text.len() <= MAX_DEVICE_PATH
        && !text.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(DeviceError::BadPath(
            text.chars().take(MAX_DEVICE_PATH).collect(),
        ))
    }
}

fn skipped(path: &Path) -> bool {
    if path == Path::new("/dev/console") {
        return true;
    }
    let mut below_dev = path.components().skip(2);
    let in_skipped_dir = below_dev
        .next()
        .is_some_and(|first| SKIPPED_DEV_DIRS.iter().any(|dir| first.as_os_str() == *dir));
    in_skipped_dir && below_dev.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, kind: DeviceKind, major: u32, minor: u32) -> ZoneDevice {
        ZoneDevice {
            path: PathBuf::from(path),
            kind,
            major,
            minor,
            mode: 0o20660,
            uid: 0,
            gid: 6,
        }
    }

    #[test]
    fn default_devices_are_dockers_six() {
        let paths: Vec<PathBuf> = default_devices().iter().map(|d| d.path().clone()).collect();
        assert_eq!(paths.len(), 6);
        for expected in [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
        ] {
            assert!(paths.contains(&PathBuf::from(expected)), "{expected}");
        }
    }

    #[test]
    fn default_rules_start_with_deny_all_and_allow_each_default_device() {
        let rules = default_cgroup_rules();
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());
        let shown: Vec<String> = rules.iter().skip(1).map(|r| r.to_string()).collect();
        for expected in [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
        ] {
            assert!(shown.contains(&expected.to_string()), "{expected}");
        }
        assert!(rules.iter().skip(1).all(|r| r.allow()));
        assert_eq!(rules.len(), 12);
    }

    #[test]
    fn privileged_devices_skip_like_containerd() {
        let found = vec![
            node("/dev/vda", DeviceKind::Block, 254, 0),
            node("/dev/kmsg", DeviceKind::Char, 1, 11),
            node("/dev/console", DeviceKind::Char, 5, 1),
            node("/dev/pts/0", DeviceKind::Char, 136, 0),
            node("/dev/shm/x", DeviceKind::Char, 1, 1),
            node("/dev/initctl", DeviceKind::Fifo, 0, 0),
            node("/dev/net/tun", DeviceKind::Char, 10, 200),
            node("/dev/kmsg", DeviceKind::Char, 1, 11),
        ];
        let devices = privileged_devices(&found).expect("devices");
        let paths: Vec<&Path> = devices.iter().map(|d| d.path().as_path()).collect();
        assert_eq!(
            paths,
            vec![
                Path::new("/dev/vda"),
                Path::new("/dev/kmsg"),
                Path::new("/dev/net/tun")
            ]
        );
        assert_eq!(devices[0].typ(), LinuxDeviceType::B);
        assert_eq!((devices[0].major(), devices[0].minor()), (254, 0));
        assert_eq!(devices[0].file_mode(), Some(0o660));
        assert_eq!(devices[0].gid(), Some(6));
    }

    #[test]
    fn bad_paths_are_rejected() {
        for bad in [
            "/etc/passwd",
            "/dev/../etc/shadow",
            "dev/null",
            "/dev",
            "/devices/x",
        ] {
            let found = [node(bad, DeviceKind::Char, 1, 3)];
            assert!(
                matches!(privileged_devices(&found), Err(DeviceError::BadPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn device_count_is_bounded() {
        let found = vec![node("/dev/null", DeviceKind::Char, 1, 3); MAX_ZONE_DEVICES + 1];
        assert!(matches!(
            privileged_devices(&found),
            Err(DeviceError::TooMany { .. })
        ));
    }

    #[test]
    fn add_zone_devices_sets_allow_all() {
        let mut spec = Spec::default();
        add_zone_devices(&mut spec, &[node("/dev/vda", DeviceKind::Block, 254, 0)])
            .expect("add devices");
        let linux = spec.linux().as_ref().expect("linux");
        assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(rules[0].allow());
    }
}
