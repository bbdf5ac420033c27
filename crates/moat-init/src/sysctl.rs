//! Kernel settings init enforces whatever the kernel's defaults.

use crate::Error;

/// (file under /proc, value).
const SETTINGS: &[(&str, &str)] = &[
    // Only CAP_SYSLOG in the zone's own user namespace may read the kernel log. With 0, a
    // container in a user namespace could read it, and `--cap-add SYSLOG` would mean nothing.
    ("/proc/sys/kernel/dmesg_restrict", "1"),
    // Init is never the zone kernel's OOM victim: the zone dies with it. A container's process
    // gets its spec's score, 0 when the spec has none (`bundle::default_oom_score`), and its
    // cgroup limit keeps its OOM kills inside it.
    ("/proc/self/oom_score_adj", "-1000"),
];

pub fn harden() -> Result<(), Error> {
    for (file, value) in SETTINGS {
        std::fs::write(file, value).map_err(|e| Error::Io(file, e))?;
    }
    Ok(())
}

/// Point the zone kernel's module autoloader at init's modprobe. Until then the kernel's
/// default, `/sbin/modprobe`, names nothing in the zone, so no request loads a module: init
/// calls this only for a privileged container (see the README's Privilege section).
pub fn enable_module_autoload() -> std::io::Result<()> {
    std::fs::write(MODPROBE_SYSCTL, moat_proto::layout::MODPROBE_PATH)
}

const MODPROBE_SYSCTL: &str = "/proc/sys/kernel/modprobe";
