//! The per-zone supervisor: one host process that owns QEMU, the control channel, the console
//! log and the zone's record, and answers clients on the zone's API socket. This module starts
//! the zone; [`zone`] runs it until QEMU exits and [`outcome`] says how it ended.

mod guest_io;
mod network;
mod outcome;
mod zone;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use moat_proto::layout;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use self::guest_io::{read_guest, write_guest};
use self::outcome::describe_exit;
use self::zone::Zone;
use crate::accel::Accel;
use crate::assets::{AssetError, Assets};
use crate::cgroup::{self, CgroupError, Limits, ZoneCgroup};
use crate::jail::{self, Bind, Jail, JailError};
use crate::console::{copy_console, ConsoleTail};
use crate::events::Event;
use crate::guest_disks::{self, ToolFile};
use crate::lifecycle::ZoneState;
use crate::qemu::{Disk, Sockets, VmConfig, VmNetwork, QEMU_BINARY};
use crate::qmp::{Qmp, QmpCommand};
use crate::share::{self, Share, ShareError};
use crate::staging::{self, StagingError};
use crate::state::{ProcessId, StateError, ZoneDir, ZoneRecord};
use crate::helper::{Helper, HelperError};
use self::network::ZoneNet;
use crate::virtiofsd::{self, VirtiofsdError};

