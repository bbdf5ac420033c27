//! The zone's device nodes, for a privileged container (see `moat_spec::devices`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use moat_spec::devices::{DeviceKind, ZoneDevice, MAX_ZONE_DEVICES};

/// Device nodes whose name starts with this are virtio-serial ports: the control channel to
/// the host stays init's own.
const CONTROL_PORT_PREFIX: &str = "vport";

/// How deep under /dev the scan goes (/dev/net/tun is depth 2).
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("scanning {path}: {err}")]
pub struct ScanError {
    path: PathBuf,
    err: std::io::Error,
}

/// Every char, block and fifo node under `dev`, without the control ports. Stops one past
/// [`MAX_ZONE_DEVICES`], which moat-spec then refuses.
pub fn scan(dev: &Path) -> Result<Vec<ZoneDevice>, ScanError> {
    let mut found = Vec::new();
    walk(dev, dev, 0, &mut found)?;
    Ok(found)
}

fn walk(dev: &Path, dir: &Path, depth: usize, found: &mut Vec<ZoneDevice>) -> Result<(), ScanError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|err| ScanError { path: dir.to_path_buf(), err })?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if found.len() > MAX_ZONE_DEVICES {
            return Ok(());
        }
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(CONTROL_PORT_PREFIX)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|err| ScanError { path: path.clone(), err })?;
        let kind = meta.file_type();
        let node_kind = if kind.is_char_device() {
            DeviceKind::Char
        } else if kind.is_block_device() {
            DeviceKind::Block
        } else if kind.is_fifo() {
            DeviceKind::Fifo
        } else {
            if kind.is_dir() && depth < MAX_DEPTH {
                walk(dev, &path, depth + 1, found)?;
            }
            continue;
        };
        let rdev = meta.rdev();
        found.push(ZoneDevice {
            path: Path::new("/dev").join(path.strip_prefix(dev).unwrap_or(&path)),
            kind: node_kind,
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_dev_scans_without_control_ports() {
        let found = scan(Path::new("/dev")).expect("scan /dev");
        let null = found.iter().find(|d| d.path == Path::new("/dev/null")).expect("/dev/null is found");
        assert_eq!((null.kind, null.major, null.minor), (DeviceKind::Char, 1, 3));
        assert!(found.iter().all(|d| !d.path.to_string_lossy().contains("/vport")));
        assert!(found.iter().all(|d| d.path.starts_with("/dev/")));
    }
}
