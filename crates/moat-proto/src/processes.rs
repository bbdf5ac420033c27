//! A container's processes, as the zone reads them from its cgroup and `/proc` (`moat top`),
//! and the host's check that a guest's list is one a real kernel could show.
//!
//! Threat: the host prints every command line and does arithmetic on every number (CPU %,
//! start times); a guest's absurd list is refused, not shown. The bounds also keep the worst
//! list a guest may send inside one frame (see the test `the_largest_list_fits_a_frame`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::stats::{MAX_STAT_BYTES, MAX_STAT_CPU_USEC, MAX_STAT_PIDS, MAX_STAT_UPTIME_USEC};

/// Most processes one list holds; the zone lists the first ones it finds and says it left the
/// rest out.
pub const MAX_PROCESSES: usize = 1024;

/// Longest command line of one process, in bytes.
pub const MAX_PROCESS_COMMAND: usize = 4096;

/// Most command-line bytes of one list, all processes together: the zone shortens every command
/// line to its share when the whole would be longer.
pub const MAX_PROCESS_COMMANDS: usize = 256 * 1024;

/// The states `/proc/PID/stat` may show.
const PROCESS_STATES: &str = "RSDZTtXxKWPI";

/// The processes of one container, read at one moment of the zone's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessList {
    /// The zone's boot clock when the list was read, in microseconds: start times count from
    /// the same boot.
    pub read_at_usec: u64,
    pub processes: Vec<ProcessInfo>,
    /// The container held more than [`MAX_PROCESSES`] processes; the rest are left out.
    pub truncated: bool,
}

/// One process, as the zone sees it (its pid namespace, its clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The effective user id.
    pub uid: u32,
    /// `R`, `S`, `D`, `Z`, `T`, ... as in `/proc/PID/stat`.
    pub state: char,
    /// When it started, on the zone's boot clock, in microseconds.
    pub start_usec: u64,
    /// User and system CPU time together, in microseconds.
    pub cpu_usec: u64,
    pub rss_bytes: u64,
    /// Its controlling terminal's device number as `/proc/PID/stat` encodes it; 0 for none.
    pub tty: u32,
    /// Its arguments joined by spaces, or `[comm]` when it has none (a zombie); control
    /// characters are replaced by `?`.
    pub command: String,
}

/// Why the host refused a guest's process list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessListError {
    #[error("the zone listed {0} processes, more than {MAX_PROCESSES}")]
    TooMany(usize),
    #[error("implausible process list: {field} = {value}")]
    Implausible { field: &'static str, value: u64 },
    #[error("implausible process list: process {pid} has an empty, overlong or unprintable command line")]
    Command { pid: u32 },
    #[error("implausible process list: its command lines exceed {MAX_PROCESS_COMMANDS} bytes")]
    Commands,
    #[error("implausible process list: process {pid} is listed twice")]
    Duplicate { pid: u32 },
}

impl ProcessList {
    /// Check every process against the bounds: the host only prints and computes with lists
    /// that passed.
    pub fn validate(&self) -> Result<(), ProcessListError> {
        if self.processes.len() > MAX_PROCESSES {
            return Err(ProcessListError::TooMany(self.processes.len()));
        }
        bounded("read_at_usec", self.read_at_usec, MAX_STAT_UPTIME_USEC)?;
        let mut seen = BTreeSet::new();
        let mut commands = 0usize;
        for p in &self.processes {
            p.validate(self.read_at_usec)?;
            if !seen.insert(p.pid) {
                return Err(ProcessListError::Duplicate { pid: p.pid });
            }
            commands += p.command.len();
        }
        if commands > MAX_PROCESS_COMMANDS {
            return Err(ProcessListError::Commands);
        }
        Ok(())
    }
}

impl ProcessInfo {
    fn validate(&self, read_at_usec: u64) -> Result<(), ProcessListError> {
        if self.pid == 0 {
            return Err(ProcessListError::Implausible { field: "pid", value: 0 });
        }
        bounded("pid", self.pid.into(), MAX_STAT_PIDS)?;
        bounded("ppid", self.ppid.into(), MAX_STAT_PIDS)?;
        // (uid_t)-1 means "no uid" to the kernel; no process runs as it.
        bounded("uid", self.uid.into(), u64::from(u32::MAX) - 1)?;
        if !PROCESS_STATES.contains(self.state) {
            return Err(ProcessListError::Implausible { field: "state", value: self.state.into() });
        }
        // The zone reads its clock after the processes: none started later.
        bounded("start_usec", self.start_usec, read_at_usec)?;
        bounded("cpu_usec", self.cpu_usec, MAX_STAT_CPU_USEC)?;
        bounded("rss_bytes", self.rss_bytes, MAX_STAT_BYTES)?;
        let printable = !self.command.chars().any(char::is_control);
        if self.command.is_empty() || self.command.len() > MAX_PROCESS_COMMAND || !printable {
            return Err(ProcessListError::Command { pid: self.pid });
        }
        Ok(())
    }
}

