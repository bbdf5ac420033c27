//! The volumes an image declares (`VOLUME`), made in the zone as Docker makes them: an anonymous
//! volume per path, seeded with what the image holds there (contents, owners, modes, times), and
//! bound into the container in place of the image's directory.
//!
//! They live in the container's own directory on the scratch disk, so they are ext4, not the
//! container's overlay: nested runtimes can use them for their own overlays, which overlayfs
//! refuses to stack on an overlay's upper layer. They go with that directory when the container
//! is removed.
//!
//! The image is hostile: its path to a volume resolves inside the container's root only, and
//! the seeding copy is [`moat_tree`]'s, bounded as `moat cp` is and never through a symlink.
//! For a user-namespaced container the files are read through its root, whose idmapped layers
//! show them under the zone's ids: the copies keep those, so the container sees the image's.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use moat_proto::copy::{MAX_COPY_BYTES, MAX_COPY_DEPTH, MAX_COPY_ENTRIES};
use moat_proto::FailureKind;
use moat_spec::mounts::IMAGE_VOLUME_TYPE;
use moat_tree::{ErrorClass, Limits, Options, TreeError, What};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{fchownat, Gid, Uid};
use oci_spec::runtime::Spec;

use crate::disks::RootfsDirs;
use crate::idmap::{self, IdmapError};

/// The seeding copy: the bounds of `moat cp`, every permission bit, and the owners kept.
const SEED: Options = Options {
    limits: Limits { bytes: MAX_COPY_BYTES, entries: MAX_COPY_ENTRIES, depth: MAX_COPY_DEPTH },
    mode_mask: 0o7777,
    keep_owner: true,
};

