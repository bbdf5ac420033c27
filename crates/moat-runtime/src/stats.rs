//! A container's resource use: its cgroup's figures from the zone, with its zone's QEMU as the
//! host sees it, and what the front-ends show of them (Docker's CPU % and memory columns).

use std::time::Duration;

use moat_proto::ContainerStats;
use moat_zone::api::{self, ApiRequest, ApiResponse};
use moat_zone::state::ProcessUsage;

use crate::containers::{is_running, Containers, Found};
use crate::error::{Result, RuntimeError};

/// How long a statistics request may wait: it reads a few cgroup files, but a busy zone under
/// TCG answers slowly.
const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// One sample of a container's use.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Its cgroup's figures, as the zone read them.
    pub container: ContainerStats,
    /// Its zone's QEMU (the whole zone: kernel, init, every container of a pod), when readable.
    pub zone: Option<ProcessUsage>,
    /// The memory the container may use: its cgroup's limit, or else its zone's memory.
    pub memory_limit: u64,
}

impl Stats {
    /// Docker's memory usage: what the cgroup charges less its inactive page cache, which the
    /// kernel reclaims before it would OOM.
    pub fn memory_usage(&self) -> u64 {
        self.container.memory.current.saturating_sub(self.container.memory.inactive_file)
    }

    /// Memory usage as a percentage of [`Stats::memory_limit`].
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            return 0.0;
        }
        self.memory_usage() as f64 * 100.0 / self.memory_limit as f64
    }

    /// CPU use between an earlier sample and this one, as Docker shows it: 100 % is one CPU
    /// kept busy the whole time, both measured by the zone's clock. `None` when the samples
    /// give no time to divide by or a counter went back (the zone or container was replaced).
    pub fn cpu_percent_since(&self, earlier: &Stats) -> Option<f64> {
        let elapsed = self.container.read_at_usec.checked_sub(earlier.container.read_at_usec)?;
        let used = self.container.cpu.usage_usec.checked_sub(earlier.container.cpu.usage_usec)?;
        (elapsed > 0).then(|| used as f64 * 100.0 / elapsed as f64)
    }
}

impl Containers<'_> {
    /// Sample a running container's use.
    pub fn stats(&self, found: &Found) -> Result<Stats> {
        if !is_running(found) {
            return Err(RuntimeError::NotRunning(found.container.name.clone()));
        }
        let request = ApiRequest::Stats { container: found.container.id.clone() };
        let container = match api::call(&found.dir.api_socket(), &request, STATS_TIMEOUT)? {
            ApiResponse::Stats(stats) => *stats,
            ApiResponse::Error { kind, message } => return Err(RuntimeError::Zone { kind, message }),
            other => return Err(RuntimeError::Zone { kind: moat_proto::FailureKind::Internal, message: format!("unexpected answer from the zone: {other:?}") }),
        };
        let zone_memory = u64::from(found.zone.config.memory_mib) << 20;
        let memory_limit = container.memory.max.map_or(zone_memory, |max| max.min(zone_memory));
        let zone = found.zone.qemu.and_then(|qemu| qemu.usage());
        Ok(Stats { container, zone, memory_limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(usage_usec: u64, at_usec: u64) -> Stats {
        let mut container = ContainerStats { read_at_usec: at_usec, ..Default::default() };
        container.cpu.usage_usec = usage_usec;
        container.memory.current = 48 << 20;
        container.memory.inactive_file = 16 << 20;
        Stats { container, zone: None, memory_limit: 64 << 20 }
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_the_zones_time() {
        let (start, later) = (5_000_000, 7_000_000);
        let percent = sample(3_000_000, later).cpu_percent_since(&sample(1_000_000, start)).unwrap();
        assert!((percent - 100.0).abs() < 1e-9, "{percent}");
        let two_cpus = sample(5_000_000, later).cpu_percent_since(&sample(1_000_000, start)).unwrap();
        assert!((two_cpus - 200.0).abs() < 1e-9, "{two_cpus}");
    }

    #[test]
    fn cpu_percent_needs_time_and_counters_that_grew() {
        let start = 5_000_000;
        assert_eq!(sample(5, start).cpu_percent_since(&sample(1, start)), None, "no time passed");
        assert_eq!(sample(1, start + 1_000_000).cpu_percent_since(&sample(5, start)), None, "the counter went back");
        assert_eq!(sample(1, start).cpu_percent_since(&sample(1, start + 1_000_000)), None, "the clock went back: another zone");
    }

    #[test]
    fn memory_leaves_out_inactive_cache() {
        let s = sample(0, 0);
        assert_eq!(s.memory_usage(), 32 << 20);
        assert!((s.memory_percent() - 50.0).abs() < 1e-9);
        let unlimited = Stats { memory_limit: 0, ..s };
        assert_eq!(unlimited.memory_percent(), 0.0);
    }
}
