//! Container commands: `ps`, `logs`, `kill`, `stop`, `rm`, `wait`, on the runtime library.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use moat_proto::ExitStatus;
use moat_runtime::{is_running, pod_name, Found, Runtime};
use moat_zone::lifecycle::ZoneState;
use moat_zone::logs::LogLine;

use super::run::{self, write_output};

fn open(root: &Path) -> anyhow::Result<Runtime> {
    Ok(Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?)
}

pub fn ps(root: &Path, all: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let runtime = open(root)?;
    if !quiet {
        println!("{:<14} {:<32} {:<24} {:<28} {:<16} NAMES", "CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "POD");
    }
    for found in runtime.containers().list()? {
        if !all && !is_running(&found) {
            continue;
        }
        let c = &found.container;
        if quiet {
            println!("{}", c.id);
            continue;
        }
        let status = ps_status(c.exit, c.started_unix.is_some(), &found.zone.effective_state());
        let command = format!("\"{}\"", c.command.join(" "));
        let pod = pod_name(&found.zone).unwrap_or("");
        println!("{:<14} {:<32} {:<24} {:<28} {:<16} {}", c.id, clip(&c.image, 32), clip(&command, 24), status, clip(pod, 16), c.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The STATUS column: Docker's words, and whether an exit was an OOM kill.
fn ps_status(exit: Option<ExitStatus>, started: bool, zone: &ZoneState) -> String {
    match exit {
        Some(ExitStatus::OomKilled) => format!("Exited ({}, OOM-killed)", ExitStatus::OomKilled.shell_code()),
        Some(exit) => format!("Exited ({})", exit.shell_code()),
        None if zone.is_terminal() => format!("Zone {}", zone.name()),
        None if !started => "Created".to_string(),
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

pub fn logs(root: &Path, key: &str, follow: bool) -> anyhow::Result<ExitCode> {
    let runtime = open(root)?;
    let found = runtime.containers().find(key)?;
    let file = std::fs::File::open(found.dir.container_log(&found.container.id)).context("opening the container's log")?;
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
        if !follow || finished(&found) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nothing more will be written to the container's log.
fn finished(found: &Found) -> bool {
    match found.dir.read() {
        Ok(zone) => zone.is_finished() || zone.container(&found.container.id).is_none_or(|c| c.exit.is_some()),
        Err(_) => true,
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

/// `moat start`: start created containers; with `attach`, one, and relay it until it exits.
pub fn start(root: &Path, keys: &[String], attach: bool) -> anyhow::Result<ExitCode> {
    if attach && keys.len() != 1 {
        bail!("start --attach takes one container");
    }
    let runtime = open(root)?;
    let containers = runtime.containers();
    for key in keys {
        let found = containers.find(key)?;
        let conn = match containers.start(&found) {
            Ok(conn) => conn,
            Err(err) => return run::start_failed(&err, 125),
        };
        if attach {
            return run::attach_until_exit(conn, &found);
        }
        println!("{}", found.container.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn kill(root: &Path, key: &str, signal: &str) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(signal)?;
    let runtime = open(root)?;
    let found = runtime.containers().find(key)?;
    runtime.containers().kill(&found, signal)?;
    println!("{}", found.container.name);
    Ok(ExitCode::SUCCESS)
}

pub fn stop(root: &Path, key: &str, seconds: u64) -> anyhow::Result<ExitCode> {
    let runtime = open(root)?;
    let found = runtime.containers().find(key)?;
    runtime.containers().stop(&found, Duration::from_secs(seconds))?;
    println!("{}", found.container.name);
    Ok(ExitCode::SUCCESS)
}

pub fn wait(root: &Path, keys: &[String]) -> anyhow::Result<ExitCode> {
    let runtime = open(root)?;
    for key in keys {
        let found = runtime.containers().find(key)?;
        match runtime.containers().wait(&found, None)? {
            Some(Some(status)) => println!("{}", status.shell_code()),
            _ => bail!("container {key} ended without an exit status"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(root: &Path, keys: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let runtime = open(root)?;
    let mut failed = false;
    for key in keys {
        let removed = runtime.containers().find(key).and_then(|found| {
            runtime.containers().remove(&found, force)?;
            Ok(found)
        });
        match removed {
            Ok(found) => println!("{}", found.container.name),
            Err(err) => {
                eprintln!("moat: {err}");
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
        assert_eq!(ps_status(None, true, &running), "Up");
        assert_eq!(ps_status(None, false, &running), "Created");
        assert_eq!(ps_status(None, true, &failed), "Zone failed");
        assert_eq!(ps_status(Some(ExitStatus::Code { code: 3 }), true, &failed), "Exited (3)");
        assert_eq!(ps_status(Some(ExitStatus::Signal { signal: 9 }), true, &running), "Exited (137)");
        assert_eq!(ps_status(Some(ExitStatus::OomKilled), true, &running), "Exited (137, OOM-killed)");
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