fn bounded(field: &'static str, value: u64, max: u64) -> Result<(), ProcessListError> {
    if value > max {
        return Err(ProcessListError::Implausible { field, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{GuestMessage, Response};

    fn sleep(pid: u32, ppid: u32) -> ProcessInfo {
        ProcessInfo { pid, ppid, uid: 0, state: 'S', start_usec: 2_500_000, cpu_usec: 1_000, rss_bytes: 512 << 10, tty: 0, command: "sleep 1000".into() }
    }

    fn real() -> ProcessList {
        let sh = ProcessInfo { command: "sh -c sleep 1000 & sleep 2000".into(), ..sleep(40, 30) };
        ProcessList { read_at_usec: 9_000_000, processes: vec![sh, sleep(41, 40), sleep(42, 40)], truncated: false }
    }

    #[test]
    fn real_lists_pass() {
        assert_eq!(real().validate(), Ok(()));
        assert_eq!(ProcessList::default().validate(), Ok(()), "a container whose processes all ended");
    }

    #[test]
    fn absurd_numbers_are_refused_by_name() {
        let field = |change: fn(&mut ProcessInfo)| {
            let mut list = real();
            change(&mut list.processes[1]);
            match list.validate() {
                Err(ProcessListError::Implausible { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(|p| p.pid = 0), "pid");
        assert_eq!(field(|p| p.pid = u32::MAX), "pid");
        assert_eq!(field(|p| p.ppid = u32::try_from(MAX_STAT_PIDS).unwrap() + 1), "ppid");
        assert_eq!(field(|p| p.uid = u32::MAX), "uid");
        assert_eq!(field(|p| p.state = 'Q'), "state");
        assert_eq!(field(|p| p.start_usec = 9_000_001), "start_usec", "started after the reading");
        assert_eq!(field(|p| p.cpu_usec = u64::MAX), "cpu_usec");
        assert_eq!(field(|p| p.rss_bytes = MAX_STAT_BYTES + 1), "rss_bytes");
        let mut list = real();
        list.read_at_usec = u64::MAX;
        assert_eq!(list.validate(), Err(ProcessListError::Implausible { field: "read_at_usec", value: u64::MAX }));
    }

    #[test]
    fn command_lines_must_be_printable_and_bounded() {
        for command in [String::new(), "evil\u{1b}[2J".into(), "x\ny".into(), "a".repeat(MAX_PROCESS_COMMAND + 1)] {
            let mut list = real();
            list.processes[0].command = command;
            assert_eq!(list.validate(), Err(ProcessListError::Command { pid: 40 }));
        }
        let mut list = real();
        list.processes[0].command = "a".repeat(MAX_PROCESS_COMMAND);
        assert_eq!(list.validate(), Ok(()));
    }

    #[test]
    fn lists_are_bounded_in_processes_and_command_bytes() {
        let many = |n: u32, command: &str| ProcessList {
            read_at_usec: 9_000_000,
            processes: (1..=n).map(|pid| ProcessInfo { command: command.into(), ..sleep(pid, 1) }).collect(),
            truncated: true,
        };
        let max = u32::try_from(MAX_PROCESSES).unwrap();
        assert_eq!(many(max, "sh").validate(), Ok(()));
        assert_eq!(many(max + 1, "sh").validate(), Err(ProcessListError::TooMany(MAX_PROCESSES + 1)));
        let long = "a".repeat(MAX_PROCESS_COMMANDS / MAX_PROCESSES + 1);
        assert_eq!(many(max, &long).validate(), Err(ProcessListError::Commands));
        let mut twice = real();
        twice.processes[2].pid = 41;
        assert_eq!(twice.validate(), Err(ProcessListError::Duplicate { pid: 41 }));
    }

    #[test]
    fn the_largest_list_fits_a_frame() {
        // Every number at its widest, every command byte one JSON escapes.
        let share = MAX_PROCESS_COMMANDS / MAX_PROCESSES;
        let widest = ProcessInfo { pid: u32::MAX, ppid: u32::MAX, uid: u32::MAX, state: 'S', start_usec: u64::MAX, cpu_usec: u64::MAX, rss_bytes: u64::MAX, tty: u32::MAX, command: "\"".repeat(share) };
        let list = ProcessList { read_at_usec: u64::MAX, processes: vec![widest; MAX_PROCESSES], truncated: true };
        let msg = GuestMessage::Response { id: u64::MAX, response: Response::Processes(Box::new(list)) };
        let len = serde_json::to_vec(&msg).unwrap().len();
        // The supervisor relays the list to its clients in a frame of its own, with a few
        // bytes more around it.
        assert!(len + 1024 < crate::MAX_FRAME_LEN, "{len}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(real()).unwrap();
        json["processes"][0]["environ"] = "SECRET=1".into();
        assert!(serde_json::from_value::<ProcessList>(json).is_err());
    }

    proptest::proptest! {
        #[test]
        fn whatever_passes_is_safe_to_print_and_compute_with(
            pid in proptest::num::u32::ANY, ppid in proptest::num::u32::ANY, uid in proptest::num::u32::ANY,
            state in proptest::char::any(), start_usec in proptest::num::u64::ANY, read_at_usec in proptest::num::u64::ANY,
            cpu_usec in proptest::num::u64::ANY, rss_bytes in proptest::num::u64::ANY, command in ".{0,64}",
        ) {
            let p = ProcessInfo { pid, ppid, uid, state, start_usec, cpu_usec, rss_bytes, tty: 0, command };
            let list = ProcessList { read_at_usec, processes: vec![p.clone()], truncated: false };
            if list.validate().is_ok() {
                proptest::prop_assert!(p.pid > 0 && u64::from(p.pid) <= MAX_STAT_PIDS && u64::from(p.ppid) <= MAX_STAT_PIDS);
                proptest::prop_assert!(p.start_usec <= read_at_usec && read_at_usec <= MAX_STAT_UPTIME_USEC);
                proptest::prop_assert!(p.cpu_usec <= MAX_STAT_CPU_USEC && p.rss_bytes <= MAX_STAT_BYTES);
                proptest::prop_assert!(!p.command.is_empty() && !p.command.chars().any(char::is_control));
                // The host's CPU % multiplies CPU time by 100: it cannot overflow.
                proptest::prop_assert!(p.cpu_usec.checked_mul(100).is_some());
            }
        }
    }
}
