//! Starting the zone's container from a Run request (mount its root, complete the bundle,
//! create and start it with runc) and further processes in it from Exec requests (`runc
//! exec`), so that each process becomes init's child.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use moat_proto::{ExecRequest, RunRequest, Stream, WORKLOAD};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::bundle::{self, BundleError};
use crate::disks::{self, DiskError};
use crate::idmap::{self, IdmapError};
use crate::modules::{self, ModuleError};
use crate::runc::{self, ContainerStdio, RuncError};
use crate::terminal::{ConsoleSocket, TerminalError};
use crate::workload::{StdioEnds, Workload};

/// Longest container id; runc accepts letters, digits and `_+-.` only.
pub const MAX_CONTAINER_ID: usize = 128;

const PID_FILE: &str = "/run/moat/container.pid";
const EXEC_PID_FILE: &str = "/run/moat/exec.pid";
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
    #[error("runc's pid file {path}: {reason}")]
    PidFile { path: &'static str, reason: String },
}

/// What starting another process in the running container needs.
pub struct Container {
    pub id: String,
    /// The container's root filesystem as init sees it.
    pub rootfs: PathBuf,
    /// The spec runc created the container from.
    pub spec: Spec,
    pub cgroup: Option<PathBuf>,
}

pub fn start(request: &RunRequest) -> Result<(Workload, Container), RunError> {
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

    let stdio = launch(request.tty, request.stdin, |socket, stdio| runc::create(id, bundle_dir, Path::new(PID_FILE), socket, stdio))?;
    let pid = read_pid(PID_FILE).and_then(|pid| {
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
    let workload = Workload::new(WORKLOAD, id.to_string(), pid, cgroup.clone(), stdio);
    Ok((workload, Container { id: id.to_string(), rootfs: rootfs.to_path_buf(), spec, cgroup }))
}

/// Start the process `request` describes in the running container, numbered `process`.
pub fn exec(container: &Container, process: u32, request: &ExecRequest) -> Result<Workload, RunError> {
    let mut spec_process = moat_spec::exec::process_from_json(&request.process_json)?;
    spec_process.set_terminal(Some(request.tty));
    if let Some(user) = &request.user {
        bundle::set_exec_user(&mut spec_process, &container.spec, &container.rootfs, user)?;
    }
    let process_file = bundle::write_exec_process(&spec_process)?;
    let _ = std::fs::remove_file(EXEC_PID_FILE);
    let stdio = launch(request.tty, request.stdin, |socket, stdio| runc::exec(&container.id, process_file, Path::new(EXEC_PID_FILE), socket, stdio))?;
    let pid = read_pid(EXEC_PID_FILE)?;
    Ok(Workload::new(process, container.id.clone(), pid, container.cgroup.clone(), stdio))
}

/// Run `runc` (create or exec) with the new process's stdio, and return init's ends of it:
/// pipes, or with `tty` the pty master runc sends to the console socket.
fn launch(tty: bool, stdin: bool, runc: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuncError>) -> Result<StdioEnds, RunError> {
    if tty {
        launch_with_terminal(stdin, runc)
    } else {
        launch_with_pipes(stdin, runc)
    }
}

fn launch_with_pipes(stdin: bool, runc: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuncError>) -> Result<StdioEnds, RunError> {
    let (stdout, stdout_child) = pipe()?;
    let (stderr, stderr_child) = pipe()?;
    let (input, stdin_child) = if stdin {
        let (read, write) = pipe()?;
        (Some(write), read.into())
    } else {
        (None, std::process::Stdio::null())
    };
    let stdio = ContainerStdio { stdin: stdin_child, stdout: stdout_child.into(), stderr: stderr_child.into() };
    // runc drops the child ends when it returns, so the new process holds the only copies.
    runc(None, stdio)?;
    for fd in [Some(&stdout), Some(&stderr), input.as_ref()].into_iter().flatten() {
        set_nonblocking(fd)?;
    }
    Ok(StdioEnds { input, outputs: vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)], terminal: None })
}

fn launch_with_terminal(stdin: bool, runc: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuncError>) -> Result<StdioEnds, RunError> {
    let socket = ConsoleSocket::bind()?;
    runc(Some(socket.path()), ContainerStdio::null())?;
    let master = socket.receive_master()?;
    set_nonblocking(&master)?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|err| RunError::Io { what: "duplicating the terminal", err });
    let output = dup(&master)?;
    let input = if stdin { Some(dup(&master)?) } else { None };
    Ok(StdioEnds { input, outputs: vec![(output, Stream::Stdout)], terminal: Some(master) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|err| RunError::Sys { what: "creating a pipe", err })
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), RunError> {
    let sys = |err| RunError::Sys { what: "making a container process's stdio non-blocking", err };
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(sys)?;
    Ok(())
}

fn read_pid(path: &'static str) -> Result<Pid, RunError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PID_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| RunError::PidFile { path, reason: e.to_string() })?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(Pid::from_raw(pid)),
        _ => Err(RunError::PidFile { path, reason: format!("{:?} is not a pid", text.trim()) }),
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
