//! Read-only loop devices over image files: a container created after boot gets its image as an
//! EROFS file on the zone's share, and init mounts it through a loop device. The device clears
//! itself when the mount goes (autoclear), so removing a container frees it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// A free device can be taken by someone else (a privileged container) between the two calls.
const ATTEMPTS: usize = 8;
/// devtmpfs creates a new device's node asynchronously.
const NODE_WAIT: Duration = Duration::from_secs(2);

/// The kernel's `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// The kernel's `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("no free loop device: {0}")]
    NoFree(std::io::Error),
    #[error("attaching {path} to a loop device: {err}")]
    Attach { path: PathBuf, err: std::io::Error },
}

/// A loop device attached read-only to `file`, detached again when its last user (the mount
/// made on it) goes. The returned fd keeps it until the caller has mounted it.
pub fn attach_read_only(file: &Path) -> Result<(PathBuf, OwnedFd), LoopError> {
    let backing = std::fs::File::open(file).map_err(|err| LoopError::Io { what: "opening", path: file.into(), err })?;
    let control = std::fs::File::open(LOOP_CONTROL).map_err(|err| LoopError::Io { what: "opening", path: LOOP_CONTROL.into(), err })?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if number < 0 {
            return Err(LoopError::NoFree(std::io::Error::last_os_error()));
        }
        let node = PathBuf::from(format!("/dev/loop{number}"));
        let device = open_node(&node)?;
        // SAFETY: LoopConfig is plain data; all-zero is a valid value.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = backing.as_raw_fd().unsigned_abs();
        config.info.flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads the LoopConfig we own for the duration of the call.
        let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &raw const config) };
        if rc == 0 {
            return Ok((node, device.into()));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(LoopError::Attach { path: file.into(), err });
        }
        last = Some(err);
    }
    Err(LoopError::Attach { path: file.into(), err: last.unwrap_or_else(|| std::io::Error::other("every loop device was busy")) })
}

fn open_node(node: &Path) -> Result<std::fs::File, LoopError> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        match std::fs::OpenOptions::new().read(true).open(node) {
            Ok(file) => return Ok(file),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(err) => return Err(LoopError::Io { what: "opening", path: node.into(), err }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
