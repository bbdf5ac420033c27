//! `moat`: the command-line client. Each subcommand family lives in its own module under
//! `commands/`; this file only parses and dispatches.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "moat", version, about = "Run OCI containers, privileged ones included, inside zones")]
struct Cli {
    /// State root: zones, images and caches live below it.
    #[arg(long, global = true, env = "MOAT_ROOT", default_value = "/var/lib/moat")]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage zones: the lightweight VMs that workloads run in.
    #[command(subcommand)]
    Zone(commands::zone::ZoneCommand),
    /// Manage the image store: pull, import, list, inspect, remove.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Run the isolation checker on this host.
    Check(commands::check::CheckArgs),
    /// Internal: the per-zone supervisor process, started by `zone create`.
    #[command(hide = true)]
    Supervise(commands::zone::SuperviseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing();
    let result = match cli.command {
        Command::Zone(cmd) => commands::zone::run(&cli.root, cmd),
        Command::Image(cmd) => commands::image::run(&cli.root, cmd),
        Command::Check(args) => commands::check::run(args),
        Command::Supervise(args) => commands::zone::supervise(&cli.root, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("moat: {}", commands::one_line(&err));
            ExitCode::from(125)
        }
    }
}
