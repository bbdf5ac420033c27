//! The two privilege profiles, unprivileged and `--privileged`, as data.
//!
//! Everything that differs between them lives here; the builder only reads these values.
//! The facts are Docker's (moby `daemon/pkg/oci/defaults.go` and `daemon/oci_linux.go`), plus
//! moat's user namespace for unprivileged containers.

use oci_spec::runtime::LinuxNamespaceType;

use crate::caps::CapSet;

/// First zone uid/gid that container root maps to in an unprivileged container. Container ids
/// 0..ZONE_ID_MAP_SIZE land on zone ids ZONE_ID_MAP_START.. so root in the container holds no
/// capability over the zone's own user namespace.
pub const ZONE_ID_MAP_START: u32 = 100_000;

/// How many uids/gids the unprivileged container's user namespace maps.
pub const ZONE_ID_MAP_SIZE: u32 = 65_536;

/// Paths a container may not read (Docker's `defaultLinuxMaskedPaths`, without the per-CPU
/// `thermal_throttle` entries Docker adds only for CPUs that exist on its host).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths a container sees read-only (Docker's default `ReadonlyPaths`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Namespaces both profiles create; the user namespace is added by the profile.
const BASE_NAMESPACES: [LinuxNamespaceType; 6] = [
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
];

/// Which devices a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSet {
    /// Docker's default devices (null, zero, full, random, urandom, tty, console, ptmx).
    DockerDefault,
    /// The zone's live /dev (a bind of its devtmpfs), its links to the host masked inside
    /// the zone by `devices::mask_host_links`.
    Zone,
}

/// The capability set a profile starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseCaps {
    DockerDefault,
    All,
}

impl BaseCaps {
    pub fn set(self) -> CapSet {
        match self {
            BaseCaps::DockerDefault => CapSet::docker_default(),
            BaseCaps::All => CapSet::all(),
        }
    }
}

/// What a privilege level means for the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Container root maps to ZONE_ID_MAP_START.. in a new user namespace.
    pub user_namespace: bool,
    /// Capabilities before `--cap-add` / `--cap-drop`.
    pub base_caps: BaseCaps,
    /// The Moby default seccomp profile applies unless the user chose another.
    pub default_seccomp: bool,
    /// /sys and the cgroup filesystem are mounted read-write.
    pub writable_sys: bool,
    /// MASKED_PATHS and READONLY_PATHS apply.
    pub restrict_proc: bool,
    pub devices: DeviceSet,
    /// Allow unprivileged ICMP sockets (`net.ipv4.ping_group_range`); Docker sets it only
    /// outside a user namespace, where the kernel accepts it.
    pub ping_group_range: bool,
}

pub const UNPRIVILEGED: Profile = Profile {
    user_namespace: true,
    base_caps: BaseCaps::DockerDefault,
    default_seccomp: true,
    writable_sys: false,
    restrict_proc: true,
    devices: DeviceSet::DockerDefault,
    ping_group_range: false,
};

pub const PRIVILEGED: Profile = Profile {
    user_namespace: false,
    base_caps: BaseCaps::All,
    default_seccomp: false,
    writable_sys: true,
    restrict_proc: false,
    devices: DeviceSet::Zone,
    ping_group_range: true,
};

impl Profile {
    pub fn for_privileged(privileged: bool) -> Profile {
        if privileged {
            PRIVILEGED
        } else {
            UNPRIVILEGED
        }
    }

    pub fn namespaces(&self) -> Vec<LinuxNamespaceType> {
        let mut namespaces = BASE_NAMESPACES.to_vec();
        if self.user_namespace {
            namespaces.push(LinuxNamespaceType::User);
        }
        namespaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprivileged_has_seven_namespaces_with_user() {
        let ns = UNPRIVILEGED.namespaces();
        assert_eq!(ns.len(), 7);
        assert!(ns.contains(&LinuxNamespaceType::User));
        assert!(!PRIVILEGED.namespaces().contains(&LinuxNamespaceType::User));
        assert_eq!(PRIVILEGED.namespaces().len(), 6);
    }

    #[test]
    fn profiles_choose_by_flag() {
        assert_eq!(Profile::for_privileged(true), PRIVILEGED);
        assert_eq!(Profile::for_privileged(false), UNPRIVILEGED);
        assert_eq!(PRIVILEGED.base_caps.set().mask(), 0x1ffffffffff);
        assert_eq!(UNPRIVILEGED.base_caps.set().mask(), 0xa80425fb);
    }

    #[test]
    fn id_map_stays_inside_u32() {
        assert!(ZONE_ID_MAP_START.checked_add(ZONE_ID_MAP_SIZE).is_some());
    }
}
