//! The workload's terminal: runc allocates the pty inside the container and hands the master
//! to init over a unix socket (`--console-socket`), as an SCM_RIGHTS message.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

pub const CONSOLE_SOCKET: &str = "/run/moat/console.sock";

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("console socket {CONSOLE_SOCKET}: {0}")]
    Socket(std::io::Error),
    #[error("the OCI runtime sent no terminal")]
    NoTerminal,
    #[error("receiving the terminal from the OCI runtime: {0}")]
    Receive(nix::Error),
}

pub struct ConsoleSocket {
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind() -> Result<Self, TerminalError> {
        let _ = std::fs::remove_file(CONSOLE_SOCKET);
        let listener = UnixListener::bind(CONSOLE_SOCKET).map_err(TerminalError::Socket)?;
        Ok(Self { listener })
    }

    pub fn path(&self) -> &'static Path {
        Path::new(CONSOLE_SOCKET)
    }

    /// The pty master runc sent. Call after `runc create` returned: runc has connected and
    /// sent by then, so nothing here waits.
    pub fn receive_master(self) -> Result<OwnedFd, TerminalError> {
        self.listener.set_nonblocking(true).map_err(TerminalError::Socket)?;
        let (stream, _) = match self.listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(TerminalError::NoTerminal),
            Err(e) => return Err(TerminalError::Socket(e)),
        };
        let _ = std::fs::remove_file(CONSOLE_SOCKET);
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(TerminalError::Receive)?;
        let mut received: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs().map_err(TerminalError::Receive)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel installed these descriptors in init for this message;
                // nothing else refers to them, so each gets exactly one owner.
                received.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        received.into_iter().next().ok_or(TerminalError::NoTerminal)
    }
}

/// Set the terminal's size, as the host's terminal changed.
pub fn resize(master: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), nix::Error> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size as *const libc::winsize) };
    nix::errno::Errno::result(rc).map(drop)
}
