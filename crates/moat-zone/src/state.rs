//! Zone records on disk: one directory per zone under `<root>/zones`, written atomically.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::accel::Accel;
use crate::lifecycle::ZoneState;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path} is corrupt: {err}")]
    Corrupt { path: PathBuf, err: serde_json::Error },
    #[error("no zone named or with id {0:?}")]
    NotFound(String),
    #[error("a zone named {0:?} already exists")]
    NameTaken(String),
    #[error("zone name {0:?} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName(String),
    #[error("socket path {path} is longer than the {max} bytes a unix socket allows; use a shorter --root")]
    PathTooLong { path: PathBuf, max: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |err| StateError::Io { path: path.to_path_buf(), err }
}

/// What the user asked for when creating the zone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Why KVM was not used, when `--accel auto` fell back.
    pub accel_note: Option<String>,
    /// Test hooks: lets the host ask the guest to misbehave.
    pub debug: bool,
    /// Size of the sparse scratch disk that holds the containers' writable layers.
    pub scratch_mib: u32,
    /// A pod (`moat pod create`) outlives its containers; otherwise the zone holds one
    /// container (`moat run`) and powers off when that container's process ends.
    pub pod: bool,
    /// Files attached read-only as virtio-blk disks with serials `moat-extra-N`; the benchmark
    /// of the share compares against them.
    #[serde(default)]
    pub extra_disks: Vec<PathBuf>,
    /// How the zone reaches the network; records from before networks have none.
    #[serde(default)]
    pub network: crate::network::ZoneNetwork,
    /// Names every container of the zone finds in its `/etc/hosts` (`--add-host`).
    #[serde(default)]
    pub extra_hosts: Vec<crate::network::ExtraHost>,
    /// Booted ahead by the warm pool's keeper, empty, until a `moat run` claims it (which
    /// clears this and `pod`, making it that container's own zone).
    #[serde(default)]
    pub pool: bool,
    /// The OCI runtime the zone's init runs containers with, on its tools disk.
    #[serde(default)]
    pub oci_runtime: moat_proto::OciRuntime,
    /// The guest kernel the zone boots, chosen when it was created.
    #[serde(default)]
    pub kernel: crate::assets::GuestKernel,
}

/// A container of a zone, as `moat ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecord {
    /// The container's id, also its id in the zone (12 hex digits).
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub privileged: bool,
    pub created_unix: u64,
    pub started_unix: Option<u64>,
    pub exit: Option<moat_proto::ExitStatus>,
    /// Remove the container once it has exited (`--rm`).
    pub auto_remove: bool,
    /// The container's memory limit in bytes, for the OOM report.
    pub memory_limit: Option<u64>,
    /// Created with a terminal (`-t`) and with stdin kept open (`-i`): how to attach to it.
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
}

impl ContainerRecord {
    /// Whether the container's process still runs, as far as the record says.
    pub fn is_running(&self) -> bool {
        self.started_unix.is_some() && self.exit.is_none()
    }
}

/// A process and its start time, so a recycled pid is never mistaken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self { pid, start_time: process_start_time(pid)? })
    }

    pub fn is_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }

    /// The process's resident memory and CPU time so far, while it is still ours.
    pub fn usage(&self) -> Option<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let fields = stat_fields(&stat)?;
        if fields.get(19)?.parse::<u64>().ok()? != self.start_time {
            return None;
        }
        let ticks = fields.get(11)?.parse::<u64>().ok()?.checked_add(fields.get(12)?.parse().ok()?)?;
        let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0)?;
        let rss_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(ProcessUsage { rss_bytes: rss_kib.saturating_mul(1024), cpu_usec: ticks.saturating_mul(1_000_000) / per_second })
    }
}

/// What a host process uses: its resident memory and its user plus system CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    pub cpu_usec: u64,
}

/// Field 22 of `/proc/PID/stat`, the start time in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.get(19)?.parse().ok()
}

/// The fields of a live process's `/proc/PID/stat` from field 3 (its state) on; `None` for a
/// zombie.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    match fields.first() {
        Some(&("Z" | "X")) | None => None,
        Some(_) => Some(fields),
    }
}

