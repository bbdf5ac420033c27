//! Zone operations as the CLI performs them: create (start a supervisor and wait for the
//! guest), stop, and remove.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::accel::Accel;
use crate::api::{self, ApiRequest};
use crate::lifecycle::ZoneState;
use crate::state::{new_zone_id, StateError, ZoneConfig, ZoneDir, ZoneRecord, ZoneStore};

/// Smallest guest memory a zone boots with (kernel, init, page cache for the image).
pub const MIN_MEMORY_MIB: u32 = 128;
pub const MAX_MEMORY_MIB: u32 = 64 * 1024;
pub const MAX_CPUS: u32 = 64;
/// How often a client re-reads a zone's record while it waits on it (a boot, a stop, a removal):
/// the supervisor writes the record as things happen, and a read costs far less than the
/// latency a longer wait adds to every `run`.
pub const RECORD_POLL: Duration = Duration::from_millis(5);
/// The scratch disk is sparse: it costs host disk only for what the container writes.
pub const DEFAULT_SCRATCH_MIB: u32 = 8 * 1024;
/// How long `create` waits for the guest's hello.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("--memory {given}: {why}")]
    Memory { given: String, why: String },
    #[error("--cpus {0}: must be between 1 and {MAX_CPUS}")]
    Cpus(u32),
    #[error("starting the zone supervisor: {0}")]
    Spawn(std::io::Error),
    #[error("zone {name} failed: {reason}")]
    Failed { name: String, reason: String },
    #[error("zone {name} did not become ready within {secs} s")]
    Timeout { name: String, secs: u64 },
    #[error("zone {0} is running: stop it first, or use --force")]
    Running(String),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error("removing the zone's share: {0}")]
    Share(#[from] crate::share::ShareError),
    #[error("removing the zone's copies: {0}")]
    Staging(#[from] crate::staging::StagingError),
    #[error(transparent)]
    Assets(#[from] crate::assets::AssetError),
}

/// Parse a Docker-style memory size (`512m`, `1g`, `268435456`) into MiB, within bounds.
pub fn parse_memory_mib(text: &str) -> Result<u32, OpsError> {
    let err = |why: &str| OpsError::Memory { given: text.to_string(), why: why.to_string() };
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').filter(|s| s.ends_with(['k', 'm', 'g'])).unwrap_or(&lower);
    let (digits, unit): (&str, u64) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some(c) if c.is_ascii_digit() => (lower, 1),
        _ => return Err(err("expected a number with an optional unit b, k, m or g")),
    };
    let value: u64 = digits.parse().map_err(|_| err("expected a number with an optional unit b, k, m or g"))?;
    let mib = value.checked_mul(unit).ok_or_else(|| err("too large"))? >> 20;
    if mib < u64::from(MIN_MEMORY_MIB) {
        return Err(err(&format!("below the zone minimum of {MIN_MEMORY_MIB}m")));
    }
    if mib > u64::from(MAX_MEMORY_MIB) {
        return Err(err(&format!("above the maximum of {}g", MAX_MEMORY_MIB / 1024)));
    }
    u32::try_from(mib).map_err(|_| err("too large"))
}

pub struct CreateRequest {
    /// The zone's id when the caller chose it (from [`new_zone_id`]); otherwise a fresh one.
    pub id: Option<String>,
    pub name: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub accel_note: Option<String>,
    pub debug: bool,
    /// See [`crate::state::ZoneConfig::pod`].
    pub pod: bool,
    /// See [`crate::state::ZoneConfig::extra_disks`].
    pub extra_disks: Vec<std::path::PathBuf>,
    pub network: crate::network::ZoneNetwork,
    pub extra_hosts: Vec<crate::network::ExtraHost>,
    /// See [`crate::state::ZoneConfig::pool`].
    pub pool: bool,
}

/// How to start a supervisor: the program, and the arguments before the zone id.
pub struct SupervisorCommand {
    pub program: std::path::PathBuf,
    pub args: Vec<std::ffi::OsString>,
}

/// Create a zone and wait until its guest is ready. On failure the zone stays, failed, for
/// inspection; the error carries the reason.
pub fn create(store: &ZoneStore, request: CreateRequest, supervisor: &SupervisorCommand) -> Result<ZoneRecord, OpsError> {
    if request.cpus == 0 || request.cpus > MAX_CPUS {
        return Err(OpsError::Cpus(request.cpus));
    }
    let id = match request.id.clone() {
        Some(id) => id,
        None => new_zone_id()?,
    };
    let name = request.name.clone().unwrap_or_else(|| format!("zone-{id}"));
    let oci_runtime = crate::assets::chosen_oci_runtime()?;
    let kernel = crate::assets::GuestKernel::chosen(&crate::assets::Assets::default_dir())?;
    let record = ZoneRecord {
        id: id.clone(),
        name: name.clone(),
        created_unix: crate::state::unix_now(),
        config: ZoneConfig {
            cpus: request.cpus,
            memory_mib: request.memory_mib,
            accel: request.accel,
            accel_note: request.accel_note,
            debug: request.debug,
            scratch_mib: DEFAULT_SCRATCH_MIB,
            pod: request.pod,
            extra_disks: request.extra_disks,
            network: request.network,
            extra_hosts: request.extra_hosts,
            pool: request.pool,
            oci_runtime,
            kernel,
        },
        state: ZoneState::Creating,
        supervisor: None,
        qemu: None,
        virtiofsd: None,
        passt: None,
        cgroups: Vec::new(),
        kernel_release: None,
        boot_ms: None,
        prepared: false,
        containers: Vec::new(),
    };
    let dir = store.create(&record)?;
    spawn_supervisor(&dir, &id, supervisor)?;
    wait_ready(&dir, &name)
}

fn spawn_supervisor(dir: &ZoneDir, id: &str, supervisor: &SupervisorCommand) -> Result<(), OpsError> {
    let log = std::fs::File::create(dir.supervisor_log()).map_err(OpsError::Spawn)?;
    let log_err = log.try_clone().map_err(OpsError::Spawn)?;
    let mut command = Command::new(&supervisor.program);
    command.args(&supervisor.args).arg(id).stdin(Stdio::null()).stdout(log).stderr(log_err);
    // SAFETY: setsid is async-signal-safe; it detaches the supervisor from the caller's
    // session and terminal, so it outlives the CLI like podman's conmon.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(OpsError::Spawn)?;
    Ok(())
}

fn wait_ready(dir: &ZoneDir, name: &str) -> Result<ZoneRecord, OpsError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let record = dir.read()?;
        match record.effective_state() {
            ZoneState::Running => return Ok(record),
            ZoneState::Failed { reason } | ZoneState::Stopped { reason } => {
                return Err(OpsError::Failed { name: name.to_string(), reason })
            }
            _ if Instant::now() > deadline => return Err(OpsError::Timeout { name: name.to_string(), secs: READY_TIMEOUT.as_secs() }),
            _ => std::thread::sleep(RECORD_POLL),
        }
    }
}

