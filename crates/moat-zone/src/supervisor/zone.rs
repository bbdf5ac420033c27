//! The running zone: one loop that answers API clients, relays between them and the guest's
//! init, follows QEMU's QMP events, and ends when QEMU exits.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use moat_proto::{encode, ExecRequest, FrameError, GuestMessage, HostMessage, HostSession, Request, Response, SessionEvent, WORKLOAD};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::outcome::{describe_status, Outcome};
use super::{BOOT_TIMEOUT, DRAIN_TIMEOUT};
use crate::api::{ApiRequest, ApiResponse};
use crate::clients::{serve_client, ClientEvent, ClientId, Reply, Routes, CLIENT_QUEUE};
use crate::lifecycle::ZoneState;
use crate::logs::WorkloadLog;
use crate::qmp::QmpEvent;
use crate::state::ZoneDir;

/// Why a client's stream request or attach found nothing to talk to.
const NO_WORKLOAD: &str = "the zone has no running workload";

struct Waiter {
    reply: Reply,
    sent: Instant,
}

pub struct Zone<'a> {
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

impl<'a> Zone<'a> {
    pub fn new(dir: &'a ZoneDir, started: Instant, to_guest: mpsc::Sender<Vec<u8>>, workload_log: WorkloadLog) -> Self {
        Self {
            dir,
            started,
            session: HostSession::new(),
            waiting: HashMap::new(),
            to_guest,
            outcome: Outcome::default(),
            deadline: Some(started + BOOT_TIMEOUT),
            routes: Routes::default(),
            workload_log,
        }
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub async fn serve(
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
                    Response::Probed { read, write } => ApiResponse::Probed { read, write },
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
