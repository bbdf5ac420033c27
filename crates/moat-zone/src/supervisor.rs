//! The per-zone supervisor: one host process that owns QEMU, the control channel, the console
//! log and the zone's record, and answers clients on the zone's API socket.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use moat_proto::layout;
use moat_proto::frame::{decode, split_frames};
use moat_proto::{encode, ExecRequest, ExitStatus as WorkloadExit, FrameDecoder, FrameError, GuestMessage, HostMessage, HostSession, Request, Response, SessionEvent, Stream, WORKLOAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::accel::Accel;
use crate::api::{ApiRequest, ApiResponse};
use crate::assets::{AssetError, Assets};
use crate::clients::{serve_client, ClientEvent, ClientId, Reply, Routes, CLIENT_QUEUE};
use crate::console::{copy_console, ConsoleTail};
use crate::guest_disks;
use crate::lifecycle::ZoneState;
use crate::qemu::{Disk, Sockets, VmConfig, QEMU_BINARY};
use crate::qmp::{Qmp, QmpCommand, QmpEvent};
use crate::state::{ProcessId, StateError, ZoneDir};

/// How long QEMU may take to connect its sockets after starting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the guest may take from QEMU's start to its hello.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the last console and channel bytes after QEMU exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Guest messages queued between the channel reader and the main loop.
const CHANNEL_QUEUE: usize = 64;
/// Most workload output kept in `workload.log`.
///
/// Threat: the workload writes as much as it likes; the host's disk must not pay for it.
pub const MAX_WORKLOAD_LOG: u64 = 64 * 1024 * 1024;
/// Why a client's stream request or attach found nothing to talk to.
const NO_WORKLOAD: &str = "the zone has no running workload";

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Assets(#[from] AssetError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("starting {QEMU_BINARY}: {0}")]
    Spawn(std::io::Error),
    #[error("QEMU did not connect its sockets within {0:?}")]
    ConnectTimeout(Duration),
    #[error("QEMU exited before the zone started ({0})")]
    EarlyExit(String),
    #[error("QMP: {0}")]
    Qmp(#[from] crate::qmp::QmpError),
    #[error(transparent)]
    Transition(#[from] crate::lifecycle::TransitionError),
    #[error("building a guest disk: {0}")]
    GuestDisk(#[from] crate::guest_disks::GuestDiskError),
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
    let record = dir.update(|record| {
        if let Ok(next) = record.state.transition(final_state.clone()) {
            record.state = next;
        }
        record.clone()
    })?;
    // `--rm`: the container's zone goes once the container has exited.
    if record.workload.as_ref().is_some_and(|w| w.auto_remove && w.exit.is_some()) {
        let _ = std::fs::remove_dir_all(&dir.path);
    }
    result.map(|_| ())
}

struct Listeners {
    api: UnixListener,
    console: UnixListener,
    control: UnixListener,
    qmp: UnixListener,
}

fn bind(path: PathBuf) -> Result<UnixListener, SupervisorError> {
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path).map_err(io(format!("binding {}", path.display())))
}

fn kernel_cmdline(id: &str, release: &str, accel: Accel, debug: bool) -> String {
    let mut cmdline = format!("console=ttyS0 quiet panic=-1 moat.zone={id} moat.kernel={release}");
    if accel == Accel::Tcg {
        if let Some(khz) = crate::accel::host_tsc_khz() {
            cmdline.push_str(&format!(" tsc_early_khz={khz}"));
        }
    }
    if debug {
        cmdline.push_str(" moat.debug=1");
    }
    cmdline
}

async fn run(dir: &ZoneDir, assets_dir: &Path) -> Result<ZoneState, SupervisorError> {
    let record = dir.read()?;
    let supervisor = ProcessId::of(std::process::id());
    dir.update(|r| r.supervisor = supervisor)?;

    let assets = Assets::locate(assets_dir)?;
    let initrd = assets.initramfs()?;
    let listeners = Listeners {
        api: bind(dir.api_socket())?,
        console: bind(dir.console_socket())?,
        control: bind(dir.control_socket())?,
        qmp: bind(dir.qmp_socket())?,
    };
    let vm = VmConfig {
        accel: record.config.accel,
        cpus: record.config.cpus,
        memory_mib: record.config.memory_mib,
        kernel: assets.kernel.clone(),
        initrd,
        kernel_cmdline: kernel_cmdline(&record.id, &assets.kernel_release, record.config.accel, record.config.debug),
        sockets: Sockets { console: dir.console_socket(), control: dir.control_socket(), qmp: dir.qmp_socket() },
        disks: workload_disks(dir, &record.config, &assets)?,
    };

    let started = Instant::now();
    let mut qemu = spawn_qemu(&vm, &dir.path.join("qemu.log"))?;
    let qemu_id = qemu.id().and_then(ProcessId::of);
    dir.update(|r| r.qemu = qemu_id)?;

    let accepted = tokio::select! {
        accepted = accept_qemu(&listeners) => accepted?,
        status = qemu.wait() => return Err(SupervisorError::EarlyExit(describe_exit(status.ok(), &dir.path.join("qemu.log")))),
        () = tokio::time::sleep(CONNECT_TIMEOUT) => {
            let _ = qemu.start_kill();
            return Err(SupervisorError::ConnectTimeout(CONNECT_TIMEOUT));
        }
    };
    let (console, control, qmp) = accepted;

    let tail = ConsoleTail::default();
    let console_task = tokio::spawn(copy_console(console, dir.console_log(), tail.clone()));
    let (qmp_events_tx, qmp_events) = mpsc::channel(16);
    let mut qmp = Qmp::connect(qmp, qmp_events_tx).await?;
    qmp.execute(QmpCommand::QueryStatus).await?;

    let (read, write) = control.into_split();
    let (guest_tx, guest_rx) = mpsc::channel(CHANNEL_QUEUE);
    tokio::spawn(read_guest(read, guest_tx));
    let (to_guest, to_guest_rx) = mpsc::channel(CHANNEL_QUEUE);
    tokio::spawn(write_guest(write, to_guest_rx));

    let mut zone = Zone {
        dir,
        started,
        session: HostSession::new(),
        waiting: HashMap::new(),
        to_guest,
        outcome: Outcome::default(),
        deadline: Some(started + BOOT_TIMEOUT),
        routes: Routes::default(),
        workload_log: WorkloadLog::open(&dir.workload_log())?,
    };
    let status = zone.serve(&mut qemu, listeners.api, guest_rx, qmp_events).await;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, console_task).await;
    Ok(zone.outcome.final_state(status, &tail, &dir.path.join("qemu.log")))
}

/// The image disk (read-only), a fresh sparse scratch disk for the writable layer, and the
/// shared read-only modules and tools disks.
fn workload_disks(dir: &ZoneDir, config: &crate::state::ZoneConfig, assets: &Assets) -> Result<Vec<Disk>, SupervisorError> {
    let Some(rootfs) = &config.rootfs else { return Ok(Vec::new()) };
    let scratch = dir.scratch_disk();
    let file = std::fs::File::create(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
    file.set_len(u64::from(config.scratch_mib) << 20).map_err(io("sizing the scratch disk"))?;
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "moat-scratch"])
        .arg(&scratch)
        .status()
        .map_err(io("running mkfs.ext4 (package e2fsprogs)"))?;
    if !status.success() {
        return Err(SupervisorError::Io { what: "formatting the scratch disk".into(), err: std::io::Error::other(status.to_string()) });
    }
    let modules = guest_disks::modules_disk(&assets.dir, &assets.modules_dir, &assets.kernel_release)?;
    let tools = guest_disks::tools_disk(&assets.dir, &assets.tools()?)?;
    Ok(vec![
        Disk { id: "rootfs".into(), path: rootfs.clone(), read_only: true, serial: layout::ROOTFS_SERIAL.into() },
        Disk { id: "scratch".into(), path: scratch, read_only: false, serial: layout::SCRATCH_SERIAL.into() },
        Disk { id: "modules".into(), path: modules, read_only: true, serial: layout::MODULES_SERIAL.into() },
        Disk { id: "tools".into(), path: tools, read_only: true, serial: layout::TOOLS_SERIAL.into() },
    ])
}

fn spawn_qemu(vm: &VmConfig, log: &Path) -> Result<tokio::process::Child, SupervisorError> {
    let stderr = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let mut command = std::process::Command::new(QEMU_BINARY);
    command.args(vm.args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it makes the
    // kernel kill QEMU if the supervisor dies, so a zone never outlives its supervisor.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    tokio::process::Command::from(command).kill_on_drop(true).spawn().map_err(SupervisorError::Spawn)
}

async fn accept_qemu(l: &Listeners) -> Result<(UnixStream, UnixStream, UnixStream), SupervisorError> {
    let (console, control, qmp) = tokio::join!(l.console.accept(), l.control.accept(), l.qmp.accept());
    let accepted = |r: std::io::Result<(UnixStream, _)>| r.map(|(stream, _)| stream).map_err(io("accepting QEMU's connection"));
    Ok((accepted(console)?, accepted(control)?, accepted(qmp)?))
}

/// Decode guest frames until EOF or the first bad byte; the main loop decides what follows.
async fn read_guest(mut read: OwnedReadHalf, out: mpsc::Sender<Result<GuestMessage, FrameError>>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let frames = match split_frames(&mut decoder, &buf[..n]) {
            Ok(frames) => frames,
            Err(err) => {
                let _ = out.send(Err(err)).await;
                return;
            }
        };
        for frame in frames {
            let msg = decode::<GuestMessage>(&frame);
            let failed = msg.is_err();
            if out.send(msg).await.is_err() || failed {
                return;
            }
        }
    }
}

async fn write_guest(mut write: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        if write.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// What happened, collected while the zone runs and turned into its final state at the end.
#[derive(Default)]
struct Outcome {
    failure: Option<String>,
    stop_requested: bool,
    /// Why the zone was stopped, when not by a client.
    stop_reason: Option<String>,
    fatal: Option<String>,
    shutdown_reason: Option<String>,
    panicked: bool,
}

impl Outcome {
    fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }

    fn final_state(&self, status: Option<ExitStatus>, tail: &ConsoleTail, qemu_log: &Path) -> ZoneState {
        let panic = tail.panic_line();
        if let Some(reason) = &self.failure {
            return ZoneState::Failed { reason: reason.clone() };
        }
        if self.panicked || self.shutdown_reason.as_deref() == Some("guest-reset") || panic.is_some() {
            let what = panic.unwrap_or_else(|| "the guest reset".into());
            return ZoneState::Failed { reason: format!("guest kernel panic: {what}") };
        }
        if let Some(message) = &self.fatal {
            return ZoneState::Failed { reason: format!("moat-init failed: {message}") };
        }
        match status {
            Some(s) if s.success() && self.stop_requested => {
                ZoneState::Stopped { reason: self.stop_reason.clone().unwrap_or_else(|| "stopped on request".into()) }
            }
            Some(s) if s.success() && self.shutdown_reason.as_deref() == Some("guest-shutdown") => {
                ZoneState::Stopped { reason: "the guest powered off".into() }
            }
            other => ZoneState::Failed { reason: describe_exit(other, qemu_log) },
        }
    }
}

fn describe_exit(status: Option<ExitStatus>, qemu_log: &Path) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last_error = std::fs::read_to_string(qemu_log)
        .ok()
        .and_then(|log| log.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())))
        .unwrap_or_default();
    match status {
        Some(s) if s.signal().is_some() => format!("QEMU was killed by signal {}{last_error}", s.signal().unwrap_or_default()),
        Some(s) => format!("QEMU exited with status {}{last_error}", s.code().unwrap_or(-1)),
        None => format!("QEMU's exit status is unknown{last_error}"),
    }
}

