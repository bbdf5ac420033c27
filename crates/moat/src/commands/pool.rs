//! `moat pool`: the warm pool of pre-booted zones that `moat run` takes from (see
//! `moat_runtime::pool`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::Subcommand;
use moat_runtime::pool::PoolSettings;
use moat_runtime::Runtime;

use super::image::Format;

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Keep SIZE zones of this shape booted, for `moat run`s of the same --cpus and --memory
    /// (and no network options); --size 0 empties the pool and ends its keeper.
    Set {
        #[arg(long)]
        size: u32,
        #[arg(long, default_value = super::run::DEFAULT_CPUS, allow_negative_numbers = true)]
        cpus: String,
        #[arg(long, default_value = super::run::DEFAULT_MEMORY)]
        memory: String,
    },
    /// List the pool's zones and their states.
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Internal: the pool's keeper, started by `moat pool set`.
    #[command(hide = true)]
    Keep,
}

pub fn run(root: &Path, command: PoolCommand) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let pool = runtime.pool();
    match command {
        PoolCommand::Set { size, cpus, memory } => {
            let settings = PoolSettings::new(size, &memory, &cpus)?;
            pool.set(&settings)?;
            if !pool.keeper_running() {
                start_keeper(root)?;
            }
            println!("pool: {size} zone(s) of {memory}, {cpus} CPU(s)");
        }
        PoolCommand::Ls { format } => {
            let settings = pool.settings()?;
            let zones = pool.zones()?;
            match format {
                Format::Json => {
                    let zones: Vec<_> = zones.iter().map(|z| serde_json::json!({"id": z.id, "state": moat_runtime::pool::shown_state(z), "memory_mib": z.config.memory_mib, "cpus": z.config.cpus, "created": z.created_unix})).collect();
                    let shown = serde_json::json!({"settings": settings, "keeper": pool.keeper_running(), "zones": zones});
                    println!("{}", serde_json::to_string_pretty(&shown)?);
                }
                Format::Table => {
                    let keeper = if pool.keeper_running() { "running" } else { "stopped" };
                    match &settings {
                        Some(s) => println!("size {} of {}, {} CPU(s); keeper {keeper}", s.size, s.memory, s.cpus),
                        None => println!("no pool; keeper {keeper}"),
                    }
                    println!("{:<14}{:<11}{:<8}MEMORY", "ZONE ID", "STATE", "CPUS");
                    for zone in &zones {
                        println!("{:<14}{:<11}{:<8}{}m", zone.id, moat_runtime::pool::shown_state(zone), zone.config.cpus, zone.config.memory_mib);
                    }
                }
            }
        }
        PoolCommand::Keep => pool.keep()?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Start the keeper in a session of its own, so it outlives this command, logging under the
/// state root.
fn start_keeper(root: &Path) -> anyhow::Result<()> {
    let log_path = root.join("pool.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = std::process::Command::new(std::env::current_exe().context("locating the moat binary")?);
    command.arg("--root").arg(root).args(["pool", "keep"]).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    command.spawn().context("starting the pool's keeper")?;
    Ok(())
}