/// Ask the supervisor for a clean stop and wait until the zone is terminal.
pub fn stop(dir: &ZoneDir, timeout: Duration) -> Result<ZoneRecord, OpsError> {
    let record = dir.read()?;
    if record.effective_state().is_terminal() {
        return Ok(record);
    }
    api::call(&dir.api_socket(), &ApiRequest::Stop { timeout_secs: timeout.as_secs() }, Duration::from_secs(5))?;
    // The supervisor kills QEMU at the timeout; allow it a little longer to write the record.
    let deadline = Instant::now().checked_add(timeout).and_then(|t| t.checked_add(Duration::from_secs(10)));
    loop {
        let record = dir.read()?;
        if record.is_finished() {
            return Ok(record);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(OpsError::Timeout { name: record.name, secs: timeout.as_secs() });
        }
        std::thread::sleep(RECORD_POLL);
    }
}

/// Remove a zone, and with it the records of its containers. A live zone needs `force`, which
/// stops it first (and kills what is left of a stale one).
pub fn remove(store: &ZoneStore, key: &str, force: bool) -> Result<ZoneRecord, OpsError> {
    let (dir, record) = store.find(key)?;
    let state = record.effective_state();
    if !state.is_terminal() {
        if !force {
            return Err(OpsError::Running(record.name));
        }
        // A zone that does not stop cleanly is killed just below.
        let _ = stop(&dir, Duration::from_secs(10));
    }
    let now = dir.read()?;
    kill_leftovers(&now);
    if let Err(err) = crate::cgroup::remove(&now.cgroups) {
        tracing::warn!(%err, "removing the zone's cgroup");
    }
    // Never delete the directory while a host directory is still mounted in its share.
    crate::share::cleanup(&dir)?;
    crate::staging::cleanup(&dir)?;
    store.remove(&dir)?;
    store.journal().record(now.containers.iter().map(crate::events::Event::destroyed));
    Ok(record)
}

/// Kill the zone's recorded processes if they still run (checked by start time, so a recycled
/// pid is never hit).
fn kill_leftovers(record: &ZoneRecord) {
    let processes = [record.supervisor, record.qemu, record.virtiofsd, record.passt];
    for process in processes.into_iter().flatten() {
        if process.is_alive() {
            if let Ok(pid) = i32::try_from(process.pid) {
                // SAFETY: kill(2) has no memory effects; the pid was verified by its start time.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes.into_iter().flatten().any(|p| p.is_alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn default_supervisor(root: &Path) -> std::io::Result<SupervisorCommand> {
    Ok(SupervisorCommand {
        program: std::env::current_exe()?,
        args: vec!["--root".into(), root.as_os_str().to_owned(), "supervise".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_mib("256m").unwrap(), 256);
        assert_eq!(parse_memory_mib("256M").unwrap(), 256);
        assert_eq!(parse_memory_mib("1g").unwrap(), 1024);
        assert_eq!(parse_memory_mib("1GB").unwrap(), 1024);
        assert_eq!(parse_memory_mib("268435456").unwrap(), 256);
        for bad in ["64m", "", "m", "12x", "-1g", "99999g", "18446744073709551615g"] {
            assert!(parse_memory_mib(bad).is_err(), "{bad:?}");
        }
    }
}
