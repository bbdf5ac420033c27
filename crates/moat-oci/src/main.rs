//! moat-oci: an OCI runtime with runc's command line (parsed by youki's liboci-cli), for conmon
//! and podman. Each container runs in a zone of its own, through the same runtime library as
//! `moat run`; the host process left behind for conmon (the keeper) relays the container's stdio
//! and ends with its exit status.

mod console;
mod context;
mod exec;
mod hooks;
mod keeper;
mod lifecycle;
mod log;
mod record;
mod translate;
mod versions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use liboci_cli::GlobalOpts;

use crate::context::Context;
use crate::log::Log;

#[derive(Parser)]
#[command(name = "moat-oci", version = versions::VERSION_TEXT, about = "Run OCI bundles, each in a zone of its own, with runc's command line")]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle, in a new zone; it waits for `start`.
    Create(liboci_cli::Create),
    /// Start a created container's process.
    Start(liboci_cli::Start),
    /// Print a container's OCI state as JSON.
    State(liboci_cli::State),
    /// Send a signal to a container's process.
    Kill(liboci_cli::Kill),
    /// Remove a container and its zone.
    Delete(liboci_cli::Delete),
    /// Run another process in a running container.
    Exec(Box<liboci_cli::Exec>),
    /// List a container's processes (`--format json`: the host processes that stand for it).
    Ps(liboci_cli::Ps),
    /// Print what this runtime supports, as JSON.
    Features(liboci_cli::Features),
    /// Write a default config.json into the bundle.
    Spec(liboci_cli::Spec),
    /// Supervise a zone (started by the runtime library).
    #[command(hide = true)]
    Supervise { zone_id: String },
    /// The process `--pid-file` names (started by `create` and `exec --detach`).
    #[command(hide = true)]
    Keep(keeper::KeepArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Log::new(&cli.global);
    match run(cli, &log) {
        Ok(code) => code,
        Err(err) => {
            log.error(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, log: &Log) -> anyhow::Result<ExitCode> {
    let command = cli.command;
    if let Command::Spec(args) = &command {
        return versions::write_default_spec(args);
    }
    if let Command::Features(_) = &command {
        return versions::print_features();
    }
    let ctx = Context::open(&cli.global, log.clone())?;
    match command {
        Command::Create(args) => lifecycle::create(&ctx, &args),
        Command::Start(args) => lifecycle::start(&ctx, &args.container_id),
        Command::State(args) => lifecycle::state(&ctx, &args.container_id),
        Command::Kill(args) => lifecycle::kill(&ctx, &args.container_id, &args.signal),
        Command::Delete(args) => lifecycle::delete(&ctx, &args.container_id, args.force),
        Command::Exec(args) => exec::exec(&ctx, &args),
        Command::Ps(args) => exec::ps(&ctx, &args),
        Command::Supervise { zone_id } => ctx.supervise(&zone_id),
        Command::Keep(args) => keeper::keep(&ctx, &args),
        Command::Spec(_) | Command::Features(_) => unreachable!("handled above"),
    }
}
