//! Driving the zone's OCI runtime binary, Debian's runc or crun (on the tools disk the host
//! attaches; the host picks which, see [`OciRuntime`]): create, start, exec, delete, and one
//! clear line out of its log when it fails. Both take the same command line and write the same
//! JSON log lines; what differs is below, in one place.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat_proto::{FailureKind, OciRuntime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;

/// The runtime's log, one JSON object per line; rewritten for every command.
const LOG_FILE: &str = "/run/moat/oci-runtime.log";

/// Most of the runtime's log read back for an error. The runtime writes the log, but its
/// messages quote the image's paths and arguments, and a runaway log must not fill init's memory.
const MAX_LOG_BYTES: u64 = 64 * 1024;
/// Longest runtime error passed on to the host as the reason a run failed.
const MAX_ERROR_CHARS: usize = 512;

/// Longest any runtime command may take. Init waits for the runtime in its control loop, so one
/// that hangs (on a mount, a device, a stuck container process) would stop the zone answering.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);

/// Leading parts of runc's errors that only say which layer passed the error up (crun's have
/// none).
const WRAPPERS: [&str; 7] = [
    "runc create failed",
    "runc start failed",
    "runc delete failed",
    "runc run failed",
    "exec failed",
    "unable to start container process",
    "error during container init",
];

/// The runtime's state directory (its default for root).
fn state_dir(runtime: OciRuntime) -> &'static str {
    match runtime {
        OciRuntime::Runc => "/run/runc",
        OciRuntime::Crun => "/run/crun",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("starting {}: {err}", runtime.path())]
    Spawn { runtime: OciRuntime, err: std::io::Error },
    /// The runtime's own reason, stripped of its wrappers, and what kind of failure it names.
    #[error("{reason}")]
    Failed { reason: String, kind: FailureKind },
    #[error("{runtime} {command} did not finish within {timeout:?}; it was killed")]
    Timeout { runtime: OciRuntime, command: &'static str, timeout: Duration },
    #[error("waiting for {runtime} {command}: {err}")]
    Wait { runtime: OciRuntime, command: &'static str, err: std::io::Error },
}

/// The container process's stdio while `create` runs: the runtime passes its own stdio through
/// to the container when there is no terminal.
pub struct ContainerStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ContainerStdio {
    pub fn null() -> Self {
        Self { stdin: Stdio::null(), stdout: Stdio::null(), stderr: Stdio::null() }
    }
}

/// Namespaces the runtime is started in, so that what it creates or execs inherits them: open
/// descriptors and their kinds (see `Pod::entry`).
pub type Enter = [(RawFd, CloneFlags)];

/// How far [`launch`] takes a new container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `create`: the container's process exists, stopped before exec, when this returns.
    Create,
    /// `run --detach`: `create` and `start` in one command; the process runs when this returns.
    Run,
}

/// A new container for the runtime: its id, its bundle's directory, and where the runtime
/// writes its process's pid.
pub struct NewContainer<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
}

/// Create a container from its bundle, and with [`Launch::Run`] start it too.
pub fn launch(runtime: OciRuntime, launch: Launch, new: &NewContainer, console_socket: Option<&Path>, stdio: ContainerStdio, enter: &Enter) -> Result<(), RuntimeError> {
    let command = match launch {
        Launch::Create => "create",
        Launch::Run => "run",
    };
    run(runtime, command, &launch_args(launch, new, console_socket), stdio, enter)
}

fn launch_args<'a>(launch: Launch, new: &NewContainer<'a>, console_socket: Option<&'a Path>) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = match launch {
        Launch::Create => vec!["create".as_ref()],
        Launch::Run => vec!["run".as_ref(), "--detach".as_ref()],
    };
    args.extend::<[&OsStr; 4]>(["--bundle".as_ref(), new.bundle.as_os_str(), "--pid-file".as_ref(), new.pid_file.as_os_str()]);
    if let Some(socket) = console_socket {
        args.extend(["--console-socket".as_ref(), socket.as_os_str()]);
    }
    args.push(new.id.as_ref());
    args
}

