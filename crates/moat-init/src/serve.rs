//! The control loop: answer host requests, reap every child, forward signals.

use std::convert::Infallible;
use std::os::fd::AsFd;

use moat_proto::{DebugRequest, GuestMessage, HostMessage, Request, Response, PROTOCOL_VERSION};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::{log, power, Error};

/// Signals PID 1 handles itself. SIGCHLD means reap; the rest are forwarded to workloads.
const HANDLED: [Signal; 6] = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

pub struct Options {
    /// Honour [`DebugRequest`]s. Set by `moat.debug=1` on the kernel command line, which only the
    /// host controls.
    pub debug: bool,
}

impl Options {
    pub fn from_cmdline(cmdline: &str) -> Self {
        Self { debug: cmdline.split_whitespace().any(|word| word == "moat.debug=1") }
    }
}

pub fn serve(channel: &mut Channel, options: Options) -> Result<Infallible, Error> {
    let mut signals = SigSet::empty();
    HANDLED.iter().for_each(|s| signals.add(*s));
    signals.thread_block().map_err(|e| Error::Sys("blocking signals", e))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::Sys("signalfd", e))?;

    let kernel_release = nix::sys::utsname::uname().map_err(|e| Error::Sys("uname", e))?.release().to_string_lossy().into_owned();
    channel.send(&GuestMessage::Hello {
        version: PROTOCOL_VERSION,
        kernel_release,
        init_version: env!("CARGO_PKG_VERSION").to_string(),
    })?;
    log::info("hello sent");

    let mut workloads: Vec<Pid> = Vec::new();
    loop {
        let (channel_ready, signal_ready) = {
            let mut fds = [PollFd::new(channel.as_fd(), PollFlags::POLLIN), PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sys("poll", e)),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if signal_ready {
            if let Ok(Some(info)) = signal_fd.read_signal() {
                handle_signal(info.ssi_signo, &mut workloads);
            }
        }
        if channel_ready {
            for msg in channel.receive()? {
                handle_message(channel, &options, msg)?;
            }
        }
    }
}

fn handle_signal(signo: u32, workloads: &mut Vec<Pid>) {
    let Ok(signal) = Signal::try_from(signo as i32) else { return };
    if signal == Signal::SIGCHLD {
        reap(workloads);
        return;
    }
    for pid in workloads.iter() {
        let _ = nix::sys::signal::kill(*pid, signal);
    }
}

/// Collect every exited child, ours or re-parented orphans, so none stays a zombie.
fn reap(workloads: &mut Vec<Pid>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                workloads.retain(|p| *p != pid);
                log::info(&format!("pid {pid} exited with status {code}"));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                workloads.retain(|p| *p != pid);
                log::info(&format!("pid {pid} killed by {signal}"));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn handle_message(channel: &mut Channel, options: &Options, msg: HostMessage) -> Result<(), Error> {
    let (id, request) = match msg {
        HostMessage::Hello { version } if version == PROTOCOL_VERSION => return Ok(()),
        HostMessage::Hello { version } => return Err(Error::Protocol(format!("host speaks version {version}, init speaks {PROTOCOL_VERSION}"))),
        HostMessage::Request { id, request } => (id, request),
    };
    let response = match request {
        Request::Ping => Response::Pong,
        Request::Shutdown => {
            channel.send(&GuestMessage::Response { id, response: Response::Done })?;
            log::info("shutdown requested");
            power::power_off();
        }
        Request::Debug(_) if !options.debug => Response::Failed { message: "debug requests are disabled in this zone".into() },
        Request::Debug(DebugRequest::KernelPanic) => {
            log::info("kernel panic requested");
            std::fs::write("/proc/sysrq-trigger", b"c").map_err(|e| Error::Io("/proc/sysrq-trigger", e))?;
            Response::Failed { message: "the kernel survived a crash request".into() }
        }
        Request::Debug(DebugRequest::WriteRaw { bytes }) => {
            channel.write_raw(&bytes)?;
            return Ok(());
        }
    };
    channel.send(&GuestMessage::Response { id, response })
}
