//! Pod sandboxes: a pod is a zone that outlives its containers (`moat pod create`); a container
//! started on its own gets a zone of one container, which powers off with it.

use std::path::Path;
use std::time::Duration;

use moat_zone::accel::Accel;
use moat_zone::ops::{self, CreateRequest, SupervisorCommand};
use moat_zone::start_slots::StartSlot;
use moat_zone::state::{ZoneDir, ZoneRecord, ZoneStore};

use crate::error::{Result, RuntimeError};
use crate::network::NetworkRequest;
use crate::resources::Resources;

/// How a zone is made.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub name: Option<String>,
    /// The zone's id when the caller chose it (a container started on its own shares its id).
    pub id: Option<String>,
    pub resources: Resources,
    pub accel: Accel,
    /// Why `--accel auto` did not choose KVM, kept in the zone's record.
    pub accel_note: Option<String>,
    /// A pod outlives its containers; otherwise the zone powers off with its one container.
    pub pod: bool,
    /// Test hooks in the guest (see `moat_proto::DebugRequest`).
    pub debug: bool,
    pub network: NetworkRequest,
}

pub struct Pods<'a> {
    pub(crate) store: &'a ZoneStore,
    pub(crate) supervisor: &'a SupervisorCommand,
}

impl Pods<'_> {
    /// Boot a zone and wait until its init answers, in one of the root's start slots.
    pub fn create(&self, config: SandboxConfig) -> Result<ZoneRecord> {
        let _slot = StartSlot::acquire(self.store)?;
        self.boot(config)
    }

    /// Boot an empty zone for the warm pool (see [`crate::pool`]), in a start slot.
    pub(crate) fn create_pooled(&self, config: SandboxConfig) -> Result<ZoneRecord> {
        let _slot = StartSlot::acquire(self.store)?;
        let zone = self.boot_zone(config, true)?;
        crate::pool::prepare(self.store, &zone);
        Ok(zone)
    }

    /// Boot a zone; the caller holds a start slot.
    pub(crate) fn boot(&self, config: SandboxConfig) -> Result<ZoneRecord> {
        self.boot_zone(config, false)
    }

    fn boot_zone(&self, config: SandboxConfig, pool: bool) -> Result<ZoneRecord> {
        if let Some(name) = &config.name {
            if self.store.find(name).is_ok() {
                return Err(RuntimeError::NameInUse(name.clone()));
            }
        }
        // The lock is held until the zone's record, with its address, is written.
        let (network, _lock) = config.network.resolve(self.store)?;
        let request = CreateRequest {
            id: config.id,
            name: config.name,
            cpus: config.resources.vcpus(),
            memory_mib: config.resources.memory_mib(),
            accel: config.accel,
            accel_note: config.accel_note,
            debug: config.debug,
            pod: config.pod,
            extra_disks: Vec::new(),
            network,
            extra_hosts: config.network.extra_hosts,
            pool,
        };
        Ok(ops::create(self.store, request, self.supervisor)?)
    }

    /// The pod named `key` (name, id or unique id prefix).
    pub fn find(&self, key: &str) -> Result<(ZoneDir, ZoneRecord)> {
        let (dir, record) = self.store.find(key).map_err(|_| RuntimeError::NoSuchPod(key.to_string()))?;
        if !record.config.pod || record.config.pool {
            return Err(RuntimeError::NotAPod(key.to_string()));
        }
        Ok((dir, record))
    }

    pub fn list(&self) -> Result<Vec<ZoneRecord>> {
        Ok(self.store.list()?.into_iter().filter(|r| r.config.pod && !r.config.pool).collect())
    }

    /// Remove a pod: one with live containers needs `force`, which stops the zone with them.
    pub fn remove(&self, key: &str, force: bool) -> Result<ZoneRecord> {
        let (_, record) = self.find(key)?;
        if !force && record.containers.iter().any(|c| c.is_running()) && !record.effective_state().is_terminal() {
            return Err(RuntimeError::PodNotEmpty(record.name));
        }
        let removed = ops::remove(self.store, &record.id, true)?;
        if let Some(network) = removed.config.network.network_name() {
            crate::network_names::refresh(self.store, network, &removed.id)?;
        }
        Ok(removed)
    }

    pub fn stop(&self, key: &str, timeout: Duration) -> Result<ZoneRecord> {
        let (dir, _) = self.find(key)?;
        Ok(ops::stop(&dir, timeout)?)
    }
}

/// The pod a zone record describes, as `moat ps` names it: none for a one-container zone.
pub fn pod_name(record: &ZoneRecord) -> Option<&str> {
    record.config.pod.then_some(record.name.as_str())
}

/// The default supervisor: this very binary's hidden `supervise` command.
pub fn default_supervisor(root: &Path) -> Result<SupervisorCommand> {
    ops::default_supervisor(root).map_err(|err| RuntimeError::Io { what: "locating the moat binary".into(), err })
}
