//! The containers' lifecycle through the OCI runtime: create (mount the root, complete the
//! bundle, `create`), start, exec, remove. Each container process becomes init's child.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use moat_proto::{valid_container_id, CreateContainer, ExecRequest, FailureKind, OciRuntime, Stream, MAX_CONTAINER_ID};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::bundle::{self, BundleError};
use crate::cgroups::{self, CgroupError};
use crate::disks::{self, DiskError};
use crate::idmap::{self, IdmapError};
use crate::image_volumes::{self, ImageVolumeError};
use crate::modules::{self, ModuleError};
use crate::pod::{Pod, PodError};
use crate::oci_runtime::{self, ContainerStdio, RuntimeError};
use crate::terminal::{ConsoleSocket, TerminalError};
use crate::workload::{StdioEnds, Workload};

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
    Pod(#[from] PodError),
    #[error(transparent)]
    NameFiles(#[from] crate::name_files::NameFilesError),
    #[error(transparent)]
    ImageVolume(#[from] ImageVolumeError),
    #[error("delegating the container's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{what}: {err}")]
    Sys { what: &'static str, err: nix::Error },
    #[error("{what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
    #[error("the OCI runtime's pid file {path}: {reason}")]
    PidFile { path: PathBuf, reason: String },
}

impl RunError {
    /// The kind the host hears: a missing command or an unusable one are the process's own
    /// failures (Docker's 127 and 126), a bad spec is the caller's, the rest are the zone's.
    pub fn kind(&self) -> FailureKind {
        match self {
            RunError::Runtime(RuntimeError::Failed { kind, .. }) => *kind,
            RunError::ImageVolume(err) => err.kind(),
            RunError::BadId(_) | RunError::Spec(_) | RunError::Bundle(_) | RunError::Pod(PodError::ForeignNamespace(_)) | RunError::Disk(DiskError::BadImagePath(_)) => FailureKind::BadRequest,
            _ => FailureKind::Internal,
        }
    }
}

/// What init keeps of a created container.
pub struct Container {
    pub id: String,
    /// The container's root filesystem as init sees it.
    pub rootfs: PathBuf,
    /// The spec the runtime created the container from.
    pub spec: Spec,
    pub cgroup: Option<PathBuf>,
}

/// Create the container `request` describes, joined to the pod's namespaces, and return its
/// process (waiting in the runtime for [`start`], or started when the request says so)
/// numbered as the host asked.
pub fn create(runtime: OciRuntime, request: &CreateContainer, pod: &mut Pod) -> Result<(Workload, Container), RunError> {
    let id = request.container.as_str();
    if !valid_container_id(id) {
        return Err(RunError::BadId(id.chars().take(MAX_CONTAINER_ID).collect()));
    }
    let mut spec = moat_spec::from_json(&request.spec_json)?;
    mount_zone_disks()?;
    let created = create_mounted(runtime, request, &mut spec, pod);
    if created.is_err() {
        disks::remove_container_rootfs(id);
        bundle::remove(id);
    }
    let (workload, rootfs, cgroup) = created?;
    Ok((workload, Container { id: id.to_string(), rootfs, spec, cgroup }))
}

/// What every container needs from the zone before its own: the workload's modules, and the
/// modules and tools disks.
fn mount_zone_disks() -> Result<(), RunError> {
    modules::load_modules(moat_proto::layout::WORKLOAD_MODULES_FILE)?;
    disks::mount_modules()?;
    disks::mount_tools()?;
    Ok(())
}

/// The id of the container [`prepare`] creates and deletes, in a zone that holds none.
const THROWAWAY_ID: &str = "moat-prepare";

/// Ready the zone's runtime for a first container: its disks mounted (the scratch disk too)
/// and, given the container's seccomp filter (JSON) and a runtime that caches filters, that
/// filter compiled into the runtime's cache, by creating a throwaway container that carries it.
pub fn prepare(runtime: OciRuntime, seccomp_json: Option<&str>) -> Result<(), RunError> {
    mount_zone_disks()?;
    disks::mount_scratch()?;
    let Some(json) = seccomp_json.filter(|_| runtime.caches_seccomp()) else { return Ok(()) };
    let seccomp = serde_json::from_str(json).map_err(|err| moat_spec::SpecError::Json(err.to_string()))?;
    let created = bundle::write_throwaway(THROWAWAY_ID, seccomp).map_err(RunError::from).and_then(|dir| {
        let new = oci_runtime::NewContainer { id: THROWAWAY_ID, bundle: &dir, pid_file: &bundle::pid_file(THROWAWAY_ID, None) };
        oci_runtime::launch(runtime, oci_runtime::Launch::Create, &new, None, ContainerStdio::null(), &[]).map_err(RunError::from)
    });
    let deleted = oci_runtime::delete(runtime, THROWAWAY_ID, true);
    bundle::remove(THROWAWAY_ID);
    created?;
    Ok(deleted?)
}

fn create_mounted(runtime: OciRuntime, request: &CreateContainer, spec: &mut Spec, pod: &mut Pod) -> Result<(Workload, PathBuf, Option<PathBuf>), RunError> {
    let id = request.container.as_str();
    let ids = idmap::spec_user_namespace(spec)?;
    let rootfs = disks::mount_container_rootfs(id, &request.image, ids.as_ref())?;
    pod.join(spec)?;
    if let Some(files) = &request.name_files {
        crate::name_files::bind(spec, id, files)?;
    }
    image_volumes::make(spec, id, &rootfs)?;
    bundle::complete(spec, &rootfs, id, request.tty)?;
    let bundle_dir = bundle::write(spec, id)?;
    let cgroup = bundle::cgroup_dir(spec);
    let pid_file = bundle::pid_file(id, None);
    // A cgroup the container may write is delegated between create and start, before its
    // process runs; only without one can the runtime do both in one command.
    let delegate = cgroup.as_ref().filter(|_| cgroups::writable_cgroupfs(spec));
    let command = if request.start && delegate.is_none() { oci_runtime::Launch::Run } else { oci_runtime::Launch::Create };
    let new = oci_runtime::NewContainer { id, bundle: &bundle_dir, pid_file: &pid_file };
    let stdio = launch(request.tty, request.stdin, |socket, stdio| oci_runtime::launch(runtime, command, &new, socket, stdio, &pod.entry()))?;
    let delegated = |pid| match delegate {
        Some(dir) => cgroups::delegate(dir).map(|()| pid).map_err(RunError::from),
        None => Ok(pid),
    };
    let started = |pid| match (request.start, command) {
        (true, oci_runtime::Launch::Create) => oci_runtime::start(runtime, id).map(|()| pid).map_err(RunError::from),
        _ => Ok(pid),
    };
    let pid = match read_pid(&pid_file).and_then(delegated).and_then(started) {
        Ok(pid) => pid,
        Err(err) => {
            let _ = oci_runtime::delete(runtime, id, true);
            return Err(err);
        }
    };
    Ok((Workload::new(request.process, id.to_string(), pid, cgroup.clone(), stdio), rootfs, cgroup))
}

/// Start a created container's process.
pub fn start(runtime: OciRuntime, container: &Container) -> Result<(), RunError> {
    oci_runtime::start(runtime, &container.id)?;
    Ok(())
}

/// Remove a container from the runtime and its root filesystem from the zone. `force` kills
/// what runs.
pub fn remove(runtime: OciRuntime, container: &Container, force: bool) -> Result<(), RunError> {
    oci_runtime::delete(runtime, &container.id, force)?;
    disks::remove_container_rootfs(&container.id);
    bundle::remove(&container.id);
    Ok(())
}

/// Start the process `request` describes in the running container, numbered `process`.
pub fn exec(runtime: OciRuntime, container: &Container, process: u32, request: &ExecRequest, pod: &Pod) -> Result<Workload, RunError> {
    let mut spec_process = moat_spec::exec::process_from_json(&request.process_json)?;
    spec_process.set_terminal(Some(request.tty));
    bundle::default_oom_score(&mut spec_process);
    if let Some(user) = &request.user {
        bundle::set_exec_user(&mut spec_process, &container.spec, &container.rootfs, user)?;
    }
    let process_file = bundle::write_exec_process(&spec_process, &container.id, process)?;
    let pid_file = bundle::pid_file(&container.id, Some(process));
    let started = launch(request.tty, request.stdin, |socket, stdio| oci_runtime::exec(runtime, &container.id, &process_file, &pid_file, socket, stdio, &pod.entry())).and_then(|stdio| Ok((stdio, read_pid(&pid_file)?)));
    let _ = std::fs::remove_file(&process_file);
    let _ = std::fs::remove_file(&pid_file);
    let (stdio, pid) = started?;
    Ok(Workload::new(process, container.id.clone(), pid, container.cgroup.clone(), stdio))
}

/// Run the runtime (create or exec) with the new process's stdio, and return init's ends of it:
/// pipes, or with `tty` the pty master the runtime sends to the console socket.
fn launch(tty: bool, stdin: bool, run: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuntimeError>) -> Result<StdioEnds, RunError> {
    if tty {
        launch_with_terminal(stdin, run)
    } else {
        launch_with_pipes(stdin, run)
    }
}

fn launch_with_pipes(stdin: bool, run: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuntimeError>) -> Result<StdioEnds, RunError> {
    let (stdout, stdout_child) = pipe()?;
    let (stderr, stderr_child) = pipe()?;
    let (input, stdin_child) = if stdin {
        let (read, write) = pipe()?;
        (Some(write), read.into())
    } else {
        (None, std::process::Stdio::null())
    };
    let stdio = ContainerStdio { stdin: stdin_child, stdout: stdout_child.into(), stderr: stderr_child.into() };
    // The runtime drops the child ends when it returns, so the new process holds the only copies.
    run(None, stdio)?;
    for fd in [Some(&stdout), Some(&stderr), input.as_ref()].into_iter().flatten() {
        set_nonblocking(fd)?;
    }
    Ok(StdioEnds { input, outputs: vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)], terminal: None })
}

fn launch_with_terminal(stdin: bool, run: impl FnOnce(Option<&Path>, ContainerStdio) -> Result<(), RuntimeError>) -> Result<StdioEnds, RunError> {
    let socket = ConsoleSocket::bind()?;
    run(Some(socket.path()), ContainerStdio::null())?;
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

fn read_pid(path: &Path) -> Result<Pid, RunError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PID_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| RunError::PidFile { path: path.into(), reason: e.to_string() })?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => Ok(Pid::from_raw(pid)),
        _ => Err(RunError::PidFile { path: path.into(), reason: format!("{:?} is not a pid", text.trim()) }),
    }
}

