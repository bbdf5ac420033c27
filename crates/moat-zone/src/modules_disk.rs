//! The zone's kernel modules as a read-only EROFS disk, so a privileged workload can load what
//! the zone kernel ships (loop, tun, bridge, nf_tables, ...) without the initramfs carrying it all.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ModulesDiskError {
    #[error("no modules directory at {0}")]
    Missing(PathBuf),
    #[error("running mkfs.erofs: {0}")]
    Spawn(std::io::Error),
    #[error("mkfs.erofs failed for {dir}: {status}")]
    Mkfs { dir: PathBuf, status: std::process::ExitStatus },
    #[error("storing {path}: {err}")]
    Store { path: PathBuf, err: std::io::Error },
}

/// The modules disk for `release`, built from `modules_dir` on first use and kept in
/// `assets_dir`. Reproducible flags, so the same kernel always gives the same image.
pub fn modules_disk(assets_dir: &Path, modules_dir: &Path, release: &str) -> Result<PathBuf, ModulesDiskError> {
    let disk = assets_dir.join(format!("modules-{release}.erofs"));
    if disk.is_file() {
        return Ok(disk);
    }
    if !modules_dir.join("modules.dep").is_file() {
        return Err(ModulesDiskError::Missing(modules_dir.to_path_buf()));
    }
    let tmp = disk.with_extension(format!("tmp{}", std::process::id()));
    let status = Command::new("mkfs.erofs")
        .args(["--quiet", "-T0", "-U", "00000000-0000-0000-0000-000000000000", "--all-root"])
        .arg(&tmp)
        .arg(modules_dir)
        .status()
        .map_err(ModulesDiskError::Spawn)?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModulesDiskError::Mkfs { dir: modules_dir.to_path_buf(), status });
    }
    std::fs::rename(&tmp, &disk).map_err(|err| ModulesDiskError::Store { path: disk.clone(), err })?;
    Ok(disk)
}
