//! The filesystems init needs before anything else.

use moat_proto::layout::{SHARE_DIR, SHARE_TAG};
use nix::mount::{mount, MsFlags};

use crate::Error;

struct EarlyMount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount { source: "proc", target: "/proc", fstype: "proc", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC), data: None },
    EarlyMount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC), data: None },
    EarlyMount { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MsFlags::MS_NOSUID, data: Some("mode=0755") },
    EarlyMount { source: "devpts", target: "/dev/pts", fstype: "devpts", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC), data: Some("newinstance,ptmxmode=0666,mode=0620") },
    EarlyMount { source: "cgroup2", target: "/sys/fs/cgroup", fstype: "cgroup2", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC), data: None },
    EarlyMount { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), data: Some("mode=0755") },
    EarlyMount { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), data: Some("mode=1777") },
];

/// Links udev would make in /dev, and runc makes in a container's own /dev. A privileged
/// container gets the zone's /dev itself, so they live there: (link, target).
const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

pub fn mount_early() -> Result<(), Error> {
    for m in EARLY_MOUNTS {
        std::fs::create_dir_all(m.target).map_err(|e| Error::Io(m.target, e))?;
        mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data)
            .map_err(|err| Error::Mount { target: m.target, err })?;
    }
    for (link, target) in DEV_LINKS {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::Io(link, e)),
            _ => {}
        }
    }
    Ok(())
}

/// The zone's share (virtio-fs), through which the host hands over files after boot.
pub fn mount_share() -> Result<(), Error> {
    std::fs::create_dir_all(SHARE_DIR).map_err(|e| Error::Io(SHARE_DIR, e))?;
    mount(Some(SHARE_TAG), SHARE_DIR, Some("virtiofs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, None::<&str>)
        .map_err(|err| Error::Mount { target: SHARE_DIR, err })
}
