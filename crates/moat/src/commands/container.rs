//! Container commands: `ps`, `logs`, `kill`, `stop`, `rm`, `wait`. A container is the workload
//! of its own zone, so each maps onto that zone.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use moat_proto::ExitStatus;
use moat_zone::api::{self, ApiRequest, ApiResponse};
use moat_zone::lifecycle::ZoneState;
use moat_zone::logs::LogLine;
use moat_zone::ops;
use moat_zone::state::{ZoneDir, ZoneRecord, ZoneStore};

use super::run::write_output;

pub fn ps(root: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    println!("{:<14} {:<32} {:<24} {:<28} NAMES", "CONTAINER ID", "IMAGE", "COMMAND", "STATUS");
    for record in store.list()? {
        let Some(workload) = &record.workload else { continue };
        if !all && !is_running(&record) {
            continue;
        }
        let status = ps_status(workload.exit, &record.effective_state());
        let command = format!("\"{}\"", workload.command.join(" "));
        println!("{:<14} {:<32} {:<24} {:<28} {}", record.id, clip(&workload.image, 32), clip(&command, 24), status, record.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The STATUS column: Docker's words, and whether an exit was an OOM kill.
fn ps_status(exit: Option<ExitStatus>, state: &ZoneState) -> String {
    match exit {
        Some(ExitStatus::OomKilled) => format!("Exited ({}, OOM-killed)", ExitStatus::OomKilled.shell_code()),
        Some(exit) => format!("Exited ({})", exit.shell_code()),
        None if state.is_terminal() => format!("Zone {}", state.name()),
        None => "Up".to_string(),
    }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        text.chars().take(width - 1).chain(std::iter::once('…')).collect()
    }
}

/// Whether the zone's container still runs: its workload has not exited, its zone is live.
pub fn is_running(record: &ZoneRecord) -> bool {
    record.workload.as_ref().is_some_and(|w| w.exit.is_none()) && !record.effective_state().is_terminal()
}

pub fn container(store: &ZoneStore, key: &str) -> anyhow::Result<(ZoneDir, ZoneRecord)> {
    let (dir, record) = store.find(key).map_err(|_| anyhow::anyhow!("no such container: {key}"))?;
    if record.workload.is_none() {
        bail!("{key} is a bare zone, not a container (see `moat zone`)");
    }
    Ok((dir, record))
}

pub fn logs(root: &Path, key: &str, follow: bool) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    let (dir, _) = container(&store, key)?;
    let file = std::fs::File::open(dir.workload_log()).context("opening the container's log")?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    loop {
        // Lines are written whole by the supervisor; a partial one at the end is finished by a
        // later read, so it stays in `line`.
        (&mut reader).take(MAX_LOG_LINE).read_until(b'\n', &mut line)?;
        if line.ends_with(b"\n") {
            if let Ok(entry) = serde_json::from_slice::<LogLine>(&line) {
                write_output(entry.stream, &entry.data);
            }
            line.clear();
            continue;
        }
        if line.len() as u64 >= MAX_LOG_LINE {
            bail!("the container's log holds a line longer than {MAX_LOG_LINE} bytes");
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if dir.read()?.is_finished() {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A log line holds one output chunk (at most one frame) in base64 and JSON.
const MAX_LOG_LINE: u64 = 2 * 1024 * 1024;

/// Parse `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        if nix::sys::signal::Signal::try_from(number).is_ok() {
            return Ok(number);
        }
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| anyhow::anyhow!("invalid signal: {text}"))
}

pub fn kill(root: &Path, key: &str, signal: &str) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(signal)?;
    let store = ZoneStore::open(root)?;
    let (dir, record) = container(&store, key)?;
    send_signal(&dir, signal)?;
    println!("{}", record.name);
    Ok(ExitCode::SUCCESS)
}

fn send_signal(dir: &ZoneDir, signal: i32) -> anyhow::Result<()> {
    let mut conn = api::Connection::open(&dir.api_socket())?;
    conn.send(&ApiRequest::Signal { signal })?;
    // Signals are answered only on error; a ping right after proves the signal was passed on.
    conn.send(&ApiRequest::Ping)?;
    match conn.receive() {
        Ok(ApiResponse::Error { message }) => bail!("{message}"),
        Ok(_) => Ok(()),
        // The signal ended the workload and its zone powered off before the ping came back.
        Err(api::ApiError::Closed) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

pub fn stop(root: &Path, key: &str, seconds: u64) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    let (dir, record) = container(&store, key)?;
    if is_running(&record) {
        if send_signal(&dir, libc::SIGTERM).is_ok() && wait_exit(&dir, Some(Duration::from_secs(seconds))).is_none() {
            let _ = send_signal(&dir, libc::SIGKILL);
            wait_exit(&dir, Some(Duration::from_secs(10)));
        }
        let _ = ops::stop(&dir, Duration::from_secs(10));
    }
    println!("{}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// Wait for the workload's exit status, or for its zone to end without one. `None` after
/// `timeout` (never, without one).
fn wait_exit(dir: &ZoneDir, timeout: Option<Duration>) -> Option<Option<i32>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let record = dir.read().ok()?;
        if let Some(exit) = record.workload.as_ref().and_then(|w| w.exit) {
            return Some(Some(exit.shell_code()));
        }
        if record.effective_state().is_terminal() {
            return Some(None);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait(root: &Path, keys: &[String]) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    for key in keys {
        let (dir, _) = container(&store, key)?;
        match wait_exit(&dir, None) {
            Some(Some(code)) => println!("{code}"),
            _ => bail!("container {key} ended without an exit status"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(root: &Path, keys: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let store = ZoneStore::open(root)?;
    let mut failed = false;
    for key in keys {
        let removed = container(&store, key).and_then(|(_, record)| {
            if is_running(&record) && !force {
                bail!("container {key} is running: stop it first, or use --force");
            }
            Ok(ops::remove(&store, &record.id, true)?)
        });
        match removed {
            Ok(record) => println!("{}", record.name),
            Err(err) => {
                eprintln!("moat: {}", super::one_line(&err));
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_shows_exits_oom_kills_and_dead_zones() {
        let running = ZoneState::Running;
        let failed = ZoneState::Failed { reason: "gone".into() };
        assert_eq!(ps_status(None, &running), "Up");
        assert_eq!(ps_status(None, &failed), "Zone failed");
        assert_eq!(ps_status(Some(ExitStatus::Code { code: 3 }), &failed), "Exited (3)");
        assert_eq!(ps_status(Some(ExitStatus::Signal { signal: 9 }), &running), "Exited (137)");
        assert_eq!(ps_status(Some(ExitStatus::OomKilled), &running), "Exited (137, OOM-killed)");
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
