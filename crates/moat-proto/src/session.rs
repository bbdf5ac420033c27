//! The host's view of one zone's channel: it accepts guest messages only in a valid order.

use std::collections::{BTreeMap, BTreeSet};

use crate::message::{ExitStatus, GuestMessage, HostMessage, Request, Response, Stream, MAX_EXEC_PROCESSES, PROTOCOL_VERSION, WORKLOAD};

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
    #[error("process number {process} is the workload's or already in use")]
    ProcessInUse { process: u32 },
    #[error("{MAX_EXEC_PROCESSES} exec'd processes already run in this zone; wait for one to end")]
    TooManyExecs,
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
    /// Processes the guest confirmed as started and has not reported as ended.
    running: BTreeSet<u32>,
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
        self.running.contains(&process)
    }

    /// Register a request and return the message that carries it. An exec must use a fresh
    /// process number and stay within [`MAX_EXEC_PROCESSES`], counting those still starting.
    pub fn request(&mut self, request: Request) -> Result<(u64, HostMessage), SessionError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(SessionError::TooManyPending);
        }
        if let Request::Exec { process, .. } = &request {
            let starting: Vec<u32> = self.pending.values().filter_map(exec_process).collect();
            if *process == WORKLOAD || self.running.contains(process) || starting.contains(process) {
                return Err(SessionError::ProcessInUse { process: *process });
            }
            let execs = self.running.iter().filter(|p| **p != WORKLOAD).count() + starting.len();
            if execs >= MAX_EXEC_PROCESSES {
                return Err(SessionError::TooManyExecs);
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        self.pending.insert(id, request.clone());
        Ok((id, HostMessage::Request { id, request }))
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
                match (&request, &response) {
                    (Request::Run(_), Response::Done) => {
                        self.running.insert(WORKLOAD);
                    }
                    (Request::Exec { process, .. }, Response::Done) => {
                        self.running.insert(*process);
                    }
                    _ => {}
                }
                let response = match response {
                    Response::Failed { message } => Response::Failed { message: clip(message) },
                    Response::Probed { read, write } => Response::Probed { read: read.map(clip).map_err(clip), write: write.map_err(clip) },
                    other => other,
                };
                Ok(SessionEvent::Answered { id, request, response })
            }
            (false, GuestMessage::Output { .. } | GuestMessage::Exited { .. }) => Err(SessionError::BeforeHello { what: "process output" }),
            (true, GuestMessage::Output { process, stream, data }) => {
                if !self.running.contains(&process) {
                    return Err(SessionError::NotRunning { what: "output", process });
                }
                Ok(SessionEvent::Output { process, stream, data })
            }
            (true, GuestMessage::Exited { process, status }) => {
                if !self.running.remove(&process) {
                    return Err(SessionError::NotRunning { what: "an exit", process });
                }
                Ok(SessionEvent::Exited { process, status })
            }
        }
    }
}

fn exec_process(request: &Request) -> Option<u32> {
    match request {
        Request::Exec { process, .. } => Some(*process),
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

    #[test]
    fn output_only_for_a_started_process() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let out = GuestMessage::Output { process: WORKLOAD, stream: Stream::Stdout, data: b"hi".to_vec() };
        assert_eq!(s.accept(out.clone()), Err(SessionError::NotRunning { what: "output", process: WORKLOAD }));
        let run = crate::RunRequest { spec_json: "{}".into(), container_id: "c".into(), tty: false, stdin: false };
        let (id, _) = s.request(Request::Run(Box::new(run))).unwrap();
        s.accept(GuestMessage::Response { id, response: Response::Done }).unwrap();
        assert!(matches!(s.accept(out.clone()), Ok(SessionEvent::Output { .. })));
        let exited = GuestMessage::Exited { process: WORKLOAD, status: ExitStatus::Code { code: 7 } };
        assert_eq!(s.accept(exited.clone()).unwrap(), SessionEvent::Exited { process: WORKLOAD, status: ExitStatus::Code { code: 7 } });
        assert!(s.accept(exited).is_err(), "a process exits once");
        assert!(s.accept(out).is_err(), "no output after the exit");
    }

    fn exec(process: u32) -> Request {
        let exec = crate::ExecRequest { process_json: "{}".into(), user: None, tty: false, stdin: false };
        Request::Exec { process, exec: Box::new(exec) }
    }

    #[test]
    fn exec_output_only_after_its_start_and_before_its_exit() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        let out = GuestMessage::Output { process: 3, stream: Stream::Stderr, data: b"x".to_vec() };
        let (id, _) = s.request(exec(3)).unwrap();
        assert_eq!(s.accept(out.clone()), Err(SessionError::NotRunning { what: "output", process: 3 }), "not before Done");
        s.accept(GuestMessage::Response { id, response: Response::Done }).unwrap();
        assert!(s.is_running(3));
        assert!(!s.is_running(WORKLOAD), "an exec does not start the workload");
        assert!(matches!(s.accept(out.clone()), Ok(SessionEvent::Output { process: 3, .. })));
        let other = GuestMessage::Output { process: 4, stream: Stream::Stdout, data: Vec::new() };
        assert!(s.accept(other).is_err(), "only the number the host started");
        s.accept(GuestMessage::Exited { process: 3, status: ExitStatus::Code { code: 0 } }).unwrap();
        assert!(!s.is_running(3));
        assert!(s.accept(out).is_err());

        let (id, _) = s.request(exec(5)).unwrap();
        s.accept(GuestMessage::Response { id, response: Response::Failed { message: "no".into() } }).unwrap();
        assert!(!s.is_running(5), "a failed exec never runs");
    }

    #[test]
    fn exec_numbers_are_fresh_and_bounded() {
        let mut s = HostSession::new();
        s.accept(hello()).unwrap();
        assert_eq!(s.request(exec(WORKLOAD)).unwrap_err(), SessionError::ProcessInUse { process: WORKLOAD });
        let (id, _) = s.request(exec(1)).unwrap();
        assert_eq!(s.request(exec(1)).unwrap_err(), SessionError::ProcessInUse { process: 1 }, "while starting");
        s.accept(GuestMessage::Response { id, response: Response::Done }).unwrap();
        assert_eq!(s.request(exec(1)).unwrap_err(), SessionError::ProcessInUse { process: 1 }, "while running");
        let max = u32::try_from(MAX_EXEC_PROCESSES).unwrap();
        for process in 2..=max {
            s.request(exec(process)).unwrap();
        }
        assert_eq!(s.request(exec(max + 1)).unwrap_err(), SessionError::TooManyExecs);
        s.accept(GuestMessage::Exited { process: 1, status: ExitStatus::Signal { signal: 9 } }).unwrap();
        s.request(exec(max + 1)).expect("room again once one ended");
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
}