struct Waiter {
    reply: Reply,
    sent: Instant,
}

struct Zone<'a> {
    dir: &'a ZoneDir,
    started: Instant,
    session: HostSession,
    waiting: HashMap<u64, Waiter>,
    to_guest: mpsc::Sender<Vec<u8>>,
    outcome: Outcome,
    /// Boot timeout before the hello; stop timeout after a stop request.
    deadline: Option<Instant>,
    /// Which clients hear which process, and which process each client talks to.
    routes: Routes,
    workload_log: WorkloadLog,
}

impl Zone<'_> {
    async fn serve(
        &mut self,
        qemu: &mut tokio::process::Child,
        api: UnixListener,
        mut guest: mpsc::Receiver<Result<GuestMessage, FrameError>>,
        mut qmp_events: mpsc::Receiver<QmpEvent>,
    ) -> Option<ExitStatus> {
        let (api_tx, mut api_rx) = mpsc::channel::<ClientEvent>(CLIENT_QUEUE);
        let mut clients: ClientId = 0;
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut guest_open = true;
        loop {
            let deadline = self.deadline.map(tokio::time::Instant::from_std);
            tokio::select! {
                status = qemu.wait() => {
                    // Collect what the guest said last (a fatal report, say) before deciding.
                    while let Ok(Some(msg)) = tokio::time::timeout(DRAIN_TIMEOUT, guest.recv()).await {
                        let _ = self.on_guest(msg).await;
                    }
                    while let Ok(event) = qmp_events.try_recv() {
                        self.on_qmp(event);
                    }
                    return status.ok();
                }
                msg = guest.recv(), if guest_open => match msg {
                    Some(msg) => if let Err(reason) = self.on_guest(msg).await {
                        tracing::error!(%reason, "ending the zone");
                        let _ = qemu.start_kill();
                    },
                    None => guest_open = false,
                },
                Ok((stream, _)) = api.accept() => {
                    clients += 1;
                    tokio::spawn(serve_client(stream, clients, api_tx.clone()));
                }
                Some(event) = api_rx.recv() => match event {
                    ClientEvent::Request { client, request, reply } => self.on_api(request, client, reply).await,
                    ClientEvent::Closed(client) => self.routes.forget(client),
                },
                Some(event) = qmp_events.recv() => self.on_qmp(event),
                () = next_signal(&mut terminate) => self.stop(Duration::from_secs(10)),
                () = sleep_until(deadline) => {
                    let reason = if self.session.is_ready() { "the guest did not power off in time; QEMU was killed" } else { "the guest did not finish booting in time (see the console log)" };
                    self.outcome.fail(reason.to_string());
                    self.deadline = None;
                    let _ = qemu.start_kill();
                }
            }
        }
    }

    /// Handle one guest message; an error means the session is over.
    async fn on_guest(&mut self, msg: Result<GuestMessage, FrameError>) -> Result<(), String> {
        let event = msg
            .map_err(|e| format!("protocol error on the control channel: {e}"))
            .and_then(|m| self.session.accept(m).map_err(|e| format!("protocol error on the control channel: {e}")));
        match event {
            Err(reason) => {
                self.outcome.fail(reason.clone());
                for (_, waiter) in self.waiting.drain() {
                    let _ = waiter.reply.send(ApiResponse::Error { message: reason.clone() }).await;
                }
                Err(reason)
            }
            Ok(SessionEvent::Ready { kernel_release, .. }) => {
                let boot_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                if !self.outcome.stop_requested {
                    self.deadline = None;
                }
                let updated = self.dir.update(|r| {
                    r.kernel_release = Some(kernel_release);
                    r.boot_ms = Some(boot_ms);
                    if let Ok(next) = r.state.transition(ZoneState::Running) {
                        r.state = next;
                    }
                });
                updated.map_err(|e| e.to_string())
            }
            Ok(SessionEvent::Answered { id, request, response }) => {
                let Some(waiter) = self.waiting.remove(&id) else { return Ok(()) };
                let done = response == Response::Done;
                let reply = match response {
                    Response::Pong => ApiResponse::Pong { round_trip_us: u64::try_from(waiter.sent.elapsed().as_micros()).unwrap_or(u64::MAX) },
                    Response::Done => ApiResponse::Done,
                    Response::Failed { message } => ApiResponse::Error { message },
                };
                match request {
                    Request::Run(run) if done => {
                        let now = unix_now();
                        let _ = self.dir.update(|r| {
                            if let Some(w) = r.workload.as_mut() {
                                w.started_unix = Some(now);
                            }
                        });
                        if let Err(err) = crate::state::write_atomic(&self.dir.spec_file(), run.spec_json.as_bytes()) {
                            tracing::warn!(%err, "saving the container's spec; exec will not work");
                        }
                        self.routes.listen(WORKLOAD, waiter.reply.clone());
                    }
                    Request::Exec { process, .. } if done => self.routes.listen(process, waiter.reply.clone()),
                    _ => {}
                }
                let _ = waiter.reply.send(reply).await;
                Ok(())
            }
            Ok(SessionEvent::Fatal { message }) => {
                self.outcome.fatal = Some(message);
                Ok(())
            }
            Ok(SessionEvent::Output { process, stream, data }) => {
                if process == WORKLOAD {
                    self.workload_log.append(stream, &data);
                }
                self.routes.send(process, ApiResponse::Output { stream, data }).await;
                Ok(())
            }
            Ok(SessionEvent::Exited { process, status }) if process != WORKLOAD => {
                self.routes.send(process, ApiResponse::Exited { status }).await;
                self.routes.ended(process);
                Ok(())
            }
            Ok(SessionEvent::Exited { status, .. }) => {
                let _ = self.dir.update(|r| {
                    if let Some(w) = r.workload.as_mut() {
                        w.exit = Some(status);
                    }
                });
                self.routes.send(WORKLOAD, ApiResponse::Exited { status }).await;
                self.routes.ended(WORKLOAD);
                self.outcome.stop_reason = Some(format!("the workload exited ({})", describe_status(status)));
                self.stop(Duration::from_secs(10));
                Ok(())
            }
        }
    }

    fn on_qmp(&mut self, event: QmpEvent) {
        match event {
            QmpEvent::Shutdown { reason } => self.outcome.shutdown_reason = Some(reason),
            QmpEvent::GuestPanicked => self.outcome.panicked = true,
        }
    }

    async fn on_api(&mut self, request: ApiRequest, client: ClientId, reply: Reply) {
        match request {
            ApiRequest::Ping => self.send_request(Request::Ping, reply).await,
            ApiRequest::Debug(debug) => self.send_request(Request::Debug(debug), reply).await,
            ApiRequest::Run(run) => self.send_request(Request::Run(run), reply).await,
            ApiRequest::Exec(exec) => self.exec(exec, client, reply).await,
            ApiRequest::Stop { timeout_secs } => {
                self.stop(Duration::from_secs(timeout_secs));
                let _ = reply.send(ApiResponse::Done).await;
            }
            ApiRequest::Attach => {
                if self.session.is_running(WORKLOAD) {
                    self.routes.listen(WORKLOAD, reply.clone());
                    let _ = reply.send(ApiResponse::Done).await;
                } else {
                    let _ = reply.send(ApiResponse::Error { message: NO_WORKLOAD.into() }).await;
                }
            }
            ApiRequest::Stdin { data } => {
                let process = self.routes.target(client);
                self.notify(HostMessage::Stdin { process, data }, process, &reply).await;
            }
            ApiRequest::Signal { signal } => {
                let process = self.routes.target(client);
                self.notify(HostMessage::Signal { process, signal }, process, &reply).await;
            }
            ApiRequest::Resize { rows, cols } => {
                let process = self.routes.target(client);
                self.notify(HostMessage::Resize { process, rows, cols }, process, &reply).await;
            }
        }
    }

    /// Start a process in the running container under a fresh number. The client talks to it
    /// from now on (bound before the client can close, so its close unbinds it), and hears it
    /// once the guest confirms the start.
    async fn exec(&mut self, exec: Box<ExecRequest>, client: ClientId, reply: Reply) {
        if !self.session.is_running(WORKLOAD) {
            let _ = reply.send(ApiResponse::Error { message: "the container is not running".into() }).await;
            return;
        }
        let Some(process) = self.routes.next_exec() else {
            let _ = reply.send(ApiResponse::Error { message: "this zone has used every exec process number".into() }).await;
            return;
        };
        self.routes.bind(client, process);
        self.send_request(Request::Exec { process, exec }, reply).await;
    }

    /// Pass a stream message to `process`; only errors are answered.
    async fn notify(&mut self, msg: HostMessage, process: u32, reply: &Reply) {
        if !self.session.is_running(process) {
            let message = if process == WORKLOAD { NO_WORKLOAD.to_string() } else { format!("exec'd process {process} is not running") };
            let _ = reply.send(ApiResponse::Error { message }).await;
            return;
        }
        if let Ok(frame) = encode(&msg) {
            if self.to_guest.send(frame).await.is_err() {
                let _ = reply.send(ApiResponse::Error { message: "the zone's channel is closed".into() }).await;
            }
        }
    }

    fn stop(&mut self, grace: Duration) {
        if self.outcome.stop_requested {
            return;
        }
        self.outcome.stop_requested = true;
        let _ = self.dir.update(|r| {
            if let Ok(next) = r.state.transition(ZoneState::Stopping) {
                r.state = next;
            }
        });
        self.deadline = Some(Instant::now() + grace);
        if self.session.is_ready() {
            if let Ok((_, msg)) = self.session.request(Request::Shutdown) {
                if let Ok(frame) = encode(&msg) {
                    let _ = self.to_guest.try_send(frame);
                }
            }
        }
    }

    async fn send_request(&mut self, request: Request, reply: Reply) {
        if !self.session.is_ready() {
            let _ = reply.send(ApiResponse::Error { message: "the zone is not running yet".into() }).await;
            return;
        }
        let sent = self.session.request(request).map_err(|e| e.to_string()).and_then(|(id, msg)| {
            let frame = encode(&msg).map_err(|e| e.to_string())?;
            self.to_guest.try_send(frame).map_err(|_| {
                self.session.forget(id);
                "the guest is not reading its control channel".to_string()
            })?;
            Ok(id)
        });
        match sent {
            Ok(id) => {
                self.waiting.insert(id, Waiter { reply, sent: Instant::now() });
            }
            Err(message) => {
                let _ = reply.send(ApiResponse::Error { message }).await;
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn describe_status(status: WorkloadExit) -> String {
    match status {
        WorkloadExit::Code { code } => format!("status {code}"),
        WorkloadExit::Signal { signal } => format!("signal {signal}"),
        WorkloadExit::OomKilled => "killed by the OOM killer".into(),
    }
}

/// `workload.log`: one JSON line per output chunk, like Docker's json-file driver, capped.
struct WorkloadLog {
    file: std::fs::File,
    written: u64,
}

impl WorkloadLog {
    fn open(path: &Path) -> Result<Self, SupervisorError> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(format!("opening {}", path.display())))?;
        Ok(Self { file, written: 0 })
    }

    fn append(&mut self, stream: Stream, data: &[u8]) {
        use std::io::Write;
        if self.written >= MAX_WORKLOAD_LOG {
            return;
        }
        let line = crate::logs::LogLine { stream, data: data.to_vec() };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            self.written += json.len() as u64;
            let _ = self.file.write_all(&json);
        }
    }
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(signal) = signal {
        if signal.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
