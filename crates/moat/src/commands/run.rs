//! `moat run`: one container in its own zone, with Docker's flags and exit-code conventions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use moat_runtime::{exit_report, start_failure_code, ContainerConfig, Found, Placement, Resources, Runtime, RuntimeError, SandboxConfig};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::assets::Assets;

use super::{attach, images, network, volume};

/// Where the isolation checker appears inside the container (read-only, outside the image).
pub const CHECKER_PATH: &str = "/.moat/check";
pub const DEFAULT_MEMORY: &str = "512m";
pub const DEFAULT_CPUS: &str = "1";

/// `moat run`: create, start, and attach unless `-d`.
#[derive(Args)]
pub struct RunCommand {
    /// Run in the background and print the container name.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub args: RunArgs,
}

/// The flags `moat run` and `moat create` share: what the container is.
#[derive(Args)]
pub struct RunArgs {
    /// Remove the container and its zone when it exits.
    #[arg(long)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP], names or numbers.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Every capability, the zone's devices, no seccomp, no user namespace: inside the zone only.
    #[arg(long)]
    pub privileged: bool,
    #[arg(long)]
    pub cap_add: Vec<String>,
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Bind a host directory or a named volume: `[SOURCE:]TARGET[:ro]`.
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Docker's `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]`.
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// A tmpfs at `PATH[:size=…,mode=…]`.
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// CPUs, e.g. 1.5: the zone gets 2 vCPUs and the container a quota of 1.5 CPUs (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub cpus: Option<String>,
    /// Memory of the zone, e.g. 512m; the container's limit is a little under it (default 512m).
    #[arg(long)]
    pub memory: Option<String>,
    /// Run in this pod (`moat pod create`) instead of a zone of its own.
    #[arg(long)]
    pub pod: Option<String>,
    /// Let a --privileged container into a shared pod; every other container there is then
    /// within its reach.
    #[arg(long)]
    pub allow_privileged_in_pod: bool,
    #[arg(long, default_value = "auto")]
    pub accel: String,
    #[command(flatten)]
    pub network: network::ZoneNetworkFlags,
    #[command(flatten)]
    pub names: network::NameFlags,
    /// Publish every port the image exposes, each to a free host port on 127.0.0.1.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Run moat's isolation checker as the container's process instead of the image's command.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub pull: images::PullFlags,
    pub image: String,
    /// Command and arguments (`--check [FLAGS]` here also runs the checker).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(root: &Path, command: RunCommand) -> anyhow::Result<ExitCode> {
    let RunCommand { detach, mut args } = command;
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let (placement, config) = config_from_flags(root, &mut args)?;
    let (found, conn) = match runtime.containers().run(placement, config) {
        Ok((found, conn, warnings)) => {
            print_warnings(warnings);
            (found, conn)
        }
        Err(err) => return start_failed(&err, 125),
    };
    if detach {
        println!("{}", found.container.name);
        return Ok(ExitCode::SUCCESS);
    }
    let code = attach_until_exit(conn, &found)?;
    if args.rm {
        wait_removed(&runtime, &found);
    }
    Ok(code)
}

