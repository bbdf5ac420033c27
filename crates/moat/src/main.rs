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
    /// Run a container in its own zone, or in a pod (--pod).
    Run(Box<commands::run::RunCommand>),
    /// Create a container without starting it; prints its name.
    Create(Box<commands::run::RunArgs>),
    /// Start created containers.
    Start {
        /// Attach to the container's output (and stdin, when created with -i) until it exits.
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(Box<commands::exec::ExecArgs>),
    /// Copy files and directories between a container and the host.
    Cp(commands::cp::CpArgs),
    /// Make a new image from a container's changes (its writable layer on top of its image).
    Commit(Box<commands::commit::CommitArgs>),
    /// Write a container's whole file system as a tar, to stdout or -o FILE.
    Export(commands::commit::ExportArgs),
    /// List containers.
    Ps {
        /// Show exited containers too.
        #[arg(short, long)]
        all: bool,
        /// Print only the containers' ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show containers' CPU, memory, network and block I/O and process counts, refreshed each second.
    Stats(commands::stats::StatsArgs),
    /// Serve the zones' and containers' figures for Prometheus on GET /metrics.
    Metrics(commands::metrics::MetricsArgs),
    /// Show a container's processes (UID PID PPID C STIME TTY TIME CMD), as its zone sees them.
    Top(commands::top::TopArgs),
    /// Print what happens to containers and zones: past events (--since, --until), then new
    /// ones as they come, until interrupted or --until.
    Events(commands::events::EventsArgs),
    /// Print a container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        container: String,
    },
    /// Send a signal to a container's process.
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        container: String,
    },
    /// Stop a container: SIGTERM, then SIGKILL after the timeout.
    Stop {
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        container: String,
    },
    /// Remove containers and their zones.
    Rm {
        #[arg(short, long)]
        force: bool,
        /// Docker's flag for removing a container's anonymous volumes, accepted: the volumes its
        /// image declares live on its zone's disk and always go with it.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List a container's published ports, or the host address of one (`PORT[/PROTO]`).
    Port {
        container: String,
        port: Option<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Manage pods: zones that hold several containers.
    #[command(subcommand)]
    Pod(commands::pod::PodCommand),
    /// The warm pool: zones booted ahead for `moat run`.
    #[command(subcommand)]
    Pool(commands::pool::PoolCommand),
    /// Manage zones: the lightweight VMs that workloads run in.
    #[command(subcommand)]
    Zone(commands::zone::ZoneCommand),
    /// Manage the image store: pull, import, tag, save, load, list, inspect, remove.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Manage volumes: named host directories that containers mount.
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Manage networks: zones on one reach each other by name, and nothing else.
    #[command(subcommand)]
    Network(commands::networks::NetworkCommand),
    /// Run the isolation checker on this host.
    Check(commands::check::CheckArgs),
    #[command(flatten)]
    TopLevel(commands::toplevel::TopLevel),
    /// Internal: the per-zone supervisor process, started by `zone create`.
    #[command(hide = true)]
    Supervise(commands::zone::SuperviseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing();
    let result = match cli.command {
        Command::Run(command) => commands::run::run(&cli.root, *command),
        Command::Create(args) => commands::run::create(&cli.root, *args),
        Command::Start { attach, containers } => commands::container::start(&cli.root, &containers, attach),
        Command::Exec(args) => commands::exec::exec(&cli.root, *args),
        Command::Cp(args) => commands::cp::cp(&cli.root, args),
        Command::Commit(args) => commands::commit::commit(&cli.root, *args),
        Command::Export(args) => commands::commit::export(&cli.root, args),
        Command::Ps { all, quiet } => commands::container::ps(&cli.root, all, quiet),
        Command::Stats(args) => commands::stats::run(&cli.root, args),
        Command::Metrics(args) => commands::metrics::run(&cli.root, args),
        Command::Top(args) => commands::top::run(&cli.root, args),
        Command::Events(args) => commands::events::run(&cli.root, args),
        Command::Logs { follow, container } => commands::container::logs(&cli.root, &container, follow),
        Command::Kill { signal, container } => commands::container::kill(&cli.root, &container, &signal),
        Command::Stop { time, container } => commands::container::stop(&cli.root, &container, time),
        Command::Rm { force, volumes: _, containers } => commands::container::rm(&cli.root, &containers, force),
        Command::Port { container, port } => commands::network::port(&cli.root, &container, port.as_deref()),
        Command::Wait { containers } => commands::container::wait(&cli.root, &containers),
        Command::Pod(cmd) => commands::pod::run(&cli.root, cmd),
        Command::Pool(cmd) => commands::pool::run(&cli.root, cmd),
        Command::Zone(cmd) => commands::zone::run(&cli.root, cmd),
        Command::Image(cmd) => commands::image::run(&cli.root, cmd),
        Command::Volume(cmd) => commands::volume::run(&cli.root, cmd),
        Command::Network(cmd) => commands::networks::run(&cli.root, cmd),
        Command::Check(args) => commands::check::run(args),
        Command::TopLevel(cmd) => commands::toplevel::run(&cli.root, cmd),
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
