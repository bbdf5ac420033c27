//! `moat stats [--no-stream] [--format json] [CONTAINER…]`: Docker's live table of containers'
//! resource use, from their cgroups in the zones, refreshed each second until Ctrl-C.
//!
//! NET I/O is received / sent over the container's network namespace, loopback left out: a
//! pod's containers share one, so they show the same figures. ZONE MEM, beyond Docker's
//! columns, is the resident memory of the container's zone's QEMU on the host: what the whole
//! zone costs.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use moat_runtime::{is_running, Found, Runtime, Stats};

/// Time between two samples: CPU % is the use between them.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    /// One JSON object a container a line, with Docker's keys.
    Json,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Print one sample and exit, rather than refreshing each second.
    #[arg(long)]
    no_stream: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Containers to show (names or ids); every running one without.
    containers: Vec<String>,
}

/// One container's line.
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    mem_usage: String,
    mem_perc: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "PIDs")]
    pids: String,
    zone_mem: String,
}

pub fn run(root: &Path, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    // Every name is resolved before anything is printed: one missing name is one error line.
    let named = args.containers.iter().map(|key| runtime.containers().find(key)).collect::<Result<Vec<_>, _>>()?;
    let mut previous: HashMap<String, Stats> = HashMap::new();
    let mut first = true;
    loop {
        let shown = if named.is_empty() { runtime.containers().list()?.into_iter().filter(is_running).collect() } else { refreshed(&runtime, &named) };
        let mut samples: HashMap<String, Stats> = shown.iter().filter_map(|f| Some((f.container.id.clone(), runtime.containers().stats(f).ok()?))).collect();
        if first {
            // CPU % needs two samples: the first round only sets the baseline.
            first = false;
            previous = std::mem::take(&mut samples);
            std::thread::sleep(INTERVAL);
            continue;
        }
        let rows: Vec<Row> = shown.iter().map(|f| row(f, samples.get(&f.container.id), previous.get(&f.container.id))).collect();
        print(&rows, args.format, !args.no_stream)?;
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        previous = samples;
        std::thread::sleep(INTERVAL);
    }
}

/// The named containers as their records now say (running or not); one removed meanwhile keeps
/// its last record, and shows no figures.
fn refreshed(runtime: &Runtime, named: &[Found]) -> Vec<Found> {
    named
        .iter()
        .map(|f| runtime.containers().find(&f.container.id).unwrap_or_else(|_| f.clone()))
        .collect()
}

fn row(found: &Found, now: Option<&Stats>, earlier: Option<&Stats>) -> Row {
    let c = &found.container;
    let Some(now) = now else {
        let none = || "--".to_string();
        return Row { id: c.id.clone(), name: c.name.clone(), cpu_perc: none(), mem_usage: none(), mem_perc: none(), net_io: none(), block_io: none(), pids: none(), zone_mem: none() };
    };
    let cpu = earlier.and_then(|e| now.cpu_percent_since(e)).map_or_else(|| "--".into(), |p| format!("{p:.2}%"));
    let (io, net) = (&now.container.io, &now.container.net);
    Row {
        id: c.id.clone(),
        name: c.name.clone(),
        cpu_perc: cpu,
        mem_usage: format!("{} / {}", binary_size(now.memory_usage()), binary_size(now.memory_limit)),
        mem_perc: format!("{:.2}%", now.memory_percent()),
        net_io: format!("{} / {}", decimal_size(net.rx_bytes), decimal_size(net.tx_bytes)),
        block_io: format!("{} / {}", decimal_size(io.read_bytes), decimal_size(io.write_bytes)),
        pids: now.container.pids.current.to_string(),
        zone_mem: now.zone.map_or_else(|| "--".into(), |z| binary_size(z.rss_bytes)),
    }
}

fn print(rows: &[Row], format: Format, streaming: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if streaming && out.is_terminal() {
        // Docker's refresh: clear the screen and start from its top.
        write!(out, "\x1b[2J\x1b[H")?;
    }
    match format {
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        Format::Table => {
            writeln!(out, "{:<14} {:<20} {:<8} {:<22} {:<8} {:<20} {:<20} {:<6} ZONE MEM", "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")?;
            for r in rows {
                writeln!(out, "{:<14} {:<20} {:<8} {:<22} {:<8} {:<20} {:<20} {:<6} {}", r.id, r.name, r.cpu_perc, r.mem_usage, r.mem_perc, r.net_io, r.block_io, r.pids, r.zone_mem)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Memory as Docker writes it: binary units, four significant digits (`1.227MiB`).
fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// I/O as Docker writes it: decimal units, four significant digits (`4.1kB`).
fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

fn scaled(bytes: u64, base: f64, units: &[&str]) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base && unit < units.len() - 1 {
        value /= base;
        unit += 1;
    }
    let decimals = match value {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_writes_them() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1_286_554), "1.227MiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(u64::MAX), "16384PiB");
        assert_eq!(decimal_size(4096), "4.096kB");
        assert_eq!(decimal_size(123_456_789), "123.5MB");
        assert_eq!(decimal_size(999), "999B");
    }
}
