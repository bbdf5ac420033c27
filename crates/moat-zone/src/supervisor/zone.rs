//! The running zone: one loop that answers API clients, relays between them and the guest's
//! init, follows QEMU's QMP events, and ends when QEMU exits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use moat_proto::{encode, ExecRequest, FailureKind, FrameError, GuestMessage, HostMessage, HostSession, Request, Response, SessionEvent};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::outcome::{describe_status, Outcome};
use super::{BOOT_TIMEOUT, DRAIN_TIMEOUT};
use crate::api::{self, ApiRequest, ApiResponse, CreateContainer};
use crate::console::ConsoleTail;
use crate::events::Event;
use crate::clients::{serve_client, ClientEvent, ClientId, Reply, Routes, CLIENT_QUEUE};
use crate::lifecycle::ZoneState;
use crate::logs::WorkloadLog;
use crate::qmp::QmpEvent;
use crate::share::{Share, ShareError};
use crate::staging;
use crate::state::{unix_now, ContainerRecord, ZoneDir};

/// How long QEMU may take to exit by itself after a guest panic (pvpanic's action, or the
/// kernel's triple-fault reboot, normally ends it within milliseconds).
const PANIC_GRACE: Duration = Duration::from_millis(1000);

struct Waiter {
    reply: Reply,
    sent: Instant,
    /// The client that asked, for requests that bind it to a process.
    client: ClientId,
}

fn error(kind: FailureKind, message: impl Into<String>) -> ApiResponse {
    ApiResponse::Error { kind, message: message.into() }
}

pub struct Zone<'a> {
    dir: &'a ZoneDir,
    share: &'a Share,
    started: Instant,
    session: HostSession,
    waiting: HashMap<u64, Waiter>,
    to_guest: mpsc::Sender<Vec<u8>>,
    outcome: Outcome,
    /// Boot timeout before the hello; stop timeout after a stop request.
    deadline: Option<Instant>,
    /// When QEMU is killed after a guest panic.
    panic_deadline: Option<Instant>,
    /// Which clients hear which process, and which process each client talks to.
    routes: Routes,
    /// The log of each container's own process, by its number.
    logs: BTreeMap<u32, WorkloadLog>,
    /// Images on the share, by their name there: one exposure serves every container of it.
    images: HashSet<String>,
    /// Each container's volumes on the share, by their names there.
    volumes: HashMap<String, Vec<String>>,
    /// Copies in flight, by their names on the share, with a copy out's staging directory.
    copies: HashMap<String, Option<std::path::PathBuf>>,
    /// The number of the last copy: each gets a fresh name on the share.
    last_copy: u64,
}

impl<'a> Zone<'a> {
    pub fn new(dir: &'a ZoneDir, share: &'a Share, started: Instant, to_guest: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            dir,
            share,
            started,
            session: HostSession::new(),
            waiting: HashMap::new(),
            to_guest,
            outcome: Outcome::default(),
            deadline: Some(started + BOOT_TIMEOUT),
            panic_deadline: None,
            routes: Routes::default(),
            logs: BTreeMap::new(),
            images: HashSet::new(),
            volumes: HashMap::new(),
            copies: HashMap::new(),
            last_copy: 0,
        }
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Tell every attached client why the zone ended, while it can still be told: an `--rm`
    /// zone's record goes with the zone.
    pub async fn announce_end(&mut self, state: &ZoneState) {
        if let Some(reason) = state.reason() {
            self.routes.announce(ApiResponse::ZoneEnded { reason: reason.to_string() }, DRAIN_TIMEOUT).await;
        }
    }

