//! The warm pool: zones booted ahead, of one configured shape, so that a `moat run` of that
//! shape takes a running zone instead of booting one. A background keeper (`moat pool keep`,
//! started by `moat pool set`) keeps the pool at its size within the host's free memory.
//!
//! A pooled zone is an empty pod until a run claims it: the claim makes it that container's
//! own zone (it powers off with the container and is never pooled again), so nothing passes
//! from one workload to the next.

use std::path::PathBuf;
use std::time::Duration;

use moat_proto::FailureKind;
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::assets::{Assets, GuestKernel};
use moat_zone::api::{self, ApiRequest};
use moat_zone::ops;
use moat_zone::state::{new_zone_id, FileLock, ZoneRecord, ZoneStore};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::network::{NetworkMode, NetworkRequest};
use crate::pods::{Pods, SandboxConfig};
use crate::resources::Resources;

/// The pool's settings, under the state root.
const SETTINGS_FILE: &str = "pool.json";
/// Held by the one keeper of a state root.
const KEEPER_LOCK: &str = "pool.lock";
/// Most zones a pool may hold.
pub const MAX_POOL_SIZE: u32 = 64;
/// Host memory the keeper leaves free when it boots another zone: the pool must not starve
/// the workloads it is there to speed up.
const HOST_RESERVE_MIB: u64 = 1024;
/// How long a pooled zone may take to prepare: a first container's create, under load.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the keeper looks at the pool.
const KEEPER_TICK: Duration = Duration::from_millis(500);

/// What `moat pool set` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub size: u32,
    /// As `--memory` takes it (`256m`).
    pub memory: String,
    /// As `--cpus` takes it (`1.5`).
    pub cpus: String,
}

impl PoolSettings {
    /// Settings checked as `moat run` would check its own flags.
    pub fn new(size: u32, memory: &str, cpus: &str) -> Result<Self> {
        if size > MAX_POOL_SIZE {
            return Err(RuntimeError::PoolTooLarge { size, max: MAX_POOL_SIZE });
        }
        Resources::parse(memory, cpus)?;
        Ok(Self { size, memory: memory.to_string(), cpus: cpus.to_string() })
    }

    pub fn resources(&self) -> Result<Resources> {
        Ok(Resources::parse(&self.memory, &self.cpus)?)
    }
}

pub struct Pool<'a> {
    pub(crate) store: &'a ZoneStore,
    pub(crate) pods: Pods<'a>,
}

