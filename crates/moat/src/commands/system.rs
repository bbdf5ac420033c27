//! `moat version`, `moat info`, `moat system df|prune` and `moat container prune`: what the host
//! and the state root hold, and clean-up across images, containers and volumes.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use moat_image::Store;
use moat_runtime::volumes::VolumeStore;
use moat_runtime::{is_running, Found, Runtime};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::assets::{self, Assets};
use moat_zone::qemu::QEMU_BINARY;

use super::image::{human_size, Format};

#[derive(clap::Args)]
pub struct VersionArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Disk use of images, containers and volumes.
    Df,
    /// Remove stopped containers, dangling image data and, on request, unused images and volumes.
    Prune(SystemPruneArgs),
}

#[derive(clap::Args)]
pub struct SystemPruneArgs {
    /// Also remove every image no container uses, not only unreferenced image data.
    #[arg(short, long)]
    all: bool,
    /// Also remove volumes no container uses.
    #[arg(long)]
    volumes: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Remove every stopped container.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

/// One line of `moat version`: a component and its version, or why it is unknown.
struct Component {
    name: &'static str,
    version: Result<String, String>,
}

pub fn version(args: VersionArgs) -> anyhow::Result<ExitCode> {
    let components = [
        Component { name: "moat", version: Ok(env!("CARGO_PKG_VERSION").to_owned()) },
        Component { name: "guest kernel", version: assets::kernel_release(&Assets::default_dir()).map_err(|e| e.to_string()) },
        Component { name: "qemu", version: first_line_of(QEMU_BINARY, "QEMU emulator version ") },
        Component { name: "zone runtime", version: zone_runtime_version() },
    ];
    match args.format {
        Format::Json => {
            let shown: serde_json::Map<String, serde_json::Value> = components
                .iter()
                .map(|c| (c.name.replace(' ', "_"), c.version.as_ref().map_or(serde_json::Value::Null, |v| v.clone().into())))
                .collect();
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Format::Table => {
            for c in &components {
                match &c.version {
                    Ok(v) => println!("{:<14}{v}", format!("{}:", c.name)),
                    Err(why) => println!("{:<14}unknown: {why}", format!("{}:", c.name)),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The OCI runtime new zones get, and its version.
fn zone_runtime_version() -> Result<String, String> {
    let runtime = assets::chosen_oci_runtime().map_err(|e| e.to_string())?;
    first_line_of(runtime.path(), "").map(|v| format!("{v} ({}, on the zone's tools disk)", runtime.path()))
}

/// The first line `program --version` prints, less `prefix`. Host programs we chose, not input.
fn first_line_of(program: &str, prefix: &str) -> Result<String, String> {
    let output = std::process::Command::new(program).arg("--version").output().map_err(|e| format!("running {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{program} --version failed"));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next().unwrap_or_default().trim();
    Ok(line.strip_prefix(prefix).unwrap_or(line).to_owned())
}

fn open_runtime(root: &Path) -> anyhow::Result<Runtime> {
    Ok(Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?)
}

pub fn info(root: &Path, args: InfoArgs) -> anyhow::Result<ExitCode> {
    let (accel, note) = accel::resolve(AccelChoice::Auto, &HostFacts::probe())?;
    let accel_why = note.unwrap_or_else(|| "KVM can run a standard guest kernel on this host".to_owned());
    let assets_dir = Assets::default_dir();
    let assets = Assets::locate(&assets_dir);
    let runtime = open_runtime(root)?;
    let zones = runtime.store().list()?;
    let containers = runtime.containers().list()?;
    let images = Store::open(root)?.list()?;
    let volumes = VolumeStore::open(root)?.list()?;
    let running_zones = zones.iter().filter(|z| !z.effective_state().is_terminal()).count();
    let running_containers = containers.iter().filter(|f| is_running(f)).count();
    let info = serde_json::json!({
        "state_root": root,
        "accelerator": accel,
        "accelerator_reason": accel_why,
        "assets": {
            "dir": assets_dir,
            "kernel_choice": assets.as_ref().ok().map(|a| a.kernel_choice),
            "kernel": assets.as_ref().ok().map(|a| &a.kernel),
            "kernel_release": assets.as_ref().ok().map(|a| &a.kernel_release),
            "init": assets.as_ref().ok().map(|a| &a.init),
            "checker": assets.as_ref().ok().and_then(|a| a.check.as_ref()),
            "oci_runtime": assets::chosen_oci_runtime().map_or_else(|e| e.to_string(), |r| r.path().to_owned()),
            "problem": assets.as_ref().err().map(ToString::to_string),
        },
        "zones": zones.len(),
        "zones_running": running_zones,
        "pods": zones.iter().filter(|z| z.config.pod).count(),
        "containers": containers.len(),
        "containers_running": running_containers,
        "images": images.len(),
        "volumes": volumes.len(),
    });
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Table => {
            println!("State root:    {}", root.display());
            println!("Accelerator:   {} ({accel_why})", serde_json::to_value(accel)?.as_str().unwrap_or_default());
            println!("Assets:        {}", assets_dir.display());
            match &assets {
                Ok(a) => {
                    println!("  kernel:      {} ({}, {})", a.kernel.display(), a.kernel_choice, a.kernel_release);
                    println!("  init:        {}", a.init.display());
                    println!("  checker:     {}", a.check.as_ref().map_or_else(|| "none".to_owned(), |p| p.display().to_string()));
                }
                Err(err) => println!("  problem:     {err}"),
            }
            println!("  OCI runtime: {}", info["assets"]["oci_runtime"].as_str().unwrap_or_default());
            println!("Zones:         {} ({running_zones} running)", zones.len());
            println!("Pods:          {}", info["pods"]);
            println!("Containers:    {} ({running_containers} running, {} stopped)", containers.len(), containers.len() - running_containers);
            println!("Images:        {}", images.len());
            println!("Volumes:       {}", volumes.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(root: &Path, command: SystemCommand) -> anyhow::Result<ExitCode> {
    match command {
        SystemCommand::Df => df(root),
        SystemCommand::Prune(args) => system_prune(root, &args),
    }
}

pub fn run_container(root: &Path, command: ContainerCommand) -> anyhow::Result<ExitCode> {
    match command {
        ContainerCommand::Prune { force } => {
            if !confirm(force, &["all stopped containers"])? {
                return Ok(ExitCode::SUCCESS);
            }
            let runtime = open_runtime(root)?;
            let pruned = prune_containers(&runtime);
            print_deleted("Deleted Containers:", &pruned.removed);
            println!("Total reclaimed space: {}", human_size(pruned.bytes));
            Ok(pruned.exit_code())
        }
    }
}

fn df(root: &Path) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(root)?;
    let containers = runtime.containers().list()?;
    let used_images: HashSet<&str> = containers.iter().map(|f| f.container.image.as_str()).collect();
    let images = Store::open(root)?.disk_usage(&|reference| used_images.contains(reference))?;

    let mut zone_bytes = 0;
    let mut seen_zones = HashSet::new();
    let mut container_reclaimable = 0;
    for found in &containers {
        if seen_zones.insert(found.zone.id.clone()) {
            zone_bytes += allocated_bytes(&found.dir.path);
        }
        if !is_running(found) {
            container_reclaimable += container_bytes(found);
        }
    }
    let running = containers.iter().filter(|f| is_running(f)).count();

    let volume_store = VolumeStore::open(root)?;
    let exists = |id: &str| containers.iter().any(|f| f.container.id == id);
    let (mut volume_bytes, mut volume_reclaimable, mut volumes_used) = (0, 0, 0);
    let volumes = volume_store.list()?;
    for volume in &volumes {
        let bytes = allocated_bytes(&volume.mountpoint);
        volume_bytes += bytes;
        if volume_store.users(&volume.name, exists)?.is_empty() {
            volume_reclaimable += bytes;
        } else {
            volumes_used += 1;
        }
    }

    println!("{:<15} {:>6} {:>7} {:>11} {:>12}", "TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE");
    let row = |kind: &str, total: u64, active: u64, size: u64, reclaimable: u64| {
        println!("{kind:<15} {total:>6} {active:>7} {:>11} {:>12}", human_size(size), human_size(reclaimable));
    };
    row("Images", images.images, images.active_images, images.bytes, images.reclaimable);
    row("Containers", containers.len() as u64, running as u64, zone_bytes, container_reclaimable);
    row("Local Volumes", volumes.len() as u64, volumes_used, volume_bytes, volume_reclaimable);
    Ok(ExitCode::SUCCESS)
}

/// What removing a stopped container frees: its zone, or in a pod its own directory.
fn container_bytes(found: &Found) -> u64 {
    if found.zone.config.pod {
        allocated_bytes(&found.dir.container_dir(&found.container.id))
    } else {
        allocated_bytes(&found.dir.path)
    }
}

/// Bytes allocated on disk below `dir` (sparse files count what they use). Stays on `dir`'s
/// filesystem and out of a zone's share, whose mounts are images and volumes counted elsewhere.
fn allocated_bytes(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else { return 0 };
    let mut total = 0;
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != top.dev() || (path == dir && matches!(entry.file_name().to_str(), Some("share" | "share-base" | "copies"))) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// Asks on the terminal unless `force`: true to go ahead. Refuses when nobody is there to answer.
fn confirm(force: bool, what: &[&str]) -> anyhow::Result<bool> {
    if force {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("prune asks for confirmation, and stdin is not a terminal: pass -f (--force) to prune without asking");
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "WARNING! This will remove:")?;
    for item in what {
        writeln!(err, "  - {item}")?;
    }
    write!(err, "Are you sure you want to continue? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// What a prune removed, and whether anything failed.
#[derive(Default)]
struct Pruned {
    removed: Vec<String>,
    bytes: u64,
    failed: bool,
}

impl Pruned {
    fn exit_code(&self) -> ExitCode {
        if self.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    }
}

/// Removes every container that is not running, as `moat rm` would; a failure is one line and
/// the others still go.
fn prune_containers(runtime: &Runtime) -> Pruned {
    let mut pruned = Pruned::default();
    let containers = match runtime.containers().list() {
        Ok(list) => list,
        Err(err) => {
            eprintln!("moat: cannot list containers: {err}");
            pruned.failed = true;
            return pruned;
        }
    };
    for found in containers.iter().filter(|f| !is_running(f)) {
        let bytes = container_bytes(found);
        match runtime.containers().remove(found, false) {
            Ok(()) => {
                pruned.removed.push(found.container.id.clone());
                pruned.bytes += bytes;
            }
            Err(err) => {
                eprintln!("moat: cannot remove container {}: {err}", found.container.name);
                pruned.failed = true;
            }
        }
    }
    pruned
}

fn prune_volumes(root: &Path, runtime: &Runtime) -> anyhow::Result<Pruned> {
    let store = VolumeStore::open(root)?;
    let containers = runtime.containers();
    let exists = |id: &str| containers.find(id).is_ok();
    let in_use = |name: &str| store.users(name, exists).map_or(true, |users| !users.is_empty());
    let mut pruned = Pruned::default();
    for volume in store.list()? {
        if in_use(&volume.name) {
            continue;
        }
        let bytes = allocated_bytes(&volume.mountpoint);
        match store.remove(&volume.name, in_use) {
            Ok(()) => {
                pruned.removed.push(volume.name);
                pruned.bytes += bytes;
            }
            Err(err) => {
                eprintln!("moat: cannot remove volume {}: {err}", volume.name);
                pruned.failed = true;
            }
        }
    }
    Ok(pruned)
}

/// With `all`, forgets every image no container uses; then deletes what no image needs.
fn prune_images(root: &Path, runtime: &Runtime, all: bool) -> anyhow::Result<Pruned> {
    let store = Store::open(root)?;
    let mut pruned = Pruned::default();
    if all {
        let used: HashSet<String> = runtime.containers().list()?.into_iter().map(|f| f.container.image).collect();
        for image in store.list()?.into_iter().filter(|i| !used.contains(&i.reference)) {
            store.remove(&image.reference).with_context(|| format!("cannot remove image {}", image.reference))?;
            pruned.removed.push(image.reference);
        }
    }
    pruned.bytes = store.prune().context("cannot prune the image store")?.bytes;
    Ok(pruned)
}

fn system_prune(root: &Path, args: &SystemPruneArgs) -> anyhow::Result<ExitCode> {
    let mut what = vec!["all stopped containers"];
    if args.volumes {
        what.push("all volumes not used by at least one container");
    }
    what.push(if args.all { "all images without at least one container using them" } else { "image data no image needs" });
    if !confirm(args.force, &what)? {
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = open_runtime(root)?;
    let containers = prune_containers(&runtime);
    let volumes = if args.volumes { prune_volumes(root, &runtime)? } else { Pruned::default() };
    let images = prune_images(root, &runtime, args.all)?;
    print_deleted("Deleted Containers:", &containers.removed);
    print_deleted("Deleted Volumes:", &volumes.removed);
    print_deleted("Deleted Images:", &images.removed);
    println!("Total reclaimed space: {}", human_size(containers.bytes + volumes.bytes + images.bytes));
    Ok(if containers.failed || volumes.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print_deleted(title: &str, names: &[String]) {
    if names.is_empty() {
        return;
    }
    println!("{title}");
    for name in names {
        println!("{name}");
    }
    println!();
}
