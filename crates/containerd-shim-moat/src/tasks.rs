//! The shim's tasks: containerd's view of a container (its bundle, stdio, pid and status) and
//! the moat container behind it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim::protos::types::task::Status;
use moat_proto::ExecRequest;
use moat_zone::api::Sender;

use crate::bundle::Role;
use crate::stdio::StdioPaths;

/// A task's lifecycle: created, running, then stopped with its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Stopped { exit_code: u32, at: SystemTime },
}

impl TaskStatus {
    /// The one transition function: `Created -> Running -> Stopped`, and `Created -> Stopped`
    /// for a task whose start failed or that was killed before it.
    pub fn advance(self, to: TaskStatus) -> Option<TaskStatus> {
        match (self, to) {
            (TaskStatus::Created, TaskStatus::Running) => Some(to),
            (TaskStatus::Created | TaskStatus::Running, TaskStatus::Stopped { .. }) => Some(to),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Created => "created",
            TaskStatus::Running => "running",
            TaskStatus::Stopped { .. } => "stopped",
        }
    }

    pub fn to_proto(self) -> Status {
        match self {
            TaskStatus::Created => Status::CREATED,
            TaskStatus::Running => Status::RUNNING,
            TaskStatus::Stopped { .. } => Status::STOPPED,
        }
    }
}

/// One process of a task: the container's own (exec id "") or an exec'd one.
pub struct Process {
    pub stdio: StdioPaths,
    pub terminal: bool,
    pub status: TaskStatus,
    /// What an exec'd process will run, until it starts.
    pub exec: Option<ExecRequest>,
    /// The way to the running process's stdin and terminal size.
    pub control: Option<Sender>,
}

impl Process {
    pub fn new(stdio: StdioPaths, terminal: bool, exec: Option<ExecRequest>) -> Self {
        Process { stdio, terminal, status: TaskStatus::Created, exec, control: None }
    }
}

pub struct Task {
    pub bundle: PathBuf,
    pub role: Role,
    /// The moat container's id.
    pub container: String,
    /// The host process that stands for the task: its zone's QEMU.
    pub pid: u32,
    pub init: Process,
    /// Exec'd processes by containerd's exec id.
    pub execs: HashMap<String, Process>,
    /// The root filesystem the shim mounted, unmounted when the task is deleted.
    pub rootfs: Option<PathBuf>,
}

impl Task {
    /// The process `exec_id` names: "" for the container's own.
    pub fn process(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_only_move_forward() {
        let stopped = TaskStatus::Stopped { exit_code: 3, at: SystemTime::UNIX_EPOCH };
        assert_eq!(TaskStatus::Created.advance(TaskStatus::Running), Some(TaskStatus::Running));
        assert_eq!(TaskStatus::Running.advance(stopped), Some(stopped));
        assert_eq!(TaskStatus::Created.advance(stopped), Some(stopped));
        assert_eq!(stopped.advance(TaskStatus::Running), None);
        assert_eq!(TaskStatus::Running.advance(TaskStatus::Created), None);
    }
}
