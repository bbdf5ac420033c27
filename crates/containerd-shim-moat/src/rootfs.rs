//! The container's root filesystem: the bundle's `rootfs`, where containerd's mounts (an overlay
//! of the snapshot's layers) are done, or what containerd already put there. The zone takes the
//! directory through its share, read-only, as the lower layer of the container's overlay, so the
//! snapshot is never copied; the container's writes stay in the zone.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting the container's root filesystem ({kind} {source_path}): {message}")]
    Mount { kind: String, source_path: String, message: String },
    #[error("{what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
    #[error("building the container's root filesystem image: {0}")]
    Image(#[from] moat_image::erofs::ErofsError),
}

/// The container's root directory, with `mounts` done at the bundle's `rootfs`; whether the
/// shim mounted it (and so must unmount it, see [`release`]).
pub fn prepare(bundle: &Path, mounts: &[Mount]) -> Result<(PathBuf, bool), RootfsError> {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|err| RootfsError::Io { what: "creating the bundle's rootfs", err })?;
    for (done, mount) in mounts.iter().enumerate() {
        if let Err(err) = mount_one(mount, &rootfs) {
            if done > 0 {
                release(&rootfs);
            }
            return Err(RootfsError::Mount { kind: mount.type_.clone(), source_path: mount.source.clone(), message: err.to_string() });
        }
    }
    Ok((rootfs, !mounts.is_empty()))
}

/// Unmount what [`prepare`] mounted. The zone's share holds its own bind of it until the zone
/// lets go, so a detached unmount never pulls the root from under a running container.
pub fn release(rootfs: &Path) {
    let _ = nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH);
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
    fn without_mounts_the_bundles_rootfs_is_taken_as_it_is() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bundle.path().join("rootfs/etc")).unwrap();
        let (rootfs, mounted) = prepare(bundle.path(), &[]).unwrap();
        assert_eq!((rootfs, mounted), (bundle.path().join("rootfs"), false));
    }

    #[test]
    fn a_mount_that_fails_is_one_typed_error() {
        let bundle = tempfile::tempdir().unwrap();
        let bad = Mount { type_: "nosuchfs".into(), source: "none".into(), ..Default::default() };
        assert!(matches!(prepare(bundle.path(), &[bad]), Err(RootfsError::Mount { .. })));
    }
}
