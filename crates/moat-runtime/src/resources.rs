//! A zone's size, parsed once from the front-end's text: one value that yields both QEMU's
//! memory and vCPUs and the container's cgroup limits.

use moat_spec::resources::{container_memory_limit, Cpus, ResourceError};
use moat_zone::ops::{self, OpsError};

/// Memory and CPUs of a zone, and what its containers get of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    memory_mib: u32,
    cpus: Cpus,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    #[error(transparent)]
    Memory(#[from] OpsError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// The CPUs this host gives its zones at most.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

impl Resources {
    /// `memory` as Docker writes sizes (`512m`), `cpus` as a decimal (`1.5`), bounded by the
    /// host's CPUs and by what a zone needs to leave its containers room.
    pub fn parse(memory: &str, cpus: &str) -> Result<Self, ResourcesError> {
        let memory_mib = ops::parse_memory_mib(memory)?;
        let cpus = Cpus::parse(cpus, host_cpus())?;
        container_memory_limit(memory_mib)?;
        Ok(Self { memory_mib, cpus })
    }

    /// The zone's memory, for QEMU.
    pub fn memory_mib(&self) -> u32 {
        self.memory_mib
    }

    /// The zone's vCPUs, for QEMU: the CPUs rounded up.
    pub fn vcpus(&self) -> u32 {
        self.cpus.vcpus()
    }

    /// The CPU quota for the containers' cgroups.
    pub fn cpus(&self) -> Cpus {
        self.cpus
    }

    /// The memory limit, in bytes, of a container's cgroup in this zone: a little under the
    /// zone's memory (see [`container_memory_limit`]).
    pub fn container_memory_limit(&self) -> u64 {
        container_memory_limit(self.memory_mib).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_for_the_zone_and_its_container() {
        let r = Resources::parse("256m", "1").unwrap();
        assert_eq!(r.memory_mib(), 256);
        assert_eq!(r.vcpus(), 1);
        assert_eq!(r.container_memory_limit(), 144 << 20);
        assert_eq!(Resources::parse("512m", "0.5").unwrap().vcpus(), 1);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(Resources::parse("12x", "1").is_err());
        assert!(Resources::parse("64m", "1").is_err(), "below the zone minimum");
        assert!(Resources::parse("512m", "0").is_err());
        assert!(Resources::parse("512m", "nope").is_err());
    }
}
