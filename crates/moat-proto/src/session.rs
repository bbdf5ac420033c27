//! The host's view of one zone's channel: it accepts guest messages only in a valid order.

use std::collections::BTreeMap;

use crate::copy::MAX_COPIES;
use crate::message::{ExitStatus, FailureKind, GuestMessage, HostMessage, Request, Response, Stream, MAX_CONTAINERS, MAX_EXEC_PROCESSES, PROTOCOL_VERSION};

/// Longest guest-supplied text (kernel release, error message) the host keeps.
///
/// Threat: guest text ends up in state files and terminal output; a frame may hold a megabyte.
pub const MAX_GUEST_TEXT: usize = 4096;

/// Most requests the host keeps in flight per zone; the host refuses to send more.
pub const MAX_PENDING: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("guest speaks protocol version {guest}, host speaks {PROTOCOL_VERSION}")]
    VersionMismatch { guest: u32 },
    #[error("guest sent {what} before its hello")]
    BeforeHello { what: &'static str },
    #[error("guest sent a second hello")]
    DuplicateHello,
    #[error("guest answered request {id}, which is not pending")]
    UnknownRequest { id: u64 },
    #[error("too many requests in flight ({MAX_PENDING})")]
    TooManyPending,
    #[error("guest sent {what} for process {process}, which is not running")]
    NotRunning { what: &'static str, process: u32 },
    #[error("process number {process} was used before in this zone")]
    ProcessInUse { process: u32 },
    #[error("{MAX_EXEC_PROCESSES} exec'd processes already run in this zone; wait for one to end")]
    TooManyExecs,
    #[error("this zone already holds {MAX_CONTAINERS} containers; remove one first")]
    TooManyContainers,
    #[error("a container named {0} already exists in this zone")]
    ContainerExists(String),
    #[error("{MAX_COPIES} copies already run in this zone; wait for one to end")]
    TooManyCopies,
    #[error("guest reported an exit no process can have: {0:?}")]
    ImpossibleExit(ExitStatus),
    #[error("guest answered request {id} with statistics it did not ask for")]
    UnaskedStats { id: u64 },
    #[error(transparent)]
    Stats(#[from] crate::stats::StatsError),
    #[error("guest answered request {id} with a process list it did not ask for")]
    UnaskedProcesses { id: u64 },
    #[error(transparent)]
    Processes(#[from] crate::processes::ProcessListError),
}

impl SessionError {
    /// The kind a client hears when the host refuses a request for this reason.
    pub fn kind(&self) -> FailureKind {
        match self {
            SessionError::TooManyPending | SessionError::TooManyExecs | SessionError::TooManyContainers | SessionError::TooManyCopies => FailureKind::Limit,
            SessionError::ContainerExists(_) => FailureKind::AlreadyExists,
            SessionError::ProcessInUse { .. } => FailureKind::BadRequest,
            _ => FailureKind::ZoneGone,
        }
    }
}

/// What an accepted guest message means to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEvent {
    Ready { kernel_release: String, init_version: String },
    Answered { id: u64, request: Request, response: Response },
    Fatal { message: String },
    Output { process: u32, stream: Stream, data: Vec<u8> },
    Exited { process: u32, status: ExitStatus },
}

#[derive(Default)]
pub struct HostSession {
    ready: bool,
    next_id: u64,
    pending: BTreeMap<u64, Request>,
    /// The highest process number requested so far: numbers are fresh, so never reused.
    last_process: u32,
    /// Containers the guest holds (created and not removed), with their process's number.
    containers: BTreeMap<String, u32>,
    /// Processes the guest confirmed as started and has not reported as ended, with their
    /// container.
    running: BTreeMap<u32, String>,
}

impl HostSession {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether the guest confirmed `process` as started and has not reported its end.
    pub fn is_running(&self, process: u32) -> bool {
        self.running.contains_key(&process)
    }

    /// The number of `container`'s own process, while the guest holds the container.
    pub fn container_process(&self, container: &str) -> Option<u32> {
        self.containers.get(container).copied()
    }

    /// Register a request and return the message that carries it. New process numbers must be
    /// fresh; containers and exec'd processes stay within their bounds, counting those still
    /// being created or started.
    pub fn request(&mut self, request: Request) -> Result<(u64, HostMessage), SessionError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(SessionError::TooManyPending);
        }
        match &request {
            Request::CreateContainer(create) => {
                self.check_fresh(create.process)?;
                let creating: Vec<&str> = self.pending.values().filter_map(created_container).collect();
                if self.containers.contains_key(&create.container) || creating.contains(&create.container.as_str()) {
                    return Err(SessionError::ContainerExists(create.container.clone()));
                }
                if self.containers.len() + creating.len() >= MAX_CONTAINERS {
                    return Err(SessionError::TooManyContainers);
                }
                self.last_process = create.process;
            }
            Request::Exec { process, .. } => {
                self.check_fresh(*process)?;
                let starting = self.pending.values().filter(|r| matches!(r, Request::Exec { .. })).count();
                if self.exec_count() + starting >= MAX_EXEC_PROCESSES {
                    return Err(SessionError::TooManyExecs);
                }
                self.last_process = *process;
            }
            Request::CopyIn(_) | Request::CopyOut(_) if self.pending.values().filter(|r| matches!(r, Request::CopyIn(_) | Request::CopyOut(_))).count() >= MAX_COPIES => {
                return Err(SessionError::TooManyCopies);
            }
            _ => {}
        }
        self.next_id += 1;
        let id = self.next_id;
        self.pending.insert(id, request.clone());
        Ok((id, HostMessage::Request { id, request }))
    }

    fn check_fresh(&self, process: u32) -> Result<(), SessionError> {
        if process <= self.last_process {
            return Err(SessionError::ProcessInUse { process });
        }
        Ok(())
    }

    fn exec_count(&self) -> usize {
        self.running.keys().filter(|p| !self.containers.values().any(|own| own == *p)).count()
    }

    /// Drop a pending request the host no longer waits for (for example, after a timeout).
    pub fn forget(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Check one guest message against the session's state.
    pub fn accept(&mut self, msg: GuestMessage) -> Result<SessionEvent, SessionError> {
        match (self.ready, msg) {
            (false, GuestMessage::Hello { version, kernel_release, init_version }) => {
                if version != PROTOCOL_VERSION {
                    return Err(SessionError::VersionMismatch { guest: version });
                }
                self.ready = true;
                Ok(SessionEvent::Ready {
                    kernel_release: clip(kernel_release),
                    init_version: clip(init_version),
                })
            }
            (true, GuestMessage::Hello { .. }) => Err(SessionError::DuplicateHello),
            (_, GuestMessage::Fatal { message }) => Ok(SessionEvent::Fatal { message: clip(message) }),
            (false, GuestMessage::Response { .. }) => Err(SessionError::BeforeHello { what: "a response" }),
            (true, GuestMessage::Response { id, response }) => {
                let request = self.pending.remove(&id).ok_or(SessionError::UnknownRequest { id })?;
                if let Response::Stats(stats) = &response {
                    if !matches!(request, Request::Stats { .. }) {
                        return Err(SessionError::UnaskedStats { id });
                    }
                    stats.validate()?;
                }
                if let Response::Processes(list) = &response {
                    if !matches!(request, Request::Processes { .. }) {
                        return Err(SessionError::UnaskedProcesses { id });
                    }
                    list.validate()?;
                }
                if response == Response::Done {
                    self.apply(&request);
                }
                let response = match response {
                    Response::Failed { kind, message } => Response::Failed { kind, message: clip(message) },
                    Response::Probed { read, write } => Response::Probed { read: read.map(clip).map_err(clip), write: write.map_err(clip) },
                    other => other,
                };
                Ok(SessionEvent::Answered { id, request, response })
            }
            (false, GuestMessage::Output { .. } | GuestMessage::Exited { .. }) => Err(SessionError::BeforeHello { what: "process output" }),
            (true, GuestMessage::Output { process, stream, data }) => {
                if !self.running.contains_key(&process) {
                    return Err(SessionError::NotRunning { what: "output", process });
                }
                Ok(SessionEvent::Output { process, stream, data })
            }
            (true, GuestMessage::Exited { status, .. }) if !status.is_possible() => Err(SessionError::ImpossibleExit(status)),
            (true, GuestMessage::Exited { process, status }) => {
                if self.running.remove(&process).is_none() {
                    return Err(SessionError::NotRunning { what: "an exit", process });
                }
                Ok(SessionEvent::Exited { process, status })
            }
        }
    }

    /// What a request the guest answered with Done changed.
    fn apply(&mut self, request: &Request) {
        match request {
            Request::CreateContainer(create) => {
                self.containers.insert(create.container.clone(), create.process);
                if create.start {
                    self.running.insert(create.process, create.container.clone());
                }
            }
            Request::StartContainer { container } => {
                if let Some(process) = self.containers.get(container) {
                    self.running.insert(*process, container.clone());
                }
            }
            Request::Exec { container, process, .. } => {
                self.running.insert(*process, container.clone());
            }
            Request::RemoveContainer { container, .. } => {
                if let Some(process) = self.containers.remove(container) {
                    // A forced removal ends the container's processes without reporting them.
                    self.running.retain(|p, c| *p != process && c != container);
                }
            }
            _ => {}
        }
    }
}

fn created_container(request: &Request) -> Option<&str> {
    match request {
        Request::CreateContainer(create) => Some(&create.container),
        _ => None,
    }
}

/// Bound guest text and drop control characters, so it is safe to store and print.
pub fn clip(text: String) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n').take(MAX_GUEST_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> GuestMessage {
        GuestMessage::Hello { version: PROTOCOL_VERSION, kernel_release: "6.1".into(), init_version: "0.1".into() }
    }

    #[test]
    fn hello_then_answer() {
        let mut s = HostSession::new();
        assert!(matches!(s.accept(hello()), Ok(SessionEvent::Ready { .. })));
        let (id, _) = s.request(Request::Ping).unwrap();
        let ev = s.accept(GuestMessage::Response { id, response: Response::Pong }).unwrap();
        assert_eq!(ev, SessionEvent::Answered { id, request: Request::Ping, response: Response::Pong });
    }

    #[test]
    fn out_of_order_messages_are_errors() {
        let mut s = HostSession::new();
        let early = GuestMessage::Response { id: 1, response: Response::Pong };
        assert_eq!(s.accept(early), Err(SessionError::BeforeHello { what: "a response" }));
        s.accept(hello()).unwrap();
        assert_eq!(s.accept(hello()), Err(SessionError::DuplicateHello));
        let stray = GuestMessage::Response { id: 99, response: Response::Done };
        assert_eq!(s.accept(stray), Err(SessionError::UnknownRequest { id: 99 }));
    }

    #[test]
    fn a_response_is_accepted_once() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let (id, _) = s.request(Request::Ping).unwrap();
        s.accept(GuestMessage::Response { id, response: Response::Pong }).unwrap();
        let again = s.accept(GuestMessage::Response { id, response: Response::Pong });
        assert_eq!(again, Err(SessionError::UnknownRequest { id }));
    }

    fn create(container: &str, process: u32) -> Request {
        let create = crate::CreateContainer { container: container.into(), process, spec_json: "{}".into(), image: "i.erofs".into(), tty: false, stdin: false, name_files: None, start: false };
        Request::CreateContainer(Box::new(create))
    }

    fn exec(container: &str, process: u32) -> Request {
        let exec = crate::ExecRequest { process_json: "{}".into(), user: None, tty: false, stdin: false };
        Request::Exec { container: container.into(), process, exec: Box::new(exec) }
    }

    fn done(s: &mut HostSession, request: Request) {
        let (id, _) = s.request(request).unwrap();
        s.accept(GuestMessage::Response { id, response: Response::Done }).unwrap();
    }

    #[test]
    fn output_only_for_a_started_process() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let out = GuestMessage::Output { process: 1, stream: Stream::Stdout, data: b"hi".to_vec() };
        assert_eq!(s.accept(out.clone()), Err(SessionError::NotRunning { what: "output", process: 1 }));
        done(&mut s, create("c", 1));
        assert_eq!(s.container_process("c"), Some(1));
        assert!(s.accept(out.clone()).is_err(), "created is not started");
        done(&mut s, Request::StartContainer { container: "c".into() });
        assert!(matches!(s.accept(out.clone()), Ok(SessionEvent::Output { .. })));
        let exited = GuestMessage::Exited { process: 1, status: ExitStatus::Code { code: 7 } };
        assert_eq!(s.accept(exited.clone()).unwrap(), SessionEvent::Exited { process: 1, status: ExitStatus::Code { code: 7 } });
        assert!(s.accept(exited).is_err(), "a process exits once");
        assert!(s.accept(out).is_err(), "no output after the exit");
        assert_eq!(s.container_process("c"), Some(1), "a stopped container stays until removed");
        done(&mut s, Request::RemoveContainer { container: "c".into(), force: false });
        assert_eq!(s.container_process("c"), None);
    }

    #[test]
    fn a_container_created_with_its_start_runs_at_once() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let Request::CreateContainer(mut started) = create("c", 1) else { unreachable!() };
        started.start = true;
        done(&mut s, Request::CreateContainer(started));
        assert!(s.is_running(1));
        let out = GuestMessage::Output { process: 1, stream: Stream::Stdout, data: b"hi".to_vec() };
        assert!(matches!(s.accept(out), Ok(SessionEvent::Output { .. })));
        let exited = GuestMessage::Exited { process: 1, status: ExitStatus::Code { code: 0 } };
        assert!(matches!(s.accept(exited), Ok(SessionEvent::Exited { .. })));
    }

    #[test]
    fn exec_output_only_after_its_start_and_before_its_exit() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        done(&mut s, create("c", 1));
        done(&mut s, Request::StartContainer { container: "c".into() });
        let out = GuestMessage::Output { process: 3, stream: Stream::Stderr, data: b"x".to_vec() };
        let (id, _) = s.request(exec("c", 3)).unwrap();
        assert_eq!(s.accept(out.clone()), Err(SessionError::NotRunning { what: "output", process: 3 }), "not before Done");
        s.accept(GuestMessage::Response { id, response: Response::Done }).unwrap();
        assert!(s.is_running(3));
        assert!(matches!(s.accept(out.clone()), Ok(SessionEvent::Output { process: 3, .. })));
        let other = GuestMessage::Output { process: 4, stream: Stream::Stdout, data: Vec::new() };
        assert!(s.accept(other).is_err(), "only the number the host started");
        s.accept(GuestMessage::Exited { process: 3, status: ExitStatus::Code { code: 0 } }).unwrap();
        assert!(!s.is_running(3));
        assert!(s.accept(out).is_err());

        let (id, _) = s.request(exec("c", 5)).unwrap();
        let failed = Response::Failed { kind: FailureKind::NotFound, message: "no".into() };
        s.accept(GuestMessage::Response { id, response: failed }).unwrap();
        assert!(!s.is_running(5), "a failed exec never runs");
    }

    #[test]
    fn process_numbers_are_fresh() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        done(&mut s, create("c", 2));
        assert_eq!(s.request(exec("c", 2)).unwrap_err(), SessionError::ProcessInUse { process: 2 });
        assert_eq!(s.request(create("d", 1)).unwrap_err(), SessionError::ProcessInUse { process: 1 }, "never a lower one");
        s.request(exec("c", 3)).unwrap();
        assert_eq!(s.request(exec("c", 3)).unwrap_err(), SessionError::ProcessInUse { process: 3 }, "while starting");
    }

    #[test]
    fn exec_processes_are_bounded() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        done(&mut s, create("c", 1));
        done(&mut s, Request::StartContainer { container: "c".into() });
        let max = u32::try_from(MAX_EXEC_PROCESSES).unwrap();
        done(&mut s, exec("c", 2));
        for process in 3..=max + 1 {
            s.request(exec("c", process)).unwrap();
        }
        assert_eq!(s.request(exec("c", max + 2)).unwrap_err(), SessionError::TooManyExecs, "the container's own process does not count");
        s.accept(GuestMessage::Exited { process: 2, status: ExitStatus::Signal { signal: 9 } }).unwrap();
        s.request(exec("c", max + 2)).expect("room again once one ended");
    }

    #[test]
    fn containers_are_bounded_and_unique() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        done(&mut s, create("c0", 1));
        assert_eq!(s.request(create("c0", 2)).unwrap_err(), SessionError::ContainerExists("c0".into()));
        let max = u32::try_from(MAX_CONTAINERS).unwrap();
        for n in 1..max {
            s.request(create(&format!("c{n}"), n + 10)).unwrap();
        }
        assert_eq!(s.request(create("c99", 99)).unwrap_err(), SessionError::TooManyContainers, "pending creates count");
        assert_eq!(SessionError::TooManyContainers.kind(), FailureKind::Limit);
        done(&mut s, Request::RemoveContainer { container: "c0".into(), force: true });
        s.request(create("c99", 100)).expect("room again once one is removed");
    }

    #[test]
    fn a_forced_removal_forgets_the_containers_processes() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        done(&mut s, create("c", 1));
        done(&mut s, Request::StartContainer { container: "c".into() });
        done(&mut s, exec("c", 2));
        done(&mut s, Request::RemoveContainer { container: "c".into(), force: true });
        assert!(!s.is_running(1) && !s.is_running(2));
        assert!(s.accept(GuestMessage::Exited { process: 2, status: ExitStatus::Code { code: 0 } }).is_err());
    }

    #[test]
    fn copies_in_flight_are_bounded() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let copy_out = || Request::CopyOut(Box::new(crate::CopyOut { container: "c".into(), from: crate::CopySource::Path("/etc".into()), to: "cp/1".into() }));
        let mut ids = Vec::new();
        for _ in 0..MAX_COPIES {
            ids.push(s.request(copy_out()).unwrap().0);
        }
        assert_eq!(s.request(copy_out()).unwrap_err(), SessionError::TooManyCopies);
        assert_eq!(SessionError::TooManyCopies.kind(), FailureKind::Limit);
        s.accept(GuestMessage::Response { id: ids[0], response: Response::Done }).unwrap();
        s.request(copy_out()).expect("room again once one is answered");
    }

    #[test]
    fn statistics_answer_only_their_request_and_only_plausible_ones_pass() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let stats = crate::stats::ContainerStats::default();
        let (id, _) = s.request(Request::Stats { container: "c".into() }).unwrap();
        let answer = s.accept(GuestMessage::Response { id, response: Response::Stats(Box::new(stats.clone())) }).unwrap();
        assert!(matches!(answer, SessionEvent::Answered { response: Response::Stats(_), .. }));

        let (id, _) = s.request(Request::Ping).unwrap();
        let unasked = s.accept(GuestMessage::Response { id, response: Response::Stats(Box::new(stats.clone())) });
        assert_eq!(unasked, Err(SessionError::UnaskedStats { id }));

        let (id, _) = s.request(Request::Stats { container: "c".into() }).unwrap();
        let mut absurd = stats;
        absurd.pids.current = u64::MAX;
        let refused = s.accept(GuestMessage::Response { id, response: Response::Stats(Box::new(absurd)) });
        assert_eq!(refused.unwrap_err().to_string(), format!("implausible container statistics: pids.current = {}", u64::MAX));
    }

    #[test]
    fn process_lists_answer_only_their_request_and_only_plausible_ones_pass() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let list = crate::processes::ProcessList::default();
        let (id, _) = s.request(Request::Processes { container: "c".into() }).unwrap();
        let answer = s.accept(GuestMessage::Response { id, response: Response::Processes(Box::new(list.clone())) }).unwrap();
        assert!(matches!(answer, SessionEvent::Answered { response: Response::Processes(_), .. }));

        let (id, _) = s.request(Request::Stats { container: "c".into() }).unwrap();
        let unasked = s.accept(GuestMessage::Response { id, response: Response::Processes(Box::new(list.clone())) });
        assert_eq!(unasked, Err(SessionError::UnaskedProcesses { id }));

        let (id, _) = s.request(Request::Processes { container: "c".into() }).unwrap();
        let mut absurd = list;
        absurd.read_at_usec = u64::MAX;
        let refused = s.accept(GuestMessage::Response { id, response: Response::Processes(Box::new(absurd)) });
        assert_eq!(refused.unwrap_err().to_string(), format!("implausible process list: read_at_usec = {}", u64::MAX));
    }

    #[test]
    fn version_mismatch() {
        let mut s = HostSession::new();
        let msg = GuestMessage::Hello { version: 99, kernel_release: String::new(), init_version: String::new() };
        assert_eq!(s.accept(msg), Err(SessionError::VersionMismatch { guest: 99 }));
    }

    #[test]
    fn guest_text_is_clipped_and_cleaned() {
        let long = format!("\u{1b}[31m{}", "x".repeat(MAX_GUEST_TEXT * 2));
        let cleaned = clip(long);
        assert_eq!(cleaned.chars().count(), MAX_GUEST_TEXT);
        assert!(!cleaned.contains('\u{1b}'));
    }

    #[test]
    fn pending_is_bounded() {
        let mut s = HostSession::new();
        for _ in 0..MAX_PENDING {
            s.request(Request::Ping).unwrap();
        }
        assert_eq!(s.request(Request::Ping).unwrap_err(), SessionError::TooManyPending);
    }

    fn any_status() -> impl proptest::strategy::Strategy<Value = ExitStatus> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i32>().prop_map(|code| ExitStatus::Code { code }),
            any::<i32>().prop_map(|signal| ExitStatus::Signal { signal }),
            Just(ExitStatus::OomKilled),
        ]
    }

    proptest::proptest! {
        #[test]
        fn guest_exit_numbers_never_panic_and_only_possible_ones_pass(status in any_status()) {
            let code = status.shell_code();
            let mut s = HostSession::new();
            s.accept(hello()).unwrap();
            done(&mut s, create("c", 1));
            done(&mut s, Request::StartContainer { container: "c".into() });
            let accepted = s.accept(GuestMessage::Exited { process: 1, status });
            if status.is_possible() {
                proptest::prop_assert!(accepted.is_ok());
                proptest::prop_assert!((0..=128 + crate::message::MAX_SIGNAL).contains(&code));
            } else {
                proptest::prop_assert_eq!(accepted.unwrap_err(), SessionError::ImpossibleExit(status));
            }
        }
    }
}
