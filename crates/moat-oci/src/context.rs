//! One invocation's view of the state root: the runtime library over `--root`, moat-oci's own
//! records beside the zones, and the log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use liboci_cli::GlobalOpts;
use moat_runtime::{Found, Runtime};
use moat_zone::assets::Assets;
use moat_zone::ops::SupervisorCommand;
use moat_zone::state::ProcessId;

use crate::log::Log;
use crate::record::{Record, Records, Status};

/// Where containers live without `--root`: like runc's /run/runc, apart from `moat`'s own root.
const DEFAULT_ROOT: &str = "/run/moat-oci";

pub struct Context {
    pub root: PathBuf,
    pub runtime: Runtime,
    pub records: Records,
    pub log: Log,
}

/// A container as moat-oci sees it: its record, the runtime's container (once created) and
/// its OCI status.
pub struct Container {
    pub record: Record,
    pub found: Option<Found>,
    pub status: Status,
}

impl Context {
    pub fn open(global: &GlobalOpts, log: Log) -> anyhow::Result<Self> {
        let root = global.root.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        std::fs::create_dir_all(&root).with_context(|| format!("creating the state root {}", root.display()))?;
        let supervisor = SupervisorCommand { program: std::env::current_exe().context("locating moat-oci")?, args: vec!["--root".into(), root.clone().into_os_string(), "supervise".into()] };
        let runtime = Runtime::open(&root, supervisor)?;
        let records = Records::open(&root)?;
        Ok(Self { root, runtime, records, log })
    }

    /// The container `id`, with its status now.
    pub fn container(&self, id: &str) -> anyhow::Result<Container> {
        let record = self.records.read(id)?;
        // The runtime's container carries the OCI id as its name.
        let found = self.runtime.containers().find(id).ok().filter(|f| f.container.name == id);
        let status = match &found {
            None if record.creator.is_some_and(|p| p.is_alive()) => Status::Creating,
            None => Status::Stopped,
            Some(f) if f.container.exit.is_some() || f.zone.effective_state().is_terminal() => Status::Stopped,
            Some(f) if f.container.started_unix.is_some() => Status::Running,
            Some(_) => Status::Created,
        };
        Ok(Container { record, found, status })
    }

    /// The hidden `supervise` command: the zone's supervisor, as `moat` runs it.
    pub fn supervise(&self, zone_id: &str) -> anyhow::Result<ExitCode> {
        let dir = self.runtime.store().dir(zone_id);
        moat_zone::supervisor::supervise(dir, &Assets::default_dir()).with_context(|| format!("supervising zone {zone_id}"))?;
        Ok(ExitCode::SUCCESS)
    }

    /// The arguments that start this binary again on the same root and log.
    pub fn self_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["--root".into(), self.root.clone().into_os_string()];
        args.extend(self.log.args());
        args
    }
}

impl Container {
    /// The pid `state` reports: the keeper's, while the container has a process.
    pub fn pid(&self) -> i32 {
        match (self.status, self.record.keeper) {
            (Status::Created | Status::Running, Some(keeper)) if keeper.is_alive() => i32::try_from(keeper.pid).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn bundle(&self) -> &Path {
        &self.record.bundle
    }
}

/// This process, as a record names it.
pub fn this_process() -> Option<ProcessId> {
    ProcessId::of(std::process::id())
}
