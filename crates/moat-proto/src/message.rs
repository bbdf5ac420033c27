//! The messages each side sends. One enum per direction.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; both sides must agree exactly.
pub const PROTOCOL_VERSION: u32 = 2;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMessage {
    /// Answer to the guest's hello: the version the host speaks.
    Hello { version: u32 },
    Request { id: u64, request: Request },
    /// Bytes for a running process's stdin. Empty data closes stdin.
    Stdin { process: u32, #[serde(with = "crate::bytes")] data: Vec<u8> },
    /// Deliver a signal (by number) to a running process.
    Signal { process: u32, signal: i32 },
    /// The terminal of a process started with a tty changed size.
    Resize { process: u32, rows: u16, cols: u16 },
}

/// The main workload of a zone; `exec`ed processes get higher numbers.
pub const WORKLOAD: u32 = 0;

/// Most `exec`ed processes that may run in a zone at once.
///
/// Threat: each one holds pipes or a pty, a relay and a table entry in the zone, and a route
/// on the host; the host refuses more and so does the guest.
pub const MAX_EXEC_PROCESSES: usize = 64;

/// What the guest needs to start a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The OCI runtime spec (config.json) as built by moat-spec. `root.path` is ignored: the
    /// guest uses the image disk with a writable overlay on the scratch disk.
    pub spec_json: String,
    /// Container id for the runtime (also the hostname default).
    pub container_id: String,
    /// Allocate a pseudo-terminal for the process (`-t`).
    pub tty: bool,
    /// Keep stdin open (`-i`); without it the process gets an empty stdin.
    pub stdin: bool,
}

/// A process to start in the zone's running container (`moat exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The OCI runtime spec's `process` object (JSON) for the new process, as moat-spec builds
    /// it from the container's own process.
    pub process_json: String,
    /// `USER[:GROUP]` to resolve against the container's /etc/passwd and /etc/group, as for
    /// the workload; `None` runs the process with the uid and gids in `process_json` as given.
    pub user: Option<String>,
    /// Allocate a pseudo-terminal for the process (`-t`).
    pub tty: bool,
    /// Keep stdin open (`-i`); without it the process gets an empty stdin.
    pub stdin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    /// Start the zone's workload. Answered with Done once it runs, or Failed with the reason
    /// (missing command, unknown user, ...). Its output then arrives as `Output` messages.
    Run(Box<RunRequest>),
    /// Start another process in the running workload's container, numbered `process` (chosen
    /// by the host: not [`WORKLOAD`], not in use). Answered like `Run`; its output and exit then
    /// arrive under that number. Refused when no workload runs or [`MAX_EXEC_PROCESSES`] run.
    Exec { process: u32, exec: Box<ExecRequest> },
    /// Sync filesystems and power the zone off.
    Shutdown,
    /// Honoured only when the zone was booted with test hooks enabled.
    Debug(DebugRequest),
}

/// Requests that simulate a misbehaving guest, for tests of the host's defences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DebugRequest {
    /// Crash the guest kernel.
    KernelPanic,
    /// Write these bytes to the channel verbatim, outside any frame.
    WriteRaw { bytes: Vec<u8> },
    /// As root in init's namespaces, read `path` (relative to the share's mount) and try to
    /// open it for writing (creating it if absent, writing nothing). Answered with `Probed`.
    ProbeShare { path: String },
}

/// Most bytes a share probe reads.
pub const MAX_PROBE_READ: usize = 256;

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestMessage {
    /// First message of every session.
    Hello { version: u32, kernel_release: String, init_version: String },
    Response { id: u64, response: Response },
    /// Init hit an error it cannot recover from and is powering the zone off.
    Fatal { message: String },
    /// Output of a running process, in order per stream.
    Output { process: u32, stream: Stream, #[serde(with = "crate::bytes")] data: Vec<u8> },
    /// A process ended; all its output was sent before this.
    Exited { process: u32, status: ExitStatus },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExitStatus {
    Code { code: i32 },
    Signal { signal: i32 },
    /// Killed by the kernel's OOM killer (in the container's cgroup).
    OomKilled,
}

impl ExitStatus {
    /// Docker's convention: the exit code, or 128 + the signal number; OOM shows as SIGKILL.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code { code } => code,
            ExitStatus::Signal { signal } => 128 + signal,
            ExitStatus::OomKilled => 137,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Pong,
    Done,
    Failed { message: String },
    /// What a [`DebugRequest::ProbeShare`] saw: the bytes read (at most [`MAX_PROBE_READ`], as
    /// lossy UTF-8) or the error, and whether the path could be opened for writing.
    Probed { read: Result<String, String>, write: Result<(), String> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_stable() {
        let msg = HostMessage::Request { id: 7, request: Request::Ping };
        assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"request":{"id":7,"request":"ping"}}"#);
        let msg = GuestMessage::Response { id: 7, response: Response::Pong };
        assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"response":{"id":7,"response":"pong"}}"#);
    }

    #[test]
    fn exec_wire_form() {
        let exec = ExecRequest { process_json: "{}".into(), user: Some("app".into()), tty: false, stdin: true };
        let msg = HostMessage::Request { id: 3, request: Request::Exec { process: 1, exec: Box::new(exec) } };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"request":{"id":3,"request":{"exec":{"process":1,"exec":{"process_json":"{}","user":"app","tty":false,"stdin":true}}}}}"#);
        assert_eq!(serde_json::from_str::<HostMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = r#"{"response":{"id":7,"response":"pong","extra":1}}"#;
        assert!(serde_json::from_str::<GuestMessage>(bad).is_err());
    }
}
