//! Starting the zone's workload from a Run request: mount its root, complete the bundle, and
//! create and start the container with runc so that its process becomes init's child.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use moat_proto::{RunRequest, Stream};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::Pid;

use crate::bundle::{self, BundleError};
use crate::disks::{self, DiskError};
use crate::idmap::{self, IdmapError};
use crate::modules::{self, ModuleError};
use crate::runc::{self, ContainerStdio, RuncError};
use crate::terminal::{ConsoleSocket, TerminalError};
use crate::workload::Workload;

/// Longest container id; runc accepts letters, digits and `_+-.` only.
pub const MAX_CONTAINER_ID: usize = 128;

const PID_FILE: &str = "/run/moat/container.pid";
/// A pid file holds one decimal pid and a newline.
const MAX_PID_FILE_BYTES: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("container id {0:?} is invalid: use 1 to {MAX_CONTAINER_ID} letters, digits, '_', '+', '-' or '.'")]
    BadId(String),
    #[error(transparent)]
    Spec(#[from] moat_spec::SpecError),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Runc(#[from] RuncError),
    #[error("{what}: {err}")]
    Sys { what: &'static str, err: nix::Error },
    #[error("{what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
    #[error("runc's pid file {PID_FILE}: {0}")]
    PidFile(String),
}

pub fn start(request: &RunRequest) -> Result<Workload, RunError> {
    let id = request.container_id.as_str();
    check_container_id(id)?;
    let mut spec = moat_spec::from_json(&request.spec_json)?;
    modules::load_modules(moat_proto::layout::WORKLOAD_MODULES_FILE)?;
    disks::mount_modules()?;
    disks::mount_tools()?;
    let ids = idmap::spec_user_namespace(&spec)?;
    let rootfs = disks::mount_rootfs(ids.as_ref())?;
    bundle::complete(&mut spec, rootfs, id, request.tty)?;
    let bundle_dir = bundle::write(&spec)?;
    let cgroup = bundle::cgroup_dir(&spec);

    let started = if request.tty { create_with_terminal(id, bundle_dir, request.stdin)? } else { create_with_pipes(id, bundle_dir, request.stdin)? };
    let pid = read_pid().and_then(|pid| {
        runc::start(id)?;
        Ok(pid)
    });
    let pid = match pid {
        Ok(pid) => pid,
        Err(err) => {
            let _ = runc::delete(id);
            return Err(err);
        }
    };
    Ok(Workload::new(id.to_string(), pid, cgroup, started.input, started.outputs, started.terminal))
}

/// Init's ends of the container's stdio.
struct Created {
    input: Option<OwnedFd>,
    outputs: Vec<(OwnedFd, Stream)>,
    terminal: Option<OwnedFd>,
}

fn create_with_pipes(id: &str, bundle_dir: &Path, stdin: bool) -> Result<Created, RunError> {
    let (stdout, stdout_child) = pipe()?;
    let (stderr, stderr_child) = pipe()?;
    let (input, stdin_child) = if stdin {
        let (read, write) = pipe()?;
        (Some(write), read.into())
    } else {
        (None, std::process::Stdio::null())
    };
    let stdio = ContainerStdio { stdin: stdin_child, stdout: stdout_child.into(), stderr: stderr_child.into() };
    // `create` drops the child ends when it returns, so the container holds the only copies.
    runc::create(id, bundle_dir, Path::new(PID_FILE), None, stdio)?;
    for fd in [Some(&stdout), Some(&stderr), input.as_ref()].into_iter().flatten() {
        set_nonblocking(fd)?;
    }
    Ok(Created { input, outputs: vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)], terminal: None })
}

fn create_with_terminal(id: &str, bundle_dir: &Path, stdin: bool) -> Result<Created, RunError> {
    let socket = ConsoleSocket::bind()?;
    runc::create(id, bundle_dir, Path::new(PID_FILE), Some(socket.path()), ContainerStdio::null())?;
    let master = socket.receive_master()?;
    set_nonblocking(&master)?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|err| RunError::Io { what: "duplicating the terminal", err });
    let output = dup(&master)?;
    let input = if stdin { Some(dup(&master)?) } else { None };
    Ok(Created { input, outputs: vec![(output, Stream::Stdout)], terminal: Some(master) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|err| RunError::Sys { what: "creating a pipe", err })
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), RunError> {
    let sys = |err| RunError::Sys { what: "making the workload's stdio non-blocking", err };
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(sys)?;
    Ok(())
}

fn read_pid() -> Result<Pid, RunError> {
    let mut text = String::new();
    std::fs::File::open(PID_FILE)
        .and_then(|f| f.take(MAX_PID_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| RunError::PidFile(e.to_string()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(Pid::from_raw(pid)),
        _ => Err(RunError::PidFile(format!("{:?} is not a pid", text.trim()))),
    }
}

fn check_container_id(id: &str) -> Result<(), RunError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.is_empty() || id.len() > MAX_CONTAINER_ID || !id.chars().all(valid_char) || id == "." || id == ".." {
        return Err(RunError::BadId(id.chars().take(MAX_CONTAINER_ID).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for good in ["c1", "0123abcdef", "my_box.v2-x+y"] {
            assert!(check_container_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\ny", &"a".repeat(MAX_CONTAINER_ID + 1)] {
            assert!(matches!(check_container_id(bad), Err(RunError::BadId(_))), "{bad:?}");
        }
    }
}