/// The mode of a volume whose path the image does not have, as Docker makes it.
const EMPTY_VOLUME_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum ImageVolumeError {
    #[error("the image has a non-directory at {0}, where it declares a volume")]
    NotADirectory(String),
    #[error("seeding the volume at {path} from the image: {err}")]
    Seed { path: String, err: TreeError },
    #[error("{what} {}: {err}", path.display())]
    Sys { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Idmap(#[from] IdmapError),
}

impl ImageVolumeError {
    /// What the image holds is the caller's problem; the zone's own failures are internal.
    pub fn kind(&self) -> FailureKind {
        match self {
            ImageVolumeError::NotADirectory(_) => FailureKind::BadRequest,
            ImageVolumeError::Seed { err, .. } => match err.class() {
                ErrorClass::Limit => FailureKind::Limit,
                ErrorClass::Refused => FailureKind::BadRequest,
                ErrorClass::NotFound | ErrorClass::Io => FailureKind::Internal,
            },
            ImageVolumeError::Sys { .. } | ImageVolumeError::Idmap(_) => FailureKind::Internal,
        }
    }
}

/// Make every image volume of `spec` for `container`, whose root filesystem is mounted at
/// `rootfs`, and turn its mount into a bind of the volume.
pub fn make(spec: &mut Spec, container: &str, rootfs: &Path) -> Result<(), ImageVolumeError> {
    let Some(mut mounts) = spec.mounts().clone().filter(|m| m.iter().any(|m| m.typ().as_deref() == Some(IMAGE_VOLUME_TYPE))) else { return Ok(()) };
    let root_ids = idmap::root_ids(spec)?;
    let dir = RootfsDirs::of(container).scratch.join("volumes");
    std::fs::create_dir_all(&dir).map_err(|err| ImageVolumeError::Sys { what: "creating", path: dir.clone(), err })?;
    let volumes = open_dir(&dir)?;
    let root = open_dir(rootfs)?;
    for (index, mount) in mounts.iter_mut().enumerate().filter(|(_, m)| m.typ().as_deref() == Some(IMAGE_VOLUME_TYPE)) {
        let name = index.to_string();
        let destination = mount.destination().to_string_lossy().into_owned();
        seed(&root, &destination, &volumes, &name, root_ids)?;
        mount.set_typ(Some("bind".into())).set_source(Some(dir.join(&name))).set_options(Some(vec!["rbind".into()]));
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Make the volume `name` in `volumes`: a copy of the image's directory at `destination`, or an
/// empty directory of the container's root when the image has none there.
fn seed(root: &OwnedFd, destination: &str, volumes: &OwnedFd, name: &str, (uid, gid): (u32, u32)) -> Result<(), ImageVolumeError> {
    let inside = destination.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    match openat2(root.as_raw_fd(), inside, how) {
        Ok(fd) => {
            let image_dir = owned(fd);
            let what = What::Directory { from: image_dir.as_fd(), to: volumes.as_fd(), to_name: OsStr::new(name), label: OsStr::new(destination) };
            moat_tree::check_and_copy(what, &SEED).map(drop).map_err(|err| ImageVolumeError::Seed { path: destination.to_string(), err })
        }
        Err(Errno::ENOENT) => {
            let path = Path::new(destination);
            mkdirat(Some(volumes.as_raw_fd()), name, Mode::from_bits_truncate(EMPTY_VOLUME_MODE)).map_err(|err| sys("creating the volume for", path, err))?;
            fchownat(Some(volumes.as_raw_fd()), name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|err| sys("handing to the container's root the volume for", path, err))
        }
        Err(Errno::ENOTDIR) => Err(ImageVolumeError::NotADirectory(destination.to_string())),
        Err(err) => Err(sys("opening in the image", Path::new(destination), err)),
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, ImageVolumeError> {
    let fd = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|err| sys("opening", dir, err))?;
    Ok(owned(fd))
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: the descriptor was just returned by a successful open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sys(what: &'static str, path: &Path, err: Errno) -> ImageVolumeError {
    ImageVolumeError::Sys { what, path: path.to_path_buf(), err: err.into() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn root_and_volumes() -> (tempfile::TempDir, OwnedFd, OwnedFd) {
        let zone = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(zone.path().join("rootfs/var/lib/app")).unwrap();
        std::fs::create_dir_all(zone.path().join("volumes")).unwrap();
        let root = open_dir(&zone.path().join("rootfs")).unwrap();
        let volumes = open_dir(&zone.path().join("volumes")).unwrap();
        (zone, root, volumes)
    }

    #[test]
    fn a_volume_is_seeded_from_the_image_or_made_empty() {
        let (zone, root, volumes) = root_and_volumes();
        std::fs::write(zone.path().join("rootfs/var/lib/app/seed"), "from the image\n").unwrap();
        seed(&root, "/var/lib/app", &volumes, "0", (0, 0)).unwrap();
        assert_eq!(std::fs::read_to_string(zone.path().join("volumes/0/seed")).unwrap(), "from the image\n");

        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        seed(&root, "/var/lib/absent", &volumes, "1", (uid, gid)).unwrap();
        let empty = std::fs::metadata(zone.path().join("volumes/1")).unwrap();
        assert_eq!((empty.mode() & 0o7777, empty.uid(), empty.gid()), (EMPTY_VOLUME_MODE, uid, gid));
    }

    #[test]
    fn the_image_cannot_lead_a_volume_out_of_its_root_or_onto_a_file() {
        let (zone, root, volumes) = root_and_volumes();
        let outside = zone.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "zone\n").unwrap();
        std::os::unix::fs::symlink(&outside, zone.path().join("rootfs/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", zone.path().join("rootfs/var/up")).unwrap();
        for (n, path) in ["/abs", "/var/up"].iter().enumerate() {
            seed(&root, path, &volumes, &n.to_string(), (0, 0)).unwrap();
            assert!(!zone.path().join(format!("volumes/{n}/secret")).exists(), "{path} reached the zone's files");
        }
        std::fs::write(zone.path().join("rootfs/var/lib/file"), "x").unwrap();
        let err = seed(&root, "/var/lib/file", &volumes, "2", (0, 0)).unwrap_err();
        assert_eq!((err.kind(), err.to_string()), (FailureKind::BadRequest, "the image has a non-directory at /var/lib/file, where it declares a volume".to_string()));
    }
}