/// How long QEMU may take to greet on QMP after starting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the guest may take from QEMU's start to its hello.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the last console and channel bytes after QEMU exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Guest messages queued between the channel reader and the main loop.
const CHANNEL_QUEUE: usize = 64;
/// How long the VM's end may follow a helper's (virtiofsd, passt): QEMU's exit also ends them,
/// and the VM's result then follows within [`DRAIN_TIMEOUT`].
const VM_AFTER_HELPER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Assets(#[from] AssetError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("starting {QEMU_BINARY} in its jail: {0} (qemu.log names the step)")]
    Spawn(std::io::Error),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error("the zone's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("QEMU did not answer on QMP within {0:?}")]
    ConnectTimeout(Duration),
    #[error("QEMU exited before the zone started ({0})")]
    EarlyExit(String),
    #[error("the state root's file system has {free_mib} MiB free; a zone's scratch disk needs at least {MIN_SCRATCH_MIB} MiB")]
    NoRoom { free_mib: u64 },
    #[error("QMP: {0}")]
    Qmp(#[from] crate::qmp::QmpError),
    #[error(transparent)]
    Transition(#[from] crate::lifecycle::TransitionError),
    #[error("building a guest disk: {0}")]
    GuestDisk(#[from] crate::guest_disks::GuestDiskError),
    #[error("preparing the zone's share: {0}")]
    Share(#[from] ShareError),
    #[error(transparent)]
    Virtiofsd(#[from] VirtiofsdError),
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error("the zone's network device: {0}")]
    Tap(#[from] crate::tap::TapError),
    #[error("the zone's network: {0}")]
    HostNet(#[from] crate::host_net::HostNetError),
    #[error("removing the copies an earlier run left: {0}")]
    Staging(#[from] StagingError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let what = what.into();
    move |err| SupervisorError::Io { what, err }
}

/// Run the supervisor for the zone in `dir` until QEMU is gone. Always leaves the record in a
/// terminal state and removes the zone's sockets.
pub fn supervise(dir: ZoneDir, assets_dir: &Path) -> Result<(), SupervisorError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("tokio runtime"))?;
    let result = runtime.block_on(run(&dir, assets_dir));
    let final_state = match &result {
        Ok(state) => state.clone(),
        Err(err) => ZoneState::Failed { reason: err.to_string() },
    };
    for socket in dir.sockets() {
        let _ = std::fs::remove_file(socket);
    }
    let unshared = share::cleanup(&dir).map_err(|err| err.to_string()).and_then(|()| staging::cleanup(&dir).map_err(|err| err.to_string()));
    if let Err(err) = &unshared {
        tracing::error!(%err, "the zone's share or a copy's staging directory is still mounted; the zone directory is kept");
    }
    // Also when the VM's future was dropped: QEMU was killed then, and leaves its cgroup soon.
    let removed = dir.read().map_err(|err| err.to_string()).and_then(|r| cgroup::remove(&r.cgroups).map_err(|err| err.to_string()));
    if let Err(err) = removed {
        tracing::warn!(%err, "removing the zone's cgroup");
    }
    let record = dir.update(|record| {
        if let Ok(next) = record.state.transition(final_state.clone()) {
            record.state = next;
        }
        record.clone()
    })?;
    let journal = dir.journal();
    journal.record(Event::zone_ended(&record));
    // `--rm`: a one-container zone goes with its container, however the zone ended, as Docker
    // removes an `--rm` container whatever its end (attached clients heard the reason).
    let auto_remove = unshared.is_ok() && !record.config.pod && !record.containers.is_empty() && record.containers.iter().all(|c| c.auto_remove);
    if auto_remove && std::fs::remove_dir_all(&dir.path).is_ok() {
        journal.record(record.containers.iter().map(Event::destroyed));
    }
    result.map(|_| ())
}

fn bind(path: PathBuf) -> Result<UnixListener, SupervisorError> {
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path).map_err(io(format!("binding {}", path.display())))
}

fn kernel_cmdline(record: &ZoneRecord, release: &str) -> String {
    // A panic reboots at once (pvpanic has told QEMU first, when its driver is loaded), and
    // the reboot is a triple fault, which -no-reboot turns into QEMU's exit; the kernel's
    // other reboot methods can spin for minutes on a microvm, which lacks their devices.
    let mut cmdline = format!("console=ttyS0 quiet panic=-1 reboot=t moat.zone={} moat.kernel={release}", record.id);
    cmdline.push(' ');
    cmdline.push_str(&record.config.oci_runtime.kernel_arg());
    if let Some(network) = record.config.network.guest() {
        cmdline.push(' ');
        cmdline.push_str(&network.kernel_arg());
    }
    if let Some(tsc) = (record.config.accel == Accel::Tcg).then(crate::accel::tcg_tsc_kernel_args).flatten() {
        cmdline.push(' ');
        cmdline.push_str(&tsc);
    }
    if record.config.debug {
        cmdline.push_str(" moat.debug=1");
    }
    cmdline
}

/// Start the zone's file server and its NAT, run the VM, and end them with it. A helper that
/// dies first fails the zone: QEMU would run on with a share or a network that never answers.
async fn run(dir: &ZoneDir, assets_dir: &Path) -> Result<ZoneState, SupervisorError> {
    let supervisor = ProcessId::of(std::process::id());
    dir.update(|r| r.supervisor = supervisor)?;
    staging::cleanup(dir)?;
    let share = Share::new(dir);
    share.prepare()?;
    let config = virtiofsd::Config { socket: dir.share_socket(), source: share.root().to_path_buf() };
    let mut virtiofsd = virtiofsd::start(&config, &dir.virtiofsd_log()).await?;
    let virtiofsd_id = virtiofsd.id().and_then(ProcessId::of);
    dir.update(|r| r.virtiofsd = virtiofsd_id)?;
    let mut network = ZoneNet::start(dir, &dir.read()?).await?;
    let passt_id = network.passt.as_ref().and_then(Helper::id).and_then(ProcessId::of);
    dir.update(|r| r.passt = passt_id)?;
    let vm = run_vm(dir, &share, assets_dir, network.qemu.take());
    tokio::pin!(vm);
    let died = tokio::select! {
        result = &mut vm => Err(result),
        died = virtiofsd.exited() => Ok(died),
        died = network.exited() => Ok(died),
    };
    let result = match died {
        Err(result) => result,
        Ok(died) => match tokio::time::timeout(VM_AFTER_HELPER, &mut vm).await {
            Ok(result) => result,
            // Dropping the VM's future kills QEMU.
            Err(_) => Err(died.into()),
        },
    };
    virtiofsd.stop().await;
    network.stop().await;
    result
}

/// The supervisor's end of a socket pair, and QEMU's.
fn socket_pair(what: &str) -> Result<(UnixStream, OwnedFd), SupervisorError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(io(format!("making the {what} socket pair")))?;
    ours.set_nonblocking(true).map_err(io(format!("making the {what} socket pair")))?;
    Ok((UnixStream::from_std(ours).map_err(io(format!("making the {what} socket pair")))?, theirs.into()))
}

/// Run QEMU in its jail; `network` is its end of the zone's network (passt's socket or the
/// tap), when the zone has one.
async fn run_vm(dir: &ZoneDir, share: &Share, assets_dir: &Path, network: Option<(OwnedFd, VmNetwork)>) -> Result<ZoneState, SupervisorError> {
    let record = dir.read()?;

    let assets = Assets::locate_with(assets_dir, record.config.kernel)?;
    // Resolved once (it runs ldd on the OCI runtime): the initramfs links to these files, and a
    // workload's tools disk holds them.
    let tools = assets.tools(record.config.oci_runtime)?;
    let initrd = assets.initramfs(&tools)?;
    let api = bind(dir.api_socket())?;
    let (console, console_end) = socket_pair("console")?;
    let (control, control_end) = socket_pair("control channel")?;
    let (qmp, qmp_end) = socket_pair("QMP")?;
    let share_end: OwnedFd = std::os::unix::net::UnixStream::connect(dir.share_socket()).map_err(io("connecting to virtiofsd"))?.into();
    let disks = open_disks(zone_disks(dir, &record.config, &assets, &tools)?)?;
    let in_jail = |name: &str| Path::new(jail::ZONE_DIR_IN_JAIL).join(name);
    let vm = VmConfig {
        zone_dir: dir.path.clone(),
        accel: record.config.accel,
        cpus: record.config.cpus,
        memory_mib: record.config.memory_mib,
        kernel: in_jail("vmlinuz"),
        initrd: in_jail("initrd"),
        kernel_cmdline: kernel_cmdline(&record, &assets.kernel_release),
        sockets: Sockets { console: console_end.as_raw_fd(), control: control_end.as_raw_fd(), qmp: qmp_end.as_raw_fd(), share: share_end.as_raw_fd() },
        disks: disks.iter().map(|(_, disk)| disk.clone()).collect(),
        network: network.as_ref().map(|(_, vm)| *vm),
    };
    let cgroup = match ZoneCgroup::create(&record.id, Limits::for_zone(vm.accel, vm.cpus, vm.memory_mib)) {
        Ok(cgroup) => Some(cgroup),
        Err(err @ CgroupError::Missing(_)) => {
            tracing::warn!(%err, "the zone's QEMU runs without that cgroup limit");
            None
        }
        Err(err) => return Err(err.into()),
    };
    let cgroup_dirs = cgroup.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default();
    dir.update(|r| r.cgroups = cgroup_dirs)?;
    let kvm = vm.accel == Accel::Kvm;
    let jail = Jail {
        root: dir.jail_dir(),
        uid: jail::vmm_uid(std::process::id()),
        groups: if kvm { vec![jail::kvm_group()?] } else { vec![] },
        files: vec![
            Bind { source: assets.kernel.clone(), target: vm.kernel.clone(), writable: false },
            Bind { source: initrd, target: vm.initrd.clone(), writable: false },
        ],
        kvm,
        cgroups: cgroup.as_ref().map(ZoneCgroup::procs_files).unwrap_or_default(),
        inherit: vm.inherited_fds(),
    };

    let started = Instant::now();
    let mut qemu = spawn_qemu(&vm, &jail, &dir.path.join("qemu.log"))?;
    // QEMU has its copies; passt must see the connection close when QEMU ends, and the tap go.
    drop((network, console_end, control_end, qmp_end, share_end, disks));
    let streams = QemuStreams { api, console, control, qmp };
    let result = drive_vm(dir, share, &mut qemu, streams, started).await;
    // Whatever happened, QEMU is gone and reaped before its cgroup goes (in `supervise`).
    let _ = qemu.start_kill();
    let _ = qemu.wait().await;
    result
}

/// The supervisor's ends of what QEMU talks over, and the API listener.
struct QemuStreams {
    api: UnixListener,
    console: UnixStream,
    control: UnixStream,
    qmp: UnixStream,
}

/// Run the started QEMU until it exits, and say how the zone ended.
async fn drive_vm(dir: &ZoneDir, share: &Share, qemu: &mut tokio::process::Child, streams: QemuStreams, started: Instant) -> Result<ZoneState, SupervisorError> {
    let QemuStreams { api, console, control, qmp } = streams;
    let qemu_log = dir.path.join("qemu.log");
    let qemu_id = qemu.id().and_then(ProcessId::of);
    dir.update(|r| r.qemu = qemu_id)?;

    // Copied from the start, so an early failure's console is in the log.
    let tail = ConsoleTail::default();
    let console_task = tokio::spawn(copy_console(console, dir.console_log(), tail.clone()));
    let (qmp_events_tx, qmp_events) = mpsc::channel(16);
    let connected = tokio::select! {
        qmp = Qmp::connect(qmp, qmp_events_tx) => qmp,
        () = tokio::time::sleep(CONNECT_TIMEOUT) => return Err(SupervisorError::ConnectTimeout(CONNECT_TIMEOUT)),
    };
    let mut qmp = match connected {
        Ok(qmp) => qmp,
        // QMP closes when QEMU exits early; its log says why.
        Err(err) => match tokio::time::timeout(DRAIN_TIMEOUT, qemu.wait()).await {
            Ok(status) => return Err(SupervisorError::EarlyExit(describe_exit(status.ok(), &qemu_log))),
            Err(_) => return Err(err.into()),
        },
    };
    qmp.execute(QmpCommand::QueryStatus).await?;

    let (read, write) = control.into_split();
    let (guest_tx, guest_rx) = mpsc::channel(CHANNEL_QUEUE);
    tokio::spawn(read_guest(read, guest_tx));
    let (to_guest, to_guest_rx) = mpsc::channel(CHANNEL_QUEUE);
    tokio::spawn(write_guest(write, to_guest_rx));

    let mut zone = Zone::new(dir, share, started, to_guest);
    let status = zone.serve(qemu, api, guest_rx, qmp_events, tail.clone()).await;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, console_task).await;
    let state = zone.outcome().final_state(status, &tail, &qemu_log);
    zone.announce_end(&state).await;
    Ok(state)
}

/// A disk of the zone, before it is opened.
struct DiskFile {
    id: String,
    path: PathBuf,
    read_only: bool,
    serial: String,
}

/// Open each disk for QEMU to inherit: read-only, and read-write too when writable.
fn open_disks(files: Vec<DiskFile>) -> Result<Vec<(Vec<OwnedFd>, Disk)>, SupervisorError> {
    let open = |path: &Path, write: bool| -> Result<OwnedFd, SupervisorError> {
        let file = std::fs::OpenOptions::new().read(true).write(write).open(path).map_err(io(format!("opening {}", path.display())))?;
        Ok(file.into())
    };
    files
        .into_iter()
        .map(|file| {
            let read = open(&file.path, false)?;
            let write = if file.read_only { None } else { Some(open(&file.path, true)?) };
            let disk = Disk { id: file.id, read_fd: read.as_raw_fd(), write_fd: write.as_ref().map(AsRawFd::as_raw_fd), serial: file.serial };
            Ok((std::iter::once(read).chain(write).collect(), disk))
        })
        .collect()
}

/// A fresh sparse scratch disk for the containers' writable layers, and the shared read-only
/// modules and tools disks. Images come later, through the share.
fn zone_disks(dir: &ZoneDir, config: &crate::state::ZoneConfig, assets: &Assets, tools: &[ToolFile]) -> Result<Vec<DiskFile>, SupervisorError> {
    let scratch = dir.scratch_disk();
    // Only root on the host reads it (QEMU gets a descriptor): it holds the containers' writes.
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
    let free = nix::sys::statvfs::statvfs(&dir.path).map_err(|err| SupervisorError::Io { what: "checking the state root's free space".into(), err: err.into() })?;
    let free_mib = free.blocks_available().saturating_mul(free.fragment_size()) >> 20;
    file.set_len(scratch_mib(config.scratch_mib, free_mib)? << 20).map_err(io("sizing the scratch disk"))?;
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "moat-scratch"])
        .arg(&scratch)
        .status()
        .map_err(io("running mkfs.ext4 (package e2fsprogs)"))?;
    if !status.success() {
        return Err(SupervisorError::Io { what: "formatting the scratch disk".into(), err: std::io::Error::other(status.to_string()) });
    }
    let modules = guest_disks::modules_disk(&assets.dir, &assets.modules_dir, &assets.kernel_release)?;
    let tools = guest_disks::tools_disk(&assets.dir, tools)?;
    Ok(vec![
        DiskFile { id: "scratch".into(), path: scratch, read_only: false, serial: layout::SCRATCH_SERIAL.into() },
        DiskFile { id: "modules".into(), path: modules, read_only: true, serial: layout::MODULES_SERIAL.into() },
        DiskFile { id: "tools".into(), path: tools, read_only: true, serial: layout::TOOLS_SERIAL.into() },
    ]
    .into_iter()
    .chain(config.extra_disks.iter().enumerate().map(|(n, path)| DiskFile { id: format!("extra{n}"), path: path.clone(), read_only: true, serial: format!("moat-extra-{n}") }))
    .collect())
}

/// Host room a zone's scratch disk leaves free, for the zone's logs and records.
const HOST_HEADROOM_MIB: u64 = 32;
/// The smallest scratch disk a zone boots with.
const MIN_SCRATCH_MIB: u64 = 64;

/// The scratch disk's size: what the zone asks, but no more than the host has free. The disk is
/// sparse, so a host that fills later still fails writes (as EIO, see [`crate::qemu`]); sizing
/// it to the room there is makes a lone zone fill its own ext4 first, and its containers see
/// ENOSPC, as on a full host disk.
fn scratch_mib(wanted: u32, free_mib: u64) -> Result<u64, SupervisorError> {
    let room = free_mib.saturating_sub(HOST_HEADROOM_MIB);
    if room < MIN_SCRATCH_MIB {
        return Err(SupervisorError::NoRoom { free_mib });
    }
    Ok(u64::from(wanted).min(room))
}

/// The absolute path of QEMU's binary: the jail has /usr but no PATH search of the host's.
fn qemu_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(QEMU_BINARY)).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(QEMU_BINARY))
}