// No deny_unknown_fields here: serde cannot combine it with the flattened state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoneRecord {
    pub id: String,
    pub name: String,
    pub created_unix: u64,
    pub config: ZoneConfig,
    #[serde(flatten)]
    pub state: ZoneState,
    pub supervisor: Option<ProcessId>,
    pub qemu: Option<ProcessId>,
    /// The zone's file server (the outer virtiofsd process; its sandboxed child dies with it).
    #[serde(default)]
    pub virtiofsd: Option<ProcessId>,
    /// The zone's NAT (passt), when it has one.
    #[serde(default)]
    pub passt: Option<ProcessId>,
    /// QEMU's cgroup directories, removed with the zone.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    pub kernel_release: Option<String>,
    /// Milliseconds from QEMU's start to the guest's hello.
    pub boot_ms: Option<u64>,
    /// A pooled zone whose keeper has prepared it for a container (or tried to): until then the
    /// pool shows it as preparing, and a claim takes it only when no prepared zone fits.
    #[serde(default)]
    pub prepared: bool,
    pub containers: Vec<ContainerRecord>,
}

impl ZoneRecord {
    /// Nothing more will happen to this zone: its state is final and its supervisor has exited
    /// (so its files are complete).
    pub fn is_finished(&self) -> bool {
        self.effective_state().is_terminal() && !self.supervisor.is_some_and(|p| p.is_alive())
    }

    pub fn container(&self, id: &str) -> Option<&ContainerRecord> {
        self.containers.iter().find(|c| c.id == id)
    }

    pub fn container_mut(&mut self, id: &str) -> Option<&mut ContainerRecord> {
        self.containers.iter_mut().find(|c| c.id == id)
    }

    /// The state as a client should see it: a live state whose supervisor is gone is stale.
    pub fn effective_state(&self) -> ZoneState {
        let supervisor_alive = self.supervisor.is_some_and(|p| p.is_alive());
        match &self.state {
            live if !live.is_terminal() && self.supervisor.is_some() && !supervisor_alive => {
                ZoneState::Failed { reason: "stale: the zone's supervisor is gone".into() }
            }
            other => other.clone(),
        }
    }
}

/// The state root's zone area.
#[derive(Debug, Clone)]
pub struct ZoneStore {
    root: PathBuf,
    zones: PathBuf,
}

/// The files of one zone.
#[derive(Debug, Clone)]
pub struct ZoneDir {
    pub path: PathBuf,
}

/// The state root's directory of the event journal.
const EVENTS_DIR: &str = "events";

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

impl ZoneDir {
    pub fn record_path(&self) -> PathBuf {
        self.path.join("zone.json")
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }
    /// The files of container `id`: its runtime spec as the host sent it (which `exec` starts
    /// from) and its log.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join("containers").join(id)
    }
    pub fn container_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }
    pub fn container_spec(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("spec.json")
    }
    pub fn scratch_disk(&self) -> PathBuf {
        self.path.join("scratch.img")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.path.join("supervisor.log")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.path.join("api.sock")
    }
    /// virtiofsd's vhost-user socket (virtiofsd listens, QEMU connects).
    pub fn share_socket(&self) -> PathBuf {
        self.path.join("vfs.sock")
    }
    pub fn sockets(&self) -> [PathBuf; 2] {
        [self.api_socket(), self.share_socket()]
    }
    /// The mount point of QEMU's root in its own mount namespace; empty on the host.
    pub fn jail_dir(&self) -> PathBuf {
        self.path.join("jail")
    }
    /// The zone's share as virtiofsd serves it: a read-only mount of [`Self::share_base`],
    /// with each exposed file or directory mounted below it (see [`crate::share`]).
    pub fn share_dir(&self) -> PathBuf {
        self.path.join("share")
    }
    /// The directory under the share's mount, reached only by this path, where the host makes
    /// the mount points: the guest sees it through the read-only share and cannot change it.
    pub fn share_base(&self) -> PathBuf {
        self.path.join("share-base")
    }
    /// The staging directories of copies out of the zone (see [`crate::staging`]).
    pub fn copies_dir(&self) -> PathBuf {
        self.path.join("copies")
    }
    /// The state root's event journal; a zone directory is `<root>/zones/<id>`.
    pub fn journal(&self) -> crate::events::Journal {
        let root = self.path.ancestors().nth(2).unwrap_or(Path::new(""));
        crate::events::Journal::in_dir(root.join(EVENTS_DIR))
    }
    pub fn virtiofsd_log(&self) -> PathBuf {
        self.path.join("virtiofsd.log")
    }
    pub fn passt_log(&self) -> PathBuf {
        self.path.join("passt.log")
    }

    pub fn read(&self) -> Result<ZoneRecord, StateError> {
        let path = self.record_path();
        let text = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&text).map_err(|err| StateError::Corrupt { path, err })
    }

    /// Replace the record atomically: readers see the old or the new file, never a mix.
    pub fn write(&self, record: &ZoneRecord) -> Result<(), StateError> {
        let path = self.record_path();
        let json = serde_json::to_vec_pretty(record).map_err(|err| StateError::Corrupt { path: path.clone(), err })?;
        write_atomic(&path, &json)
    }

    /// Apply `change` to the record under the zone's lock.
    pub fn update<T>(&self, change: impl FnOnce(&mut ZoneRecord) -> T) -> Result<T, StateError> {
        let _lock = FileLock::acquire(&self.path.join("lock"))?;
        let mut record = self.read()?;
        let out = change(&mut record);
        self.write(&record)?;
        Ok(out)
    }
}