/// `moat create`: the container, ready to start, its name printed.
pub fn create(root: &Path, mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let (placement, config) = config_from_flags(root, &mut args)?;
    match runtime.containers().create(placement, config) {
        Ok((found, warnings)) => {
            print_warnings(warnings);
            println!("{}", found.container.name);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => start_failed(&err, 125),
    }
}

fn print_warnings(warnings: Vec<String>) {
    for warning in warnings {
        eprintln!("moat: warning: {warning}");
    }
}

/// Relay the terminal to a started container's process until it ends; its exit code, with one
/// line on stderr when the code alone would mislead.
pub fn attach_until_exit(conn: moat_zone::api::Connection, found: &Found) -> anyhow::Result<ExitCode> {
    let outcome = attach::attach(conn, found.container.stdin, found.container.tty)?;
    let report = exit_report(outcome, found, "container");
    if let Some(message) = &report.message {
        eprintln!("moat: {message}");
    }
    Ok(ExitCode::from(report.code))
}

/// Turn the flags into where the container goes and what it is. An error is the caller's input
/// (flags, the image).
fn config_from_flags(root: &Path, args: &mut RunArgs) -> anyhow::Result<(Placement, ContainerConfig)> {
    if args.command.first().is_some_and(|c| c == "--check") {
        args.check = true;
        args.command.remove(0);
    }
    let mut placement = match &args.pod {
        Some(pod) => {
            if args.memory.is_some() || args.cpus.is_some() {
                return Err(RuntimeError::PodSetting(if args.memory.is_some() { "--memory" } else { "--cpus" }).into());
            }
            if let Some(flag) = args.network.zone_setting().or(args.publish_all.then_some("--publish-all")) {
                return Err(RuntimeError::PodSetting(flag).into());
            }
            Placement::Pod { key: pod.clone(), allow_privileged: args.allow_privileged_in_pod }
        }
        None => {
            let resources = Resources::parse(args.memory.as_deref().unwrap_or(DEFAULT_MEMORY), args.cpus.as_deref().unwrap_or(DEFAULT_CPUS))?;
            let (accel, accel_note) = accel::resolve(args.accel.parse::<AccelChoice>()?, &HostFacts::probe())?;
            Placement::OwnZone(SandboxConfig { name: None, id: None, resources, accel, accel_note, pod: false, debug: false, network: args.network.request(&[])? })
        }
    };
    let options = spec_options(args)?;
    let mounts = volume::mounts_from_flags(&args.volumes, &args.mounts, &args.tmpfs)?;
    Assets::locate(&Assets::default_dir())?;

    let image = images::get_or_pull(root, &args.image, &args.pull)?;
    let declared = image.config.config().as_ref().and_then(|c| c.volumes().clone()).unwrap_or_default();
    let mounts = moat_runtime::volumes::add_image_volumes(mounts, &declared)?;
    let caller_env: BTreeMap<String, String> = std::env::vars().collect();
    let mut spec = moat_spec::build_spec(&image.config, &options, &caller_env).with_context(|| format!("building the container spec for {}", args.image))?;
    if args.check {
        add_checker(&mut spec, &args.command)?;
    }
    let image_file = images::erofs(root, &image)?;
    if let (true, Placement::OwnZone(sandbox)) = (args.publish_all, &mut placement) {
        let exposed: Vec<String> = image.config.config().as_ref().and_then(|c| c.exposed_ports().clone()).unwrap_or_default();
        sandbox.network = args.network.request(&exposed)?;
    }
    let names = args.names.config(args.network.extra_hosts()?)?;

    if let Placement::OwnZone(SandboxConfig { accel_note: Some(note), .. }) = &placement {
        eprintln!("moat: warning: {note}");
    }
    let config = ContainerConfig { name: args.name.clone(), image: image.reference.clone(), image_file, spec, tty: args.tty, stdin: args.interactive, auto_remove: args.rm, mounts, names };
    Ok((placement, config))
}

/// A container that did not start: one line, and Docker's code for why (127, 126, or `default`).
pub fn start_failed(err: &RuntimeError, default: u8) -> anyhow::Result<ExitCode> {
    eprintln!("moat: {err}");
    Ok(ExitCode::from(start_failure_code(err, default)))
}

/// The supervisor removes an `--rm` container (and its own zone) once it ended; wait for that.
fn wait_removed(runtime: &Runtime, found: &Found) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime.containers().find(&found.container.id).is_ok() && Instant::now() < deadline {
        std::thread::sleep(moat_zone::ops::RECORD_POLL);
    }
}

fn spec_options(args: &RunArgs) -> anyhow::Result<moat_spec::RunOptions> {
    let env_files = args
        .env_file
        .iter()
        .map(|p| read_bounded(p, 1 << 20).with_context(|| format!("--env-file {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let security_opt = args
        .security_opt
        .iter()
        .map(|opt| match opt.split_once('=') {
            Some(("seccomp", value)) if value != "unconfined" && value != "builtin" => {
                let text = read_bounded(Path::new(value), moat_spec::seccomp::MAX_SECCOMP_PROFILE_BYTES as u64)
                    .with_context(|| format!("--security-opt seccomp={value}"))?;
                Ok(format!("seccomp={text}"))
            }
            _ => Ok(opt.clone()),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(moat_spec::RunOptions {
        env: args.env.clone(),
        env_files,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        entrypoint: args.entrypoint.clone(),
        command: args.command.clone(),
        hostname: args.hostname.clone(),
        tty: args.tty,
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        security_opt,
        read_only: args.read_only,
        console_size: if args.tty { attach::terminal_size() } else { None },
        // The runtime sets the cgroup limits from the zone the container lands in.
        zone_memory_mib: None,
        cpus: None,
    })
}

fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<String> {
    Ok(moat_zone::state::read_bounded(path, limit)?)
}

/// Replace the process with the checker, bind-mounted read-only from the zone.
fn add_checker(spec: &mut oci_spec::runtime::Spec, checker_args: &[String]) -> anyhow::Result<()> {
    moat_spec::mounts::add_read_only_bind(spec, moat_proto::layout::CHECK_PATH, CHECKER_PATH)?;
    let mut process = spec.process().clone().context("the spec has no process")?;
    process.set_args(Some(std::iter::once(CHECKER_PATH.to_string()).chain(checker_args.iter().cloned()).collect()));
    spec.set_process(Some(process));
    Ok(())
}

pub use moat_runtime::attach::write_output;