/// `start`: the container's process execs its command.
pub fn start(runtime: OciRuntime, id: &str) -> Result<(), RuntimeError> {
    run(runtime, "start", &["start".as_ref(), id.as_ref()], ContainerStdio::null(), &[])
}

/// `exec --detach`: start the process described by the `process` file in the running
/// container. The runtime exits once it runs, so the process becomes init's child, as the
/// workload is.
pub fn exec(runtime: OciRuntime, id: &str, process: &Path, pid_file: &Path, console_socket: Option<&Path>, stdio: ContainerStdio, enter: &Enter) -> Result<(), RuntimeError> {
    let mut args: Vec<&OsStr> = vec!["exec".as_ref(), "--detach".as_ref(), "--pid-file".as_ref(), pid_file.as_os_str(), "--process".as_ref(), process.as_os_str()];
    if let Some(socket) = console_socket {
        args.extend(["--console-socket".as_ref(), socket.as_os_str()]);
    }
    args.push(id.as_ref());
    run(runtime, "exec", &args, stdio, enter)
}

/// `delete`: remove the container's state and cgroup; with `force`, kill what is left first
/// (without, the runtime refuses a running container).
pub fn delete(runtime: OciRuntime, id: &str, force: bool) -> Result<(), RuntimeError> {
    let mut args: Vec<&OsStr> = vec!["delete".as_ref()];
    if force {
        args.push("--force".as_ref());
    }
    args.push(id.as_ref());
    run(runtime, "delete", &args, ContainerStdio::null(), &[])
}

/// The kind of a runtime failure. Both report why a process could not start only as text
/// (runc passes on Go's exec errors; crun names the executable and appends strerror), so this
/// adapter is the one place that reads it; everything past it sees the kind.
fn failure_kind(runtime: OciRuntime, reason: &str) -> FailureKind {
    let (starting, not_found, denied): (bool, &[&str], &[&str]) = match runtime {
        OciRuntime::Runc => (reason.starts_with("exec: "), &["executable file not found in $PATH", "no such file or directory"], &["permission denied"]),
        OciRuntime::Crun => (
            reason.starts_with("executable file `") || reason.starts_with("exec container process") || reason.starts_with("open executable"),
            &["No such file or directory"],
            &["Permission denied", "Is a directory", "Operation not permitted"],
        ),
    };
    if starting && not_found.iter().any(|end| reason.ends_with(end)) {
        FailureKind::NotFound
    } else if starting && denied.iter().any(|end| reason.ends_with(end)) {
        FailureKind::PermissionDenied
    } else {
        FailureKind::Internal
    }
}

fn run(runtime: OciRuntime, command: &'static str, args: &[&OsStr], stdio: ContainerStdio, enter: &Enter) -> Result<(), RuntimeError> {
    let _ = std::fs::remove_file(LOG_FILE);
    let mut cmd = Command::new(runtime.path());
    cmd.args(["--root", state_dir(runtime), "--log", LOG_FILE, "--log-format", "json"])
        .args(args)
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    // Init blocks the signals it reads through its signalfd, and a blocked mask survives exec:
    // without this the container's process would start with SIGTERM, SIGUSR1 and the rest
    // blocked, and a signal forwarded to it would never arrive.
    let enter = enter.to_vec();
    // SAFETY: sigprocmask and setns are async-signal-safe and change only the child's own mask
    // and namespaces; the descriptors stay open in init for as long as the pod.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for (fd, kind) in &enter {
                nix::sched::setns(BorrowedFd::borrow_raw(*fd), *kind).map_err(std::io::Error::from)?;
            }
            reset_oom_score()?;
            nix::sys::signal::SigSet::empty().thread_set_mask().map_err(std::io::Error::from)
        });
    }
    let status = status_within(&mut cmd, runtime, command, RUNTIME_TIMEOUT)?;
    if status.success() {
        return Ok(());
    }
    let reason = read_log_tail().as_deref().and_then(error_message).unwrap_or_else(|| format!("{runtime} {command} failed ({status})"));
    Err(RuntimeError::Failed { kind: failure_kind(runtime, &reason), reason })
}