    pub async fn serve(
        &mut self,
        qemu: &mut tokio::process::Child,
        api: UnixListener,
        mut guest: mpsc::Receiver<Result<GuestMessage, FrameError>>,
        mut qmp_events: mpsc::Receiver<QmpEvent>,
        console: ConsoleTail,
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
                () = console.panicked() => self.on_panic(),
                () = sleep_until(self.panic_deadline.map(tokio::time::Instant::from_std)) => {
                    // The guest is dead; whatever QEMU still does is no progress.
                    self.panic_deadline = None;
                    let _ = qemu.start_kill();
                }
                () = next_signal(&mut terminate) => self.stop(Duration::from_secs(10)),
                () = sleep_until(deadline) => {
                    if !self.outcome.guest_synced {
                        let reason = if self.session.is_ready() { "the guest did not power off in time; QEMU was killed" } else { "the guest did not finish booting in time (see the console log)" };
                        self.outcome.fail(reason.to_string());
                    }
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
                    let _ = waiter.reply.send(error(FailureKind::ZoneGone, reason.clone())).await;
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
            Ok(SessionEvent::Answered { request: Request::Shutdown, response: Response::Done, .. }) if self.outcome.stop_requested => {
                // Synced: nothing is left to lose, and the kernel's power-off would take a while
                // under TCG. QEMU is killed at once, by the deadline branch of `serve`.
                self.outcome.guest_synced = true;
                self.deadline = Some(Instant::now());
                Ok(())
            }
            Ok(SessionEvent::Answered { id, request, response }) => {
                let Some(waiter) = self.waiting.remove(&id) else { return Ok(()) };
                self.answered(request, response, waiter).await;
                Ok(())
            }
            Ok(SessionEvent::Fatal { message }) => {
                self.outcome.fatal = Some(message);
                Ok(())
            }
            Ok(SessionEvent::Output { process, stream, data }) => {
                if let Some(log) = self.logs.get_mut(&process) {
                    log.append(stream, &data);
                }
                self.routes.send(process, ApiResponse::Output { stream, data }).await;
                Ok(())
            }
            Ok(SessionEvent::Exited { process, status }) => {
                self.routes.send(process, ApiResponse::Exited { status }).await;
                self.routes.ended(process);
                if self.logs.remove(&process).is_some() {
                    self.container_exited(process, status).await;
                }
                Ok(())
            }
        }
    }

    /// A container's own process ended: record it; a zone of one container powers off, and a
    /// pod's `--rm` container is removed.
    async fn container_exited(&mut self, process: u32, status: moat_proto::ExitStatus) {
        let Some(container) = self.routes.container_of(process) else { return };
        let updated = self.dir.update(|r| {
            if let Some(c) = r.container_mut(&container) {
                c.exit = Some(status);
            }
            (r.config.pod, r.container(&container).cloned())
        });
        let Ok((pod, exited)) = updated else { return };
        if let Some(exited) = &exited {
            self.dir.journal().record(Event::exited(exited, status));
        }
        match (pod, exited.is_some_and(|c| c.auto_remove)) {
            (false, _) => {
                self.outcome.stop_reason = Some(format!("the container exited ({})", describe_status(status)));
                self.stop(Duration::from_secs(10));
            }
            (true, true) => {
                // The supervisor's own request: no client waits for the answer.
                let (reply, _) = mpsc::channel(1);
                self.remove_container(container, false, reply, 0).await;
            }
            _ => {}
        }
    }

