//! The container's stdio: containerd names fifos (or files) for stdin, stdout and stderr; the
//! runtime's connection carries the process's output, its exit, and stdin back to it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::thread::JoinHandle;

use moat_proto::Stream;
use moat_runtime::ProcessEnd;
use moat_zone::api::{ApiError, ApiRequest, ApiResponse, Connection, Sender};

/// The paths containerd gave; an empty one means that stream is not wanted.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// Relay between the connection and the paths until the process ends, on threads of their own.
/// The handle yields how the process ended.
pub fn relay(mut conn: Connection, paths: StdioPaths) -> Result<JoinHandle<ProcessEnd>, ApiError> {
    if !paths.stdin.is_empty() {
        let sender = conn.sender()?;
        let path = paths.stdin.clone();
        std::thread::spawn(move || forward_stdin(&path, sender));
    }
    Ok(std::thread::spawn(move || {
        // Opening a fifo for writing waits for its reader, containerd, which opened it before
        // asking for the task: so this happens here, off the RPC's thread.
        let mut stdout = open_output(&paths.stdout);
        let mut stderr = open_output(&paths.stderr);
        loop {
            match conn.receive() {
                Ok(ApiResponse::Output { stream, data }) => {
                    let out = match stream {
                        Stream::Stdout => stdout.as_mut(),
                        Stream::Stderr => stderr.as_mut(),
                    };
                    // A reader that went away loses the rest of the output, not the exit.
                    if let Some(out) = out {
                        let _ = out.write_all(&data);
                    }
                }
                Ok(ApiResponse::Error { message, .. }) => log::warn!("the zone: {message}"),
                Ok(other) => {
                    if let Some(end) = ProcessEnd::announced_by(&other) {
                        return end;
                    }
                }
                Err(_) => return ProcessEnd::ZoneEnded(None),
            }
        }
    }))
}

fn open_output(path: &str) -> Option<File> {
    if path.is_empty() {
        return None;
    }
    OpenOptions::new().write(true).open(path).map_err(|err| log::warn!("opening {path}: {err}")).ok()
}

/// Copy `path` to the process's stdin; its end closes the process's stdin.
fn forward_stdin(path: &str, mut sender: Sender) {
    let Ok(mut input) = File::open(path) else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let data = match input.read(&mut buf) {
            Ok(0) | Err(_) => Vec::new(),
            Ok(n) => buf[..n].to_vec(),
        };
        let last = data.is_empty();
        if sender.send(&ApiRequest::Stdin { data }).is_err() || last {
            return;
        }
    }
}
