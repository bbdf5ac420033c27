//! The container's cgroup limits: its memory, a little under what its zone can give, and its
//! CPU quota (`--cpus`, with Docker's meaning).

use oci_spec::runtime::{LinuxCpu, LinuxMemory};

use crate::echo;

/// Zone memory the container's cgroup never gets, fixed part, from zones of Debian's 6.1 cloud
/// kernel (`/proc/meminfo` with a container running):
/// - the kernel keeps 36 MiB of a 128 MiB zone (52 MiB of 1 GiB) before `MemTotal`;
/// - outside the container, the initramfs copied onto tmpfs (23 MiB of `Shmem` when it carried
///   runc; 7 MiB since runc moved to the tools disk, the reserve kept as measured), unreclaimable
///   slab (15 MiB), init, and runc while it starts the container;
/// - slack, so the zone's kernel still reclaims within the container's cgroup instead of
///   running its global OOM killer, which may pick init.
pub const ZONE_RESERVE_MIB: u64 = 96;

/// The growing part of the reserve is the zone's memory divided by this: the kernel's page
/// array (1.6 %) and, from 512 MiB up, the free-page watermark that transparent huge pages
/// raise (`min_free_kbytes` is 44 MiB in a 1 GiB zone, and at most 5 %).
pub const ZONE_RESERVE_DIVISOR: u64 = 16;

/// Smallest memory limit a container gets; a zone too small to leave it is refused.
pub const MIN_CONTAINER_MEMORY_MIB: u64 = 16;

/// The CFS period of a `--cpus` quota, Docker's.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Smallest `--cpus`: the kernel refuses a quota under 1 ms per period.
const MIN_CPU_QUOTA_US: u64 = 1_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("--cpus {0}: expected a number of CPUs, such as 1.5")]
    CpusNotANumber(String),
    #[error("--cpus {given}: must be between 0.01 and {host_cpus}, the CPUs this host has")]
    CpusOutOfRange { given: String, host_cpus: u32 },
    #[error("a zone of {zone_mib} MiB leaves its container less than {MIN_CONTAINER_MEMORY_MIB} MiB; give it more memory")]
    ZoneTooSmall { zone_mib: u32 },
}

/// The memory limit, in bytes, of the container in a zone of `zone_mib` MiB.
pub fn container_memory_limit(zone_mib: u32) -> Result<u64, ResourceError> {
    let zone = u64::from(zone_mib);
    let limit_mib = zone
        .saturating_sub(ZONE_RESERVE_MIB)
        .saturating_sub(zone / ZONE_RESERVE_DIVISOR);
    if limit_mib < MIN_CONTAINER_MEMORY_MIB {
        return Err(ResourceError::ZoneTooSmall { zone_mib });
    }
    Ok(limit_mib << 20)
}

/// The smallest zone, in MiB, whose container may use `container_mib` MiB: the inverse of
/// [`container_memory_limit`], for a pod sized by the sum of its containers' limits.
pub fn zone_memory_for(container_mib: u64) -> u64 {
    // limit = zone - reserve - zone/16 >= zone * 15/16 - reserve, so this zone is enough.
    let divisor = ZONE_RESERVE_DIVISOR;
    container_mib.saturating_add(ZONE_RESERVE_MIB).saturating_mul(divisor).div_ceil(divisor - 1)
}

/// `--cpus`: CPU time per [`CPU_PERIOD_US`], in microseconds (1.5 CPUs is 150 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus {
    quota_us: u64,
}

impl Cpus {
    /// `n` whole CPUs.
    pub fn whole(n: u32) -> Self {
        Self {
            quota_us: u64::from(n) * CPU_PERIOD_US,
        }
    }

    /// A decimal number of CPUs, from 0.01 up to `host_cpus`, in steps of 0.00001.
    pub fn parse(text: &str, host_cpus: u32) -> Result<Self, ResourceError> {
        let value: f64 = text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| ResourceError::CpusNotANumber(echo(text)))?;
        let out_of_range = || ResourceError::CpusOutOfRange {
            given: echo(text),
            host_cpus,
        };
        let max_us = u64::from(host_cpus) * CPU_PERIOD_US;
        let quota = (value * CPU_PERIOD_US as f64).round();
        if !(MIN_CPU_QUOTA_US as f64..=max_us as f64).contains(&quota) {
            return Err(out_of_range());
        }
        // In range, so a whole number that fits in u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let quota_us = quota as u64;
        Ok(Self { quota_us })
    }

    /// The zone's vCPUs: the CPUs rounded up.
    pub fn vcpus(self) -> u32 {
        u32::try_from(self.quota_us.div_ceil(CPU_PERIOD_US)).unwrap_or(u32::MAX)
    }

    /// The container's quota per [`CPU_PERIOD_US`], when the CPUs are not a whole number (a
    /// whole number is the zone's vCPUs already).
    pub fn quota_us(self) -> Option<u64> {
        let fraction = self.quota_us % CPU_PERIOD_US;
        (fraction > 0).then_some(self.quota_us)
    }
}

/// Set the container's cgroup limits for a zone of `zone_mib` MiB and `cpus`: the runtime
/// calls this once it knows the zone a container lands in. A memory limit of the spec's own
/// that is tighter (a Kubernetes container's, `podman run --memory`) stays.
pub fn apply_zone_limits(spec: &mut oci_spec::runtime::Spec, zone_mib: u32, cpus: Cpus) -> Result<(), ResourceError> {
    let mut memory = memory(zone_mib)?;
    let own = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).filter(|l| *l > 0);
    if let (Some(own), Some(zone)) = (own, memory.limit()) {
        memory.set_limit(Some(own.min(zone)));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_memory(Some(memory)).set_cpu(cpu(cpus));
        linux.set_resources(Some(resources));
    }
    Ok(())
}

