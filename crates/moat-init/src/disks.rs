//! The zone's disks, found by virtio serial (never by order), and each container's root
//! filesystem: its image, an EROFS file on the zone's share mounted read-only through a loop
//! device (or a directory on the share, bound read-only), under an overlay whose writable layer
//! lives on the scratch disk.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use moat_proto::layout::{MODULES_SERIAL, SCRATCH_SERIAL, SHARE_DIR, TOOLS_DIR, TOOLS_SERIAL};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::idmap::{self, ContainerIds, IdmapError};
use crate::loopdev::{self, LoopError};

pub const SCRATCH_DIR: &str = "/run/moat/scratch";
/// Per container: its image, its idmapped writable layer and its root (the overlay of both).
pub const CONTAINERS_DIR: &str = "/run/moat/containers";
/// Parent of the zone kernel's module tree; the initramfs holds a partial copy.
const MODULES_ROOT: &str = "/lib/modules";
/// The writable layer's directory in a container's scratch directory.
const UPPER: &str = "upper";
/// Longest image path on the share the host may name.
const MAX_IMAGE_PATH: usize = 255;

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
    #[error("image path {0:?} is not a plain relative path on the share")]
    BadImagePath(String),
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    #[error(transparent)]
    Loop(#[from] LoopError),
}

/// The directories of one container's root filesystem.
pub struct RootfsDirs {
    pub base: PathBuf,
    pub image: PathBuf,
    /// The container's own directory on the scratch disk (upper and work).
    pub scratch: PathBuf,
    /// Where the overlay's layers are taken from: `scratch`, or an idmapped bind of it.
    pub layer: PathBuf,
    pub rootfs: PathBuf,
}

impl RootfsDirs {
    pub fn of(container: &str) -> Self {
        let base = Path::new(CONTAINERS_DIR).join(container);
        Self {
            image: base.join("image"),
            scratch: Path::new(SCRATCH_DIR).join(container),
            layer: base.join("layer"),
            rootfs: base.join("rootfs"),
            base,
        }
    }

    /// The overlay's upper directory: what the container wrote, with overlayfs's whiteouts.
    pub fn upper(&self) -> PathBuf {
        self.scratch.join(UPPER)
    }
}

/// The image's file on the share, refused unless it is a plain relative path inside it.
pub fn image_on_share(image: &str) -> Result<PathBuf, DiskError> {
    let path = Path::new(image);
    let plain = !image.is_empty() && image.len() <= MAX_IMAGE_PATH && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(DiskError::BadImagePath(image.chars().take(MAX_IMAGE_PATH).collect()));
    }
    Ok(Path::new(SHARE_DIR).join(path))
}

/// Mount `container`'s image (from the share), its writable layer on the scratch disk, and the
/// overlay of the two; returns the overlay's path. With the container's `ids`, the image and the
/// layer are idmapped through its user namespace before the overlay is built on them, so the
/// container's root owns the image's root-owned files, and what it writes lands on disk under
/// the ids the image itself uses.
pub fn mount_container_rootfs(container: &str, image: &str, ids: Option<&ContainerIds>) -> Result<PathBuf, DiskError> {
    let file = image_on_share(image)?;
    mount_scratch()?;
    let dirs = RootfsDirs::of(container);
    let upper = dirs.upper();
    let work = dirs.scratch.join("work");
    for dir in [&dirs.image, &upper, &work, &dirs.layer, &dirs.rootfs] {
        std::fs::create_dir_all(dir).map_err(|err| DiskError::Io { what: "creating", path: dir.clone(), err })?;
    }
    mount_image(&file, &dirs.image)?;
    bind(&dirs.scratch, &dirs.layer)?;
    let options = format!("lowerdir={},upperdir={},workdir={}", dirs.image.display(), dirs.layer.join(UPPER).display(), dirs.layer.join("work").display());
    match ids {
        Some(ids) => {
            idmap::idmap_in_place(&dirs.image, ids.userns.as_fd())?;
            idmap::idmap_in_place(&dirs.layer, ids.userns.as_fd())?;
            idmap::mount_as(ids.root_uid, ids.root_gid, "overlay", &dirs.rootfs, &options)?;
        }
        None => mount(Some("overlay"), &dirs.rootfs, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|err| DiskError::Mount { fstype: "overlay", target: dirs.rootfs.clone(), err })?,
    }
    // Overlayfs mounts read-only rather than failing when it cannot use its work directory.
    let stat = statvfs(&dirs.rootfs).map_err(|err| DiskError::Io { what: "checking", path: dirs.rootfs.clone(), err: err.into() })?;
    if stat.flags().contains(FsFlags::ST_RDONLY) {
        return Err(DiskError::ReadOnlyOverlay);
    }
    Ok(dirs.rootfs)
}