/// Give the runtime's process oom_score_adj 0, the value every spec carries. Init runs at -1000,
/// which its children inherit; runc applies the spec's 0, but crun 1.8.1 leaves a 0 alone, and a
/// -1000 container process is never OOM-killed: it would hang at its cgroup's memory limit.
/// Called between fork and exec, so only async-signal-safe calls and no allocation.
fn reset_oom_score() -> std::io::Result<()> {
    // SAFETY: open, write and close are async-signal-safe; the path is a static C string and
    // the buffer a static byte.
    unsafe {
        let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if written == 1 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// Run `cmd` to its end and reap it, or kill and reap it once `timeout` has passed.
fn status_within(cmd: &mut Command, runtime: OciRuntime, command: &'static str, timeout: Duration) -> Result<std::process::ExitStatus, RuntimeError> {
    let mut child = cmd.spawn().map_err(|err| RuntimeError::Spawn { runtime, err })?;
    let ended = ended_within(&child, timeout);
    if !matches!(ended, Ok(true)) {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|err| RuntimeError::Wait { runtime, command, err })?;
    match ended {
        Ok(true) => Ok(status),
        Ok(false) => Err(RuntimeError::Timeout { runtime, command, timeout }),
        Err(err) => Err(RuntimeError::Wait { runtime, command, err }),
    }
}

/// Whether `child` has ended within `timeout`, without reaping it: its pidfd turns readable
/// when it exits.
fn ended_within(child: &Child, timeout: Duration) -> std::io::Result<bool> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is
    // passed. The child is not reaped yet, so the pid is still ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            Ok(0) if left.is_zero() => return Ok(false),
            // poll rounds the timeout down to milliseconds: wait out the rest.
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return Ok(true),
            Err(err) => return Err(err.into()),
        }
    }
}

fn read_log_tail() -> Option<String> {
    let mut file = std::fs::File::open(LOG_FILE).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX_LOG_BYTES))).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_BYTES).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(serde::Deserialize)]
struct LogLine {
    level: String,
    msg: String,
}

