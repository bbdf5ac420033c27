//! Containers in zones: create (in a zone of their own, or in a pod), start, attach, exec,
//! signal, wait, remove, list. The front-ends build the spec; this module decides where it
//! runs and what the zone adds to it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moat_proto::{ExecRequest, ExitStatus, FailureKind, MAX_CONTAINERS};
use moat_zone::api::{self, ApiRequest, ApiResponse, Connection, CreateContainer};
use moat_zone::events::Event;
use moat_zone::ops::{self, SupervisorCommand};
use moat_zone::start_slots::StartSlot;
use moat_zone::state::{new_zone_id, read_bounded, unix_now, ContainerRecord, FileLock, ZoneDir, ZoneRecord, ZoneStore};
use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};
use crate::mounts;
use crate::network::{self, NameConfig};
use crate::network_names;
use crate::pods::{Pods, SandboxConfig};
use crate::volumes::{VolumeMount, VolumeStore};

/// Where the zone mounts its kernel modules disk; a privileged container gets it read-only, so
/// `modprobe` in it loads what the zone kernel ships.
const ZONE_MODULES: &str = "/lib/modules";
/// How long a request to a zone's supervisor may wait for its answer (runc, under TCG, is slow).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client whose zone ended under it waits for the supervisor to record why.
const ZONE_END_WAIT: Duration = Duration::from_secs(5);

/// Where a new container goes.
pub enum Placement {
    /// A zone of its own, powered off with the container.
    OwnZone(SandboxConfig),
    /// An existing pod. A privileged container goes there only when allowed explicitly.
    Pod { key: String, allow_privileged: bool },
}

/// What a front-end decided about a new container.
pub struct ContainerConfig {
    pub name: Option<String>,
    /// The image's reference, as `ps` shows it.
    pub image: String,
    /// The image's EROFS file on the host.
    pub image_file: PathBuf,
    /// The runtime spec; `root.path` is the zone's business.
    pub spec: Spec,
    pub tty: bool,
    pub stdin: bool,
    /// Remove the container once it exited (`--rm`).
    pub auto_remove: bool,
    /// Volumes, binds and tmpfs mounts (`-v`, `--mount`, `--tmpfs`).
    pub mounts: Vec<VolumeMount>,
    /// Its `/etc/resolv.conf` and `/etc/hosts` settings.
    pub names: NameConfig,
}

/// A container and its zone, as found by name or id.
#[derive(Clone)]
pub struct Found {
    pub dir: ZoneDir,
    pub zone: ZoneRecord,
    pub container: ContainerRecord,
}

/// How the relay of an attached process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEnd {
    Exited(ExitStatus),
    /// The zone ended first; with the supervisor's reason when it could send one.
    ZoneEnded(Option<String>),
}

impl ProcessEnd {
    /// The end an attached client's stream announces, if `response` is one.
    pub fn announced_by(response: &ApiResponse) -> Option<Self> {
        match response {
            ApiResponse::Exited { status } => Some(ProcessEnd::Exited(*status)),
            ApiResponse::ZoneEnded { reason } => Some(ProcessEnd::ZoneEnded(Some(reason.clone()))),
            _ => None,
        }
    }
}

/// How a container or exec'd process ended, as a front-end reports it.
pub struct ExitReport {
    /// Docker's exit code: the process's own, 128 + a signal, 137 for an OOM kill, 125 when
    /// the zone ended first.
    pub code: u8,
    /// One line for the user, when the code alone would mislead.
    pub message: Option<String>,
}

pub struct Containers<'a> {
    pub(crate) store: &'a ZoneStore,
    pub(crate) supervisor: &'a SupervisorCommand,
}

