//! A zone's tap device: opened by the supervisor (in the network namespace it belongs to) and
//! handed to QEMU as an inherited descriptor. The tap is not persistent: it goes when the last
//! descriptor of it closes, that is, with the zone's QEMU and supervisor.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const TUN_DEVICE: &str = "/dev/net/tun";
/// Linux's IFNAMSIZ, the terminating NUL included.
const IFNAMSIZ: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("opening {TUN_DEVICE}: {0}")]
    OpenTun(std::io::Error),
    #[error("creating the tap {name}: {err}")]
    Create { name: String, err: std::io::Error },
    #[error("entering the network namespace {path}: {err}")]
    Netns { path: PathBuf, err: std::io::Error },
    #[error("interface name {0:?} is empty, too long or not plain text")]
    BadName(String),
}

/// The tap's name for a zone: `mt-` and the start of the zone's id, so it fits an interface
/// name and says whose it is.
pub fn tap_name(zone_id: &str) -> String {
    let short: String = zone_id.chars().take(IFNAMSIZ - 1 - 3).collect();
    format!("mt-{short}")
}

/// Create the tap `name` in the current network namespace, or in the one at `netns`, and
/// return its descriptor: frames with neither a packet-information nor a virtio-net header.
pub fn open(name: &str, netns: Option<&Path>) -> Result<OwnedFd, TapError> {
    if name.is_empty() || name.len() >= IFNAMSIZ || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(TapError::BadName(name.to_string()));
    }
    let Some(netns) = netns else { return create(name) };
    let namespace = File::open(netns).map_err(|err| TapError::Netns { path: netns.to_path_buf(), err })?;
    let name = name.to_string();
    let path = netns.to_path_buf();
    // setns changes only the calling thread's namespace: a thread of its own, which then ends,
    // keeps the supervisor where it was. The tap stays in the namespace it was made in.
    std::thread::spawn(move || {
        // SAFETY: setns with a descriptor we own; it affects this thread only.
        if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(TapError::Netns { path, err: std::io::Error::last_os_error() });
        }
        create(&name)
    })
    .join()
    .unwrap_or_else(|_| Err(TapError::Create { name: String::new(), err: std::io::Error::other("the thread creating the tap panicked") }))
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags, in a 40-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn create(name: &str) -> Result<OwnedFd, TapError> {
    let tun = std::fs::OpenOptions::new().read(true).write(true).open(TUN_DEVICE).map_err(TapError::OpenTun)?;
    let mut request = IfReq { name: [0; IFNAMSIZ], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `request` is and outlives the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut request) } != 0 {
        return Err(TapError::Create { name: name.to_string(), err: std::io::Error::last_os_error() });
    }
    Ok(OwnedFd::from(tun))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_an_interface_name() {
        assert_eq!(tap_name("0123456789abcdef"), "mt-0123456789ab");
        assert!(tap_name("0123456789abcdef").len() < IFNAMSIZ);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(matches!(open("a/b", None), Err(TapError::BadName(_))));
        assert!(matches!(open("0123456789abcdefg", None), Err(TapError::BadName(_))));
    }
}