/// The time now, in seconds since the Unix epoch, as records keep it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A text file of at most `limit` bytes; a longer one is an error, not cut.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(text)
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(data).and_then(|()| file.sync_all()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// An exclusive `flock`, released on drop.
pub struct FileLock {
    file: std::fs::File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<Self, StateError> {
        Self::lock(path, libc::LOCK_EX)?.ok_or_else(|| StateError::Io { path: path.to_path_buf(), err: std::io::ErrorKind::WouldBlock.into() })
    }

    /// The lock if no one holds it, else `None` at once.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>, StateError> {
        Self::lock(path, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn lock(path: &Path, operation: libc::c_int) -> Result<Option<Self>, StateError> {
        let file = std::fs::File::options().create(true).truncate(false).write(true).open(path).map_err(io_err(path))?;
        // SAFETY: flock on a file descriptor we own; it has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        match std::io::Error::last_os_error() {
            _ if rc == 0 => Ok(Some(Self { file })),
            err if err.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            err => Err(StateError::Io { path: path.to_path_buf(), err }),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing it would release the lock anyway.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

pub fn validate_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_string()))
    }
}

impl ZoneStore {
    pub fn open(root: &Path) -> Result<Self, StateError> {
        let zones = root.join("zones");
        std::fs::create_dir_all(&zones).map_err(io_err(&zones))?;
        Ok(Self { root: root.to_path_buf(), zones })
    }

    /// The state root the zones live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The event journal of the state root (`moat events`).
    pub fn journal(&self) -> crate::events::Journal {
        crate::events::Journal::in_dir(self.root.join(EVENTS_DIR))
    }

    /// The store's lock: held while a zone or a container takes a name.
    pub fn lock_path(&self) -> PathBuf {
        self.zones.join(".lock")
    }

    pub fn dir(&self, id: &str) -> ZoneDir {
        ZoneDir { path: self.zones.join(id) }
    }