impl Containers<'_> {
    /// Create a container: its zone (booted when it gets its own), its record, and the
    /// container in the zone, ready to start. Returns warnings for the user beside it.
    pub fn create(&self, placement: Placement, config: ContainerConfig) -> Result<(Found, Vec<String>)> {
        self.create_with(placement, config, false).map(|(found, _, warnings)| (found, warnings))
    }

    /// Create a container and start it, as `create` then `start` would, in one request: the zone's
    /// runtime then creates and starts it with one command.
    pub fn run(&self, placement: Placement, config: ContainerConfig) -> Result<(Found, Connection, Vec<String>)> {
        self.create_with(placement, config, true)
    }

    /// Create a container, and with `start` start it; the connection that asked is returned.
    fn create_with(&self, placement: Placement, mut config: ContainerConfig, start: bool) -> Result<(Found, Connection, Vec<String>)> {
        let mut id = new_zone_id()?;
        let name = config.name.clone().unwrap_or_else(|| format!("c-{id}"));
        moat_zone::state::validate_name(&name)?;
        config.names.validate()?;
        let privileged = moat_spec::is_privileged(&config.spec);
        let mut warnings = Vec::new();
        if privileged {
            moat_spec::mounts::add_read_only_bind(&mut config.spec, ZONE_MODULES, ZONE_MODULES)?;
        }
        let mut slot = None;
        let (dir, own_zone) = match placement {
            Placement::Pod { key, allow_privileged } => {
                let (dir, pod) = self.pods().find(&key)?;
                if privileged && !allow_privileged {
                    return Err(RuntimeError::PrivilegedInPod(pod.name));
                }
                if privileged {
                    warnings.push(format!("the privileged container {name} shares pod {} with its other containers: they are within its reach", pod.name));
                }
                let state = pod.effective_state();
                if state != moat_zone::lifecycle::ZoneState::Running {
                    return Err(RuntimeError::PodNotRunning { pod: pod.name, state: state.name().into() });
                }
                moat_spec::resources::apply_zone_limits(&mut config.spec, pod.config.memory_mib, moat_spec::resources::Cpus::whole(pod.config.cpus))?;
                if config.spec.hostname().as_ref().is_some_and(|h| *h != pod.name) {
                    return Err(RuntimeError::PodSetting("--hostname"));
                }
                set_hostname(&mut config.spec, &pod.name);
                (dir, false)
            }
            Placement::OwnZone(mut sandbox) => {
                self.check_name_free(&name, None)?;
                moat_spec::resources::apply_zone_limits(&mut config.spec, sandbox.resources.memory_mib(), sandbox.resources.cpus())?;
                let claimed = self.pool().claim(&sandbox, &name)?;
                if let Some(zone) = &claimed {
                    // The container takes its zone's id, as in a zone booted for it.
                    id.clone_from(&zone.id);
                }
                // Docker's default: the container's short id.
                if config.spec.hostname().is_none() {
                    set_hostname(&mut config.spec, &id);
                }
                if claimed.is_none() {
                    // The zone is the container's: its names are the zone's.
                    sandbox.network.extra_hosts.append(&mut config.names.extra_hosts);
                    sandbox.id = Some(id.clone());
                    sandbox.name = Some(name.clone());
                    sandbox.pod = false;
                    // The slot covers the first `runc create` too: it is as CPU-bound as the boot.
                    slot = Some(StartSlot::acquire(self.store)?);
                    if let Err(err) = self.pods().boot(sandbox) {
                        // The zone was the container's alone, and the container never got there.
                        let _ = ops::remove(self.store, &id, true);
                        return Err(err);
                    }
                }
                (self.store.dir(&id), true)
            }
        };
        let created = self.create_in(&dir, &id, &name, privileged, &config, start);
        drop(slot);
        if created.is_err() && own_zone {
            let _ = ops::remove(self.store, &id, true);
        }
        created.map(|(found, conn)| (found, conn, warnings))
    }

    fn create_in(&self, dir: &ZoneDir, id: &str, name: &str, privileged: bool, config: &ContainerConfig, start: bool) -> Result<(Found, Connection)> {
        let memory_limit = config.spec.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).and_then(|l| u64::try_from(l).ok());
        let record = ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            image: config.image.clone(),
            command: config.spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default(),
            privileged,
            created_unix: unix_now(),
            started_unix: None,
            exit: None,
            auto_remove: config.auto_remove,
            memory_limit,
            tty: config.tty,
            stdin: config.stdin,
        };
        {
            // Names are unique over every zone; the store's lock orders concurrent creates.
            let _lock = FileLock::acquire(&self.store.lock_path())?;
            self.check_name_free(name, Some(dir))?;
            dir.update(|zone| {
                if zone.containers.len() >= MAX_CONTAINERS {
                    return Err(RuntimeError::PodFull { pod: zone.name.clone(), max: MAX_CONTAINERS });
                }
                zone.containers.push(record.clone());
                Ok(())
            })??;
        }
        std::fs::create_dir_all(dir.container_dir(id)).map_err(|err| RuntimeError::Io { what: "creating the container's directory".into(), err })?;
        let volumes = self.volumes()?;
        let sent = mounts::plan(&volumes, id, &config.mounts, container_root(&config.spec)).and_then(|(exposures, extra)| {
            let mut spec = config.spec.clone();
            let mut all = spec.mounts().clone().unwrap_or_default();
            all.extend(extra);
            spec.set_mounts(Some(all));
            let zone = dir.read()?;
            let hostname = spec.hostname().clone().unwrap_or_else(|| id.to_string());
            let mut name_files = network::name_files(&zone.config, &hostname, &config.names)?;
            if let Some(network) = zone.config.network.network_name() {
                name_files.hosts = network_names::new_container_hosts(self.store, dir, &zone.id, id, network, &name_files.hosts)?;
            }
            let request = CreateContainer { container: id.to_string(), spec_json: moat_spec::to_json(&spec)?, image: config.image_file.clone(), tty: config.tty, stdin: config.stdin, volumes: exposures, name_files: Some(name_files), start };
            connect(dir, &ApiRequest::CreateContainer(Box::new(request)))
        });
        let conn = match sent {
            Ok(conn) => conn,
            Err(err) => {
                mounts::release(&volumes, id, &config.mounts);
                return Err(err);
            }
        };
        let zone = dir.read()?;
        if let Some(network) = zone.config.network.network_name() {
            network_names::refresh(self.store, network, &zone.id)?;
        }
        Ok((Found { dir: dir.clone(), zone, container: record }, conn))
    }

    fn pods(&self) -> Pods<'_> {
        Pods { store: self.store, supervisor: self.supervisor }
    }

    fn pool(&self) -> crate::pool::Pool<'_> {
        crate::pool::Pool { store: self.store, pods: self.pods() }
    }

    fn volumes(&self) -> Result<VolumeStore> {
        Ok(VolumeStore::open(self.store.root())?)
    }

    /// No zone and no container has the name `name`; a container's own zone (`own`) may.
    fn check_name_free(&self, name: &str, own: Option<&ZoneDir>) -> Result<()> {
        let zones = self.store.list()?;
        let taken_by = |z: &ZoneRecord| (z.name == name && own.is_none_or(|d| d.path != self.store.dir(&z.id).path)) || z.containers.iter().any(|c| c.name == name);
        if zones.iter().any(taken_by) {
            return Err(RuntimeError::NameInUse(name.to_string()));
        }
        Ok(())
    }

    /// Start a created container; the returned connection hears its output and exit, and
    /// carries its stdin, signals and terminal size.
    pub fn start(&self, found: &Found) -> Result<Connection> {
        connect(&found.dir, &ApiRequest::StartContainer { container: found.container.id.clone() })
    }

    /// Attach to a running container's process, as `start` does.
    pub fn attach(&self, found: &Found) -> Result<Connection> {
        connect(&found.dir, &ApiRequest::Attach { container: found.container.id.clone() })
    }

    /// Start a process in a running container.
    pub fn exec(&self, found: &Found, mut exec: ExecRequest) -> Result<Connection> {
        if !is_running(found) {
            return Err(RuntimeError::NotRunning(found.container.name.clone()));
        }
        if found.container.privileged {
            // A process exec'd into a privileged container has what the container has, though
            // an engine (containerd, podman) wrote it from the host's capabilities.
            let mut process = moat_spec::exec::process_from_json(&exec.process_json)?;
            moat_spec::foreign::grant_every_capability(&mut process);
            exec.process_json = moat_spec::exec::process_to_json(&process)?;
        }
        connect(&found.dir, &ApiRequest::Exec { container: found.container.id.clone(), exec: Box::new(exec) })
    }

    pub fn kill(&self, found: &Found, signal: i32) -> Result<()> {
        match api::call(&found.dir.api_socket(), &ApiRequest::Kill { container: found.container.id.clone(), signal }, REQUEST_TIMEOUT) {
            // The signal ended a one-container zone's process, and the zone went with it.
            Err(api::ApiError::Closed) => Ok(()),
            other => done(other),
        }
    }

    /// SIGTERM, then SIGKILL after `timeout`, as `docker stop`; a one-container zone then stops.
    pub fn stop(&self, found: &Found, timeout: Duration) -> Result<()> {
        if is_running(found) && self.kill(found, libc::SIGTERM).is_ok() && self.wait(found, Some(timeout))?.is_none() {
            let _ = self.kill(found, libc::SIGKILL);
            self.wait(found, Some(Duration::from_secs(10)))?;
        }
        if !found.zone.config.pod {
            let _ = ops::stop(&found.dir, Duration::from_secs(10));
        }
        Ok(())
    }

    /// Wait for the container's exit status; `Some(None)` when its zone ended without one, and
    /// `None` once `timeout` passed (never, without one).
    pub fn wait(&self, found: &Found, timeout: Option<Duration>) -> Result<Option<Option<ExitStatus>>> {
        // A timeout too long to reach is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let Ok(zone) = found.dir.read() else { return Ok(Some(None)) };
            match zone.container(&found.container.id) {
                Some(c) if c.exit.is_some() => return Ok(Some(c.exit)),
                None => return Ok(Some(None)),
                Some(_) if zone.effective_state().is_terminal() => return Ok(Some(None)),
                Some(_) => {}
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Remove a container; a running one needs `force`. A one-container zone goes with it.
    pub fn remove(&self, found: &Found, force: bool) -> Result<()> {
        if is_running(found) && !force {
            return Err(RuntimeError::Running(found.container.name.clone()));
        }
        self.release_volumes(&found.container.id)?;
        // Removing a zone journals its containers' removal, and a live pod's supervisor the
        // removals it makes.
        if !found.zone.config.pod {
            ops::remove(self.store, &found.zone.id, true)?;
            if let Some(network) = found.zone.config.network.network_name() {
                network_names::refresh(self.store, network, &found.zone.id)?;
            }
            return Ok(());
        }
        if found.zone.effective_state().is_terminal() {
            // No supervisor to ask: only the record and the files are left.
            found.dir.update(|z| z.containers.retain(|c| c.id != found.container.id))?;
            let _ = std::fs::remove_dir_all(found.dir.container_dir(&found.container.id));
            self.store.journal().record(Event::destroyed(&found.container));
            return Ok(());
        }
        let answer = api::call(&found.dir.api_socket(), &ApiRequest::RemoveContainer { container: found.container.id.clone(), force }, REQUEST_TIMEOUT);
        done(answer)?;
        if let Some(network) = found.zone.config.network.network_name() {
            network_names::refresh(self.store, network, &found.zone.id)?;
        }
        Ok(())
    }

    /// Take `container`'s marks off every named volume.
    fn release_volumes(&self, container: &str) -> Result<()> {
        let volumes = self.volumes()?;
        for volume in volumes.list()? {
            volumes.release(&volume.name, container)?;
        }
        Ok(())
    }

    /// Every container with its zone, oldest zone first.
    pub fn list(&self) -> Result<Vec<Found>> {
        let mut all = Vec::new();
        for zone in self.store.list()? {
            let dir = self.store.dir(&zone.id);
            for container in &zone.containers {
                all.push(Found { dir: dir.clone(), zone: zone.clone(), container: container.clone() });
            }
        }
        Ok(all)
    }

    /// The container named `key`: its name, its id, or a unique prefix of its id.
    pub fn find(&self, key: &str) -> Result<Found> {
        let all = self.list()?;
        let exact = all.iter().position(|f| f.container.name == key || f.container.id == key);
        let index = exact.or_else(|| {
            let mut prefixed = all.iter().enumerate().filter(|(_, f)| !key.is_empty() && f.container.id.starts_with(key));
            match (prefixed.next(), prefixed.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        index.and_then(|i| all.into_iter().nth(i)).ok_or_else(|| RuntimeError::NoSuchContainer(key.to_string()))
    }

    /// The spec the container was created from, which an exec'd process starts from.
    pub fn spec(&self, found: &Found) -> Result<Spec> {
        let path = found.dir.container_spec(&found.container.id);
        let text = read_bounded(&path, moat_spec::MAX_SPEC_JSON_BYTES as u64).map_err(|err| RuntimeError::Io { what: format!("reading the container's spec {}", path.display()), err })?;
        Ok(moat_spec::from_json(&text)?)
    }
}

/// The zone's uid and gid for a user-namespaced container's root.
fn container_root(spec: &Spec) -> Option<(u32, u32)> {
    let linux = spec.linux().as_ref().filter(|_| moat_spec::user::has_user_namespace(spec))?;
    let root = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| moat_spec::user::zone_id_of_root(maps.as_deref().unwrap_or_default());
    Some((root(linux.uid_mappings())?, root(linux.gid_mappings())?))
}

/// Whether the container's process still runs: started, not exited, its zone live.
pub fn is_running(found: &Found) -> bool {
    found.container.is_running() && !found.zone.effective_state().is_terminal()
}

/// How an attached process ended, as an exit code and, for an OOM kill or a zone that ended
/// first, one line saying so. `what` names the process ("container", "process").
pub fn exit_report(outcome: ProcessEnd, found: &Found, what: &str) -> ExitReport {
    match outcome {
        ProcessEnd::Exited(status) => {
            let message = (status == ExitStatus::OomKilled).then(|| {
                let limit = found.container.memory_limit.map_or(String::new(), |bytes| format!(" of {} MiB", bytes >> 20));
                format!("the {what} was OOM-killed: it reached its memory limit{limit} (the zone has {} MiB)", found.zone.config.memory_mib)
            });
            ExitReport { code: u8::try_from(status.shell_code() & 0xff).unwrap_or(125), message }
        }
        ProcessEnd::ZoneEnded(announced) => {
            let reason = announced.or_else(|| found.dir.read().ok().and_then(|r| r.effective_state().reason().map(String::from)));
            ExitReport { code: 125, message: Some(format!("the zone ended before the {what} did: {}", reason.unwrap_or_else(|| "unknown reason".into()))) }
        }
    }
}

/// The exit code for a process that did not start: Docker's 127 and 126 where they apply.
pub fn start_failure_code(err: &RuntimeError, default: u8) -> u8 {
    err.kind().start_exit_code().unwrap_or(default)
}

/// Send `request` on a connection that stays open, and return it once the supervisor answered
/// Done: it then hears the process's output and exit.
fn connect(dir: &ZoneDir, request: &ApiRequest) -> Result<Connection> {
    let mut conn = Connection::open(&dir.api_socket())?;
    conn.send(request)?;
    match conn.receive_within(REQUEST_TIMEOUT) {
        // The process began and ended its zone (a panic) before its start was answered.
        Ok(ApiResponse::ZoneEnded { reason }) => Err(RuntimeError::ZoneEnded(reason)),
        Err(api::ApiError::Closed) => Err(RuntimeError::ZoneEnded(zone_end_reason(dir))),
        answer => done(answer).map(|()| conn),
    }
}

/// Why the zone in `dir` ended, once its supervisor has written it (it does as it goes, a moment
/// after its clients' connections close).
fn zone_end_reason(dir: &ZoneDir) -> String {
    let deadline = Instant::now() + ZONE_END_WAIT;
    loop {
        let state = dir.read().ok().map(|r| r.effective_state());
        if let Some(reason) = state.as_ref().filter(|s| s.is_terminal()).and_then(|s| s.reason()) {
            return reason.to_string();
        }
        if Instant::now() > deadline {
            return "unknown reason".into();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn done(answer: std::result::Result<ApiResponse, api::ApiError>) -> Result<()> {
    match answer? {
        ApiResponse::Done => Ok(()),
        ApiResponse::Error { kind, message } => Err(RuntimeError::Zone { kind, message }),
        other => Err(RuntimeError::Zone { kind: FailureKind::Internal, message: format!("unexpected answer from the zone: {other:?}") }),
    }
}

/// The hostname of the container (its pod's, in a pod), and `HOSTNAME` in its environment
/// unless the environment sets it.
fn set_hostname(spec: &mut Spec, hostname: &str) {
    spec.set_hostname(Some(hostname.to_string()));
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        // moat-spec writes an empty HOSTNAME when the front-end gave none.
        env.retain(|e| e != "HOSTNAME=");
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={hostname}"));
        }
        process.set_env(Some(env));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_zone::lifecycle::ZoneState;
    use moat_zone::state::ZoneConfig;

    /// A zone whose supervisor takes a request and closes the connection without an answer, as
    /// it does when the process it starts panics the zone's kernel first; the record says why.
    #[test]
    fn a_zone_that_ends_under_a_request_is_a_typed_end_with_its_reason() {
        let root = tempfile::tempdir().unwrap();
        let store = ZoneStore::open(root.path()).unwrap();
        let reason = "guest kernel panic: Kernel panic - not syncing: sysrq triggered crash";
        let container = ContainerRecord { id: "c1".into(), name: "c".into(), image: "i".into(), command: vec![], privileged: false, created_unix: 1, started_unix: Some(1), exit: None, auto_remove: false, memory_limit: None, tty: false, stdin: false };
        let zone = ZoneRecord {
            id: "abc123".into(),
            name: "z".into(),
            created_unix: 1,
            config: ZoneConfig { cpus: 1, memory_mib: 256, accel: moat_zone::accel::Accel::Tcg, accel_note: None, debug: false, scratch_mib: 0, pod: false, extra_disks: Vec::new(), network: Default::default(), extra_hosts: Vec::new(), pool: false, oci_runtime: Default::default(), kernel: Default::default() },
            state: ZoneState::Failed { reason: reason.into() },
            supervisor: None,
            qemu: None,
            virtiofsd: None,
            passt: None,
            cgroups: Vec::new(),
            kernel_release: None,
            boot_ms: None,
            prepared: false,
            containers: vec![container.clone()],
        };
        let dir = store.create(&zone).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.api_socket()).unwrap();
        let supervisor = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 4096]);
        });
        let err = connect(&dir, &ApiRequest::Ping).map(|_| ()).unwrap_err();
        supervisor.join().unwrap();
        assert!(matches!(&err, RuntimeError::ZoneEnded(why) if why == reason), "{err}");
        assert_eq!(err.kind(), FailureKind::ZoneGone);
    }
}
