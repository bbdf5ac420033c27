//! `moat pod`: zones that hold several containers, as podman's pods do.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use moat_runtime::{Resources, Runtime, SandboxConfig};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::assets::Assets;
use moat_zone::state::ZoneRecord;

#[derive(Subcommand)]
pub enum PodCommand {
    /// Boot a pod: a zone that containers join with `moat run --pod NAME`.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// CPUs of the pod's zone; its containers share them.
        #[arg(long, default_value = "1", allow_negative_numbers = true)]
        cpus: String,
        /// Memory of the pod's zone; each container's limit is a little under it.
        #[arg(long, default_value = "512m")]
        memory: String,
        #[arg(long, default_value = "auto")]
        accel: String,
        #[command(flatten)]
        network: super::network::ZoneNetworkFlags,
    },
    /// List pods.
    #[command(alias = "ps")]
    Ls,
    /// Show pods as JSON.
    Inspect {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Stop pods: their zones power off, with their containers.
    Stop {
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods; one with running containers needs --force.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

pub fn run(root: &Path, command: PodCommand) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let pods = runtime.pods();
    match command {
        PodCommand::Create { name, cpus, memory, accel, network } => {
            let resources = Resources::parse(&memory, &cpus)?;
            let (accel, accel_note) = accel::resolve(accel.parse::<AccelChoice>()?, &HostFacts::probe())?;
            if let Some(note) = &accel_note {
                eprintln!("moat: warning: {note}");
            }
            Assets::locate(&Assets::default_dir())?;
            let record = pods.create(SandboxConfig { name, id: None, resources, accel, accel_note, pod: true, debug: false, network: network.shared_zone_request()? })?;
            println!("{}", record.name);
        }
        PodCommand::Ls => {
            println!("{:<14} {:<24} {:<9} {:>4} {:>7} {:>10}", "POD ID", "NAME", "STATUS", "CPUS", "MEMORY", "CONTAINERS");
            for pod in pods.list()? {
                println!("{:<14} {:<24} {:<9} {:>4} {:>6}M {:>10}", pod.id, pod.name, pod.effective_state().name(), pod.config.cpus, pod.config.memory_mib, pod.containers.len());
            }
        }
        PodCommand::Inspect { pods: keys } => {
            let shown = keys.iter().map(|key| pods.find(key).map(|(_, record)| inspect_json(&record))).collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        PodCommand::Stop { time, pods: keys } => {
            for key in keys {
                let record = pods.stop(&key, Duration::from_secs(time))?;
                println!("{}", record.name);
            }
        }
        PodCommand::Rm { force, pods: keys } => return Ok(super::for_each_name(&keys, |key| pods.remove(key, force).map(|record| record.name))),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn inspect_json(pod: &ZoneRecord) -> serde_json::Value {
    let state = pod.effective_state();
    serde_json::json!({
        "Id": pod.id,
        "Name": pod.name,
        "State": state.name(),
        "Reason": state.reason(),
        "Created": pod.created_unix,
        "Cpus": pod.config.cpus,
        "MemoryMiB": pod.config.memory_mib,
        "Network": pod.config.network,
        "ExtraHosts": pod.config.extra_hosts,
        "Containers": pod.containers.iter().map(|c| serde_json::json!({
            "Id": c.id,
            "Name": c.name,
            "Image": c.image,
            "Privileged": c.privileged,
            "State": match (c.started_unix, c.exit) {
                (_, Some(exit)) => format!("exited ({})", exit.shell_code()),
                (Some(_), None) => "running".to_string(),
                (None, None) => "created".to_string(),
            },
        })).collect::<Vec<_>>(),
    })
}
