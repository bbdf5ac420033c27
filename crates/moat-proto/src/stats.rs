//! A container's resource figures, as the zone reads them from its cgroup v2 files and its
//! network namespace, and the
//! host's check that a guest's figures are ones a real cgroup could show.

use serde::{Deserialize, Serialize};

/// Most bytes any memory or I/O figure may claim: 1 PiB, far beyond any zone's memory or
/// disk.
///
/// Threat: the host adds, subtracts and divides these figures (percentages, rates, Docker's
/// columns, containerd's metrics); a guest's absurd numbers must be refused, not shown.
pub const MAX_STAT_BYTES: u64 = 1 << 50;

/// Most processes a cgroup may claim: Linux's `PID_MAX_LIMIT` on 64-bit.
pub const MAX_STAT_PIDS: u64 = 4 * 1024 * 1024;

/// Most CPU time a cgroup may claim, in microseconds: a century of a thousand CPUs.
pub const MAX_STAT_CPU_USEC: u64 = 1000 * 100 * 366 * 24 * 3600 * 1_000_000;

/// Longest a zone may claim to have been up, in microseconds: a century.
pub const MAX_STAT_UPTIME_USEC: u64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// A container's figures at one moment. Missing files (a controller the zone lacks) read as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStats {
    /// The zone's monotonic clock when the figures were read, in microseconds: CPU time is the
    /// zone's, so rates divide by the zone's time, whatever the host's clock did meanwhile.
    pub read_at_usec: u64,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub io: IoStats,
    pub net: NetStats,
}

/// From `cpu.stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuStats {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

/// From `memory.current`, `memory.max`, `memory.stat` and `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStats {
    pub current: u64,
    /// `None` when the cgroup has no limit (`max`).
    pub max: Option<u64>,
    pub anon: u64,
    pub file: u64,
    pub kernel_stack: u64,
    pub slab: u64,
    pub sock: u64,
    pub shmem: u64,
    pub file_mapped: u64,
    pub file_dirty: u64,
    pub file_writeback: u64,
    pub inactive_anon: u64,
    pub active_anon: u64,
    pub inactive_file: u64,
    pub active_file: u64,
    pub unevictable: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
    /// `memory.events`: times the limit was hit, OOM situations, and OOM kills.
    pub events_max: u64,
    pub events_oom: u64,
    pub events_oom_kill: u64,
}

/// From `pids.current` and `pids.max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when the cgroup has no limit (`max`).
    pub max: Option<u64>,
}

/// From `io.stat`, summed over its devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoStats {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ios: u64,
    pub write_ios: u64,
}

/// From `/proc/<pid>/net/dev` of the container's process: its network namespace's
/// interfaces, `lo` left out, summed. A pod's containers share the namespace, so they show the
/// same figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// A figure no cgroup could show, with the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("implausible container statistics: {field} = {value}")]
pub struct StatsError {
    pub field: &'static str,
    pub value: u64,
}

