//! The control loop: answer host requests, run the zone's containers (their processes and those
//! exec'd into them) and relay their stdio, reap every child, forward signals.

use std::convert::Infallible;
use std::os::fd::AsFd;

use moat_proto::net::GuestNetwork;
use moat_proto::{DebugRequest, FailureKind, GuestMessage, HostMessage, OciRuntime, Request, Response, PROTOCOL_VERSION};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::channel::Channel;
use crate::containers::Containers;
use crate::copy::Copies;
use crate::{log, power, Error};

/// Signals PID 1 handles itself. SIGCHLD means reap; the rest are forwarded to the containers.
const HANDLED: [Signal; 6] = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

pub struct Options {
    /// Honour [`DebugRequest`]s. Set by `moat.debug=1` on the kernel command line, which only the
    /// host controls.
    pub debug: bool,
    /// The zone's network device and its configuration, when the host gave the zone one.
    pub network: Option<GuestNetwork>,
    /// The OCI runtime the host chose (`moat.oci_runtime=`).
    pub runtime: OciRuntime,
}

impl Options {
    pub fn from_cmdline(cmdline: &str) -> Result<Self, Error> {
        let network = GuestNetwork::from_cmdline(cmdline).map_err(|err| Error::Protocol(err.to_string()))?;
        let runtime = OciRuntime::from_cmdline(cmdline).map_err(|err| Error::Protocol(err.to_string()))?;
        Ok(Self { debug: cmdline.split_whitespace().any(|word| word == "moat.debug=1"), network, runtime })
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

    let mut containers = Containers::new(options.network, options.runtime);
    let mut copies = Copies::default();
    loop {
        let (channel_ready, signal_ready, layout, process_ready) = {
            let (watches, layout) = containers.watches();
            let (timeout, read_channel) = (containers.poll_timeout(), containers.accepts_input());
            let channel_events = if read_channel { PollFlags::POLLIN } else { PollFlags::empty() };
            let mut fds = vec![PollFd::new(channel.as_fd(), channel_events), PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
            fds.extend(watches.iter().map(|w| PollFd::new(w.fd, w.events)));
            let timeout = timeout.map_or(PollTimeout::NONE, |t| PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX));
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sys("poll", e)),
            }
            let ready: Vec<bool> = fds.iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty())).collect();
            (ready[0], ready[1], layout, ready[2..].to_vec())
        };
        if signal_ready {
            if let Ok(Some(info)) = signal_fd.read_signal() {
                handle_signal(info.ssi_signo, &mut containers, &mut copies);
            }
        }
        if process_ready.contains(&true) {
            containers.relay(&layout, &process_ready, channel)?;
        }
        if channel_ready {
            for msg in channel.receive()? {
                handle_message(channel, &options, &mut containers, &mut copies, msg)?;
            }
        }
        containers.report_exits(channel)?;
        copies.report(channel)?;
    }
}

fn handle_signal(signo: u32, containers: &mut Containers, copies: &mut Copies) {
    let Some(signal) = i32::try_from(signo).ok().and_then(|n| Signal::try_from(n).ok()) else { return };
    if signal == Signal::SIGCHLD {
        reap(containers, copies);
    } else {
        containers.signal_all(signal);
    }
}

/// Collect every exited child, the container's processes, copies or re-parented orphans, so
/// none stays a zombie.
fn reap(containers: &mut Containers, copies: &mut Copies) {
    loop {
        let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => status,
        };
        let ours = status.pid().is_some_and(|pid| containers.reaped(pid, status) || copies.reaped(pid, status));
        if !ours {
            log::info(&format!("reaped {status:?}"));
        }
    }
}

fn handle_message(channel: &mut Channel, options: &Options, containers: &mut Containers, copies: &mut Copies, msg: HostMessage) -> Result<(), Error> {
    let (id, request) = match msg {
        HostMessage::Hello { version } if version == PROTOCOL_VERSION => return Ok(()),
        HostMessage::Hello { version } => return Err(Error::Protocol(format!("host speaks version {version}, init speaks {PROTOCOL_VERSION}"))),
        HostMessage::Request { id, request } => (id, request),
        HostMessage::Stdin { process, data } => {
            if let Some(workload) = containers.process(process) {
                workload.stdin(data);
            }
            return Ok(());
        }
        HostMessage::Signal { process, signal } => {
            match (containers.process(process), Signal::try_from(signal)) {
                (Some(workload), Ok(signal)) => workload.signal(signal),
                (Some(_), Err(_)) => log::info(&format!("host asked for unknown signal {signal}")),
                (None, _) => {}
            }
            return Ok(());
        }
        HostMessage::Resize { process, rows, cols } => {
            if let Some(workload) = containers.process(process) {
                workload.resize(rows, cols);
            }
            return Ok(());
        }
    };
    let response = match request {
        Request::Ping => Response::Pong,
        Request::CreateContainer(create) => containers.create(&create),
        Request::StartContainer { container } => containers.start(&container),
        Request::Exec { container, process, exec } => containers.exec(&container, process, &exec),
        Request::RemoveContainer { container, force } => containers.remove(&container, force),
        // A copy that starts is answered when its child ends (see `Copies::report`).
        Request::CopyIn(copy) => match containers.copy_target(&copy.container).and_then(|target| copies.copy_in(id, &copy, target)) {
            Ok(()) => return Ok(()),
            Err(response) => response,
        },
        Request::CopyOut(copy) => match containers.copy_target(&copy.container).and_then(|target| copies.copy_out(id, &copy, target)) {
            Ok(()) => return Ok(()),
            Err(response) => response,
        },
        Request::UpdateHosts { container, hosts } => containers.update_hosts(&container, &hosts),
        Request::Prepare { seccomp_json } => containers.prepare(seccomp_json.as_deref()),
        Request::Stats { container } => containers.stats(&container),
        Request::Processes { container } => containers.processes(&container),
        Request::Shutdown => {
            log::info("shutdown requested");
            // Done means synced: the host may end the VM from then on, without waiting for the
            // kernel's own power-off.
            nix::unistd::sync();
            channel.send(&GuestMessage::Response { id, response: Response::Done })?;
            power::power_off();
        }
        Request::Debug(_) if !options.debug => Response::Failed { kind: FailureKind::BadRequest, message: "debug requests are disabled in this zone".into() },
        Request::Debug(DebugRequest::KernelPanic) => {
            log::info("kernel panic requested");
            std::fs::write("/proc/sysrq-trigger", b"c").map_err(|e| Error::Io("/proc/sysrq-trigger", e))?;
            Response::Failed { kind: FailureKind::Internal, message: "the kernel survived a crash request".into() }
        }
        Request::Debug(DebugRequest::WriteRaw { bytes }) => {
            channel.write_raw(&bytes)?;
            return Ok(());
        }
        Request::Debug(DebugRequest::ProbeShare { path }) => probe_share(&path),
    };
    channel.send(&GuestMessage::Response { id, response })
}

/// Read and try to write a path in the share, as root: the check behind the host's tests of
/// what a zone can do to exposed files.
fn probe_share(path: &str) -> Response {
    use std::io::Read;
    let path = std::path::Path::new(moat_proto::layout::SHARE_DIR).join(path);
    let read = std::fs::File::open(&path)
        .and_then(|file| {
            let mut data = Vec::new();
            file.take(moat_proto::MAX_PROBE_READ as u64).read_to_end(&mut data)?;
            Ok(String::from_utf8_lossy(&data).into_owned())
        })
        .map_err(|e| e.to_string());
    let write = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).map(drop).map_err(|e| e.to_string());
    Response::Probed { read, write }
}
