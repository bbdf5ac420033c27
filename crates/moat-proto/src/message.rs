//! The messages each side sends. One enum per direction.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; both sides must agree exactly.
pub const PROTOCOL_VERSION: u32 = 9;

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

/// Most containers a zone holds at once, running or stopped but not removed.
///
/// Threat: each one holds mounts, a loop device, runc state and a table entry in the zone,
/// and a record on the host; the host refuses more and so does the guest.
pub const MAX_CONTAINERS: usize = 16;

/// Most `exec`ed processes that may run in a zone at once, over all its containers.
///
/// Threat: each one holds pipes or a pty, a relay and a table entry in the zone, and a route
/// on the host; the host refuses more and so does the guest.
pub const MAX_EXEC_PROCESSES: usize = 64;

/// Longest container id; runc accepts letters, digits and `_+-.` only.
pub const MAX_CONTAINER_ID: usize = 64;

/// Whether `id` is a container id both sides accept: 1 to [`MAX_CONTAINER_ID`] letters, digits,
/// `_`, `+`, `-` or `.`, and not `.` or `..` (it names directories in the zone).
pub fn valid_container_id(id: &str) -> bool {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    !id.is_empty() && id.len() <= MAX_CONTAINER_ID && id.chars().all(valid_char) && id != "." && id != ".."
}

/// A container to create in the zone (OCI `create`): its root filesystem is mounted and runc
/// creates it, but its process starts only with [`Request::StartContainer`], unless `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    /// The container's id in the zone (and runc's).
    pub container: String,
    /// The host's number for the container's process; output, exit, stdin and signals travel
    /// under it. Fresh: never used before in this zone.
    pub process: u32,
    /// The OCI runtime spec (config.json) as built by moat-spec. `root.path` is ignored: the
    /// guest mounts `image` with a writable overlay on the scratch disk. Bind mounts whose
    /// source starts with the share's directory come from the zone's share.
    pub spec_json: String,
    /// The image's EROFS file, relative to the zone's share.
    pub image: String,
    /// Allocate a pseudo-terminal for the process (`-t`).
    pub tty: bool,
    /// Keep stdin open (`-i`); without it the process gets an empty stdin.
    pub stdin: bool,
    /// The container's name-resolution files; without them it keeps its image's.
    #[serde(default)]
    pub name_files: Option<NameFiles>,
    /// Start the process too, as [`Request::StartContainer`] would at once: for a host that
    /// runs the container rather than only creating it. The runtime then does both in one
    /// command (`run --detach`), which saves it a second start-up and the wait between.
    #[serde(default)]
    pub start: bool,
}

/// What a container finds in `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`. The zone
/// writes them next to the container's writable layer, owned by the container's root, and binds
/// them over the image's files, writable, even on a read-only root (as Docker does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: String,
}

/// A process to start in a running container (`moat exec`).
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

/// A copy into a container (`moat cp HOST CTR:PATH`), written as the container's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyIn {
    pub container: String,
    /// The source, relative to the zone's share: a file or directory the host exposed read-only.
    pub from: String,
    /// The source's own name, which a copy into an existing directory takes (its name on the
    /// share is the host's choice).
    pub name: String,
    /// Where it goes: a container path as [`crate::CopyPath`] parses it, resolved in the
    /// container's root, with Docker's rules (into an existing directory, or as a new name).
    pub to: String,
    /// Copy what the source directory holds rather than the directory (`SRC/.`).
    pub contents: bool,
}

/// A copy out of a container (`moat cp CTR:PATH HOST`) into a staging directory on the share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyOut {
    pub container: String,
    pub from: CopySource,
    /// The staging directory, relative to the share (a writable exposure); the copy goes there
    /// as [`crate::copy::STAGED_ITEM`].
    pub to: String,
}

