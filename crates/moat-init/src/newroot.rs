//! Leaving the initramfs. The kernel's rootfs has no parent mount, so pivot_root(2), which runc
//! uses to enter a container's root, fails while it is init's root. Like switch_root, init
//! moves the initramfs contents onto a tmpfs, frees the originals, moves the tmpfs over / and
//! chroots into it.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

use crate::Error;

/// Where the tmpfs is mounted while the initramfs is copied onto it.
const NEW_ROOT: &str = "/newroot";

pub fn leave_initramfs() -> Result<(), Error> {
    let new_root = Path::new(NEW_ROOT);
    std::fs::create_dir(new_root).map_err(|e| Error::Io(NEW_ROOT, e))?;
    mount(Some("tmpfs"), NEW_ROOT, Some("tmpfs"), MsFlags::empty(), Some("mode=0755")).map_err(|err| Error::Mount { target: NEW_ROOT, err })?;
    let root_dev = std::fs::symlink_metadata("/").map_err(|e| Error::Io("/", e))?.dev();
    move_tree(Path::new("/"), new_root, root_dev)?;
    std::env::set_current_dir(new_root).map_err(|e| Error::Io(NEW_ROOT, e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|err| Error::Mount { target: "/", err })?;
    nix::unistd::chroot(".").map_err(|e| Error::Sys("chroot into the new root", e))?;
    std::env::set_current_dir("/").map_err(|e| Error::Io("/", e))
}

/// Copy each entry of `from` (on device `dev`) under `to`, deleting the original once copied,
/// so the initramfs never takes twice its size in memory. Mount points, such as the new root,
/// are on another device and stay.
fn move_tree(from: &Path, to: &Path, dev: u64) -> Result<(), Error> {
    let entries = std::fs::read_dir(from).map_err(|err| path_err("listing", from, err))?;
    for entry in entries {
        let path = entry.map_err(|err| path_err("listing", from, err))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|err| path_err("inspecting", &path, err))?;
        if meta.dev() != dev {
            continue;
        }
        let dest = to.join(path.file_name().unwrap_or_default());
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dest).map_err(|err| path_err("creating", &dest, err))?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(meta.mode())).map_err(|err| path_err("setting the mode of", &dest, err))?;
            move_tree(&path, &dest, dev)?;
            std::fs::remove_dir(&path).map_err(|err| path_err("removing", &path, err))?;
            continue;
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|err| path_err("reading", &path, err))?;
            std::os::unix::fs::symlink(target, &dest).map_err(|err| path_err("creating", &dest, err))?;
        } else if kind.is_file() {
            std::fs::copy(&path, &dest).map_err(|err| path_err("copying", &path, err))?;
        } else if kind.is_char_device() || kind.is_block_device() {
            let node = if kind.is_char_device() { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            mknod(&dest, node, Mode::from_bits_truncate(meta.mode()), meta.rdev()).map_err(|e| path_err("creating", &dest, e.into()))?;
        }
        std::fs::remove_file(&path).map_err(|err| path_err("removing", &path, err))?;
    }
    Ok(())
}

fn path_err(what: &'static str, path: &Path, err: std::io::Error) -> Error {
    Error::Path { what, path: PathBuf::from(path), err }
}
