//! The keeper: the host process that `--pid-file` names and conmon waits on. It lives exactly
//! as long as the container's process (or an exec'd one), relays its stdio (the caller's, or
//! the pty whose master went to the console socket) over the runtime's connection, and ends
//! with its exit status.
//!
//! Stages, across the re-exec: (1) `create` or `exec --detach` spawns `moat-oci keep`, in a
//! session of its own, with the pty slave as its controlling terminal when there is one;
//! (2) a container's keeper waits on the start fifo for `start`, an exec's keeper starts its
//! process at once and reports on the ready pipe; (3) it relays until the process exits.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use moat_runtime::{exit_report, start_failure_code, Found, RuntimeError};
use moat_zone::api::Connection;

use crate::context::Context;
use crate::record::Status;

/// The ready pipe's number in an exec keeper.
const READY_FD: RawFd = 3;
/// What an exec keeper writes on the ready pipe once its process runs.
pub const READY: &[u8] = b"ok";
/// How often a keeper waiting for `start` looks at the fifo and the zone.
const START_POLL: Duration = Duration::from_millis(50);

#[derive(Args, Debug)]
pub struct KeepArgs {
    pub container_id: String,
    /// Run the process in this file (a spec's `process`, JSON) instead of starting the
    /// container's own; the file is removed once read.
    #[arg(long)]
    pub exec: Option<PathBuf>,
}

impl KeepArgs {
    pub fn container(id: &str) -> Self {
        Self { container_id: id.to_string(), exec: None }
    }

    pub fn exec(id: &str, process_file: PathBuf) -> Self {
        Self { container_id: id.to_string(), exec: Some(process_file) }
    }

    fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["keep".into(), self.container_id.clone().into()];
        if let Some(file) = &self.exec {
            args.extend(["--exec".into(), file.clone().into_os_string()]);
        }
        args
    }
}

/// Start a keeper: its stdio is the pty slave `terminal` (then its controlling terminal), or
/// this process's; `ready` becomes its ready pipe. Returns its pid.
pub fn spawn(ctx: &Context, args: KeepArgs, terminal: Option<&OwnedFd>, ready: Option<&OwnedFd>) -> anyhow::Result<u32> {
    let mut command = Command::new(std::env::current_exe().context("locating moat-oci")?);
    command.args(ctx.self_args()).args(args.to_args());
    if let Some(slave) = terminal {
        command.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave.try_clone()?));
    }
    let has_terminal = terminal.is_some();
    let ready_fd = ready.map(|fd| fd.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls are made (setsid, ioctl, dup2),
    // on fds this process owns and that stay open until spawn returns.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if has_terminal && libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = ready_fd {
                if libc::dup2(fd, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().context("starting the keeper process")?;
    Ok(child.id())
}

/// The hidden `keep` command.
pub fn keep(ctx: &Context, args: &KeepArgs) -> anyhow::Result<ExitCode> {
    match &args.exec {
        Some(file) => keep_exec(ctx, &args.container_id, file),
        None => keep_container(ctx, &args.container_id),
    }
}

fn keep_container(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    if let Some(code) = wait_for_start(ctx, id)? {
        return Ok(ExitCode::from(code));
    }
    let container = ctx.container(id)?;
    let Some(found) = container.found else { return Ok(ExitCode::from(killed_code(None))) };
    match ctx.runtime.containers().start(&found) {
        Ok(conn) => relay(conn, &found, found.container.tty, "container"),
        Err(err) => {
            let _ = std::fs::write(ctx.records.start_error(id), err.to_string());
            Ok(ExitCode::from(start_failure_code(&err, 1)))
        }
    }
}

/// Wait for `start`; `Some(code)` when the container ended first (killed, or deleted).
fn wait_for_start(ctx: &Context, id: &str) -> anyhow::Result<Option<u8>> {
    let fifo_path = ctx.records.start_fifo(id);
    // Opened non-blocking, so the keeper can look at the zone between reads.
    let mut fifo = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo_path).with_context(|| format!("opening {}", fifo_path.display()))?;
    let mut byte = [0u8; 1];
    loop {
        match fifo.read(&mut byte) {
            Ok(1) => return Ok(None),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err).context("reading the start fifo"),
        }
        match ctx.container(id) {
            Ok(container) if container.status != Status::Stopped => {}
            Ok(container) => return Ok(Some(killed_code(container.record.killed_before_start))),
            Err(_) => return Ok(Some(killed_code(None))),
        }
        std::thread::sleep(START_POLL);
    }
}

/// The exit code of a process killed by `signal` (SIGKILL when unknown), as a shell reports it.
fn killed_code(signal: Option<i32>) -> u8 {
    u8::try_from(128 + signal.unwrap_or(libc::SIGKILL)).unwrap_or(137)
}

fn keep_exec(ctx: &Context, id: &str, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    // SAFETY: the spawner dup'ed the ready pipe to READY_FD for this process alone, and nothing
    // else here uses that number.
    let mut ready = unsafe { std::fs::File::from_raw_fd(READY_FD) };
    let started = crate::exec::start_from_file(ctx, id, file);
    let _ = std::fs::remove_file(file);
    match started {
        Ok((conn, found, tty)) => {
            let _ = ready.write_all(READY);
            drop(ready);
            relay(conn, &found, tty, "process")
        }
        Err(err) => {
            let code = err.downcast_ref::<RuntimeError>().map_or(1, |e| start_failure_code(e, 1));
            let _ = write!(ready, "{code} {err:#}");
            Ok(ExitCode::from(code))
        }
    }
}

pub fn relay(conn: Connection, found: &Found, tty: bool, what: &str) -> anyhow::Result<ExitCode> {
    let outcome = moat_runtime::attach::attach(conn, true, tty)?;
    let report = exit_report(outcome, found, what);
    if let Some(message) = &report.message {
        eprintln!("moat-oci: {message}");
    }
    Ok(ExitCode::from(report.code))
}
