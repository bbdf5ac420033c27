//! runc's `--console-socket`: a new pty whose master goes to the caller (conmon) over the unix
//! socket, as SCM_RIGHTS. The keeper holds the slave in raw mode and relays it to the
//! container's own terminal in the zone, whose line discipline is the one that counts.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context as _;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Open a pty, send its master to `socket`, and return the slave.
pub fn send_new_pty(socket: &Path) -> anyhow::Result<OwnedFd> {
    let pty = nix::pty::openpty(None, None).context("opening a pty")?;
    let stream = UnixStream::connect(socket).with_context(|| format!("connecting to the console socket {}", socket.display()))?;
    let fds = [pty.master.as_raw_fd()];
    // runc sends the pty's name beside the fd; conmon reads the fd only.
    let name = b"/dev/ptmx";
    sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(name)], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .with_context(|| format!("sending the pty to the console socket {}", socket.display()))?;
    Ok(pty.slave)
}
