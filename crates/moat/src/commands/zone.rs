//! `moat zone …`: create, list, inspect, log, stop and remove zones.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use moat_proto::DebugRequest;
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::api::{self, ApiRequest, ApiResponse};
use moat_zone::assets::Assets;
use moat_zone::lifecycle::ZoneState;
use moat_zone::ops::{self, CreateRequest};
use moat_zone::share::Share;
use moat_zone::start_slots::StartSlot;
use moat_zone::state::{ZoneRecord, ZoneStore};

#[derive(Subcommand)]
pub enum ZoneCommand {
    /// Boot an empty zone and wait until its init answers.
    Create(CreateArgs),
    /// List zones.
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a zone's details as JSON.
    Inspect { zone: String },
    /// Print a zone's console log.
    Logs {
        /// Keep printing new output until the zone ends.
        #[arg(short, long)]
        follow: bool,
        zone: String,
    },
    /// Round trip to the zone's init.
    Ping { zone: String },
    /// Stop a zone cleanly (force after the timeout).
    Stop {
        /// Seconds to wait for a clean power-off before killing the zone.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        zone: String,
    },
    /// Remove a zone and its files.
    Rm {
        /// Stop the zone first if it is running.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        zones: Vec<String>,
    },
    /// Bind a host file or directory into a running zone's share; prints the path the zone
    /// sees it at. (Containers' images and volumes will arrive this way.)
    #[command(hide = true)]
    Expose {
        zone: String,
        source: PathBuf,
        /// Relative path below the share: letters, digits, '.', '_', '-' and '/'.
        name: String,
        /// Read-only, enforced by the host's mount.
        #[arg(long)]
        read_only: bool,
    },
    /// Take an exposure away from a zone's share.
    #[command(hide = true)]
    Withdraw { zone: String, name: String },
    /// Test hooks: make a zone created with --debug-hooks misbehave.
    #[command(hide = true)]
    Debug {
        zone: String,
        #[arg(value_enum)]
        action: DebugAction,
        /// For probe-share: the path below the zone's share mount.
        #[arg(long, default_value = "")]
        path: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Zone name (default: zone-<id>).
    #[arg(long)]
    pub name: Option<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Guest memory, e.g. 256m or 1g.
    #[arg(long, default_value = "256m")]
    pub memory: String,
    /// Accelerator: auto uses KVM only where it can run the guest, else TCG.
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Enable test-only requests (kernel panic, raw channel writes).
    #[arg(long, hide = true)]
    pub debug_hooks: bool,
    /// Attach a file as a read-only virtio-blk disk with serial `moat-extra-N` (for benchmarks
    /// against the share).
    #[arg(long = "attach-disk", hide = true)]
    pub attach_disks: Vec<PathBuf>,
    #[command(flatten)]
    pub network: super::network::ZoneNetworkFlags,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DebugAction {
    KernelPanic,
    WriteGarbage,
    /// Read, and try to open for writing, --path in the zone's share; prints JSON.
    ProbeShare,
}

#[derive(Args)]
pub struct SuperviseArgs {
    pub zone_id: String,
}

pub fn run(root: &Path, command: ZoneCommand) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root).with_context(|| format!("opening the state root {}", root.display()))?;
    match command {
        ZoneCommand::Create(args) => create(root, &store, args),
        ZoneCommand::Ls { format } => list(&store, format),
        ZoneCommand::Inspect { zone } => {
            let (dir, record) = store.find(&zone)?;
            println!("{}", serde_json::to_string_pretty(&inspect_json(&dir.path, &record))?);
            Ok(ExitCode::SUCCESS)
        }
        ZoneCommand::Logs { follow, zone } => logs(&store, &zone, follow),
        ZoneCommand::Ping { zone } => {
            let (dir, _) = store.find(&zone)?;
            match api::call(&dir.api_socket(), &ApiRequest::Ping, Duration::from_secs(10))? {
                ApiResponse::Pong { round_trip_us } => println!("pong from {zone} in {round_trip_us} µs"),
                other => anyhow::bail!("zone {zone} did not answer the ping: {other:?}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ZoneCommand::Stop { time, zone } => {
            let (dir, _) = store.find(&zone)?;
            let record = ops::stop(&dir, Duration::from_secs(time))?;
            println!("{}: {}", record.name, describe(&record));
            Ok(ExitCode::SUCCESS)
        }
        ZoneCommand::Rm { force, zones } => {
            let mut failed = false;
            for zone in zones {
                match ops::remove(&store, &zone, force) {
                    Ok(record) => println!("{}", record.name),
                    Err(err) => {
                        eprintln!("moat: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        ZoneCommand::Expose { zone, source, name, read_only } => {
            let share = running_share(&store, &zone)?;
            println!("{}", share.expose(&source, &name, read_only)?.display());
            Ok(ExitCode::SUCCESS)
        }
        ZoneCommand::Withdraw { zone, name } => {
            running_share(&store, &zone)?.withdraw(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        ZoneCommand::Debug { zone, action, path } => {
            let (dir, _) = store.find(&zone)?;
            let request = match action {
                DebugAction::KernelPanic => DebugRequest::KernelPanic,
                DebugAction::WriteGarbage => DebugRequest::WriteRaw { bytes: b"\xff\xff\xff\xffnot a frame".to_vec() },
                DebugAction::ProbeShare => DebugRequest::ProbeShare { path },
            };
            match api::call(&dir.api_socket(), &ApiRequest::Debug(request), Duration::from_secs(10)) {
                Ok(answer) => println!("{}", serde_json::to_string(&answer)?),
                Err(err) => println!("{err:?}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(root: &Path, store: &ZoneStore, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let memory_mib = ops::parse_memory_mib(&args.memory)?;
    let choice: AccelChoice = args.accel.parse()?;
    let (accel, note) = accel::resolve(choice, &HostFacts::probe())?;
    if let Some(note) = &note {
        eprintln!("moat: warning: {note}");
    }
    // Fail on missing assets here, before a zone directory exists.
    Assets::locate(&Assets::default_dir())?;
    let network = args.network.shared_zone_request()?;
    let _slot = StartSlot::acquire(store)?;
    // The lock is held until the zone's record, with its address, is written.
    let (zone_network, _lock) = network.resolve(store)?;
    let request = CreateRequest {
        id: None,
        name: args.name,
        cpus: args.cpus,
        memory_mib,
        accel,
        accel_note: note,
        debug: args.debug_hooks,
        pod: true,
        extra_disks: args.attach_disks,
        network: zone_network,
        extra_hosts: network.extra_hosts,
        pool: false,
    };
    let supervisor = ops::default_supervisor(root).context("locating the moat binary")?;
    let record = ops::create(store, request, &supervisor)?;
    println!("{}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// The share of a zone that runs (a zone's share exists only while its supervisor does).
fn running_share(store: &ZoneStore, zone: &str) -> anyhow::Result<Share> {
    let (dir, record) = store.find(zone)?;
    let state = record.effective_state();
    anyhow::ensure!(state == ZoneState::Running, "zone {zone} is {}, not running", state.name());
    Ok(Share::new(&dir))
}

fn describe(record: &ZoneRecord) -> String {
    let state = record.effective_state();
    match state.reason() {
        Some(reason) => format!("{} ({reason})", state.name()),
        None => state.name().to_string(),
    }
}

fn list(store: &ZoneStore, format: Format) -> anyhow::Result<ExitCode> {
    let records = store.list()?;
    match format {
        Format::Json => {
            let rows: Vec<_> = records.iter().map(|r| inspect_json(&store.dir(&r.id).path, r)).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Format::Table => {
            println!("{:<14} {:<24} {:<9} {:>4} {:>7} {:<5} STATUS", "ID", "NAME", "STATE", "CPUS", "MEMORY", "ACCEL");
            for r in &records {
                println!(
                    "{:<14} {:<24} {:<9} {:>4} {:>6}M {:<5} {}",
                    r.id,
                    r.name,
                    r.effective_state().name(),
                    r.config.cpus,
                    r.config.memory_mib,
                    format!("{:?}", r.config.accel).to_lowercase(),
                    describe(r)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn inspect_json(dir: &Path, r: &ZoneRecord) -> serde_json::Value {
    let state = r.effective_state();
    serde_json::json!({
        "id": r.id,
        "name": r.name,
        "state": state.name(),
        "reason": state.reason(),
        "created_unix": r.created_unix,
        "accel": r.config.accel,
        "accel_note": r.config.accel_note,
        "kernel_release": r.kernel_release,
        "cpus": r.config.cpus,
        "memory_mib": r.config.memory_mib,
        "boot_ms": r.boot_ms,
        "pod": r.config.pod,
        "containers": r.containers.iter().map(|c| serde_json::json!({
            "id": c.id,
            "name": c.name,
            "image": c.image,
            "command": c.command,
            "privileged": c.privileged,
            "exit_code": c.exit.map(|e| e.shell_code()),
            "oom_killed": c.exit == Some(moat_proto::ExitStatus::OomKilled),
        })).collect::<Vec<_>>(),
        "pids": {
            "supervisor": r.supervisor.filter(|p| p.is_alive()).map(|p| p.pid),
            "qemu": r.qemu.filter(|p| p.is_alive()).map(|p| p.pid),
            "virtiofsd": r.virtiofsd.filter(|p| p.is_alive()).map(|p| p.pid),
            "passt": r.passt.filter(|p| p.is_alive()).map(|p| p.pid),
        },
        "network": r.config.network,
        "extra_hosts": r.config.extra_hosts,
        "paths": {
            "dir": dir,
            "console_log": dir.join("console.log"),
            "supervisor_log": dir.join("supervisor.log"),
            "qemu_log": dir.join("qemu.log"),
            "virtiofsd_log": dir.join("virtiofsd.log"),
            "passt_log": dir.join("passt.log"),
            "share": dir.join("share"),
        },
    })
}

fn logs(store: &ZoneStore, zone: &str, follow: bool) -> anyhow::Result<ExitCode> {
    let (dir, _) = store.find(zone)?;
    let path: PathBuf = dir.console_log();
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    // With --follow, read once more after the zone has finished, for its last output.
    let mut last_read = !follow;
    loop {
        if let Ok(mut file) = std::fs::File::open(&path) {
            file.seek(std::io::SeekFrom::Start(offset))?;
            offset += std::io::copy(&mut file, &mut out)?;
            out.flush()?;
        }
        if last_read {
            return Ok(ExitCode::SUCCESS);
        }
        last_read = dir.read().map_or(true, |record| record.is_finished());
        if !last_read {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn supervise(root: &Path, args: SuperviseArgs) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    let dir = store.dir(&args.zone_id);
    moat_zone::supervisor::supervise(dir, &Assets::default_dir()).with_context(|| format!("supervising zone {}", args.zone_id))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use moat_proto::ExitStatus;
    use moat_zone::accel::Accel;
    use moat_zone::lifecycle::ZoneState;
    use moat_zone::state::{ContainerRecord, ZoneConfig};

    use super::*;

    #[test]
    fn inspect_shows_each_containers_exit_and_oom_kill() {
        let container = ContainerRecord {
            id: "abc".into(),
            name: "c".into(),
            image: "busybox:test".into(),
            command: vec!["sh".into()],
            privileged: false,
            created_unix: 1,
            started_unix: Some(1),
            exit: Some(ExitStatus::OomKilled),
            auto_remove: false,
            memory_limit: None,
            tty: false,
            stdin: false,
        };
        let mut record = ZoneRecord {
            id: "abc".into(),
            name: "c".into(),
            created_unix: 1,
            config: ZoneConfig { cpus: 1, memory_mib: 256, accel: Accel::Tcg, accel_note: None, debug: false, scratch_mib: 0, pod: false, extra_disks: Vec::new(), network: Default::default(), extra_hosts: Vec::new(), pool: false, oci_runtime: Default::default(), kernel: Default::default() },
            state: ZoneState::Stopped { reason: "the container exited".into() },
            supervisor: None,
            qemu: None,
            virtiofsd: None,
            passt: None,
            cgroups: Vec::new(),
            kernel_release: None,
            boot_ms: None,
            prepared: false,
            containers: vec![container],
        };
        let shown = inspect_json(Path::new("/z"), &record);
        assert_eq!(shown["containers"][0]["exit_code"], 137);
        assert_eq!(shown["containers"][0]["oom_killed"], true);
        record.containers[0].exit = Some(ExitStatus::Code { code: 0 });
        assert_eq!(inspect_json(Path::new("/z"), &record)["containers"][0]["oom_killed"], false);
        record.containers.clear();
        assert_eq!(inspect_json(Path::new("/z"), &record)["containers"].as_array().map(Vec::len), Some(0), "a bare zone has none");
    }
}