/// Mount the image at `target`, read-only: an EROFS file through a loop device, or a directory
/// (a runtime bundle's root filesystem, which `moat-oci` exposes on the share) as a bind.
fn mount_image(image: &Path, target: &Path) -> Result<(), DiskError> {
    let is_dir = std::fs::metadata(image).map_err(|err| DiskError::Io { what: "inspecting", path: image.into(), err })?.is_dir();
    if !is_dir {
        let (device, _held) = loopdev::attach_read_only(image)?;
        return mount_disk(&device, target, "erofs", MsFlags::MS_RDONLY);
    }
    bind(image, target)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(|err| DiskError::Mount { fstype: "bind", target: target.into(), err })
}

/// Undo [`mount_container_rootfs`] as far as it got, and delete the container's writable layer.
/// Mounts are detached lazily: a killed container's last processes may still hold them.
pub fn remove_container_rootfs(container: &str) {
    let dirs = RootfsDirs::of(container);
    for mounted in [&dirs.rootfs, &dirs.layer, &dirs.image] {
        // Twice: an idmapped mount covers the mount it was cloned from.
        for _ in 0..2 {
            let _ = umount2(mounted.as_path(), MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(&dirs.base);
    let _ = std::fs::remove_dir_all(&dirs.scratch);
}

/// Mount the scratch disk once, for every container's writable layer.
pub fn mount_scratch() -> Result<(), DiskError> {
    // No nodev or nosuid: the overlay reaches device nodes and setuid files through this mount.
    mount_disk_once(SCRATCH_SERIAL, Path::new(SCRATCH_DIR), "ext4", MsFlags::empty())
}

/// Mount the disk with `serial` at `target` unless the first container already did.
fn mount_disk_once(serial: &'static str, target: &Path, fstype: &'static str, flags: MsFlags) -> Result<(), DiskError> {
    if is_mount_point(target) {
        return Ok(());
    }
    mount_disk(&wait_for_disk(serial)?, target, fstype, flags)
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), path.parent().map(std::fs::metadata)) {
        (Ok(own), Some(Ok(parent))) => own.dev() != parent.dev(),
        _ => false,
    }
}

fn bind(source: &Path, target: &Path) -> Result<(), DiskError> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|err| DiskError::Mount { fstype: "bind", target: target.into(), err })
}

/// Mount the zone kernel's full module tree over the initramfs's partial copy, so modprobe in
/// the zone (and in a privileged container, which gets a bind of it) finds every module the
/// kernel ships. The host attaches it with every workload.
pub fn mount_modules() -> Result<(), DiskError> {
    let release = nix::sys::utsname::uname().map_err(DiskError::Uname)?.release().to_os_string();
    let target = Path::new(MODULES_ROOT).join(release);
    mount_disk_once(MODULES_SERIAL, &target, "erofs", MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
}

/// Mount the tools disk, where the initramfs's links to runc and its libraries point.
pub fn mount_tools() -> Result<(), DiskError> {
    mount_disk_once(TOOLS_SERIAL, Path::new(TOOLS_DIR), "erofs", MsFlags::MS_RDONLY | MsFlags::MS_NODEV)
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
        disk(dir.path(), "vdb", Some(MODULES_SERIAL));
        disk(dir.path(), "vdc", None);
        disk(dir.path(), "sda", Some("moat-rootfs-not-virtio"));
        assert_eq!(find_by_serial(dir.path(), MODULES_SERIAL).unwrap().as_deref(), Some("vdb"));
        assert_eq!(find_by_serial(dir.path(), SCRATCH_SERIAL).unwrap().as_deref(), Some("vda"));
        assert_eq!(find_by_serial(dir.path(), "moat-other").unwrap(), None);
    }

    #[test]
    fn a_serial_must_match_whole() {
        let dir = tempfile::tempdir().unwrap();
        disk(dir.path(), "vda", Some("moat-scratch2"));
        disk(dir.path(), "vdb", Some("moat-scra"));
        assert_eq!(find_by_serial(dir.path(), SCRATCH_SERIAL).unwrap(), None);
        assert_eq!(find_by_serial(&dir.path().join("absent"), SCRATCH_SERIAL).unwrap(), None);
    }

    #[test]
    fn images_are_plain_paths_on_the_share() {
        assert_eq!(image_on_share("images/abc.erofs").unwrap(), Path::new(SHARE_DIR).join("images/abc.erofs"));
        for bad in ["", "/etc/passwd", "../x", "images/../../x", "./x", &"a".repeat(MAX_IMAGE_PATH + 1)] {
            assert!(matches!(image_on_share(bad), Err(DiskError::BadImagePath(_))), "{bad:?}");
        }
    }
}
