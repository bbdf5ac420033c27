//! The supervisor's local API: what `moat` clients ask of a running zone, over the zone's
//! `api.sock`, in the same bounded frames as the guest channel.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use moat_proto::frame::{decode, split_frames};
use moat_proto::{encode, DebugRequest, ExecRequest, ExitStatus, FailureKind, FrameDecoder, FrameError, Stream};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiRequest {
    /// Round trip to the guest's init.
    Ping,
    /// Clean shutdown: ask init to power off, then force after a grace period.
    Stop { timeout_secs: u64 },
    Debug(DebugRequest),
    /// Create a container whose record the caller added to the zone's record. The supervisor
    /// puts its image on the zone's share and asks init to create it.
    CreateContainer(Box<CreateContainer>),
    /// Start a created container and attach this connection to its process: its output and
    /// exit come here, and this connection's Stdin, Signal and Resize go to it.
    StartContainer { container: String },
    /// Attach this connection to a running container's process, as `StartContainer` does.
    Attach { container: String },
    /// Start another process in a running container and attach this connection to it.
    Exec { container: String, exec: Box<ExecRequest> },
    /// Send a signal to a container's process.
    Kill { container: String, signal: i32 },
    /// Remove a container from the zone (and its record); `force` kills it first.
    RemoveContainer { container: String, force: bool },
    /// Copy a host file or directory into a container (`moat cp HOST CTR:PATH`): the
    /// supervisor exposes it read-only on the share while init copies it. Answered with Done.
    CopyIn(Box<CopyIn>),
    /// Copy a file, directory or symlink out of a container (`moat cp CTR:PATH HOST`), or its
    /// root filesystem or writable layer as a tar (`moat export`, `moat commit`), into a fresh
    /// staging directory on the host, answered with [`ApiResponse::Staged`].
    CopyOut { container: String, from: moat_proto::CopySource },
    /// Give a container's `/etc/hosts` new content (names on the zone's network changed).
    UpdateHosts { container: String, hosts: String },
    /// Ready an idle zone for a container carrying this seccomp filter (see
    /// [`moat_proto::Request::Prepare`]).
    Prepare { seccomp_json: Option<String> },
    /// A container's resource figures, answered with [`ApiResponse::Stats`].
    Stats { container: String },
    /// A container's processes, answered with [`ApiResponse::Processes`].
    Processes { container: String },
    /// For the process this connection talks to.
    Stdin { #[serde(with = "moat_proto::bytes")] data: Vec<u8> },
    Signal { signal: i32 },
    Resize { rows: u16, cols: u16 },
}

/// A container for the supervisor to create; host paths are the caller's, who is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    pub container: String,
    pub spec_json: String,
    /// The image's EROFS file on the host, shared read-only with the zone.
    pub image: std::path::PathBuf,
    pub tty: bool,
    pub stdin: bool,
    /// Host directories the container's spec binds from the share.
    pub volumes: Vec<Exposure>,
    /// Its `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
    pub name_files: Option<moat_proto::NameFiles>,
    /// Start its process too: this connection then hears its output and exit, as after
    /// `StartContainer`.
    #[serde(default)]
    pub start: bool,
}

/// A copy into a container; host paths are the caller's, who is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyIn {
    pub container: String,
    /// The host file or directory, absolute (a symlink is followed, once).
    pub source: std::path::PathBuf,
    /// The source's own name, which a copy into an existing directory takes.
    pub name: String,
    /// A container path as [`moat_proto::CopyPath`] parses it.
    pub to: String,
    /// Copy what the source directory holds rather than the directory (`SRC/.`).
    pub contents: bool,
}

/// A host file or directory to put on the zone's share under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposure {
    pub source: std::path::PathBuf,
    pub name: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiResponse {
    Pong { round_trip_us: u64 },
    Done,
    Error { kind: FailureKind, message: String },
    Output { stream: Stream, #[serde(with = "moat_proto::bytes")] data: Vec<u8> },
    Exited { status: ExitStatus },
    /// The zone ended before the process did: the last message every attached client hears.
    ZoneEnded { reason: String },
    /// A copy out of a container is staged in `dir`, withdrawn from the share: the copy is
    /// `dir/`[`moat_proto::copy::STAGED_ITEM`], as the guest wrote it, so hostile. The caller
    /// freezes, reads and removes it (see [`crate::staging`]).
    Staged { dir: std::path::PathBuf },
    /// A share probe's result (debug zones only); see [`DebugRequest::ProbeShare`].
    Probed { read: Result<String, String>, write: Result<(), String> },
    /// A container's figures, as the guest gave them and the session checked them.
    Stats(Box<moat_proto::ContainerStats>),
    /// A container's processes, as the guest gave them and the session checked them.
    Processes(Box<moat_proto::ProcessList>),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the zone's supervisor at {path}: {err}")]
    Connect { path: String, err: std::io::Error },
    #[error("talking to the zone's supervisor: {0}")]
    Io(#[from] std::io::Error),
    #[error("the zone's supervisor did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the zone's supervisor closed the connection (the zone ended)")]
    Closed,
    #[error("bad reply from the zone's supervisor: {0}")]
    Frame(#[from] FrameError),
}

/// Send one request and wait up to `timeout` for its answer.
pub fn call(socket: &Path, request: &ApiRequest, timeout: Duration) -> Result<ApiResponse, ApiError> {
    let mut conn = Connection::open(socket)?;
    conn.send(request)?;
    conn.receive_within(timeout)
}

/// A connection that stays open: for attaching to a workload's streams.
pub struct Connection {
    stream: UnixStream,
    decoder: FrameDecoder,
    received: std::collections::VecDeque<ApiResponse>,
}

impl Connection {
    pub fn open(socket: &Path) -> Result<Self, ApiError> {
        let stream = UnixStream::connect(socket).map_err(|err| ApiError::Connect { path: socket.display().to_string(), err })?;
        Ok(Self { stream, decoder: FrameDecoder::new(), received: Default::default() })
    }

    /// A second handle on the same connection, for sending while another thread receives.
    pub fn sender(&self) -> Result<Sender, ApiError> {
        Ok(Sender { stream: self.stream.try_clone()? })
    }

    pub fn send(&mut self, request: &ApiRequest) -> Result<(), ApiError> {
        self.stream.write_all(&encode(request)?)?;
        Ok(())
    }

    /// The next message from the supervisor, waiting at most `timeout` for it; later receives
    /// wait as long as it takes.
    pub fn receive_within(&mut self, timeout: Duration) -> Result<ApiResponse, ApiError> {
        self.stream.set_read_timeout(Some(timeout))?;
        let answer = self.receive();
        self.stream.set_read_timeout(None)?;
        match answer {
            // A read past its timeout fails with EAGAIN: "Resource temporarily unavailable".
            Err(ApiError::Io(err)) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Err(ApiError::Timeout(timeout)),
            answer => answer,
        }
    }

    /// The next message from the supervisor (blocking).
    pub fn receive(&mut self) -> Result<ApiResponse, ApiError> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(msg) = self.received.pop_front() {
                return Ok(msg);
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(ApiError::Closed);
            }
            for frame in split_frames(&mut self.decoder, &buf[..n])? {
                self.received.push_back(decode(&frame)?);
            }
        }
    }
}

pub struct Sender {
    stream: UnixStream,
}

impl Sender {
    pub fn send(&mut self, request: &ApiRequest) -> Result<(), ApiError> {
        self.stream.write_all(&encode(request)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_that_never_answers_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = call(&socket, &ApiRequest::Ping, Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.to_string(), "the zone's supervisor did not answer within 200ms");
        drop(listener);
    }
}
