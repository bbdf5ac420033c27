//! `moat exec`: another process in a running container, with Docker's flags and exit codes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use moat_proto::ExecRequest;
use moat_runtime::{exit_report, Runtime};
use moat_spec::exec::{exec_process, process_to_json, ExecOptions};

use super::{attach, run};

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
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let containers = runtime.containers();
    let found = containers.find(&args.container)?;
    let options = ExecOptions {
        command: args.command.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        console_size: if args.tty { attach::terminal_size() } else { None },
    };
    let caller_env: BTreeMap<String, String> = std::env::vars().collect();
    let built = exec_process(&containers.spec(&found)?, &options, &caller_env)?;
    let stdin = args.interactive && !args.detach;
    let request = ExecRequest { process_json: process_to_json(&built.process)?, user: Some(built.user), tty: args.tty, stdin };
    let conn = match containers.exec(&found, request) {
        Ok(conn) => conn,
        // Docker's exec: 127 for a missing command, 126 for any other start failure.
        Err(err) => return run::start_failed(&err, 126),
    };
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = attach::attach(conn, stdin, args.tty)?;
    let report = exit_report(outcome, &found, "process");
    if let Some(message) = &report.message {
        eprintln!("moat: {message}");
    }
    Ok(ExitCode::from(report.code))
}
