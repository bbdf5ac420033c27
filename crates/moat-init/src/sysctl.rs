//! Kernel settings init enforces whatever the kernel's defaults.

use crate::Error;

/// (file under /proc/sys, value).
const SETTINGS: &[(&str, &str)] = &[
    // Only CAP_SYSLOG in the zone's own user namespace may read the kernel log. With 0, a
    // container in a user namespace could read it, and `--cap-add SYSLOG` would mean nothing.
    ("/proc/sys/kernel/dmesg_restrict", "1"),
];

pub fn harden() -> Result<(), Error> {
    for (file, value) in SETTINGS {
        std::fs::write(file, value).map_err(|e| Error::Io(file, e))?;
    }
    Ok(())
}
