//! Bounded reads of /proc, /sys and /dev files.
//!
//! Threat: inside a workload, a privileged process may mount anything over these paths, so no
//! read trusts a file's size; each stops at a caller-given bound and reports truncation.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Bound for small pseudo-files: status, uid_map, cmdline, sysctls, LSM attributes.
pub const MAX_SMALL_FILE: usize = 64 * 1024;

/// Bound for /proc/self/mountinfo. A host with thousands of mounts stays well under it; a
/// hostile mount table beyond it is reported as such rather than buffered.
pub const MAX_MOUNTINFO: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: usize },
}

impl ReadError {
    /// The errno behind an I/O failure, for verdicts that depend on it (ENOENT, EACCES).
    pub fn errno(&self) -> Option<i32> {
        match self {
            ReadError::Io { source, .. } => source.raw_os_error(),
            ReadError::TooLarge { .. } => None,
        }
    }
}

/// Read a whole text file of at most `limit` bytes (lossy UTF-8).
pub fn text(path: impl AsRef<Path>, limit: usize) -> Result<String, ReadError> {
    let path = path.as_ref();
    let shown = || path.display().to_string();
    // O_NONBLOCK: a FIFO mounted over a pseudo-file fails fast instead of hanging the checker.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| ReadError::Io { path: shown(), source })?;
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut buf).map_err(|source| ReadError::Io { path: shown(), source })?;
    if buf.len() > limit {
        return Err(ReadError::TooLarge { path: shown(), limit });
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A one-line pseudo-file (a sysctl, a DMI field), trimmed; `None` when it cannot be read.
pub fn line(path: impl AsRef<Path>) -> Option<String> {
    text(path, MAX_SMALL_FILE).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_bound_and_rejects_beyond() {
        let dir = std::env::temp_dir().join(format!("moat-check-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("f");
        std::fs::write(&file, "0123456789").expect("write");
        assert_eq!(text(&file, 10).expect("fits"), "0123456789");
        assert!(matches!(text(&file, 9), Err(ReadError::TooLarge { limit: 9, .. })));
        assert_eq!(text(dir.join("missing"), 9).err().and_then(|e| e.errno()), Some(libc::ENOENT));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