impl Pool<'_> {
    fn settings_path(&self) -> PathBuf {
        self.store.root().join(SETTINGS_FILE)
    }

    pub fn settings(&self) -> Result<Option<PoolSettings>> {
        let path = self.settings_path();
        let text = match moat_zone::state::read_bounded(&path, 4096) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(RuntimeError::Io { what: format!("reading {}", path.display()), err }),
        };
        serde_json::from_str(&text).map(Some).map_err(|err| RuntimeError::Io { what: format!("reading {}", path.display()), err: err.into() })
    }

    pub fn set(&self, settings: &PoolSettings) -> Result<()> {
        let json = serde_json::to_vec_pretty(settings).map_err(|err| RuntimeError::Io { what: "encoding the pool's settings".into(), err: err.into() })?;
        moat_zone::state::write_atomic(&self.settings_path(), &json)?;
        Ok(())
    }

    /// The pool's zones, booting or ready, oldest first.
    pub fn zones(&self) -> Result<Vec<ZoneRecord>> {
        let mut zones: Vec<ZoneRecord> = self.store.list()?.into_iter().filter(|r| r.config.pool).collect();
        zones.sort_by_key(|r| r.created_unix);
        Ok(zones)
    }

    /// Whether a keeper runs for this state root.
    pub fn keeper_running(&self) -> bool {
        FileLock::try_acquire(&self.store.root().join(KEEPER_LOCK)).is_ok_and(|lock| lock.is_none())
    }

    /// Take a ready pooled zone for the container `name` when `sandbox` asks for exactly the
    /// pool's kind of zone: it becomes the container's own zone, named after it.
    pub fn claim(&self, sandbox: &SandboxConfig, name: &str) -> Result<Option<ZoneRecord>> {
        if !is_plain(sandbox) {
            return Ok(None);
        }
        // A zone booted for another OCI runtime or kernel does not fit; an unusable choice boots cold,
        // where creating the zone reports it.
        let Ok(runtime) = moat_zone::assets::chosen_oci_runtime() else { return Ok(None) };
        let Ok(kernel) = GuestKernel::chosen(&Assets::default_dir()) else { return Ok(None) };
        let _lock = FileLock::acquire(&self.store.lock_path())?;
        let mut zones = self.zones()?;
        // A zone still preparing serves too, after its preparation: sooner than a cold boot.
        zones.sort_by_key(|z| !z.prepared);
        for zone in zones {
            let fits = zone.config.memory_mib == sandbox.resources.memory_mib() && zone.config.cpus == sandbox.resources.vcpus() && zone.config.accel == sandbox.accel && zone.config.oci_runtime == runtime && zone.config.kernel == kernel;
            if !fits || zone.effective_state() != moat_zone::lifecycle::ZoneState::Running || !zone.containers.is_empty() {
                continue;
            }
            let claimed = self.store.dir(&zone.id).update(|r| {
                r.config.pool = false;
                r.config.pod = false;
                r.name = name.to_string();
                r.clone()
            })?;
            return Ok(Some(claimed));
        }
        Ok(None)
    }

    /// Keep the pool at its size until it is set to 0; returns at once if another keeper runs.
    ///
    /// `pool set` writes the settings, then starts a keeper unless one holds the lock. So a
    /// keeper that emptied its pool lets the lock go first and reads the settings once more: a
    /// size set before that read keeps it going, and one set after finds the lock free.
    pub fn keep(&self) -> Result<()> {
        loop {
            let Some(keeper) = FileLock::try_acquire(&self.store.root().join(KEEPER_LOCK))? else {
                return Ok(());
            };
            self.keep_while_wanted()?;
            drop(keeper);
            if self.settings()?.is_none_or(|s| s.size == 0) {
                return Ok(());
            }
        }
    }

    /// The keeper's round, until the pool is set to 0 and empty.
    fn keep_while_wanted(&self) -> Result<()> {
        loop {
            let settings = self.settings()?.unwrap_or(PoolSettings { size: 0, memory: String::new(), cpus: String::new() });
            let zones = self.zones()?;
            for ended in zones.iter().filter(|z| z.effective_state().is_terminal()) {
                tracing::warn!(zone = %ended.id, state = ended.effective_state().name(), "a pooled zone ended; replacing it");
                let _ = ops::remove(self.store, &ended.id, true);
            }
            let live: Vec<&ZoneRecord> = zones.iter().filter(|z| !z.effective_state().is_terminal()).collect();
            let wanted = usize::try_from(settings.size).unwrap_or(usize::MAX);
            if live.len() > wanted {
                // The newest go first: the oldest are the readiest.
                for extra in live.iter().rev().take(live.len() - wanted) {
                    ops::remove(self.store, &extra.id, true)?;
                }
            } else if live.len() < wanted {
                let resources = settings.resources()?;
                if host_has_room_for(resources.memory_mib()) {
                    if let Err(err) = self.boot(resources) {
                        tracing::warn!(%err, "booting a pooled zone");
                    }
                    continue;
                }
            }
            if settings.size == 0 && live.is_empty() {
                return Ok(());
            }
            reap_ended_children();
            std::thread::sleep(KEEPER_TICK);
        }
    }

    fn boot(&self, resources: Resources) -> Result<ZoneRecord> {
        let (accel, accel_note) = accel::resolve(AccelChoice::Auto, &HostFacts::probe())?;
        let id = new_zone_id()?;
        let sandbox = SandboxConfig { name: Some(format!("pool-{id}")), id: Some(id), resources, accel, accel_note, pod: true, debug: false, network: NetworkRequest::default() };
        self.pods.create_pooled(sandbox)
    }
}