impl ContainerStats {
    /// Check every figure against its bound, and the ones that contain others against them:
    /// the host only ever does arithmetic on figures that passed.
    pub fn validate(&self) -> Result<(), StatsError> {
        let (c, m, p, io, net) = (&self.cpu, &self.memory, &self.pids, &self.io, &self.net);
        // Packets, errors and drops are each at least a byte on the wire: the byte bound holds.
        let bounded: [(&'static str, u64, u64); 24] = [
            ("read_at_usec", self.read_at_usec, MAX_STAT_UPTIME_USEC),
            ("cpu.usage_usec", c.usage_usec, MAX_STAT_CPU_USEC),
            ("cpu.throttled_usec", c.throttled_usec, MAX_STAT_CPU_USEC),
            ("memory.current", m.current, MAX_STAT_BYTES),
            ("memory.max", m.max.unwrap_or(0), MAX_STAT_BYTES),
            ("memory.anon", m.anon, MAX_STAT_BYTES),
            ("memory.file", m.file, MAX_STAT_BYTES),
            ("memory.kernel_stack", m.kernel_stack, MAX_STAT_BYTES),
            ("memory.slab", m.slab, MAX_STAT_BYTES),
            ("memory.sock", m.sock, MAX_STAT_BYTES),
            ("memory.shmem", m.shmem, MAX_STAT_BYTES),
            ("memory.inactive_file", m.inactive_file, MAX_STAT_BYTES),
            ("pids.current", p.current, MAX_STAT_PIDS),
            ("pids.max", p.max.unwrap_or(0), MAX_STAT_PIDS),
            ("io.read_bytes", io.read_bytes, MAX_STAT_BYTES),
            ("io.write_bytes", io.write_bytes, MAX_STAT_BYTES),
            ("net.rx_bytes", net.rx_bytes, MAX_STAT_BYTES),
            ("net.rx_packets", net.rx_packets, MAX_STAT_BYTES),
            ("net.rx_errors", net.rx_errors, MAX_STAT_BYTES),
            ("net.rx_dropped", net.rx_dropped, MAX_STAT_BYTES),
            ("net.tx_bytes", net.tx_bytes, MAX_STAT_BYTES),
            ("net.tx_packets", net.tx_packets, MAX_STAT_BYTES),
            ("net.tx_errors", net.tx_errors, MAX_STAT_BYTES),
            ("net.tx_dropped", net.tx_dropped, MAX_STAT_BYTES),
        ];
        for (field, value, max) in bounded {
            if value > max {
                return Err(StatsError { field, value });
            }
        }
        // The kernel accounts user and system time apart from the total, so allow them a
        // second's drift each over it.
        for (field, value) in [("cpu.user_usec", c.user_usec), ("cpu.system_usec", c.system_usec)] {
            if value > c.usage_usec.saturating_add(1_000_000) {
                return Err(StatsError { field, value });
            }
        }
        if m.inactive_file > m.file {
            return Err(StatsError { field: "memory.inactive_file", value: m.inactive_file });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> ContainerStats {
        ContainerStats {
            read_at_usec: 9_000_000,
            cpu: CpuStats { usage_usec: 52_000, user_usec: 30_000, system_usec: 22_000, ..Default::default() },
            memory: MemoryStats { current: 1 << 20, max: Some(64 << 20), anon: 300 << 10, file: 600 << 10, inactive_file: 200 << 10, ..Default::default() },
            pids: PidsStats { current: 3, max: None },
            io: IoStats { read_bytes: 4096, write_bytes: 8192, read_ios: 1, write_ios: 2 },
            net: NetStats { rx_bytes: 1200, rx_packets: 10, tx_bytes: 648, tx_packets: 8, ..Default::default() },
        }
    }

    #[test]
    fn real_figures_pass() {
        assert_eq!(real().validate(), Ok(()));
        assert_eq!(ContainerStats::default().validate(), Ok(()), "a cgroup without controllers");
    }

    #[test]
    fn absurd_figures_are_refused_by_name() {
        let mut s = real();
        s.memory.current = u64::MAX;
        assert_eq!(s.validate(), Err(StatsError { field: "memory.current", value: u64::MAX }));
        let mut s = real();
        s.read_at_usec = u64::MAX;
        assert_eq!(s.validate().unwrap_err().field, "read_at_usec");
        let mut s = real();
        s.pids.current = MAX_STAT_PIDS + 1;
        assert_eq!(s.validate().unwrap_err().field, "pids.current");
        let mut s = real();
        s.cpu.user_usec = s.cpu.usage_usec + 2_000_000;
        assert_eq!(s.validate().unwrap_err().field, "cpu.user_usec");
        let mut s = real();
        s.memory.inactive_file = s.memory.file + 1;
        assert_eq!(s.validate().unwrap_err().field, "memory.inactive_file");
        let mut s = real();
        s.net.tx_bytes = MAX_STAT_BYTES + 1;
        assert_eq!(s.validate(), Err(StatsError { field: "net.tx_bytes", value: MAX_STAT_BYTES + 1 }));
        let mut s = real();
        s.net.rx_dropped = u64::MAX;
        assert_eq!(s.validate().unwrap_err().field, "net.rx_dropped");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(real()).unwrap();
        json["io"]["discard_bytes"] = 1.into();
        assert!(serde_json::from_value::<ContainerStats>(json).is_err());
    }
}
