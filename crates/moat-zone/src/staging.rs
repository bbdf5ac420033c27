//! Staging directories for copies out of a zone (`moat cp CTR:PATH HOST`). The guest writes
//! what it copies into one through the share, and the host then reads it as hostile input.
//!
//! - Each is a tmpfs of its own, `<zone>/copies/<n>`, whose size and inode count are the bounds
//!   of one copy. Whatever a hostile guest writes there, it cannot fill the host's disk, nor
//!   hold more of its memory than one copy's bound.
//! - Once the guest has answered, the supervisor withdraws it from the share, and the reader
//!   makes the tmpfs read-only ([`freeze`]). The guest may still hold descriptors into it (a
//!   lazy unmount keeps them), but the tree the host reads stays as it is.
//! - [`remove`] empties it, so its memory is freed even while the guest holds it, and unmounts
//!   it; [`cleanup`] does that for every one left when the zone ends or is removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_proto::copy::{MAX_COPY_BYTES, MAX_COPY_ENTRIES};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::state::ZoneDir;

/// A staging tmpfs's size: the content bound, and a page for each entry, since tmpfs counts
/// whole pages.
const STAGING_BYTES: u64 = MAX_COPY_BYTES + MAX_COPY_ENTRIES * 4096;
/// A staging tmpfs's inodes: the entries, and its own root.
const STAGING_INODES: u64 = MAX_COPY_ENTRIES + 1;
/// How long [`freeze`] waits for the zone to let go of files it wrote: virtio-fs closes them on
/// the host a little after the guest does.
const FREEZE_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("the zone keeps files open for writing in {path}, so what it staged cannot be read as it stands")]
    Busy { path: PathBuf },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> StagingError + 'a {
    move |errno| StagingError::Io { what, path: path.to_path_buf(), err: errno.into() }
}

/// The staging directory of copy `n` in the zone.
pub fn path(dir: &ZoneDir, n: u64) -> PathBuf {
    dir.copies_dir().join(n.to_string())
}

/// Make an empty staging directory: a fresh, bounded tmpfs, reachable by root only.
pub fn create(path: &Path) -> Result<(), StagingError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|err| StagingError::Io { what: "creating", path: parent.to_path_buf(), err })?;
    }
    nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(0o700)).map_err(io("creating", path))?;
    let options = format!("size={STAGING_BYTES},nr_inodes={STAGING_INODES},mode=0700");
    let mounted = mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some(options.as_str()));
    if let Err(errno) = mounted {
        let _ = std::fs::remove_dir(path);
        return Err(io("mounting a tmpfs on", path)(errno));
    }
    Ok(())
}

/// Make the staging tmpfs read-only everywhere it is mounted (the guest's lazily detached
/// copy too), waiting a little for files the zone still has open for writing.
pub fn freeze(path: &Path) -> Result<(), StagingError> {
    let deadline = Instant::now() + FREEZE_WAIT;
    loop {
        match remount(path, true) {
            Ok(()) => return Ok(()),
            Err(Errno::EBUSY) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(Errno::EBUSY) => return Err(StagingError::Busy { path: path.to_path_buf() }),
            Err(errno) => return Err(io("making read-only", path)(errno)),
        }
    }
}

/// Remount the tmpfs itself (not only this mount of it) read-only or read-write.
fn remount(path: &Path, read_only: bool) -> Result<(), Errno> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Empty the staging tmpfs (its memory is freed even if the guest still holds it), unmount it
/// and remove its directory. Idempotent.
pub fn remove(path: &Path) -> Result<(), StagingError> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StagingError::Io { what: "inspecting", path: path.to_path_buf(), err }),
        Ok(_) => {}
    }
    if remount(path, false).is_ok() {
        // std's removal never follows a symlink; what the guest adds meanwhile goes with the
        // tmpfs's last reference.
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let _ = match entry.file_type() {
                Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(entry.path()),
                _ => std::fs::remove_file(entry.path()),
            };
        }
    }
    match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        // EINVAL: not mounted (a create that failed half-way).
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(errno) => return Err(io("unmounting", path)(errno)),
    }
    std::fs::remove_dir(path).map_err(|err| StagingError::Io { what: "removing", path: path.to_path_buf(), err })
}

/// Remove every staging directory of the zone, and their parent.
pub fn cleanup(dir: &ZoneDir) -> Result<(), StagingError> {
    let copies = dir.copies_dir();
    let entries = match std::fs::read_dir(&copies) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StagingError::Io { what: "listing", path: copies, err }),
    };
    for entry in entries.flatten() {
        remove(&entry.path())?;
    }
    std::fs::remove_dir(&copies).map_err(|err| StagingError::Io { what: "removing", path: copies, err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staging_tmpfs_is_bounded_frozen_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root (mounts); skipped");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = ZoneDir { path: tmp.path().to_path_buf() };
        let staged = path(&dir, 1);
        create(&staged).expect("create");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let line = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some(staged.to_str().expect("utf-8"))).expect("mounted");
        assert!(line.contains("nosuid") && line.contains("nodev") && line.contains("noexec"), "{line}");
        assert!(line.contains(&format!("size={}k", STAGING_BYTES / 1024)) && line.contains(&format!("nr_inodes={STAGING_INODES}")), "{line}");

        std::fs::create_dir(staged.join("d")).expect("writable before the freeze");
        let open = std::fs::File::create(staged.join("d/f")).expect("file");
        // A file held open for writing keeps it from freezing.
        assert!(matches!(freeze(&staged), Err(StagingError::Busy { .. })));
        drop(open);
        freeze(&staged).expect("freeze");
        let err = std::fs::write(staged.join("x"), "x").expect_err("read-only");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        cleanup(&dir).expect("cleanup");
        assert!(!dir.copies_dir().exists());
        cleanup(&dir).expect("idempotent");
        remove(&staged).expect("idempotent");
    }
}
