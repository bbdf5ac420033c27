//! The root filesystem of a container that runs in a user namespace, as an EROFS image. The
//! zone gives such a container its image's files as its own through an idmapped mount, which
//! the zone's kernel (6.1) makes of a block device's filesystem but not of virtio-fs; so the
//! snapshot goes to the zone as an EROFS file, as `moat run`'s images do.
//!
//! The image is built once per set of lower layers (containerd never changes a committed
//! snapshot) and kept under the state root for the image's next containers; an entry goes once
//! its layers are gone from containerd.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;

use crate::rootfs::RootfsError;

/// Under the state root: the images built from containerd's snapshots.
const CACHE_DIR: &str = "containerd-rootfs";

/// An EROFS image of the container's root filesystem, mounted at `rootfs`: from the cache when
/// `mounts` is an overlay of committed layers with nothing above them yet, else built into the
/// bundle (which containerd removes with the task).
pub fn erofs_of(rootfs: &Path, mounts: &[Mount], state_root: &Path, bundle: &Path) -> Result<PathBuf, RootfsError> {
    let Some(lower) = shareable_lower(mounts) else {
        let file = bundle.join("rootfs.erofs");
        build(rootfs, &file, lower_key(&bundle.to_string_lossy()))?;
        return Ok(file);
    };
    let dir = state_root.join(CACHE_DIR);
    std::fs::create_dir_all(&dir).map_err(|err| RootfsError::Io { what: "creating the rootfs image cache", err })?;
    let key = lower_key(lower);
    let file = dir.join(format!("{}.erofs", key.hex()));
    if file.exists() {
        return Ok(file);
    }
    remove_stale(&dir);
    // Built aside and renamed: shims of two pods may build the same image at once.
    let partial = dir.join(format!("{}.partial.{}", key.hex(), std::process::id()));
    let built = build(rootfs, &partial, key.clone()).and_then(|()| {
        std::fs::write(dir.join(format!("{}.lower", key.hex())), lower).map_err(|err| RootfsError::Io { what: "recording the image's layers", err })?;
        std::fs::rename(&partial, &file).map_err(|err| RootfsError::Io { what: "keeping the rootfs image", err })
    });
    if built.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    built.map(|()| file)
}

/// The `lowerdir` of an overlay whose upper layer is still empty: the whole content, and
/// containerd's committed layers never change.
fn shareable_lower(mounts: &[Mount]) -> Option<&str> {
    let [mount] = mounts else { return None };
    if mount.type_ != "overlay" {
        return None;
    }
    let option = |name: &str| mount.options.iter().find_map(|o| o.strip_prefix(name)?.strip_prefix('='));
    let upper_is_empty = option("upperdir").is_none_or(|upper| std::fs::read_dir(upper).is_ok_and(|mut entries| entries.next().is_none()));
    option("lowerdir").filter(|_| upper_is_empty)
}

fn lower_key(lower: &str) -> moat_image::Digest {
    moat_image::Digest::of(lower.as_bytes())
}

fn build(dir: &Path, out: &Path, key: moat_image::Digest) -> Result<(), RootfsError> {
    Ok(moat_image::erofs::build(dir, out, &key)?)
}

/// Remove the images whose layers containerd has since removed (with the image).
fn remove_stale(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lower") {
            continue;
        }
        let lower = std::fs::read_to_string(&path).unwrap_or_default();
        if lower.split(':').any(|layer| !Path::new(layer).exists()) {
            let _ = std::fs::remove_file(path.with_extension("erofs"));
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(options: &[&str]) -> Mount {
        Mount { type_: "overlay".into(), source: "overlay".into(), options: options.iter().map(|o| o.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn only_an_overlay_with_an_empty_upper_layer_is_shared() {
        let upper = tempfile::tempdir().unwrap();
        let upper_option = format!("upperdir={}", upper.path().display());
        let mounts = [overlay(&["index=off", "workdir=/w", &upper_option, "lowerdir=/l/2/fs:/l/1/fs"])];
        assert_eq!(shareable_lower(&mounts), Some("/l/2/fs:/l/1/fs"));
        std::fs::write(upper.path().join("written"), b"x").unwrap();
        assert_eq!(shareable_lower(&mounts), None, "something was written above the layers");
        let bind = Mount { type_: "bind".into(), source: "/l/1/fs".into(), options: vec!["rbind".into(), "ro".into()], ..Default::default() };
        assert_eq!(shareable_lower(&[bind]), None);
        assert_eq!(shareable_lower(&[]), None);
    }

    #[test]
    fn the_image_is_built_once_and_goes_with_its_layers() {
        let (root, bundle, layer) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(layer.path().join("hello"), b"hi").unwrap();
        let lower = format!("lowerdir={}", layer.path().display());
        let mounts = [overlay(&[&lower])];
        let first = erofs_of(layer.path(), &mounts, root.path(), bundle.path()).unwrap();
        let built_at = std::fs::metadata(&first).unwrap().modified().unwrap();
        let again = erofs_of(layer.path(), &mounts, root.path(), bundle.path()).unwrap();
        assert_eq!((first.clone(), built_at), (again, std::fs::metadata(&first).unwrap().modified().unwrap()), "kept, not rebuilt");
        assert!(first.starts_with(root.path().join(CACHE_DIR)));

        let other = tempfile::tempdir().unwrap();
        let gone = layer.path().to_path_buf();
        drop(layer);
        let lower = format!("lowerdir={}", other.path().display());
        erofs_of(other.path(), &[overlay(&[&lower])], root.path(), bundle.path()).unwrap();
        assert!(!first.exists() && !gone.exists(), "the image of removed layers went");

        let alone = erofs_of(other.path(), &[], root.path(), bundle.path()).unwrap();
        assert_eq!(alone, bundle.path().join("rootfs.erofs"));
    }
}