fn spawn_qemu(vm: &VmConfig, jail: &Jail, log: &Path) -> Result<tokio::process::Child, SupervisorError> {
    let stderr = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let mut command = std::process::Command::new(qemu_binary());
    command.args(vm.args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    jail.apply(&mut command)?;
    // A zone never outlives its supervisor (set after the jail's change of uid, which clears it).
    crate::helper::die_with_parent(&mut command, None);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    // The spawning thread is not the runtime's: tokio reaps QEMU through the runtime it enters.
    let runtime = tokio::runtime::Handle::current();
    jail::spawn_in_own_pid_namespace(move || {
        let _entered = runtime.enter();
        command.spawn()
    })
    .map_err(SupervisorError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_disk_fits_in_the_hosts_free_space() {
        assert_eq!(scratch_mib(8192, 100_000).unwrap(), 8192, "plenty of room: what the zone asks");
        assert_eq!(scratch_mib(8192, 200).unwrap(), 200 - HOST_HEADROOM_MIB, "a nearly full host: what is left");
        assert!(matches!(scratch_mib(8192, 90), Err(SupervisorError::NoRoom { free_mib: 90 })));
        assert!(matches!(scratch_mib(8192, 0), Err(SupervisorError::NoRoom { free_mib: 0 })));
    }
}
