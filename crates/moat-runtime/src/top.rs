//! A container's processes (`docker top`), as its zone lists them: pids are the zone's, times
//! its clock's. The list was checked against the protocol's bounds when it arrived.

use std::time::Duration;

use moat_proto::{ProcessInfo, ProcessList};
use moat_zone::api::{self, ApiRequest, ApiResponse};

use crate::containers::{is_running, Containers, Found};
use crate::error::{Result, RuntimeError};

/// How long a process list may take: a few `/proc` files a process, but a busy zone under TCG
/// answers slowly.
const PROCESSES_TIMEOUT: Duration = Duration::from_secs(30);

impl Containers<'_> {
    /// The processes of a running container, in pid order.
    pub fn processes(&self, found: &Found) -> Result<ProcessList> {
        if !is_running(found) {
            return Err(RuntimeError::NotRunning(found.container.name.clone()));
        }
        let request = ApiRequest::Processes { container: found.container.id.clone() };
        let mut list = match api::call(&found.dir.api_socket(), &request, PROCESSES_TIMEOUT)? {
            ApiResponse::Processes(list) => *list,
            ApiResponse::Error { kind, message } => return Err(RuntimeError::Zone { kind, message }),
            other => return Err(RuntimeError::Zone { kind: moat_proto::FailureKind::Internal, message: format!("unexpected answer from the zone: {other:?}") }),
        };
        list.processes.sort_by_key(|p| p.pid);
        Ok(list)
    }
}

/// How long `process` had run when the list was read.
pub fn running_for(process: &ProcessInfo, read_at_usec: u64) -> Duration {
    Duration::from_micros(read_at_usec.saturating_sub(process.start_usec))
}

/// `ps`'s C: the CPU time over the process's whole life as a percentage of one CPU, at most 99.
pub fn lifetime_cpu_percent(process: &ProcessInfo, read_at_usec: u64) -> u64 {
    let alive = read_at_usec.saturating_sub(process.start_usec);
    if alive == 0 {
        return 0;
    }
    (process.cpu_usec.saturating_mul(100) / alive).min(99)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(start_usec: u64, cpu_usec: u64) -> ProcessInfo {
        ProcessInfo { pid: 7, ppid: 1, uid: 0, state: 'R', start_usec, cpu_usec, rss_bytes: 0, tty: 0, command: "spin".into() }
    }

    #[test]
    fn cpu_percent_over_the_processes_life() {
        assert_eq!(lifetime_cpu_percent(&process(1_000_000, 500_000), 3_000_000), 25);
        assert_eq!(lifetime_cpu_percent(&process(1_000_000, 8_000_000), 3_000_000), 99, "several CPUs: capped as ps does");
        assert_eq!(lifetime_cpu_percent(&process(3_000_000, 10), 3_000_000), 0, "just started");
    }

    #[test]
    fn age_by_the_zones_clock() {
        assert_eq!(running_for(&process(1_000_000, 0), 61_000_000), Duration::from_secs(60));
        assert_eq!(running_for(&process(5, 0), 1), Duration::ZERO);
    }
}