    /// What the guest's answer to `request` means here, then the answer to the client.
    async fn answered(&mut self, request: Request, response: Response, waiter: Waiter) {
        let done = response == Response::Done;
        let mut reply = match response {
            Response::Pong => ApiResponse::Pong { round_trip_us: u64::try_from(waiter.sent.elapsed().as_micros()).unwrap_or(u64::MAX) },
            Response::Done => ApiResponse::Done,
            Response::Failed { kind, message } => ApiResponse::Error { kind, message },
            Response::Probed { read, write } => ApiResponse::Probed { read, write },
            Response::Stats(stats) => ApiResponse::Stats(stats),
            Response::Processes(list) => ApiResponse::Processes(list),
        };
        match request {
            Request::CreateContainer(create) if done => {
                match WorkloadLog::open(&self.dir.container_log(&create.container)) {
                    Ok(log) => {
                        self.logs.insert(create.process, log);
                    }
                    Err(err) => tracing::warn!(%err, "opening the container's log"),
                }
                if let Err(err) = crate::state::write_atomic(&self.dir.container_spec(&create.container), create.spec_json.as_bytes()) {
                    tracing::warn!(%err, "saving the container's spec; exec will not work");
                }
                if let Some(created) = self.dir.read().ok().and_then(|r| r.container(&create.container).cloned()) {
                    self.dir.journal().record(Event::created(&created));
                }
                if create.start {
                    self.started(&create.container, &waiter);
                }
            }
            Request::CreateContainer(create) => {
                self.forget_container(&create.container);
            }
            Request::StartContainer { container } if done => self.started(&container, &waiter),
            Request::Exec { process, .. } if done => self.routes.listen(process, waiter.reply.clone()),
            Request::RemoveContainer { container, .. } if done => self.remove_record(&container),
            Request::CopyIn(copy) => {
                self.end_copy(&copy.from, false);
            }
            Request::CopyOut(copy) => {
                if let Some(dir) = self.end_copy(&copy.to, done) {
                    reply = ApiResponse::Staged { dir };
                }
            }
            _ => {}
        }
        if let Err(unsent) = waiter.reply.send(reply).await {
            // The client is gone: nobody will take what was staged for it.
            if let ApiResponse::Staged { dir } = unsent.0 {
                let _ = staging::remove(&dir);
            }
        }
    }

    /// The guest started `container`'s process: record it, and let the client that asked hear
    /// its output and exit and send it stdin and signals.
    fn started(&mut self, container: &str, waiter: &Waiter) {
        let now = unix_now();
        let started = self.dir.update(|r| {
            r.container_mut(container).map(|c| {
                c.started_unix = Some(now);
                c.clone()
            })
        });
        // Recorded here, before the guest's next message: the process may exit at once.
        if let Ok(Some(started)) = started {
            self.dir.journal().record(Event::started(&started));
        }
        if let Some(process) = self.session.container_process(container) {
            self.routes.bind(waiter.client, process);
            self.routes.listen(process, waiter.reply.clone());
        }
    }

    /// Drop a removed container's record, files and volumes, and journal its removal.
    fn remove_record(&mut self, container: &str) {
        if let Some(removed) = self.forget_container(container) {
            self.dir.journal().record(Event::destroyed(&removed));
        }
    }

    /// Drop a container's record, files and volumes: it is gone from the zone, or never got
    /// there. Returns the record it had.
    fn forget_container(&mut self, container: &str) -> Option<ContainerRecord> {
        for name in self.volumes.remove(container).unwrap_or_default() {
            if let Err(err) = self.share.withdraw(&name) {
                tracing::warn!(%err, "withdrawing a volume from the share");
            }
        }
        let removed = self.dir.update(|r| {
            let index = r.containers.iter().position(|c| c.id == container)?;
            Some(r.containers.remove(index))
        });
        let _ = std::fs::remove_dir_all(self.dir.container_dir(container));
        if let Some(process) = self.routes.forget_container(container) {
            self.logs.remove(&process);
        }
        removed.ok().flatten()
    }

    fn on_qmp(&mut self, event: QmpEvent) {
        tracing::info!(?event, "QMP event");
        match event {
            QmpEvent::Shutdown { reason } => self.outcome.shutdown_reason = Some(reason),
            QmpEvent::GuestPanicked => self.on_panic(),
        }
    }

    /// The guest kernel panicked (pvpanic said so, or the console shows it): the zone has
    /// failed, and QEMU gets [`PANIC_GRACE`] to exit on its own before it is killed.
    fn on_panic(&mut self) {
        self.outcome.panicked = true;
        if self.panic_deadline.is_none() {
            self.panic_deadline = Some(Instant::now() + PANIC_GRACE);
        }
    }

