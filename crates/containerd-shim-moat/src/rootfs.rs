//! The container's root filesystem: containerd mounts the snapshot (or hands the shim its
//! mounts), and the zone takes an EROFS image. moat-runtime has no host-directory root yet, so
//! the shim builds that image from the bundle's `rootfs` once per container.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;
use moat_image::digest::Digest;

/// The image file, kept in the bundle so that it goes with it.
pub const IMAGE_FILE: &str = "moat-rootfs.erofs";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting the container's root filesystem ({kind} {source_path}): {message}")]
    Mount { kind: String, source_path: String, message: String },
    #[error("building the container's root filesystem image: {0}")]
    Image(#[from] moat_image::erofs::ErofsError),
    #[error("{what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
}

/// The EROFS image of the container's root filesystem, built from `mounts` (mounted at the
/// bundle's `rootfs` for the copy, and unmounted after it) or, without mounts, from what is
/// already at `rootfs`.
pub fn image(bundle: &Path, container_id: &str, mounts: &[Mount]) -> Result<PathBuf, RootfsError> {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|err| RootfsError::Io { what: "creating the bundle's rootfs", err })?;
    for mount in mounts {
        mount_one(mount, &rootfs).map_err(|err| RootfsError::Mount { kind: mount.type_.clone(), source_path: mount.source.clone(), message: err.to_string() })?;
    }
    let out = bundle.join(IMAGE_FILE);
    let built = moat_image::erofs::build(&rootfs, &out, &Digest::of(container_id.as_bytes()));
    if !mounts.is_empty() {
        // The zone reads the image, never the snapshot: nothing keeps the mount.
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    }
    built?;
    Ok(out)
}

/// One of containerd's mounts (an overlay of the snapshot's layers, or a bind), done here:
/// the shim crate's own helper forks and waits through a reaper this shim runs without.
fn mount_one(mount: &Mount, target: &Path) -> nix::Result<()> {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in &mount.options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let fs_type = (!mount.type_.is_empty() && mount.type_ != "bind").then_some(mount.type_.as_str());
    let data = data.join(",");
    nix::mount::mount(Some(mount.source.as_str()), target, fs_type, flags, (!data.is_empty()).then_some(data.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_holds_the_bundles_rootfs() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bundle.path().join("rootfs/etc")).unwrap();
        std::fs::write(bundle.path().join("rootfs/etc/hostname"), "x\n").unwrap();
        let out = image(bundle.path(), "c1", &[]).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        // EROFS's superblock magic sits at offset 1024.
        assert_eq!(&bytes[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
    }
}
