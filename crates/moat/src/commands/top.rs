//! `moat top CONTAINER [--format json]`: Docker's `docker top`, the container's processes with
//! `ps -ef`'s columns.
//!
//! The processes run in the container's zone, under its kernel: PID, PPID and UID are the
//! zone's numbers (not the host's, as Docker shows, nor those inside the container's own pid
//! and user namespaces: its root shows as the uid the zone maps it to), and a start
//! time is the zone's count since its boot, placed on the host's clock as now less the
//! process's age.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone};
use moat_proto::processes::MAX_PROCESSES;
use moat_proto::ProcessInfo;
use moat_runtime::top::{lifetime_cpu_percent, running_for};
use moat_runtime::Runtime;

const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    /// One JSON object, as Docker's API answers: `{"Titles": [...], "Processes": [[...]]}`.
    Json,
}

#[derive(clap::Args)]
pub struct TopArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The container (name or id); it must be running.
    container: String,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Table {
    titles: [&'static str; 8],
    processes: Vec<[String; 8]>,
}

pub fn run(root: &Path, args: TopArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let found = runtime.containers().find(&args.container)?;
    let list = runtime.containers().processes(&found)?;
    let now = chrono::Local::now();
    let processes = list.processes.iter().map(|p| row(p, list.read_at_usec, &now)).collect();
    let table = Table { titles: TITLES, processes };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&table)?)?,
        Format::Table => write!(out, "{}", aligned(&table))?,
    }
    out.flush()?;
    if list.truncated {
        eprintln!("moat: {} has more than {MAX_PROCESSES} processes; only {MAX_PROCESSES} are shown", found.container.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn row<Tz: TimeZone>(p: &ProcessInfo, read_at_usec: u64, now: &DateTime<Tz>) -> [String; 8]
where
    Tz::Offset: std::fmt::Display,
{
    [
        p.uid.to_string(),
        p.pid.to_string(),
        p.ppid.to_string(),
        lifetime_cpu_percent(p, read_at_usec).to_string(),
        start_time(now, running_for(p, read_at_usec)),
        tty_name(p.tty),
        cpu_time(Duration::from_micros(p.cpu_usec)),
        p.command.clone(),
    ]
}

/// Columns padded to their widest cell, the command last and unpadded, as `ps` prints them.
fn aligned(table: &Table) -> String {
    let mut widths = table.titles.map(str::len);
    for cells in &table.processes {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (n, cell) in cells.iter().enumerate() {
            if n + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$} ", width = widths[n]));
            }
        }
        text.push('\n');
        text
    };
    let mut text = line(&table.titles);
    for cells in &table.processes {
        text.push_str(&line(&cells.each_ref().map(String::as_str)));
    }
    text
}

/// `ps`'s STIME: `HH:MM` for a process started in the last day, `MonDD` in the same year,
/// else the year.
fn start_time<Tz: TimeZone>(now: &DateTime<Tz>, age: Duration) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let Some(started) = chrono::Duration::from_std(age).ok().and_then(|age| now.clone().checked_sub_signed(age)) else {
        return "?".into();
    };
    if age < Duration::from_secs(24 * 3600) {
        started.format("%H:%M").to_string()
    } else if started.year() == now.year() {
        started.format("%b%d").to_string()
    } else {
        started.format("%Y").to_string()
    }
}

/// `ps`'s TIME: `[DD-]HH:MM:SS`.
fn cpu_time(cpu: Duration) -> String {
    let secs = cpu.as_secs();
    let (days, hours, minutes, seconds) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}-{hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

/// The terminal a `/proc/PID/stat` device number names: `?` for none, the usual names for
/// pseudo-terminals, virtual consoles, serial ports and the console, else `MAJOR,MINOR`.
fn tty_name(nr: u32) -> String {
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xf_ff00));
    match (major, minor) {
        (0, 0) => "?".into(),
        (136..=143, _) => format!("pts/{}", (major - 136) * 256 + minor),
        (4, 0..=63) => format!("tty{minor}"),
        (4, _) => format!("ttyS{}", minor - 64),
        (5, 1) => "console".into(),
        (229, _) => format!("hvc{minor}"),
        _ => format!("{major},{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn cpu_time_as_ps_writes_it() {
        assert_eq!(cpu_time(Duration::ZERO), "00:00:00");
        assert_eq!(cpu_time(Duration::from_millis(61_900)), "00:01:01");
        assert_eq!(cpu_time(Duration::from_secs(2 * 86400 + 3 * 3600 + 4 * 60 + 5)), "2-03:04:05");
    }

    #[test]
    fn start_time_by_age() {
        let now = Utc.with_ymd_and_hms(2024, 6, 15, 14, 30, 0).unwrap();
        assert_eq!(start_time(&now, Duration::from_secs(90 * 60)), "13:00");
        assert_eq!(start_time(&now, Duration::from_secs(3 * 86400)), "Jun12");
        assert_eq!(start_time(&now, Duration::from_secs(200 * 86400)), "2023");
        assert_eq!(start_time(&now, Duration::MAX), "?");
    }

    #[test]
    fn terminal_names() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(136 << 8), "pts/0");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((137 << 8) | 1), "pts/257");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(tty_name((4 << 8) | 64), "ttyS0");
        assert_eq!(tty_name((5 << 8) | 1), "console");
        assert_eq!(tty_name(254 << 8), "254,0");
    }

    #[test]
    fn a_row_and_its_table() {
        let sh = ProcessInfo { pid: 312, ppid: 300, uid: 0, state: 'S', start_usec: 1_000_000, cpu_usec: 1_500_000, rss_bytes: 1 << 20, tty: 0, command: "sh -c sleep 1000 & wait".into() };
        let now = Utc.with_ymd_and_hms(2024, 6, 15, 14, 30, 0).unwrap();
        let cells = row(&sh, 61_000_000, &now);
        assert_eq!(cells, ["0", "312", "300", "2", "14:29", "?", "00:00:01", "sh -c sleep 1000 & wait"].map(String::from));
        let text = aligned(&Table { titles: TITLES, processes: vec![cells] });
        assert_eq!(text, "UID PID PPID C STIME TTY TIME     CMD\n0   312 300  2 14:29 ?   00:00:01 sh -c sleep 1000 & wait\n");
    }
}