    async fn on_api(&mut self, request: ApiRequest, client: ClientId, reply: Reply) {
        match request {
            ApiRequest::Ping => self.send_request(Request::Ping, reply, client).await,
            ApiRequest::Debug(debug) => self.send_request(Request::Debug(debug), reply, client).await,
            ApiRequest::CreateContainer(create) => self.create_container(*create, reply, client).await,
            ApiRequest::StartContainer { container } => self.send_request(Request::StartContainer { container }, reply, client).await,
            ApiRequest::Attach { container } => match self.running_process(&container) {
                Ok(process) => {
                    self.routes.bind(client, process);
                    self.routes.listen(process, reply.clone());
                    let _ = reply.send(ApiResponse::Done).await;
                }
                Err(err) => {
                    let _ = reply.send(err).await;
                }
            },
            ApiRequest::Exec { container, exec } => self.exec(container, exec, client, reply).await,
            ApiRequest::Kill { container, signal } => {
                let sent = match self.running_process(&container) {
                    Ok(process) => self.notify(HostMessage::Signal { process, signal }, process).await,
                    Err(err) => Err(err),
                };
                if let (Ok(()), Ok(zone)) = (&sent, self.dir.read()) {
                    if let Some(killed) = zone.container(&container) {
                        self.dir.journal().record(Event::killed(killed, signal));
                    }
                }
                let _ = reply.send(sent.err().unwrap_or(ApiResponse::Done)).await;
            }
            ApiRequest::RemoveContainer { container, force } => self.remove_container(container, force, reply, client).await,
            ApiRequest::CopyIn(copy) => self.copy_in(*copy, reply, client).await,
            ApiRequest::UpdateHosts { container, hosts } => self.send_request(Request::UpdateHosts { container, hosts }, reply, client).await,
            ApiRequest::Prepare { seccomp_json } => self.send_request(Request::Prepare { seccomp_json }, reply, client).await,
            ApiRequest::Stats { container } => self.send_request(Request::Stats { container }, reply, client).await,
            ApiRequest::Processes { container } => self.send_request(Request::Processes { container }, reply, client).await,
            ApiRequest::CopyOut { container, from } => self.copy_out(container, from, reply, client).await,
            ApiRequest::Stop { timeout_secs } => {
                self.stop(Duration::from_secs(timeout_secs));
                let _ = reply.send(ApiResponse::Done).await;
            }
            ApiRequest::Stdin { data } => self.pass_to_bound(client, &reply, |process| HostMessage::Stdin { process, data }).await,
            ApiRequest::Signal { signal } => self.pass_to_bound(client, &reply, |process| HostMessage::Signal { process, signal }).await,
            ApiRequest::Resize { rows, cols } => self.pass_to_bound(client, &reply, |process| HostMessage::Resize { process, rows, cols }).await,
        }
    }

    /// The number of `container`'s process while it runs, or the error to answer.
    fn running_process(&self, container: &str) -> Result<u32, ApiResponse> {
        match self.session.container_process(container) {
            Some(process) if self.session.is_running(process) => Ok(process),
            Some(_) => Err(error(FailureKind::WrongState, format!("container {container} is not running"))),
            None => Err(error(FailureKind::NoSuchContainer, format!("no container {container} in this zone"))),
        }
    }

    /// Share the container's image with the zone, then ask init to create the container with a
    /// fresh number for its process.
    async fn create_container(&mut self, create: CreateContainer, reply: Reply, client: ClientId) {
        let Some(process) = self.routes.next_process() else {
            let _ = reply.send(error(FailureKind::Limit, "this zone has used every process number")).await;
            return;
        };
        let image = image_share_name(&create.image);
        if !self.images.contains(&image) {
            if let Err(err) = self.share.expose(&create.image, &image, true) {
                self.forget_container(&create.container);
                let _ = reply.send(error(FailureKind::Internal, format!("sharing the image with the zone: {err}"))).await;
                return;
            }
            self.images.insert(image.clone());
        }
        for volume in &create.volumes {
            if let Err(err) = self.share.expose(&volume.source, &volume.name, volume.read_only) {
                self.forget_container(&create.container);
                let _ = reply.send(error(FailureKind::BadRequest, format!("sharing {} with the zone: {err}", volume.source.display()))).await;
                return;
            }
            self.volumes.entry(create.container.clone()).or_default().push(volume.name.clone());
        }
        self.routes.own(process, create.container.clone());
        let request = moat_proto::CreateContainer { container: create.container, process, spec_json: create.spec_json, image, tty: create.tty, stdin: create.stdin, name_files: create.name_files, start: create.start };
        self.send_request(Request::CreateContainer(Box::new(request)), reply, client).await;
    }