/// The last error in the runtime's JSON log, without runc's wrappers, on one bounded line.
pub fn error_message(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<LogLine>(line).ok())
        .find(|line| line.level == "error" || line.level == "fatal")?;
    let mut msg = line.msg.as_str();
    while let Some((head, rest)) = msg.split_once(": ") {
        if !WRAPPERS.contains(&head.trim()) {
            break;
        }
        msg = rest;
    }
    let one_line: String = msg.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_ERROR_CHARS).collect();
    Some(one_line.trim().to_string()).filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_outlives_its_bound_is_killed_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        let mut sleep = Command::new("sh");
        sleep.arg("-c").arg(format!("echo $$ > {}; exec sleep 30", pid_file.display()));
        let err = status_within(&mut sleep, OciRuntime::Runc, "create", Duration::from_millis(300)).unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, RuntimeError::Timeout { command: "create", .. }), "{err}");
        assert_eq!(err.to_string(), "runc create did not finish within 300ms; it was killed");
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5), "{elapsed:?}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(!Path::new("/proc").join(pid.trim()).exists(), "the command is killed and reaped (pid {})", pid.trim());
    }

    #[test]
    fn a_command_within_its_bound_gives_its_status() {
        let mut quick = Command::new("sh");
        quick.args(["-c", "sleep 0.1; exit 3"]);
        let status = status_within(&mut quick, OciRuntime::Crun, "start", Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        let mut missing = Command::new("/nonexistent/runc");
        assert!(matches!(status_within(&mut missing, OciRuntime::Crun, "delete", Duration::from_secs(1)), Err(RuntimeError::Spawn { .. })));
    }

    #[test]
    fn run_is_create_and_start_detached_with_the_same_arguments() {
        let new = NewContainer { id: "c1", bundle: Path::new("/b"), pid_file: Path::new("/p") };
        let words = |launch, socket| launch_args(launch, &new, socket).iter().map(|a| a.to_str().unwrap().to_string()).collect::<Vec<_>>().join(" ");
        assert_eq!(words(Launch::Create, None), "create --bundle /b --pid-file /p c1");
        assert_eq!(words(Launch::Run, Some(Path::new("/s"))), "run --detach --bundle /b --pid-file /p --console-socket /s c1");
    }

    #[test]
    fn the_meaningful_part_of_a_create_error() {
        let log = r#"{"level":"warning","msg":"some warning","time":"2024-01-01T00:00:00Z"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2024-01-01T00:00:00Z"}
"#;
        assert_eq!(error_message(log).as_deref(), Some(r#"exec: "nope": executable file not found in $PATH"#));
    }

    #[test]
    fn the_meaningful_part_of_an_exec_error() {
        // runc 1.1's log line for `runc exec` of a command the image lacks.
        let log = r#"{"level":"error","msg":"exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}"#;
        assert_eq!(error_message(log).as_deref(), Some(r#"exec: "nope": executable file not found in $PATH"#));
    }

    #[test]
    fn the_last_error_wins_and_inner_colons_stay() {
        let log = r#"{"level":"error","msg":"first","time":"t"}
{"level":"error","msg":"runc create failed: unable to start container process: error during container init: error mounting \"proc\" to rootfs at \"/proc\": permission denied","time":"t"}
{"level":"info","msg":"done","time":"t"}"#;
        assert_eq!(error_message(log).as_deref(), Some(r#"error mounting "proc" to rootfs at "/proc": permission denied"#));
    }

    #[test]
    fn runc_start_failures_have_kinds() {
        let kind = |reason| failure_kind(OciRuntime::Runc, reason);
        assert_eq!(kind(r#"exec: "nope": executable file not found in $PATH"#), FailureKind::NotFound);
        assert_eq!(kind(r#"exec: "/bin/x": no such file or directory"#), FailureKind::NotFound);
        assert_eq!(kind(r#"exec: "/etc": permission denied"#), FailureKind::PermissionDenied);
        assert_eq!(kind(r#"error mounting "proc" to rootfs at "/proc": permission denied"#), FailureKind::Internal, "only the process's own exec");
    }

    #[test]
    fn crun_errors_read_alike() {
        let log = r#"{"msg":"executable file `nope` not found in $PATH: No such file or directory","level":"error","time":"2024-01-01T00:00:00.000000Z"}"#;
        let reason = error_message(log).unwrap();
        assert_eq!(reason, "executable file `nope` not found in $PATH: No such file or directory");
        assert_eq!(failure_kind(OciRuntime::Crun, &reason), FailureKind::NotFound);
        // crun 1.8.1's reason for a command that is a directory.
        assert_eq!(failure_kind(OciRuntime::Crun, "open executable: Operation not permitted"), FailureKind::PermissionDenied);
        assert_eq!(failure_kind(OciRuntime::Crun, "exec container process `/bin/x`: Permission denied"), FailureKind::PermissionDenied);
        assert_eq!(failure_kind(OciRuntime::Crun, "mount `proc` to `proc`: Permission denied"), FailureKind::Internal, "only the process's own exec");
    }

    #[test]
    fn no_error_or_garbage_gives_nothing() {
        assert_eq!(error_message(""), None);
        assert_eq!(error_message("not json\n{\"level\":\"info\",\"msg\":\"x\"}"), None);
        assert_eq!(error_message(r#"{"level":"error","msg":"runc create failed: "}"#), None);
    }

    #[test]
    fn errors_are_one_bounded_line() {
        let long = format!(r#"{{"level":"error","msg":"bad\nthing\u001b[31m {}"}}"#, "x".repeat(2 * MAX_ERROR_CHARS));
        let msg = error_message(&long).unwrap();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.chars().count() <= MAX_ERROR_CHARS);
        assert!(msg.starts_with("bad thing"));
    }
}
