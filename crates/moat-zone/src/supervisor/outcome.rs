//! How a zone ended: what the supervisor saw while it ran, turned into the record's final state.

use std::path::Path;
use std::process::ExitStatus;

use moat_proto::ExitStatus as WorkloadExit;

use crate::console::ConsoleTail;
use crate::lifecycle::ZoneState;

/// What happened, collected while the zone runs and turned into its final state at the end.
#[derive(Default)]
pub struct Outcome {
    pub failure: Option<String>,
    pub stop_requested: bool,
    /// The guest synced its disks on a requested stop, so QEMU is killed rather than waited for.
    pub guest_synced: bool,
    /// Why the zone was stopped, when not by a client.
    pub stop_reason: Option<String>,
    pub fatal: Option<String>,
    pub shutdown_reason: Option<String>,
    pub panicked: bool,
}

impl Outcome {
    pub fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }

    pub fn final_state(&self, status: Option<ExitStatus>, tail: &ConsoleTail, qemu_log: &Path) -> ZoneState {
        let panic = tail.panic_line();
        if let Some(reason) = &self.failure {
            return ZoneState::Failed { reason: reason.clone() };
        }
        if self.panicked || self.shutdown_reason.as_deref() == Some("guest-reset") || panic.is_some() {
            let what = panic.unwrap_or_else(|| "the guest reset".into());
            return ZoneState::Failed { reason: format!("guest kernel panic: {what}") };
        }
        if let Some(message) = &self.fatal {
            return ZoneState::Failed { reason: format!("moat-init failed: {message}") };
        }
        match status {
            Some(s) if (s.success() || self.guest_synced) && self.stop_requested => {
                ZoneState::Stopped { reason: self.stop_reason.clone().unwrap_or_else(|| "stopped on request".into()) }
            }
            Some(s) if s.success() && self.shutdown_reason.as_deref() == Some("guest-shutdown") => {
                ZoneState::Stopped { reason: "the guest powered off".into() }
            }
            other => ZoneState::Failed { reason: describe_exit(other, qemu_log) },
        }
    }
}

pub fn describe_exit(status: Option<ExitStatus>, qemu_log: &Path) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last_error = std::fs::read_to_string(qemu_log)
        .ok()
        .and_then(|log| log.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())))
        .unwrap_or_default();
    match status {
        Some(s) if s.signal().is_some() => format!("QEMU was killed by signal {}{last_error}", s.signal().unwrap_or_default()),
        Some(s) => format!("QEMU exited with status {}{last_error}", s.code().unwrap_or(-1)),
        None => format!("QEMU's exit status is unknown{last_error}"),
    }
}

pub fn describe_status(status: WorkloadExit) -> String {
    match status {
        WorkloadExit::Code { code } => format!("status {code}"),
        WorkloadExit::Signal { signal } => format!("signal {signal}"),
        WorkloadExit::OomKilled => "killed by the OOM killer".into(),
    }
}