    /// Expose the host's source read-only under a fresh name, and ask init to copy it into the
    /// container (created, running or stopped).
    async fn copy_in(&mut self, copy: api::CopyIn, reply: Reply, client: ClientId) {
        let name = match self.start_copy(&copy.container) {
            Ok(number) => copy_share_name(number),
            Err(err) => {
                let _ = reply.send(err).await;
                return;
            }
        };
        if let Err(err) = self.share.expose(&copy.source, &name, true) {
            let kind = match &err {
                ShareError::Unsupported { .. } => FailureKind::BadRequest,
                ShareError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => FailureKind::NotFound,
                _ => FailureKind::Internal,
            };
            let _ = reply.send(error(kind, format!("sharing {} with the zone: {err}", copy.source.display()))).await;
            return;
        }
        self.copies.insert(name.clone(), None);
        let request = moat_proto::CopyIn { container: copy.container, from: name, name: copy.name, to: copy.to, contents: copy.contents };
        self.send_request(Request::CopyIn(Box::new(request)), reply, client).await;
    }

    /// Make a fresh staging directory, expose it writable under a fresh name, and ask init to
    /// copy the container's path into it. The client hears where it is staged.
    async fn copy_out(&mut self, container: String, from: moat_proto::CopySource, reply: Reply, client: ClientId) {
        let (name, dir) = match self.start_copy(&container) {
            Ok(number) => (copy_share_name(number), staging::path(self.dir, number)),
            Err(err) => {
                let _ = reply.send(err).await;
                return;
            }
        };
        let staged = staging::create(&dir).map_err(|e| e.to_string()).and_then(|()| {
            self.share.expose(&dir, &name, false).map_err(|e| {
                let _ = staging::remove(&dir);
                e.to_string()
            })
        });
        if let Err(err) = staged {
            let _ = reply.send(error(FailureKind::Internal, format!("staging a copy out of the zone: {err}"))).await;
            return;
        }
        self.copies.insert(name.clone(), Some(dir));
        self.send_request(Request::CopyOut(Box::new(moat_proto::CopyOut { container, from, to: name })), reply, client).await;
    }

    /// A fresh number for a copy involving `container`, which the zone must hold.
    fn start_copy(&mut self, container: &str) -> Result<u64, ApiResponse> {
        if self.session.container_process(container).is_none() {
            return Err(error(FailureKind::NoSuchContainer, format!("no container {container} in this zone")));
        }
        self.last_copy += 1;
        Ok(self.last_copy)
    }

    /// Take a copy's exposure off the share. A copy out's staging directory is returned when
    /// `keep` (the guest answered Done), and removed otherwise.
    fn end_copy(&mut self, name: &str, keep: bool) -> Option<std::path::PathBuf> {
        let staging = self.copies.remove(name).flatten();
        if let Err(err) = self.share.withdraw(name) {
            tracing::warn!(%err, "withdrawing a copy from the share");
        }
        match staging {
            Some(dir) if !keep => {
                if let Err(err) = staging::remove(&dir) {
                    tracing::warn!(%err, "removing a copy's staging directory");
                }
                None
            }
            staging => staging,
        }
    }

    async fn remove_container(&mut self, container: String, force: bool, reply: Reply, client: ClientId) {
        if self.session.container_process(&container).is_none() {
            // Never created in the zone (or the zone restarted): only the record is left.
            self.remove_record(&container);
            let _ = reply.send(ApiResponse::Done).await;
            return;
        }
        self.send_request(Request::RemoveContainer { container, force }, reply, client).await;
    }

