//! Leaving the initramfs. The kernel's rootfs has no parent mount, so pivot_root(2), which the
//! OCI runtime uses to enter a container's root, fails while it is init's root. Init binds the
//! rootfs onto a directory of its own, moves that bind mount over / and chroots into it: the same
//! files, now on a mount with a parent. Nothing is copied (copying the initramfs onto a tmpfs, as
//! switch_root does, took 50 to 90 ms of every boot under TCG).

use std::path::Path;

use nix::mount::{mount, MsFlags};

use crate::Error;

/// Where the rootfs is bound before the bind moves over /.
const NEW_ROOT: &str = "/newroot";

pub fn leave_initramfs() -> Result<(), Error> {
    std::fs::create_dir(NEW_ROOT).map_err(|e| Error::Io(NEW_ROOT, e))?;
    mount(Some("/"), NEW_ROOT, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|err| Error::Mount { target: NEW_ROOT, err })?;
    std::env::set_current_dir(NEW_ROOT).map_err(|e| Error::Io(NEW_ROOT, e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|err| Error::Mount { target: "/", err })?;
    nix::unistd::chroot(".").map_err(|e| Error::Sys("chroot into the new root", e))?;
    std::env::set_current_dir("/").map_err(|e| Error::Io("/", e))?;
    // The directory the bind was made on, empty and no longer a mount point.
    std::fs::remove_dir(Path::new(NEW_ROOT)).map_err(|e| Error::Io(NEW_ROOT, e))
}
