//! Live processes whose command line mentions a path: what a test started under its private
//! root or directory, and must not leave behind. Shared by the test harnesses of moat and of the
//! containerd shim.

use std::path::Path;

/// Processes (not zombies, not this test) whose command line contains `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
        if cmdline.contains(&needle) && !zombie && pid != std::process::id() {
            found.push((pid, cmdline));
        }
    }
    found
}