    /// Start a process in a running container under a fresh number. The client talks to it
    /// from now on (bound before the client can close, so its close unbinds it), and hears it
    /// once the guest confirms the start.
    async fn exec(&mut self, container: String, exec: Box<ExecRequest>, client: ClientId, reply: Reply) {
        if let Err(err) = self.running_process(&container) {
            let _ = reply.send(err).await;
            return;
        }
        let Some(process) = self.routes.next_process() else {
            let _ = reply.send(error(FailureKind::Limit, "this zone has used every process number")).await;
            return;
        };
        self.routes.bind(client, process);
        self.send_request(Request::Exec { container, process, exec }, reply, client).await;
    }

    /// Pass a stream message to the process `client` talks to; only errors are answered.
    async fn pass_to_bound(&mut self, client: ClientId, reply: &Reply, msg: impl FnOnce(u32) -> HostMessage) {
        let sent = match self.routes.target(client) {
            Some(process) => self.notify(msg(process), process).await,
            None => Err(error(FailureKind::WrongState, "this connection is attached to no process")),
        };
        if let Err(err) = sent {
            let _ = reply.send(err).await;
        }
    }

    /// Pass a stream message to `process`, or say why not.
    async fn notify(&mut self, msg: HostMessage, process: u32) -> Result<(), ApiResponse> {
        if !self.session.is_running(process) {
            return Err(error(FailureKind::WrongState, format!("process {process} is not running")));
        }
        let frame = encode(&msg).map_err(|e| error(FailureKind::Internal, e.to_string()))?;
        self.to_guest.send(frame).await.map_err(|_| error(FailureKind::ZoneGone, "the zone's channel is closed"))
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
        // A grace too long to reach (`stop -t` with a huge number) means no forced stop.
        self.deadline = Instant::now().checked_add(grace);
        if self.session.is_ready() {
            if let Ok((_, msg)) = self.session.request(Request::Shutdown) {
                if let Ok(frame) = encode(&msg) {
                    let _ = self.to_guest.try_send(frame);
                }
            }
        }
    }

    async fn send_request(&mut self, request: Request, reply: Reply, client: ClientId) {
        if !self.session.is_ready() {
            let _ = reply.send(error(FailureKind::ZoneGone, "the zone is not running yet")).await;
            return;
        }
        let failed_create = match &request {
            Request::CreateContainer(create) => Some(create.container.clone()),
            _ => None,
        };
        let failed_copy = match &request {
            Request::CopyIn(copy) => Some(copy.from.clone()),
            Request::CopyOut(copy) => Some(copy.to.clone()),
            _ => None,
        };
        let sent = self.session.request(request).map_err(|e| (e.kind(), e.to_string())).and_then(|(id, msg)| {
            let frame = encode(&msg).map_err(|e| (FailureKind::Internal, e.to_string()))?;
            self.to_guest.try_send(frame).map_err(|_| {
                self.session.forget(id);
                (FailureKind::ZoneGone, "the guest is not reading its control channel".to_string())
            })?;
            Ok(id)
        });
        match sent {
            Ok(id) => {
                self.waiting.insert(id, Waiter { reply, sent: Instant::now(), client });
            }
            Err((kind, message)) => {
                if let Some(container) = failed_create {
                    self.forget_container(&container);
                }
                if let Some(name) = failed_copy {
                    self.end_copy(&name, false);
                }
                let _ = reply.send(error(kind, message)).await;
            }
        }
    }
}

/// The name copy `number` has on the share. Flat, at the share's root: a parent directory
/// would be pruned and made again between copies, while the guest may still cache the old one.
fn copy_share_name(number: u64) -> String {
    format!("cp-{number}")
}

/// The name an image file gets on the share: one per image, shared by its containers.
fn image_share_name(image: &std::path::Path) -> String {
    let file = image.file_name().map_or_else(|| "image".into(), |f| f.to_string_lossy().into_owned());
    format!("images/{file}")
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
