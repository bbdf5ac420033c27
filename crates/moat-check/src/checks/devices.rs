//! Devices: block devices and raw kernel devices visible in /dev, and which of them this
//! process can open. Opening is read-only and non-blocking, and nothing is read.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::Context;
use crate::report::{CheckResult, Priority, Verdict};
use crate::sys;

const EXPLAIN: &str = "A disk that opens is the machine's data, readable and often writable below any filesystem \
permission; /dev/mem, /dev/kmem and /dev/port reach physical memory and I/O ports; /dev/kmsg is the kernel log. \
Runtimes hide them from unprivileged containers; a privileged container on a host sees the host's. In a moat \
zone the devices are the zone's own virtual disks.";

/// Bound on /dev entries examined. Threat: a privileged workload can create device nodes
/// without limit; the checker looks at this many and says when it stopped.
pub const MAX_DEV_ENTRIES: usize = 4096;

/// Character devices that reach kernel memory, I/O ports or the kernel log: (major, minor, name).
const RAW_CHAR: [(u64, u64, &str); 4] = [(1, 1, "mem"), (1, 2, "kmem"), (1, 4, "port"), (1, 11, "kmsg")];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFact {
    pub name: String,
    /// "block" or the raw device's kernel name ("mem", "kmsg", ...).
    pub what: String,
    pub openable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub devices: Vec<DeviceFact>,
    pub truncated: bool,
    pub error: Option<String>,
}

pub fn probe() -> DeviceFacts {
    let entries = match std::fs::read_dir("/dev") {
        Ok(entries) => entries,
        Err(e) => return DeviceFacts { devices: vec![], truncated: false, error: Some(format!("cannot list /dev: {e}")) },
    };
    let mut devices = Vec::new();
    let mut seen = 0;
    for entry in entries.flatten() {
        seen += 1;
        if seen > MAX_DEV_ENTRIES {
            return DeviceFacts { devices, truncated: true, error: None };
        }
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let ft = meta.file_type();
        let what = if ft.is_block_device() {
            "block".to_string()
        } else if ft.is_char_device() {
            let (major, minor) = sys::dev_major_minor(meta.rdev());
            match RAW_CHAR.iter().find(|(ma, mi, _)| (*ma, *mi) == (major, minor)) {
                Some((_, _, name)) => name.to_string(),
                None => continue,
            }
        } else {
            continue;
        };
        let path = entry.path();
        devices.push(DeviceFact { name: display(&path), what, openable: sys::open_probe(&path, false).reached() });
    }
    // Real disks first: loop and ram devices are usually idle and would crowd them out.
    devices.sort_by_key(|d| (d.name.starts_with("loop") || d.name.starts_with("ram"), d.name.clone()));
    DeviceFacts { devices, truncated: false, error: None }
}

fn display(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// At most this many names are listed in a reason line; the rest are counted.
const LISTED: usize = 8;

fn list(devices: &[&DeviceFact]) -> String {
    let mut names: Vec<String> = devices.iter().take(LISTED).map(|d| d.name.clone()).collect();
    if devices.len() > LISTED {
        names.push(format!("and {} more", devices.len() - LISTED));
    }
    names.join(", ")
}

pub fn evaluate(ctx: &Context, f: &DeviceFacts) -> Verdict {
    if let Some(error) = &f.error {
        return Verdict::warn(error.clone());
    }
    let open: Vec<&DeviceFact> = f.devices.iter().filter(|d| d.openable).collect();
    let (raw, disks): (Vec<&DeviceFact>, Vec<&DeviceFact>) = open.iter().partition(|d| d.what != "block");
    let more = if f.truncated { format!("; stopped after {MAX_DEV_ENTRIES} /dev entries") } else { String::new() };
    if open.is_empty() {
        return Verdict::pass(format!("no block or raw device opens ({} visible but refused){more}", f.devices.len()));
    }
    let mut parts = Vec::new();
    if !disks.is_empty() {
        parts.push(format!("{} block devices open ({})", disks.len(), list(&disks)));
    }
    if !raw.is_empty() {
        parts.push(format!("raw devices open: {}", list(&raw)));
    }
    let refused: Vec<&DeviceFact> = f.devices.iter().filter(|d| !d.openable).collect();
    if !refused.is_empty() {
        parts.push(format!("refused: {}", list(&refused)));
    }
    let found = parts.join("; ");
    if ctx.boundary.zone().is_some() {
        Verdict::warn(format!("{found}{}{more}", ctx.zone_note()))
    } else {
        Verdict::fail(format!("{found}{more}"))
    }
}

pub fn check(ctx: &Context, f: &DeviceFacts) -> CheckResult {
    CheckResult::new("devices", "devices", Priority::High, EXPLAIN, ctx.workload_only(evaluate(ctx, f)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};

    fn dev(name: &str, what: &str, openable: bool) -> DeviceFact {
        DeviceFact { name: name.into(), what: what.into(), openable }
    }

    #[test]
    fn nothing_openable_passes() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let f = DeviceFacts { devices: vec![dev("vda", "block", false)], truncated: false, error: None };
        assert_eq!(evaluate(&ctx, &f).reason, "no block or raw device opens (1 visible but refused)");
    }

    #[test]
    fn host_disks_and_mem_fail_outside_a_zone() {
        let f = DeviceFacts {
            devices: vec![dev("vda", "block", true), dev("mem", "mem", true), dev("kmsg", "kmsg", true), dev("sda", "block", false)],
            truncated: false,
            error: None,
        };
        let host = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        let v = evaluate(&host, &f);
        assert_eq!((v.status, v.reason.as_str()), (Status::Fail, "1 block devices open (vda); raw devices open: mem, kmsg; refused: sda"));
        let zone = context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial);
        assert_eq!(evaluate(&zone, &f).status, Status::Warn);
    }

    #[test]
    fn long_lists_are_counted() {
        let many: Vec<DeviceFact> = (0..12).map(|i| dev(&format!("loop{i}"), "block", true)).collect();
        let refs: Vec<&DeviceFact> = many.iter().collect();
        assert!(list(&refs).ends_with("and 4 more"));
    }
}
