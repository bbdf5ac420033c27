//! The digest-named caches under the assets directory (initramfs archives, tools disks). Every
//! new build of init or of the OCI runtime's package adds a file, so writing one removes those
//! of its kind unused for a day. Each use touches its file; a running zone holds its own open.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long a cached file may go unused before a newly written one removes it.
pub const UNUSED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Mark a cached file as used now.
pub fn touch(path: &Path) {
    if let Err(err) = std::fs::File::open(path).and_then(|file| file.set_modified(SystemTime::now())) {
        tracing::debug!(%err, path = %path.display(), "marking a cached asset as used");
    }
}

/// Remove the files beside `kept` that share its extension and were last used before `now`
/// less [`UNUSED_FOR`].
pub fn prune_beside(kept: &Path, now: SystemTime) {
    let (Some(dir), Some(extension)) = (kept.parent(), kept.extension()) else { return };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path == kept || path.extension() != Some(extension) {
            continue;
        }
        let unused_for = entry.metadata().and_then(|m| m.modified()).ok().and_then(|used| now.duration_since(used).ok());
        if unused_for.is_some_and(|age| age > UNUSED_FOR) {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::debug!(%err, path = %path.display(), "removing an unused cached asset");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_the_kind_unused_for_a_day_go_when_another_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, age: Duration| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(SystemTime::now() - age).unwrap();
            path
        };
        let hour = Duration::from_secs(3600);
        let kept = file("new.cpio", Duration::ZERO);
        let stale = file("old.cpio", 25 * hour);
        let recent = file("recent.cpio", 23 * hour);
        let other_kind = file("old.erofs", 25 * hour);
        let used_again = file("used.cpio", 25 * hour);
        touch(&used_again);
        prune_beside(&kept, SystemTime::now());
        assert!(kept.exists() && recent.exists() && other_kind.exists() && used_again.exists());
        assert!(!stale.exists());
    }
}
