//! Docker's default mounts (moby `daemon/pkg/oci/defaults.go`), in Docker's order.

use std::path::PathBuf;

use oci_spec::runtime::Mount;

use crate::profile::{DeviceSet, Profile};

/// Size of /dev and /dev/shm: Docker's 64 MiB.
const TMPFS_SIZE: &str = "size=65536k";

struct DefaultMount {
    destination: &'static str,
    typ: &'static str,
    source: &'static str,
    options: &'static [&'static str],
    /// Read-only unless the profile makes /sys and cgroupfs writable.
    system: bool,
}

const DEFAULT_MOUNTS: [DefaultMount; 7] = [
    DefaultMount {
        destination: "/proc",
        typ: "proc",
        source: "proc",
        options: &["nosuid", "noexec", "nodev"],
        system: false,
    },
    DefaultMount {
        destination: "/dev",
        typ: "tmpfs",
        source: "tmpfs",
        options: &["nosuid", "strictatime", "mode=755", TMPFS_SIZE],
        system: false,
    },
    DefaultMount {
        destination: "/dev/pts",
        typ: "devpts",
        source: "devpts",
        options: &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
        system: false,
    },
    DefaultMount {
        destination: "/sys",
        typ: "sysfs",
        source: "sysfs",
        options: &["nosuid", "noexec", "nodev"],
        system: true,
    },
    DefaultMount {
        destination: "/sys/fs/cgroup",
        typ: "cgroup",
        source: "cgroup",
        options: &["nosuid", "noexec", "nodev"],
        system: true,
    },
    DefaultMount {
        destination: "/dev/mqueue",
        typ: "mqueue",
        source: "mqueue",
        options: &["nosuid", "noexec", "nodev"],
        system: false,
    },
    DefaultMount {
        destination: "/dev/shm",
        typ: "tmpfs",
        source: "shm",
        options: &["nosuid", "noexec", "nodev", "mode=1777", TMPFS_SIZE],
        system: false,
    },
];

/// /dev of a container with the zone's devices: the zone's devtmpfs, so nodes the zone's
/// kernel creates later appear in it. A plain bind, not rbind: the zone's own devpts stays out,
/// and the container's pts, shm and mqueue are mounted over it. With /dev a bind, runc creates
/// no nodes or links in it (init makes the /dev/fd links in the zone's devtmpfs).
const ZONE_DEV: DefaultMount = DefaultMount {
    destination: "/dev",
    typ: "bind",
    source: "/dev",
    options: &["bind", "nosuid"],
    system: false,
};

/// The type of a spec mount that stands for a volume the image declares (`VOLUME`). In the zone,
/// init makes it an anonymous volume on the scratch disk, a native filesystem (so nested
/// runtimes can put an overlay on it), seeded with the image's files at that path as Docker
/// seeds one, and hands runc a bind of it instead. runc never sees this type.
pub const IMAGE_VOLUME_TYPE: &str = "moat-image-volume";

/// The spec mount of a volume the image declares at `destination`, for init to make.
pub fn image_volume(destination: &str) -> Result<Mount, crate::SpecError> {
    oci_spec::runtime::MountBuilder::default()
        .destination(destination)
        .typ(IMAGE_VOLUME_TYPE)
        .source(IMAGE_VOLUME_TYPE)
        .options(Vec::<String>::new())
        .build()
        .map_err(|e| crate::SpecError::Oci(e.to_string()))
}

/// Bind `source`, a path of the zone, read-only into the container at `destination`.
pub fn add_read_only_bind(spec: &mut oci_spec::runtime::Spec, source: &str, destination: &str) -> Result<(), crate::SpecError> {
    let mount = oci_spec::runtime::MountBuilder::default()
        .destination(destination)
        .source(source)
        .typ("bind")
        .options(vec!["rbind".to_string(), "ro".to_string(), "nosuid".to_string(), "nodev".to_string()])
        .build()
        .map_err(|e| crate::SpecError::Oci(e.to_string()))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// The mounts of a container with `profile`: /sys and the cgroup filesystem are read-only
/// unless the profile makes them writable (`--privileged`), and /dev is the zone's when the
/// profile gives the zone's devices.
pub fn default_mounts(profile: &Profile) -> Vec<Mount> {
    DEFAULT_MOUNTS
        .iter()
        .map(|m| match (m.destination, profile.devices) {
            ("/dev", DeviceSet::Zone) => &ZONE_DEV,
            _ => m,
        })
        .map(|m| {
            let mut options: Vec<String> = m.options.iter().map(|o| o.to_string()).collect();
            if m.system && !profile.writable_sys {
                options.push("ro".to_string());
            }
            let mut mount = Mount::default();
            mount
                .set_destination(PathBuf::from(m.destination))
                .set_typ(Some(m.typ.to_string()))
                .set_source(Some(PathBuf::from(m.source)))
                .set_options(Some(options));
            mount
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{PRIVILEGED, UNPRIVILEGED};

    fn options_of(mounts: &[Mount], destination: &str) -> Vec<String> {
        mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from(destination))
            .and_then(|m| m.options().clone())
            .unwrap_or_else(|| panic!("no mount at {destination}"))
    }

    #[test]
    fn docker_order() {
        let order: Vec<PathBuf> = default_mounts(&UNPRIVILEGED)
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        let expected: Vec<PathBuf> = [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn unprivileged_sys_and_cgroup_are_read_only() {
        let mounts = default_mounts(&UNPRIVILEGED);
        assert!(options_of(&mounts, "/sys").contains(&"ro".to_string()));
        assert!(options_of(&mounts, "/sys/fs/cgroup").contains(&"ro".to_string()));
        assert!(!options_of(&mounts, "/proc").contains(&"ro".to_string()));
    }

    #[test]
    fn privileged_dev_is_the_zones_and_unprivileged_dev_a_tmpfs() {
        let dev = |profile| {
            let mounts = default_mounts(profile);
            let dev = mounts.iter().find(|m| m.destination() == &PathBuf::from("/dev")).cloned().expect("/dev");
            (dev.typ().clone().unwrap_or_default(), dev.source().clone().unwrap_or_default())
        };
        assert_eq!(dev(&PRIVILEGED), ("bind".to_string(), PathBuf::from("/dev")));
        assert_eq!(dev(&UNPRIVILEGED), ("tmpfs".to_string(), PathBuf::from("tmpfs")));
        assert_eq!(default_mounts(&PRIVILEGED).len(), DEFAULT_MOUNTS.len());
    }

    #[test]
    fn privileged_sys_and_cgroup_are_writable() {
        let mounts = default_mounts(&PRIVILEGED);
        for m in &mounts {
            assert!(
                !m.options().iter().flatten().any(|o| o == "ro"),
                "{:?}",
                m.destination()
            );
        }
    }
}