/// The cgroup memory settings of a container in a zone of `zone_mib` MiB.
pub(crate) fn memory(zone_mib: u32) -> Result<LinuxMemory, ResourceError> {
    let limit = i64::try_from(container_memory_limit(zone_mib)?).unwrap_or(i64::MAX);
    let mut memory = LinuxMemory::default();
    memory.set_limit(Some(limit));
    Ok(memory)
}

/// The cgroup CPU settings for `cpus`, when it sets a quota.
pub(crate) fn cpu(cpus: Cpus) -> Option<LinuxCpu> {
    let quota = i64::try_from(cpus.quota_us()?).ok()?;
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(quota)).set_period(Some(CPU_PERIOD_US));
    Some(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tighter_memory_limit_of_the_spec_stays() {
        let zone_limit = memory(512).unwrap().limit().unwrap();
        let limit_after = |own: Option<i64>| {
            let mut spec = oci_spec::runtime::Spec::default();
            let mut resources = oci_spec::runtime::LinuxResources::default();
            let mut memory = LinuxMemory::default();
            memory.set_limit(own);
            resources.set_memory(Some(memory));
            spec.linux_mut().as_mut().unwrap().set_resources(Some(resources));
            apply_zone_limits(&mut spec, 512, Cpus::whole(1)).unwrap();
            spec.linux().as_ref().unwrap().resources().as_ref().unwrap().memory().as_ref().unwrap().limit()
        };
        assert_eq!(limit_after(Some(64 << 20)), Some(64 << 20));
        assert_eq!(limit_after(Some(i64::MAX)), Some(zone_limit), "a looser one is the zone's");
        assert_eq!(limit_after(None), Some(zone_limit));
        assert_eq!(limit_after(Some(-1)), Some(zone_limit), "-1 (no limit) is the zone's");
    }

    #[test]
    fn a_zone_sized_for_a_container_leaves_it_that_much_and_no_more_than_needed() {
        for wanted in (MIN_CONTAINER_MEMORY_MIB..70_000).step_by(7) {
            let zone = zone_memory_for(wanted);
            let limit = |zone: u64| container_memory_limit(u32::try_from(zone).unwrap()).map_or(0, |b| b >> 20);
            assert!(limit(zone) >= wanted, "{wanted} MiB: a zone of {zone} leaves {}", limit(zone));
            assert!(limit(zone - 2) < wanted, "{wanted} MiB: {zone} is not the smallest such zone");
        }
        assert_eq!(zone_memory_for(u64::MAX), u64::MAX / (ZONE_RESERVE_DIVISOR - 1), "saturates, no overflow");
    }

    #[test]
    fn cpus_like_docker() {
        let parse = |text| Cpus::parse(text, 4).unwrap();
        assert_eq!(
            (parse("1.5").vcpus(), parse("1.5").quota_us()),
            (2, Some(150_000))
        );
        assert_eq!(
            (parse("0.5").vcpus(), parse("0.5").quota_us()),
            (1, Some(50_000))
        );
        assert_eq!(
            (parse("0.01").vcpus(), parse("0.01").quota_us()),
            (1, Some(1_000))
        );
        assert_eq!((parse("2").vcpus(), parse("2").quota_us()), (2, None));
        assert_eq!((parse("4.0").vcpus(), parse("4.0").quota_us()), (4, None));
        assert_eq!(parse("1e0"), Cpus::whole(1));
        assert_eq!(parse("0.333333").quota_us(), Some(33_333));
        assert_eq!(
            (Cpus::whole(3).vcpus(), Cpus::whole(3).quota_us()),
            (3, None)
        );
    }

    #[test]
    fn bad_cpus_are_refused_with_the_value() {
        for bad in ["", "abc", "1,5", "nan", "inf", "-inf", "0x2", "1.5cpus"] {
            let err = Cpus::parse(bad, 4).unwrap_err();
            assert_eq!(
                err,
                ResourceError::CpusNotANumber(bad.to_string()),
                "{bad:?}"
            );
        }
        for bad in [
            "0", "0.0", "-1", "-0.5", "0.001", "0.009", "4.00001", "5", "1e9",
        ] {
            let err = Cpus::parse(bad, 4).unwrap_err();
            assert_eq!(
                err,
                ResourceError::CpusOutOfRange {
                    given: bad.to_string(),
                    host_cpus: 4
                },
                "{bad:?}"
            );
        }
        assert_eq!(
            Cpus::parse("3", 2).unwrap_err().to_string(),
            "--cpus 3: must be between 0.01 and 2, the CPUs this host has"
        );
    }

    #[test]
    fn the_container_gets_the_zone_minus_its_reserve() {
        assert_eq!(container_memory_limit(128).unwrap(), 24 << 20);
        assert_eq!(container_memory_limit(256).unwrap(), 144 << 20);
        assert_eq!(container_memory_limit(512).unwrap(), 384 << 20);
        assert_eq!(container_memory_limit(1024).unwrap(), 864 << 20);
        assert_eq!(
            container_memory_limit(64 * 1024).unwrap(),
            (65536 - 96 - 4096) << 20
        );
        for small in [0, 64, 112] {
            assert_eq!(
                container_memory_limit(small),
                Err(ResourceError::ZoneTooSmall { zone_mib: small })
            );
        }
    }

    #[test]
    fn settings_in_the_spec() {
        assert_eq!(memory(256).unwrap().limit(), Some(144 << 20));
        let cpu = cpu(Cpus::parse("0.5", 2).unwrap()).unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        assert_eq!(super::cpu(Cpus::whole(2)), None);
    }
}
