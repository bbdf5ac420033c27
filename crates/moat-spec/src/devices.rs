//! Device nodes and device cgroup rules.
//!
//! Unprivileged containers get Docker's default devices. Privileged ones get the zone's live
//! /dev, a bind of its devtmpfs (see [`crate::mounts`]), so devices the zone's kernel creates
//! later (after `modprobe tun`, a new loop device, a partition) appear in them. The zone's
//! links to the host are masked there: only the guest can list them, so it calls
//! [`mask_host_links`] with the names it finds in the zone's /dev.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Spec};

/// Most /dev names [`mask_host_links`] looks at. A zone has a few hundred nodes.
pub const MAX_DEV_NAMES: usize = 4096;

/// Nodes of the zone's /dev that lead to the host, by name prefix: virtio-serial ports
/// (`vportNpM`, the control channel among them), virtio consoles (`hvcN`) and the serial
/// console (`ttySN`), which the host records as the zone's console log.
const HOST_LINK_PREFIXES: [&str; 3] = ["vport", "hvc", "ttyS"];

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
    #[error("{count} names in the zone's /dev, more than the {max} looked at")]
    TooMany { count: usize, max: usize },
    #[error("the spec has no linux section to add devices to")]
    NoLinux,
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

/// Mask, in a privileged container's spec, the nodes among `dev_names` (file names in the
/// zone's /dev) that lead to the host, and /dev/console unless the container has a terminal
/// (runc then binds its pty there). runc binds /dev/null over each masked path. This shapes
/// what the container sees, not what it can do: it holds every capability and may mknod any
/// node, and the host treats the channel and the console as hostile input either way.
pub fn mask_host_links(spec: &mut Spec, dev_names: &[String], terminal: bool) -> Result<(), DeviceError> {
    if dev_names.len() > MAX_DEV_NAMES {
        return Err(DeviceError::TooMany { count: dev_names.len(), max: MAX_DEV_NAMES });
    }
    let mut masked: Vec<String> = dev_names
        .iter()
        .filter(|name| !name.contains('/') && HOST_LINK_PREFIXES.iter().any(|prefix| name.starts_with(prefix)))
        .map(|name| Path::new("/dev").join(name).to_string_lossy().into_owned())
        .collect();
    if !terminal {
        masked.push("/dev/console".to_string());
    }
    masked.sort();
    masked.dedup();
    let linux = spec.linux_mut().as_mut().ok_or(DeviceError::NoLinux)?;
    linux.masked_paths_mut().get_or_insert_with(Vec::new).extend(masked);
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn host_links_are_masked_and_the_console_unless_a_terminal() {
        let names: Vec<String> = ["null", "vport0p1", "vport1p0", "hvc0", "ttyS0", "tty0", "net", "fuse", "kmsg"].map(String::from).to_vec();
        let bare = || {
            let mut spec = Spec::default();
            spec.linux_mut().get_or_insert_with(Default::default).set_masked_paths(None);
            spec
        };
        let mut spec = bare();
        mask_host_links(&mut spec, &names, false).expect("mask");
        let masked = spec.linux().as_ref().and_then(|l| l.masked_paths().clone()).expect("masked");
        assert_eq!(masked, ["/dev/console", "/dev/hvc0", "/dev/ttyS0", "/dev/vport0p1", "/dev/vport1p0"]);

        let mut with_tty = bare();
        mask_host_links(&mut with_tty, &names, true).expect("mask");
        let masked = with_tty.linux().as_ref().and_then(|l| l.masked_paths().clone()).expect("masked");
        assert!(!masked.contains(&"/dev/console".to_string()), "runc binds the pty there");
    }

    #[test]
    fn the_name_list_is_bounded() {
        let names = vec!["null".to_string(); MAX_DEV_NAMES + 1];
        assert!(matches!(mask_host_links(&mut Spec::default(), &names, false), Err(DeviceError::TooMany { .. })));
    }
}
