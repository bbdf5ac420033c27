//! The supervisor's local API: what `moat` clients ask of a running zone, over the zone's
//! `api.sock`, in the same bounded frames as the guest channel.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use moat_proto::frame::{decode, split_frames};
use moat_proto::{encode, DebugRequest, FrameDecoder, FrameError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiRequest {
    /// Round trip to the guest's init.
    Ping,
    /// Clean shutdown: ask init to power off, then force after a grace period.
    Stop { timeout_secs: u64 },
    Debug(DebugRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiResponse {
    Pong { round_trip_us: u64 },
    Done,
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the zone's supervisor at {path}: {err}")]
    Connect { path: String, err: std::io::Error },
    #[error("talking to the zone's supervisor: {0}")]
    Io(#[from] std::io::Error),
    #[error("the zone's supervisor closed the connection (the zone ended)")]
    Closed,
    #[error("bad reply from the zone's supervisor: {0}")]
    Frame(#[from] FrameError),
}

/// Send one request and wait up to `timeout` for its answer.
pub fn call(socket: &Path, request: &ApiRequest, timeout: Duration) -> Result<ApiResponse, ApiError> {
    let mut stream = UnixStream::connect(socket).map_err(|err| ApiError::Connect { path: socket.display().to_string(), err })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(&encode(request)?)?;
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(ApiError::Closed);
        }
        if let Some(frame) = split_frames(&mut decoder, &buf[..n])?.first() {
            return Ok(decode(frame)?);
        }
    }
}