    /// Reserve a new zone directory, with its first record, under the store's lock so two
    /// concurrent creates cannot take the same name.
    pub fn create(&self, record: &ZoneRecord) -> Result<ZoneDir, StateError> {
        validate_name(&record.name)?;
        let _lock = FileLock::acquire(&self.lock_path())?;
        if self.list()?.iter().any(|r| r.name == record.name) {
            return Err(StateError::NameTaken(record.name.clone()));
        }
        let dir = self.dir(&record.id);
        for socket in dir.sockets() {
            if socket.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(StateError::PathTooLong { path: socket, max: MAX_SOCKET_PATH });
            }
        }
        std::fs::create_dir(&dir.path).map_err(io_err(&dir.path))?;
        dir.write(record)?;
        Ok(dir)
    }

    /// Every zone whose record can be read, oldest first.
    pub fn list(&self) -> Result<Vec<ZoneRecord>, StateError> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.zones).map_err(io_err(&self.zones))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Ok(record) = (ZoneDir { path: entry.path() }).read() {
                records.push(record);
            }
        }
        records.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        Ok(records)
    }

    /// Find a zone by exact name, exact id, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<(ZoneDir, ZoneRecord), StateError> {
        let records = self.list()?;
        let by_name_or_id = records.iter().find(|r| r.name == key || r.id == key);
        let found = by_name_or_id.or_else(|| {
            let mut prefixed = records.iter().filter(|r| !key.is_empty() && r.id.starts_with(key));
            match (prefixed.next(), prefixed.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        });
        let record = found.ok_or_else(|| StateError::NotFound(key.to_string()))?.clone();
        Ok((self.dir(&record.id), record))
    }

    pub fn remove(&self, dir: &ZoneDir) -> Result<(), StateError> {
        std::fs::remove_dir_all(&dir.path).map_err(io_err(&dir.path))
    }
}

/// A fresh zone id: 12 lowercase hex digits from the kernel's random source.
pub fn new_zone_id() -> Result<String, StateError> {
    let mut bytes = [0u8; 6];
    let path = Path::new("/dev/urandom");
    std::io::Read::read_exact(&mut std::fs::File::open(path).map_err(io_err(path))?, &mut bytes).map_err(io_err(path))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ZoneRecord {
        ZoneRecord {
            id: id.into(),
            name: name.into(),
            created_unix: 1,
            config: ZoneConfig { cpus: 1, memory_mib: 256, accel: Accel::Tcg, accel_note: None, debug: false, scratch_mib: 0, pod: false, extra_disks: Vec::new(), network: Default::default(), extra_hosts: Vec::new(), pool: false, oci_runtime: Default::default(), kernel: Default::default() },
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
        }
    }

    #[test]
    fn create_find_update_remove() {
        let root = tempfile::tempdir().unwrap();
        let store = ZoneStore::open(root.path()).unwrap();
        let dir = store.create(&record("abc123", "web")).unwrap();
        assert!(matches!(store.create(&record("def456", "web")), Err(StateError::NameTaken(_))));
        assert_eq!(store.find("web").unwrap().1.id, "abc123");
        assert_eq!(store.find("abc").unwrap().1.name, "web");
        assert_eq!(dir.journal().path(), store.journal().path(), "the supervisor and the CLI write one journal");
        dir.update(|r| r.state = ZoneState::Running).unwrap();
        assert_eq!(dir.read().unwrap().state, ZoneState::Running);
        store.remove(&dir).unwrap();
        assert!(matches!(store.find("web"), Err(StateError::NotFound(_))));
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("ci-runner_1.2").unwrap();
    }

    #[test]
    fn a_dead_supervisor_makes_a_live_zone_stale() {
        let mut r = record("a", "a");
        r.state = ZoneState::Running;
        r.supervisor = Some(ProcessId { pid: u32::MAX - 1, start_time: 1 });
        assert!(matches!(r.effective_state(), ZoneState::Failed { reason } if reason.contains("stale")));
        r.supervisor = ProcessId::of(std::process::id());
        assert_eq!(r.effective_state(), ZoneState::Running);
    }

    #[test]
    fn usage_is_read_only_for_the_process_we_started() {
        let me = ProcessId::of(std::process::id()).unwrap();
        let usage = me.usage().unwrap();
        assert!(usage.rss_bytes > 1 << 20, "{usage:?}");
        let recycled = ProcessId { start_time: me.start_time + 1, ..me };
        assert_eq!(recycled.usage(), None);
        assert_eq!(stat_fields("7 (a) b) Z 1 2"), None, "a zombie");
        assert_eq!(stat_fields("7 (a) b) S 1 2").unwrap(), ["S", "1", "2"]);
    }

    #[test]
    fn long_roots_are_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        let long = root.path().join("x".repeat(100));
        let store = ZoneStore::open(&long).unwrap();
        assert!(matches!(store.create(&record("abc123", "web")), Err(StateError::PathTooLong { .. })));
        assert!(store.list().unwrap().is_empty());
    }
}