/// Ready a pooled zone, while it waits, for the container of a plain run (see
/// [`moat_proto::Request::Prepare`]): what init would do first for that container, done ahead.
/// A zone that fails to prepare still serves, only slower; the failure is logged.
pub(crate) fn prepare(store: &ZoneStore, zone: &ZoneRecord) {
    let seccomp_json = match moat_spec::default_seccomp() {
        Ok(seccomp) => seccomp.and_then(|s| serde_json::to_string(&s).ok()),
        Err(err) => {
            tracing::warn!(%err, "building the default seccomp filter");
            None
        }
    };
    let dir = store.dir(&zone.id);
    match crate::containers::done(api::call(&dir.api_socket(), &ApiRequest::Prepare { seccomp_json }, PREPARE_TIMEOUT)) {
        Ok(()) => {}
        // A run claimed the zone, and created its container, before the request arrived.
        Err(RuntimeError::Zone { kind: FailureKind::WrongState, .. }) => tracing::info!(zone = %zone.id, "claimed before it was prepared"),
        Err(err) => tracing::warn!(zone = %zone.id, %err, "preparing a pooled zone"),
    }
    let marked = dir.update(|r| {
        if r.config.pool {
            r.prepared = true;
        }
    });
    if let Err(err) = marked {
        tracing::warn!(zone = %zone.id, %err, "recording that a pooled zone is prepared");
    }
}

/// A pooled zone's state as the pool shows it: a running zone is `preparing` until its keeper
/// has prepared it.
pub fn shown_state(zone: &ZoneRecord) -> &'static str {
    match zone.effective_state() {
        moat_zone::lifecycle::ZoneState::Running if !zone.prepared => "preparing",
        state => state.name(),
    }
}

/// A zone as `moat run` makes it without network options: what a pooled zone is.
fn is_plain(sandbox: &SandboxConfig) -> bool {
    let network = &sandbox.network;
    matches!(network.mode, NetworkMode::Nat) && network.ports.is_empty() && network.extra_hosts.is_empty() && !sandbox.debug && !sandbox.pod
}

/// Whether the host has the zone's memory free beyond [`HOST_RESERVE_MIB`].
fn host_has_room_for(memory_mib: u32) -> bool {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    available_kib >> 10 >= u64::from(memory_mib) + HOST_RESERVE_MIB
}

/// The keeper starts the pool's supervisors and outlives them: collect those that ended.
fn reap_ended_children() {
    // SAFETY: waitpid with WNOHANG on any child of this process; it only reaps.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_zone::network::PortRequest;

    fn sandbox(network: NetworkRequest) -> SandboxConfig {
        SandboxConfig { name: None, id: None, resources: Resources::parse("256m", "1").unwrap(), accel: moat_zone::accel::Accel::Tcg, accel_note: None, pod: false, debug: false, network }
    }

    #[test]
    fn only_a_plain_run_takes_a_pooled_zone() {
        assert!(is_plain(&sandbox(NetworkRequest::default())));
        assert!(!is_plain(&sandbox(NetworkRequest { mode: NetworkMode::None, ..Default::default() })));
        let port: PortRequest = "8080:80".parse().unwrap();
        assert!(!is_plain(&sandbox(NetworkRequest { ports: vec![port], ..Default::default() })));
        assert!(!is_plain(&SandboxConfig { pod: true, ..sandbox(NetworkRequest::default()) }));
        assert!(!is_plain(&SandboxConfig { debug: true, ..sandbox(NetworkRequest::default()) }));
    }

    #[test]
    fn settings_are_checked_as_run_checks_its_flags() {
        assert_eq!(PoolSettings::new(2, "256m", "1.5").unwrap().resources().unwrap().vcpus(), 2);
        assert!(matches!(PoolSettings::new(MAX_POOL_SIZE + 1, "256m", "1"), Err(RuntimeError::PoolTooLarge { .. })));
        assert!(PoolSettings::new(1, "12x", "1").is_err());
        assert!(PoolSettings::new(1, "256m", "0").is_err());
        assert!(PoolSettings::new(0, "512m", "1").is_ok());
    }
}
