//! The workload's disks, found by virtio serial (never by order), and its root filesystem: the
//! read-only EROFS image under an overlay whose writable layer lives on the scratch disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};

/// Serial of the read-only EROFS image disk.
pub const IMAGE_SERIAL: &str = "moat-rootfs";
/// Serial of the ext4 scratch disk the host formats for the writable layer.
pub const SCRATCH_SERIAL: &str = "moat-scratch";

pub const IMAGE_DIR: &str = "/run/moat/image";
pub const SCRATCH_DIR: &str = "/run/moat/scratch";
/// The container's root: the overlay of the two.
pub const ROOTFS_DIR: &str = "/run/moat/rootfs";

const SYS_BLOCK: &str = "/sys/block";
/// The block driver probes at boot, but devtmpfs creates nodes asynchronously.
const DISK_WAIT: Duration = Duration::from_secs(5);
/// A virtio-blk serial is at most 20 bytes; read a little more to tell a longer one apart.
const MAX_SERIAL_BYTES: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("no disk with serial {0} is attached to the zone")]
    Missing(&'static str),
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("mounting {fstype} on {target}: {err}")]
    Mount { fstype: &'static str, target: &'static str, err: nix::Error },
}

/// Mount the image, the scratch disk and the overlay; returns the overlay's path.
pub fn mount_rootfs() -> Result<&'static Path, DiskError> {
    let image = wait_for_disk(IMAGE_SERIAL)?;
    let scratch = wait_for_disk(SCRATCH_SERIAL)?;
    mount_disk(&image, IMAGE_DIR, "erofs", MsFlags::MS_RDONLY)?;
    // No nodev or nosuid: the overlay reaches device nodes and setuid files through this mount.
    mount_disk(&scratch, SCRATCH_DIR, "ext4", MsFlags::empty())?;
    let upper = Path::new(SCRATCH_DIR).join("upper");
    let work = Path::new(SCRATCH_DIR).join("work");
    for dir in [&upper, &work, &PathBuf::from(ROOTFS_DIR)] {
        std::fs::create_dir_all(dir).map_err(|err| DiskError::Io { what: "creating", path: dir.clone(), err })?;
    }
    let options = format!("lowerdir={IMAGE_DIR},upperdir={},workdir={}", upper.display(), work.display());
    mount(Some("overlay"), ROOTFS_DIR, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|err| DiskError::Mount { fstype: "overlay", target: ROOTFS_DIR, err })?;
    Ok(Path::new(ROOTFS_DIR))
}

fn mount_disk(device: &Path, target: &'static str, fstype: &'static str, flags: MsFlags) -> Result<(), DiskError> {
    std::fs::create_dir_all(target).map_err(|err| DiskError::Io { what: "creating", path: target.into(), err })?;
    mount(Some(device), target, Some(fstype), flags, None::<&str>).map_err(|err| DiskError::Mount { fstype, target, err })
}

/// The /dev node of the disk with `serial`, waiting briefly for it to appear.
fn wait_for_disk(serial: &'static str) -> Result<PathBuf, DiskError> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        if let Some(name) = find_by_serial(Path::new(SYS_BLOCK), serial)? {
            let node = Path::new("/dev").join(name);
            if node.exists() {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            return Err(DiskError::Missing(serial));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name of the virtio disk (`vd*`) under `sys_block` whose `serial` file holds `serial`.
pub fn find_by_serial(sys_block: &Path, serial: &str) -> Result<Option<String>, DiskError> {
    let entries = match std::fs::read_dir(sys_block) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(DiskError::Io { what: "listing", path: sys_block.into(), err }),
    };
    let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("vd")).collect();
    names.sort();
    for name in names {
        if read_serial(&sys_block.join(&name).join("serial")).as_deref() == Some(serial) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn read_serial(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_SERIAL_BYTES).read_to_string(&mut text).ok()?;
    Some(text.trim_end_matches(['\n', '\0']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(root: &Path, name: &str, serial: Option<&str>) {
        std::fs::create_dir_all(root.join(name)).unwrap();
        if let Some(serial) = serial {
            std::fs::write(root.join(name).join("serial"), format!("{serial}\n")).unwrap();
        }
    }

    #[test]
    fn disks_are_found_by_serial_not_order() {
        let dir = tempfile::tempdir().unwrap();
        disk(dir.path(), "vda", Some(SCRATCH_SERIAL));
        disk(dir.path(), "vdb", Some(IMAGE_SERIAL));
        disk(dir.path(), "vdc", None);
        disk(dir.path(), "sda", Some("moat-rootfs-not-virtio"));
        assert_eq!(find_by_serial(dir.path(), IMAGE_SERIAL).unwrap().as_deref(), Some("vdb"));
        assert_eq!(find_by_serial(dir.path(), SCRATCH_SERIAL).unwrap().as_deref(), Some("vda"));
        assert_eq!(find_by_serial(dir.path(), "moat-other").unwrap(), None);
    }

    #[test]
    fn a_serial_must_match_whole() {
        let dir = tempfile::tempdir().unwrap();
        disk(dir.path(), "vda", Some("moat-rootfs2"));
        disk(dir.path(), "vdb", Some("moat-root"));
        assert_eq!(find_by_serial(dir.path(), IMAGE_SERIAL).unwrap(), None);
        assert_eq!(find_by_serial(&dir.path().join("absent"), IMAGE_SERIAL).unwrap(), None);
    }
}
