//! `moat run`: one container in its own zone, with Docker's flags and exit-code conventions.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use moat_proto::{RunRequest, Stream};
use moat_spec::resources::{container_memory_limit, Cpus};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::api::{ApiRequest, ApiResponse, Connection};
use moat_zone::assets::Assets;
use moat_zone::ops::{self, CreateRequest};
use moat_zone::state::{WorkloadRecord, ZoneStore};

use super::{attach, images};

/// Where the isolation checker appears inside the container (read-only, outside the image).
pub const CHECKER_PATH: &str = "/.moat/check";
/// Where the zone mounts its kernel modules disk.
const ZONE_MODULES: &str = "/lib/modules";

#[derive(Args)]
pub struct RunArgs {
    /// Remove the container and its zone when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container name.
    #[arg(short, long)]
    pub detach: bool,
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
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// CPUs, e.g. 1.5: the zone gets 2 vCPUs and the container a quota of 1.5 CPUs.
    #[arg(long, default_value = "1", allow_negative_numbers = true)]
    pub cpus: String,
    /// Memory of the zone, e.g. 512m; the container's limit is a little under it.
    #[arg(long, default_value = "512m")]
    pub memory: String,
    #[arg(long, default_value = "auto")]
    pub accel: String,
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

pub fn run(root: &Path, mut args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.command.first().is_some_and(|c| c == "--check") {
        args.check = true;
        args.command.remove(0);
    }
    let memory_mib = ops::parse_memory_mib(&args.memory)?;
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let cpus = Cpus::parse(&args.cpus, host_cpus)?;
    let (accel, note) = accel::resolve(args.accel.parse::<AccelChoice>()?, &HostFacts::probe())?;
    // Chosen now so that the container's hostname defaults to it, as Docker's short id does.
    let id = moat_zone::state::new_zone_id()?;
    let options = spec_options(&args, memory_mib, cpus, &id)?;
    Assets::locate(&Assets::default_dir())?;

    let image = images::get_or_pull(root, &args.image, &args.pull)?;
    let caller_env: BTreeMap<String, String> = std::env::vars().collect();
    let mut spec = moat_spec::build_spec(&image.config, &options, &caller_env).with_context(|| format!("building the container spec for {}", args.image))?;
    if args.check {
        add_checker(&mut spec, &args.command)?;
    }
    if args.privileged {
        // The zone's own modules, so `modprobe` in a privileged container loads what the zone
        // kernel ships. Read-only: the modules disk is shared by every zone.
        add_bind(&mut spec, ZONE_MODULES, ZONE_MODULES)?;
    }
    let spec_json = moat_spec::to_json(&spec)?;
    let rootfs = images::erofs(root, &image)?;

    if let Some(note) = &note {
        eprintln!("moat: warning: {note}");
    }
    let store = ZoneStore::open(root)?;
    let workload = WorkloadRecord {
        image: image.reference.clone(),
        command: spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default(),
        privileged: args.privileged,
        started_unix: None,
        exit: None,
        auto_remove: args.rm,
    };
    let request = CreateRequest { id: Some(id), name: args.name.clone(), cpus: cpus.vcpus(), memory_mib, accel, accel_note: note, debug: false, rootfs: Some(rootfs), workload: Some(workload) };
    let supervisor = ops::default_supervisor(root).context("locating the moat binary")?;
    let record = ops::create(&store, request, &supervisor)?;
    let dir = store.dir(&record.id);

    let mut conn = Connection::open(&dir.api_socket())?;
    let run = RunRequest { spec_json, container_id: record.name.clone(), tty: args.tty, stdin: args.interactive };
    conn.send(&ApiRequest::Run(Box::new(run)))?;
    match conn.receive()? {
        ApiResponse::Done => {}
        ApiResponse::Error { message } => {
            let _ = ops::remove(&store, &record.id, true);
            eprintln!("moat: {message}");
            return Ok(ExitCode::from(start_failure_code(&message).unwrap_or(125)));
        }
        other => bail!("unexpected answer from the zone: {other:?}"),
    }
    if args.detach {
        println!("{}", record.name);
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = attach::attach(conn, args.interactive, args.tty)?;
    let limit = container_memory_limit(memory_mib).map_or(String::new(), |bytes| format!(" of {} MiB", bytes >> 20));
    let code = attach::exit_code(outcome, &dir, "container", &format!("its memory limit{limit} (--memory {memory_mib}m)"));
    if args.rm {
        wait_removed(&dir.path);
    }
    Ok(ExitCode::from(code))
}

/// Docker's codes for a process that did not start: 127 when the command does not exist, 126
/// when it cannot be run; `None` when the reason is something else.
pub fn start_failure_code(message: &str) -> Option<u8> {
    if message.contains("not found") || message.contains("no such file") {
        Some(127)
    } else if message.contains("permission denied") {
        Some(126)
    } else {
        None
    }
}

/// The supervisor removes an `--rm` zone after the workload ends; wait for that to finish.
fn wait_removed(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spec_options(args: &RunArgs, memory_mib: u32, cpus: Cpus, id: &str) -> anyhow::Result<moat_spec::RunOptions> {
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
        hostname: Some(args.hostname.clone().unwrap_or_else(|| id.to_string())),
        tty: args.tty,
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        security_opt,
        read_only: args.read_only,
        console_size: if args.tty { attach::terminal_size() } else { None },
        zone_memory_mib: Some(memory_mib),
        cpus: Some(cpus),
    })
}

pub fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        bail!("larger than {limit} bytes");
    }
    Ok(text)
}

/// Bind a path of the zone read-only into the container.
fn add_bind(spec: &mut oci_spec::runtime::Spec, zone_path: &str, container_path: &str) -> anyhow::Result<()> {
    let mount = oci_spec::runtime::MountBuilder::default()
        .destination(container_path)
        .source(zone_path)
        .typ("bind")
        .options(vec!["rbind".to_string(), "ro".to_string(), "nosuid".to_string(), "nodev".to_string()])
        .build()?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Replace the process with the checker, bind-mounted read-only from the zone.
fn add_checker(spec: &mut oci_spec::runtime::Spec, checker_args: &[String]) -> anyhow::Result<()> {
    add_bind(spec, moat_proto::layout::CHECK_PATH, CHECKER_PATH)?;
    let mut process = spec.process().clone().context("the spec has no process")?;
    process.set_args(Some(std::iter::once(CHECKER_PATH.to_string()).chain(checker_args.iter().cloned()).collect()));
    spec.set_process(Some(process));
    Ok(())
}

/// Print one workload output chunk to the matching local stream.
pub fn write_output(stream: Stream, data: &[u8]) {
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(data).and_then(|()| std::io::stdout().flush()),
        Stream::Stderr => std::io::stderr().lock().write_all(data),
    };
}
