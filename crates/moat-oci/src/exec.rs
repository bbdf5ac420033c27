//! exec and ps: another process in a running container, from `--process FILE` (what conmon
//! writes) or from the command line over the container's own process.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use moat_proto::ExecRequest;
use moat_runtime::{start_failure_code, Found, RuntimeError};
use moat_zone::api::Connection;
use moat_zone::state::read_bounded;
use oci_spec::runtime::Process;

use crate::context::{Container, Context};
use crate::keeper::{self, KeepArgs, READY};
use crate::lifecycle::{status_name, write_pid_file};
use crate::record::Status;

/// Largest process file moat-oci reads.
const MAX_PROCESS_JSON_BYTES: u64 = moat_spec::MAX_SPEC_JSON_BYTES as u64;
/// Most bytes of an exec keeper's ready report read.
const MAX_READY_BYTES: u64 = 4096;

pub fn exec(ctx: &Context, args: &liboci_cli::Exec) -> anyhow::Result<ExitCode> {
    let id = &args.container_id;
    let container = running(ctx, id)?;
    let process = match &args.process {
        Some(file) => read_process(file)?,
        None => process_from_flags(ctx, &container, args)?,
    };
    let tty = process.terminal().unwrap_or(false);
    if !args.detach {
        let found = container.found.context("the container has no zone")?;
        return match start(ctx, &found, &process) {
            Ok(conn) => keeper::relay(conn, &found, tty, "process"),
            Err(err) => {
                ctx.log.error(&err.to_string());
                Ok(ExitCode::from(start_failure_code(&err, 126)))
            }
        };
    }
    let terminal = match (&args.console_socket, tty) {
        (Some(socket), true) => Some(crate::console::send_new_pty(socket)?),
        (None, true) => bail!("the process asks for a terminal: give --console-socket"),
        _ => None,
    };
    let file = ctx.records.dir(id).join(format!("exec-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&process)?).with_context(|| format!("writing {}", file.display()))?;
    let (ready_read, ready_write) = nix::unistd::pipe().context("making the ready pipe")?;
    let pid = keeper::spawn(ctx, KeepArgs::exec(id, file), terminal.as_ref(), Some(&ready_write));
    drop(ready_write);
    let pid = pid?;
    let mut report = String::new();
    let mut reader = std::fs::File::from(ready_read).take(MAX_READY_BYTES);
    reader.read_to_string(&mut report).context("reading the exec's ready pipe")?;
    if report.as_bytes() == READY {
        if let Some(pid_file) = &args.pid_file {
            write_pid_file(pid_file, pid)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (code, message) = report.split_once(' ').unwrap_or(("1", "the process did not start"));
    ctx.log.error(message);
    Ok(ExitCode::from(code.parse::<u8>().unwrap_or(1)))
}

/// For the exec keeper: start the process in `file` in container `id`.
pub fn start_from_file(ctx: &Context, id: &str, file: &Path) -> anyhow::Result<(Connection, Found, bool)> {
    let process = read_process(file)?;
    let found = running(ctx, id)?.found.context("the container has no zone")?;
    let conn = start(ctx, &found, &process)?;
    Ok((conn, found, process.terminal().unwrap_or(false)))
}

fn start(ctx: &Context, found: &Found, process: &Process) -> Result<Connection, RuntimeError> {
    let tty = process.terminal().unwrap_or(false);
    let request = ExecRequest { process_json: moat_spec::exec::process_to_json(process)?, user: None, tty, stdin: true };
    ctx.runtime.containers().exec(found, request)
}

fn running(ctx: &Context, id: &str) -> anyhow::Result<Container> {
    let container = ctx.container(id)?;
    if container.status != Status::Running {
        bail!("container {id} is {}: a process can run only in a running container", status_name(container.status));
    }
    Ok(container)
}

fn read_process(file: &Path) -> anyhow::Result<Process> {
    let text = read_bounded(file, MAX_PROCESS_JSON_BYTES).with_context(|| format!("reading the process file {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid process", file.display()))
}

/// runc's `exec ID COMMAND…` with `--cwd`, `--env`, `--tty`, `--user`: the container's process
/// with those changed.
fn process_from_flags(ctx: &Context, container: &Container, args: &liboci_cli::Exec) -> anyhow::Result<Process> {
    if args.command.is_empty() {
        bail!("exec needs a command, or --process FILE");
    }
    let found = container.found.as_ref().context("the container has no zone")?;
    let spec = ctx.runtime.containers().spec(found)?;
    let mut process = spec.process().clone().context("the container's spec has no process")?;
    process.set_args(Some(args.command.clone())).set_terminal(Some(args.tty));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().map(|(k, v)| format!("{k}={v}")));
    process.set_env(Some(env));
    if let Some((uid, gid)) = args.user {
        let mut user = process.user().clone();
        user.set_uid(uid).set_gid(gid.unwrap_or(0)).set_additional_gids(Some(args.additional_gids.clone()));
        process.set_user(user);
    }
    Ok(process)
}

/// runc's `ps`: `--format json` lists the host processes that stand for the container (its
/// keeper: the zone's pids mean nothing on the host); the table is `ps` run in the container.
pub fn ps(ctx: &Context, args: &liboci_cli::Ps) -> anyhow::Result<ExitCode> {
    let container = running(ctx, &args.container_id)?;
    if args.format == "json" {
        let pids: Vec<i32> = [container.pid()].into_iter().filter(|p| *p > 0).collect();
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(ExitCode::SUCCESS);
    }
    let found = container.found.context("the container has no zone")?;
    let spec = ctx.runtime.containers().spec(&found)?;
    let mut process = spec.process().clone().context("the container's spec has no process")?;
    let command: Vec<String> = std::iter::once("ps".to_string()).chain(args.ps_options.iter().cloned()).collect();
    process.set_args(Some(command)).set_terminal(Some(false));
    match start(ctx, &found, &process) {
        Ok(conn) => keeper::relay(conn, &found, false, "ps"),
        Err(err) => bail!("running ps in the container: {err}"),
    }
}
