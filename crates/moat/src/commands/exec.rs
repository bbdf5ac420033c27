//! `moat exec`: another process in a running container, with Docker's flags and exit codes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use moat_proto::ExecRequest;
use moat_spec::exec::{exec_process, process_to_json, ExecOptions};
use moat_zone::api::{ApiRequest, ApiResponse, Connection};
use moat_zone::state::{ZoneDir, ZoneStore};

use super::{attach, container, run};

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Start the process and return at once; its output is discarded.
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// USER[:GROUP], names or numbers; the container's user by default.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container; the container's by default.
    #[arg(short, long)]
    pub workdir: Option<String>,
    pub container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn exec(root: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    let (dir, record) = container::container(&store, &args.container)?;
    if !container::is_running(&record) {
        bail!("container {} is not running", args.container);
    }
    let options = ExecOptions {
        command: args.command.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        console_size: if args.tty { attach::terminal_size() } else { None },
    };
    let caller_env: BTreeMap<String, String> = std::env::vars().collect();
    let built = exec_process(&read_spec(&dir)?, &options, &caller_env)?;
    let stdin = args.interactive && !args.detach;
    let request = ExecRequest { process_json: process_to_json(&built.process)?, user: Some(built.user), tty: args.tty, stdin };

    let mut conn = Connection::open(&dir.api_socket())?;
    conn.send(&ApiRequest::Exec(Box::new(request)))?;
    match conn.receive()? {
        ApiResponse::Done => {}
        ApiResponse::Error { message } => {
            eprintln!("moat: {message}");
            // Docker's exec: 127 for a missing command, 126 for any other start failure.
            return Ok(ExitCode::from(run::start_failure_code(&message).unwrap_or(126)));
        }
        other => bail!("unexpected answer from the zone: {other:?}"),
    }
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = attach::attach(conn, stdin, args.tty)?;
    Ok(ExitCode::from(attach::exit_code(outcome, &dir, "process", "the container's memory limit")))
}

/// The spec the container was started from, which the supervisor saved in the zone.
fn read_spec(dir: &ZoneDir) -> anyhow::Result<oci_spec::runtime::Spec> {
    let path = dir.spec_file();
    let text = run::read_bounded(&path, moat_spec::MAX_SPEC_JSON_BYTES as u64).with_context(|| format!("reading the container's spec {}", path.display()))?;
    Ok(moat_spec::from_json(&text)?)
}
