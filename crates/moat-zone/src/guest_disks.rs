//! Read-only EROFS disks built from host files for zones that run a workload: the zone
//! kernel's modules, so a privileged workload can load what the zone kernel ships (loop, tun,
//! bridge, nf_tables, ...), and the tools disk (the OCI runtime, its libraries, moat-check). Neither sits in
//! the initramfs, which every zone boot loads and copies.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::initramfs::{self, Entry};

#[derive(Debug, thiserror::Error)]
pub enum GuestDiskError {
    #[error("no modules directory at {0}")]
    NoModules(PathBuf),
    #[error("running mkfs.erofs (package erofs-utils): {0}")]
    Spawn(std::io::Error),
    #[error("mkfs.erofs failed for {dir}: {status}")]
    Mkfs { dir: PathBuf, status: std::process::ExitStatus },
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Digest(#[from] initramfs::InitramfsError),
}

/// A host file for the tools disk: `path` is where it lands on the disk (relative).
pub struct ToolFile {
    pub path: String,
    pub source: PathBuf,
}

/// The modules disk for `release`, built from `modules_dir` on first use and kept in
/// `assets_dir`.
pub fn modules_disk(assets_dir: &Path, modules_dir: &Path, release: &str) -> Result<PathBuf, GuestDiskError> {
    let disk = assets_dir.join(format!("modules-{release}.erofs"));
    if disk.is_file() {
        return Ok(disk);
    }
    if !modules_dir.join("modules.dep").is_file() {
        return Err(GuestDiskError::NoModules(modules_dir.to_path_buf()));
    }
    make_erofs(modules_dir, &disk)?;
    Ok(disk)
}

/// The tools disk holding `files`, built on first use and cached in `assets_dir` by the digest
/// of their paths and contents.
pub fn tools_disk(assets_dir: &Path, files: &[ToolFile]) -> Result<PathBuf, GuestDiskError> {
    let entries: Vec<Entry> = files.iter().map(|f| Entry::File { path: f.path.clone(), source: f.source.clone(), mode: 0o755 }).collect();
    let digest = initramfs::digest(&entries)?;
    let disk = assets_dir.join("tools").join(format!("{}.erofs", &digest[..16]));
    if disk.is_file() {
        crate::asset_cache::touch(&disk);
        return Ok(disk);
    }
    let staging = assets_dir.join("tools").join(format!("staging-{}", std::process::id()));
    let built = stage(&staging, files).and_then(|()| make_erofs(&staging, &disk));
    let _ = std::fs::remove_dir_all(&staging);
    built?;
    crate::asset_cache::prune_beside(&disk, std::time::SystemTime::now());
    Ok(disk)
}

fn stage(staging: &Path, files: &[ToolFile]) -> Result<(), GuestDiskError> {
    for file in files {
        let dest = staging.join(&file.path);
        let parent = dest.parent().unwrap_or(staging);
        std::fs::create_dir_all(parent).map_err(|err| GuestDiskError::Io { what: "creating", path: parent.to_path_buf(), err })?;
        std::fs::copy(&file.source, &dest).map_err(|err| GuestDiskError::Io { what: "copying", path: file.source.clone(), err })?;
    }
    Ok(())
}

/// Write the EROFS image of `dir` to `disk` (through a temporary file, so a cached disk is
/// always whole). Fixed timestamps, UUID and ownership make the same input give the same image.
fn make_erofs(dir: &Path, disk: &Path) -> Result<(), GuestDiskError> {
    let parent = disk.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|err| GuestDiskError::Io { what: "creating", path: parent.to_path_buf(), err })?;
    let tmp = disk.with_extension(format!("tmp{}", std::process::id()));
    let status = Command::new("mkfs.erofs")
        .args(["--quiet", "-T0", "-U", "00000000-0000-0000-0000-000000000000", "--all-root"])
        .arg(&tmp)
        .arg(dir)
        .status()
        .map_err(GuestDiskError::Spawn)?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(GuestDiskError::Mkfs { dir: dir.to_path_buf(), status });
    }
    std::fs::rename(&tmp, disk).map_err(|err| GuestDiskError::Io { what: "storing", path: disk.to_path_buf(), err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_disk_is_cached_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("tool");
        std::fs::write(&source, b"one").unwrap();
        let files = [ToolFile { path: "usr/sbin/tool".into(), source: source.clone() }];
        let first = tools_disk(dir.path(), &files).unwrap();
        assert_eq!(tools_disk(dir.path(), &files).unwrap(), first, "same files, same disk");
        std::fs::write(&source, b"two").unwrap();
        let second = tools_disk(dir.path(), &files).unwrap();
        assert_ne!(second, first, "new content, new disk");
        assert!(first.is_file() && second.is_file());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tools")).unwrap().flatten().filter(|e| e.path().extension().is_none_or(|x| x != "erofs")).collect();
        assert!(leftovers.is_empty(), "no staging or temporary files are left: {leftovers:?}");
    }
}