/// What a copy out of a container takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CopySource {
    /// A container path as [`crate::CopyPath`] parses it, resolved in the container's root (`moat
    /// cp`). A symlink at its end is copied as the link; with `/` or `/.` at its end it is
    /// followed, inside the root, and must reach a directory.
    Path(String),
    /// The container's whole root filesystem as it sees it, as one tar file (`moat export`).
    RootTar { max_bytes: u64 },
    /// The container's writable layer as an OCI layer tar, overlay whiteouts turned into `.wh.`
    /// markers (`moat commit`).
    LayerTar { max_bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    /// Create a container; answered with Done once runc created it, or Failed with the reason.
    /// Refused past [`MAX_CONTAINERS`].
    CreateContainer(Box<CreateContainer>),
    /// Start a created container's process. Its output then arrives as `Output` messages under
    /// the number given at create.
    StartContainer { container: String },
    /// Start another process in a running container, numbered `process` (chosen by the host,
    /// fresh). Answered like `StartContainer`. Refused past [`MAX_EXEC_PROCESSES`].
    Exec { container: String, process: u32, exec: Box<ExecRequest> },
    /// Remove a container: with `force` a running one is killed first; without, it must have
    /// stopped (or never started). Its root filesystem and writable layer go with it.
    RemoveContainer { container: String, force: bool },
    /// Copy from the share into a container (created, running or stopped). Answered with Done
    /// once the copy is complete, or Failed before anything was written where the input was
    /// bad: NotFound for a missing path, BadRequest for a path or file it cannot take, Limit
    /// past the bounds in [`crate::copy`]. Refused past [`crate::copy::MAX_COPIES`] in flight.
    CopyIn(Box<CopyIn>),
    /// Copy from a container into a staging directory on the share; answered as `CopyIn`.
    CopyOut(Box<CopyOut>),
    /// Rewrite a container's `/etc/hosts` in place (the host learnt of new names on its
    /// network); refused for a container created without name files. At most
    /// [`MAX_HOSTS_FILE`] bytes.
    UpdateHosts { container: String, hosts: String },
    /// A container's resource figures from its cgroup, answered with [`Response::Stats`];
    /// WrongState once its cgroup is gone.
    Stats { container: String },
    /// The processes in a container's cgroup (and the cgroups below it), answered with
    /// [`Response::Processes`]; WrongState once its cgroup is gone.
    Processes { container: String },
    /// Ready an idle zone for its first container (a pooled zone, while it waits): the pod's
    /// namespaces and network, the modules and tools disks, and, given a container's seccomp
    /// filter (a spec's `linux.seccomp` as JSON), the OCI runtime's cache of compiled filters.
    /// Answered with Done, or Failed; a zone that failed to prepare still serves.
    Prepare { seccomp_json: Option<String> },
    /// Sync filesystems, answer Done, and power the zone off. Done means every write reached
    /// the zone's disks and shares: the host may end the VM from then on.
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

/// Largest `/etc/hosts` the host may send in [`Request::UpdateHosts`].
pub const MAX_HOSTS_FILE: usize = 256 * 1024;

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

/// The highest signal number Linux has (SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;

impl ExitStatus {
    /// Whether a real process could have ended this way: a code a process can return (0–255),
    /// or a signal Linux has.
    pub fn is_possible(self) -> bool {
        match self {
            ExitStatus::Code { code } => (0..=255).contains(&code),
            ExitStatus::Signal { signal } => (1..=MAX_SIGNAL).contains(&signal),
            ExitStatus::OomKilled => true,
        }
    }

    /// Docker's convention: the exit code, or 128 + the signal number; OOM shows as SIGKILL.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code { code } => code,
            // Saturating: a record on disk is not checked the way a guest's message is.
            ExitStatus::Signal { signal } => 128i32.saturating_add(signal),
            ExitStatus::OomKilled => 137,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Pong,
    Done,
    Failed { kind: FailureKind, message: String },
    /// What a [`DebugRequest::ProbeShare`] saw: the bytes read (at most [`MAX_PROBE_READ`], as
    /// lossy UTF-8) or the error, and whether the path could be opened for writing.
    Probed { read: Result<String, String>, write: Result<(), String> },
    /// A container's figures, the answer to [`Request::Stats`] only.
    Stats(Box<crate::stats::ContainerStats>),
    /// A container's processes, the answer to [`Request::Processes`] only.
    Processes(Box<crate::processes::ProcessList>),
}

/// Why a request failed, as a kind the host can act on; the message is for people only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The process's executable, or another file it names (a copy's source, say), does not
    /// exist.
    NotFound,
    /// The process's executable exists but may not be run.
    PermissionDenied,
    /// The spec or request is invalid (bad user, bad id, bad mount, ...).
    BadRequest,
    /// No container with that id is in the zone.
    NoSuchContainer,
    /// A container with that id already exists in the zone.
    AlreadyExists,
    /// A bound was reached (containers, exec'd processes, process numbers, a copy's size).
    Limit,
    /// The container is not in a state that allows this (not running, still running, ...).
    WrongState,
    /// The zone cannot serve requests (not ready, its channel closed, powering off).
    ZoneGone,
    /// Anything else that went wrong in the zone.
    Internal,
}

impl FailureKind {
    /// Docker's exit code for a process that did not start for this reason: 127 when the
    /// command does not exist, 126 when it cannot be run.
    pub fn start_exit_code(self) -> Option<u8> {
        match self {
            FailureKind::NotFound => Some(127),
            FailureKind::PermissionDenied => Some(126),
            _ => None,
        }
    }
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
        let msg = HostMessage::Request { id: 3, request: Request::Exec { container: "c1".into(), process: 1, exec: Box::new(exec) } };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"request":{"id":3,"request":{"exec":{"container":"c1","process":1,"exec":{"process_json":"{}","user":"app","tty":false,"stdin":true}}}}}"#);
        assert_eq!(serde_json::from_str::<HostMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn copy_wire_form() {
        let copy = CopyIn { container: "c1".into(), from: "cp/1".into(), name: "notes".into(), to: "/tmp/".into(), contents: false };
        let msg = HostMessage::Request { id: 4, request: Request::CopyIn(Box::new(copy)) };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"request":{"id":4,"request":{"copy_in":{"container":"c1","from":"cp/1","name":"notes","to":"/tmp/","contents":false}}}}"#);
        assert_eq!(serde_json::from_str::<HostMessage>(&json).unwrap(), msg);
        let out = r#"{"request":{"id":5,"request":{"copy_out":{"container":"c1","from":"/etc","to":"cp/2","extra":1}}}}"#;
        assert!(serde_json::from_str::<HostMessage>(out).is_err(), "unknown fields are refused");
    }

    #[test]
    fn failures_carry_a_kind() {
        let msg = GuestMessage::Response { id: 2, response: Response::Failed { kind: FailureKind::NotFound, message: "no sh".into() } };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"response":{"id":2,"response":{"failed":{"kind":"not_found","message":"no sh"}}}}"#);
        assert_eq!(FailureKind::NotFound.start_exit_code(), Some(127));
        assert_eq!(FailureKind::PermissionDenied.start_exit_code(), Some(126));
        assert_eq!(FailureKind::Internal.start_exit_code(), None);
    }

    #[test]
    fn container_ids() {
        for good in ["c1", "0123abcdef", "my_box.v2-x+y"] {
            assert!(valid_container_id(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\ny", &"a".repeat(MAX_CONTAINER_ID + 1)] {
            assert!(!valid_container_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = r#"{"response":{"id":7,"response":"pong","extra":1}}"#;
        assert!(serde_json::from_str::<GuestMessage>(bad).is_err());
    }
}
