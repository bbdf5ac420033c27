//! The workload's disks, found by virtio serial (never by order), and its root filesystem: the
//! read-only EROFS image under an overlay whose writable layer lives on the scratch disk.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_proto::layout::{MODULES_SERIAL, ROOTFS_SERIAL, SCRATCH_SERIAL, TOOLS_DIR, TOOLS_SERIAL};
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::idmap::{self, ContainerIds, IdmapError};

pub const IMAGE_DIR: &str = "/run/moat/image";
pub const SCRATCH_DIR: &str = "/run/moat/scratch";
/// The container's root: the overlay of the two.
pub const ROOTFS_DIR: &str = "/run/moat/rootfs";
/// Parent of the zone kernel's module tree; the initramfs holds a partial copy.
const MODULES_ROOT: &str = "/lib/modules";

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
    #[error("mounting {fstype} on {}: {err}", target.display())]
    Mount { fstype: &'static str, target: PathBuf, err: nix::Error },
    #[error("the container's overlay came up read-only: its work directory is unusable")]
    ReadOnlyOverlay,
    #[error("uname: {0}")]
    Uname(nix::Error),
    #[error(transparent)]
    Idmap(#[from] IdmapError),
}

/// Mount the image, the scratch disk and the overlay; returns the overlay's path. With the
/// container's `ids`, the image and the scratch disk are idmapped through its user namespace
/// before the overlay is built on them, so the container's root owns the image's root-owned
/// files, and what it writes lands on disk under the ids the image itself uses.
pub fn mount_rootfs(ids: Option<&ContainerIds>) -> Result<&'static Path, DiskError> {
    let image = wait_for_disk(ROOTFS_SERIAL)?;
    let scratch = wait_for_disk(SCRATCH_SERIAL)?;
    mount_disk(&image, Path::new(IMAGE_DIR), "erofs", MsFlags::MS_RDONLY)?;
    // No nodev or nosuid: the overlay reaches device nodes and setuid files through this mount.
    mount_disk(&scratch, Path::new(SCRATCH_DIR), "ext4", MsFlags::empty())?;
    let upper = Path::new(SCRATCH_DIR).join("upper");
    let work = Path::new(SCRATCH_DIR).join("work");
    for dir in [&upper, &work, &PathBuf::from(ROOTFS_DIR)] {
        std::fs::create_dir_all(dir).map_err(|err| DiskError::Io { what: "creating", path: dir.clone(), err })?;
    }
    let options = format!("lowerdir={IMAGE_DIR},upperdir={},workdir={}", upper.display(), work.display());
    let rootfs = Path::new(ROOTFS_DIR);
    match ids {
        Some(ids) => {
            idmap::idmap_in_place(Path::new(IMAGE_DIR), ids.userns.as_fd())?;
            idmap::idmap_in_place(Path::new(SCRATCH_DIR), ids.userns.as_fd())?;
            idmap::mount_as(ids.root_uid, ids.root_gid, "overlay", rootfs, &options)?;
        }
        None => mount(Some("overlay"), rootfs, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|err| DiskError::Mount { fstype: "overlay", target: rootfs.into(), err })?,
    }
    // Overlayfs mounts read-only rather than failing when it cannot use its work directory.
    let stat = statvfs(rootfs).map_err(|err| DiskError::Io { what: "checking", path: rootfs.into(), err: err.into() })?;
    if stat.flags().contains(FsFlags::ST_RDONLY) {
        return Err(DiskError::ReadOnlyOverlay);
    }
    Ok(rootfs)
}

/// Mount the zone kernel's full module tree over the initramfs's partial copy, so modprobe in
/// the zone (and in a privileged container, which gets a bind of it) finds every module the
/// kernel ships. The host attaches it with every workload.
pub fn mount_modules() -> Result<(), DiskError> {
    let disk = wait_for_disk(MODULES_SERIAL)?;
    let release = nix::sys::utsname::uname().map_err(DiskError::Uname)?.release().to_os_string();
    let target = Path::new(MODULES_ROOT).join(release);
    mount_disk(&disk, &target, "erofs", MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
}

/// Mount the tools disk, where the initramfs's links to runc and its libraries point.
pub fn mount_tools() -> Result<(), DiskError> {
    let disk = wait_for_disk(TOOLS_SERIAL)?;
    mount_disk(&disk, Path::new(TOOLS_DIR), "erofs", MsFlags::MS_RDONLY | MsFlags::MS_NODEV)
}

fn mount_disk(device: &Path, target: &Path, fstype: &'static str, flags: MsFlags) -> Result<(), DiskError> {
    std::fs::create_dir_all(target).map_err(|err| DiskError::Io { what: "creating", path: target.into(), err })?;
    mount(Some(device), target, Some(fstype), flags, None::<&str>).map_err(|err| DiskError::Mount { fstype, target: target.into(), err })
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
        disk(dir.path(), "vdb", Some(ROOTFS_SERIAL));
        disk(dir.path(), "vdc", None);
        disk(dir.path(), "sda", Some("moat-rootfs-not-virtio"));
        assert_eq!(find_by_serial(dir.path(), ROOTFS_SERIAL).unwrap().as_deref(), Some("vdb"));
        assert_eq!(find_by_serial(dir.path(), SCRATCH_SERIAL).unwrap().as_deref(), Some("vda"));
        assert_eq!(find_by_serial(dir.path(), "moat-other").unwrap(), None);
    }

    #[test]
    fn a_serial_must_match_whole() {
        let dir = tempfile::tempdir().unwrap();
        disk(dir.path(), "vda", Some("moat-rootfs2"));
        disk(dir.path(), "vdb", Some("moat-root"));
        assert_eq!(find_by_serial(dir.path(), ROOTFS_SERIAL).unwrap(), None);
        assert_eq!(find_by_serial(&dir.path().join("absent"), ROOTFS_SERIAL).unwrap(), None);
    }
}
