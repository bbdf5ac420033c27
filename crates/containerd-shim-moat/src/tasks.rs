//! The shim's tasks: containerd's view of a container (its bundle, stdio, pid and status) and
//! the moat container behind it.

use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim::protos::types::task::Status;

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

pub struct Task {
    pub bundle: PathBuf,
    pub role: Role,
    pub stdio: StdioPaths,
    pub terminal: bool,
    /// The moat container's id.
    pub container: String,
    /// The host process that stands for the task: its zone's QEMU.
    pub pid: u32,
    pub status: TaskStatus,
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
