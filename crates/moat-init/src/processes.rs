//! The processes of the zone's container, by the host's numbers: the workload ([`WORKLOAD`])
//! and up to [`MAX_EXEC_PROCESSES`] that `exec` started in it. Each is a [`Workload`]: its own
//! stdio relay, signals, terminal and exit report.
//!
//! When the workload ends, the kernel kills everything else in its pid namespace. Init reports
//! those exits first and the workload's last, so the host hears of every process before it
//! powers the zone off.

use std::collections::BTreeMap;
use std::time::Duration;

use moat_proto::{ExecRequest, GuestMessage, Response, MAX_EXEC_PROCESSES, WORKLOAD};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::runner::{self, Container};
use crate::workload::{Watch, Workload};
use crate::{log, Error};

/// Why init refused an exec before asking runc.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("process number {WORKLOAD} is the workload's")]
    Workload,
    #[error("process number {0} is already in use")]
    InUse(u32),
    #[error("the container is not running")]
    NotRunning,
    #[error("{MAX_EXEC_PROCESSES} exec'd processes already run in this container; wait for one to end")]
    Full,
}

/// Whether a new exec'd process numbered `process` may start, given the processes that run.
pub fn admit<T>(table: &BTreeMap<u32, T>, workload_running: bool, process: u32) -> Result<(), AdmitError> {
    if process == WORKLOAD {
        return Err(AdmitError::Workload);
    }
    if !workload_running {
        return Err(AdmitError::NotRunning);
    }
    if table.contains_key(&process) {
        return Err(AdmitError::InUse(process));
    }
    if table.keys().filter(|p| **p != WORKLOAD).count() >= MAX_EXEC_PROCESSES {
        return Err(AdmitError::Full);
    }
    Ok(())
}

/// Which process each of one poll round's watches belongs to: (process, how many watches), in
/// the order [`Processes::watches`] returned them.
pub type Layout = Vec<(u32, usize)>;

pub struct Processes {
    container: Container,
    table: BTreeMap<u32, Workload>,
}

impl Processes {
    pub fn new(workload: Workload, container: Container) -> Self {
        Self { container, table: BTreeMap::from([(WORKLOAD, workload)]) }
    }

    /// A running process, for the host's stdin, signals and resizes.
    pub fn get(&mut self, process: u32) -> Option<&mut Workload> {
        let found = self.table.get_mut(&process);
        if found.is_none() {
            log::info(&format!("host message for process {process}, which is not running"));
        }
        found
    }

    /// A signal init itself received, passed on to the workload.
    pub fn signal_workload(&self, signal: Signal) {
        if let Some(workload) = self.table.get(&WORKLOAD) {
            workload.signal(signal);
        }
    }

    pub fn watches(&self) -> (Vec<Watch<'_>>, Layout) {
        let mut watches = Vec::new();
        let mut layout = Layout::new();
        for (process, workload) in &self.table {
            let own = workload.watches();
            layout.push((*process, own.len()));
            watches.extend(own);
        }
        (watches, layout)
    }

    /// Move data for the watches poll found ready (`ready` follows `layout`).
    pub fn relay(&mut self, layout: &Layout, ready: &[bool], channel: &mut Channel) -> Result<(), Error> {
        let mut offset = 0;
        for (process, count) in layout {
            let own = ready.get(offset..offset + count).unwrap_or_default();
            offset += count;
            if let Some(workload) = self.table.get_mut(process).filter(|_| own.contains(&true)) {
                workload.relay(own, channel)?;
            }
        }
        Ok(())
    }

    /// Whether init may read more from the channel: no process holds too much unread stdin.
    pub fn accepts_input(&self) -> bool {
        self.table.values().all(Workload::accepts_input)
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.table.values().filter_map(Workload::poll_timeout).min()
    }

    /// Record a reaped child's status; false when it was none of the container's processes.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        match self.table.values_mut().find(|w| w.pid() == pid && !w.has_ended()) {
            Some(workload) => {
                workload.reaped(status);
                true
            }
            None => false,
        }
    }

    /// Start an exec'd process numbered `process`; the answer for the host.
    pub fn exec(&mut self, process: u32, request: &ExecRequest) -> Response {
        let workload_running = self.table.get(&WORKLOAD).is_some_and(|w| !w.has_ended());
        let started = admit(&self.table, workload_running, process)
            .map_err(|err| err.to_string())
            .and_then(|()| runner::exec(&self.container, process, request).map_err(|err| err.to_string()));
        match started {
            Ok(workload) => {
                log::info(&format!("process {process} of container {} runs as pid {}", self.container.id, workload.pid()));
                self.table.insert(process, workload);
                Response::Done
            }
            Err(message) => {
                log::info(&format!("process {process} of container {} did not start: {message}", self.container.id));
                Response::Failed { message }
            }
        }
    }

    /// Tell the host of every process that ended and whose output is out: exec'd processes
    /// first, the workload only once it is the last. True once the workload's exit went out.
    pub fn report_exits(&mut self, channel: &mut Channel) -> Result<bool, Error> {
        let ended: Vec<_> = self.table.iter().filter(|(p, _)| **p != WORKLOAD).filter_map(|(p, w)| w.exit_status().map(|s| (*p, s))).collect();
        for (process, status) in ended {
            channel.send(&GuestMessage::Exited { process, status })?;
            self.table.remove(&process);
        }
        let Some(status) = self.table.get(&WORKLOAD).and_then(Workload::exit_status) else { return Ok(false) };
        if self.table.len() > 1 {
            // Only a process outside the workload's pid namespace could outlive it; end it so
            // that its exit can be reported before the workload's.
            self.table.values().for_each(|w| w.signal(Signal::SIGKILL));
            return Ok(false);
        }
        channel.send(&GuestMessage::Exited { process: WORKLOAD, status })?;
        self.table.remove(&WORKLOAD);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(processes: impl IntoIterator<Item = u32>) -> BTreeMap<u32, ()> {
        processes.into_iter().map(|p| (p, ())).collect()
    }

    #[test]
    fn exec_numbers_must_be_fresh_and_not_the_workloads() {
        let running = table([WORKLOAD, 1, 2]);
        assert_eq!(admit(&running, true, 3), Ok(()));
        assert_eq!(admit(&running, true, WORKLOAD), Err(AdmitError::Workload));
        assert_eq!(admit(&running, true, 2), Err(AdmitError::InUse(2)));
        assert_eq!(admit(&running, false, 3), Err(AdmitError::NotRunning), "not once the workload ended");
        assert_eq!(admit(&table([]), false, 1), Err(AdmitError::NotRunning));
    }

    #[test]
    fn exec_processes_are_bounded() {
        let max = u32::try_from(MAX_EXEC_PROCESSES).unwrap();
        let almost = table((0..max).chain([WORKLOAD]));
        assert_eq!(admit(&almost, true, max), Ok(()), "the workload does not count");
        let full = table((1..=max).chain([WORKLOAD]));
        assert_eq!(admit(&full, true, max + 1), Err(AdmitError::Full));
        assert!(AdmitError::Full.to_string().contains(&MAX_EXEC_PROCESSES.to_string()));
    }
}
