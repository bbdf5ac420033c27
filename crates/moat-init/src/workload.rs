//! One running process of the zone's container, the workload or one `exec`ed into it: its
//! stdio relayed to and from the channel under its process number, its signals and terminal
//! size from the host, and its end reported once all its output went out.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use moat_proto::{ExitStatus, GuestMessage, Stream};
use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::stats::keyed;
use crate::{log, terminal, Error};

/// Largest Output message payload.
pub const MAX_OUTPUT_CHUNK: usize = 64 * 1024;

/// Host stdin bytes init holds for a process that does not read them. Past this, init stops
/// reading the channel until the process catches up, so a flood from the host cannot fill the
/// zone's memory.
pub const MAX_PENDING_STDIN: usize = 1024 * 1024;

/// How long after a process's death init waits for the last output (other processes of the
/// container may hold the pipes briefly while the kernel tears the container down).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Largest memory.events file read.
const MAX_EVENTS_BYTES: u64 = 4096;

/// Exit code of a shell whose child the kernel killed with SIGKILL.
const SHELL_SIGKILL_CODE: i32 = 128 + 9;

struct Input {
    fd: OwnedFd,
    pending: Vec<u8>,
    /// The host closed stdin: close it once `pending` is written.
    closing: bool,
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
}

/// Init's ends of a process's stdio.
pub struct StdioEnds {
    /// Where the host's stdin bytes go; `None` when the process got an empty stdin.
    pub input: Option<OwnedFd>,
    pub outputs: Vec<(OwnedFd, Stream)>,
    /// The pty master, when the process has a terminal.
    pub terminal: Option<OwnedFd>,
}

pub struct Workload {
    /// The host's number for this process (a container's own, or one exec'd into it).
    process: u32,
    id: String,
    pid: Pid,
    cgroup: Option<PathBuf>,
    input: Option<Input>,
    outputs: Vec<Output>,
    /// The pty master, kept for resizing; the input and output hold their own duplicates.
    terminal: Option<OwnedFd>,
    ended: Option<(ExitStatus, Instant)>,
}

/// What the poll loop watches for a process, in the order [`Workload::relay`] expects.
pub struct Watch<'a> {
    pub fd: BorrowedFd<'a>,
    pub events: PollFlags,
}

impl Workload {
    pub fn new(process: u32, id: String, pid: Pid, cgroup: Option<PathBuf>, stdio: StdioEnds) -> Self {
        Self {
            process,
            id,
            pid,
            cgroup,
            input: stdio.input.map(|fd| Input { fd, pending: Vec::new(), closing: false }),
            outputs: stdio.outputs.into_iter().map(|(fd, stream)| Output { fd, stream }).collect(),
            terminal: stdio.terminal,
            ended: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The outputs, then the input when it has bytes to write.
    pub fn watches(&self) -> Vec<Watch<'_>> {
        let mut watches: Vec<Watch<'_>> = self.outputs.iter().map(|o| Watch { fd: o.fd.as_fd(), events: PollFlags::POLLIN }).collect();
        if let Some(input) = self.input.as_ref().filter(|i| !i.pending.is_empty()) {
            watches.push(Watch { fd: input.fd.as_fd(), events: PollFlags::POLLOUT });
        }
        watches
    }

    /// Move data for the fds that poll found ready (`ready[i]` belongs to `watches()[i]`).
    pub fn relay(&mut self, ready: &[bool], channel: &mut Channel) -> Result<(), Error> {
        let mut finished = Vec::new();
        for (index, output) in self.outputs.iter().enumerate() {
            if ready.get(index).copied().unwrap_or(false) && !forward(self.process, output, channel)? {
                finished.push(index);
            }
        }
        if ready.get(self.outputs.len()).copied().unwrap_or(false) {
            self.flush_input();
        }
        for index in finished.into_iter().rev() {
            self.outputs.remove(index);
        }
        Ok(())
    }

    /// Bytes from the host for stdin; empty means end of input.
    pub fn stdin(&mut self, data: Vec<u8>) {
        let Some(input) = self.input.as_mut() else { return };
        if data.is_empty() {
            input.closing = true;
        } else {
            input.pending.extend_from_slice(&data);
        }
        self.flush_input();
    }

    /// Whether init may read more from the channel (see [`MAX_PENDING_STDIN`]).
    pub fn accepts_input(&self) -> bool {
        self.input.as_ref().is_none_or(|i| i.pending.len() < MAX_PENDING_STDIN)
    }

    pub fn signal(&self, signal: Signal) {
        if self.ended.is_none() {
            let _ = nix::sys::signal::kill(self.pid, signal);
        }
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        if let Some(master) = &self.terminal {
            if let Err(err) = terminal::resize(master.as_fd(), rows, cols) {
                log::info(&format!("resizing the terminal: {err}"));
            }
        }
    }

    /// The process was reaped with `status`.
    pub fn reaped(&mut self, status: WaitStatus) {
        let oom = self.cgroup.as_ref().is_some_and(|dir| container_oom(&read_events(&dir.join("memory.events")), &read_events(&dir.join("memory.events.local"))));
        if let Some(status) = exit_status(status, oom) {
            log::info(&format!("process {} of container {} ended: {status:?}", self.process, self.id));
            self.ended = Some((status, Instant::now()));
            self.input = None;
        }
    }

    /// Whether the process itself is gone (its output may still be draining).
    pub fn has_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// How long the poll loop may sleep before [`Self::exit_status`] must be asked again;
    /// `None` while the process runs, and once the status is ready.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.exit_status().is_some() {
            return None;
        }
        self.ended.map(|(_, at)| DRAIN_GRACE.saturating_sub(at.elapsed()))
    }

    /// The status to report once the process ended and its output is drained (or the grace
    /// period for the last bytes is over).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let (status, at) = self.ended?;
        (self.outputs.is_empty() || at.elapsed() >= DRAIN_GRACE).then_some(status)
    }

    fn flush_input(&mut self) {
        let Some(input) = self.input.as_mut() else { return };
        while !input.pending.is_empty() {
            match nix::unistd::write(&input.fd, &input.pending) {
                Ok(n) => {
                    input.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(err) => {
                    // The reader is gone (EPIPE): nothing will ever take these bytes.
                    log::info(&format!("stdin of process {}: {err}", self.process));
                    self.input = None;
                    return;
                }
            }
        }
        if input.closing {
            self.input = None;
        }
    }
}

/// Read once from `output` and send what came, as `process`'s; false at its end.
fn forward(process: u32, output: &Output, channel: &mut Channel) -> Result<bool, Error> {
    let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
    match nix::unistd::read(output.fd.as_raw_fd(), &mut buf) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.truncate(n);
            channel.send(&GuestMessage::Output { process, stream: output.stream, data: buf })?;
            Ok(true)
        }
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(true),
        // A pty master reads EIO once the last holder of the terminal closed it.
        Err(nix::errno::Errno::EIO) => Ok(false),
        Err(err) => {
            log::info(&format!("process {process} {:?}: {err}", output.stream));
            Ok(false)
        }
    }
}

/// How the process ended, from its wait status and whether the kernel's OOM killer ended
/// something of the container's (see [`container_oom`]). A death by SIGKILL, or a shell's 137
/// for its child's, is then an OOM kill.
pub fn exit_status(status: WaitStatus, oom: bool) -> Option<ExitStatus> {
    let status = match status {
        WaitStatus::Exited(_, code) if code == SHELL_SIGKILL_CODE && oom => ExitStatus::OomKilled,
        WaitStatus::Exited(_, code) => ExitStatus::Code { code },
        WaitStatus::Signaled(_, Signal::SIGKILL, _) if oom => ExitStatus::OomKilled,
        WaitStatus::Signaled(_, signal, _) => ExitStatus::Signal { signal: signal as i32 },
        _ => return None,
    };
    Some(status)
}

/// Whether an OOM kill in the container's cgroup is the container's: its own limit was reached
/// (`oom` in `memory.events.local`), or the zone ran out of memory as a whole (kills in its
/// subtree with no cgroup's limit reached there). A limit that a nested runtime set on a child
/// cgroup is that child's business, as on a host: its OOM kills are not the container's.
pub fn container_oom(subtree: &str, own: &str) -> bool {
    let (reached_here, reached_below, kills) = (keyed(own, "oom"), keyed(subtree, "oom"), keyed(subtree, "oom_kill"));
    reached_here > 0 || (kills > 0 && reached_below == 0)
}

fn read_events(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    let _ = std::fs::File::open(path).and_then(|f| f.take(MAX_EVENTS_BYTES).read_to_string(&mut text));
    text
}


#[cfg(test)]
mod tests {
    use super::*;

    const PID: Pid = Pid::from_raw(42);

    #[test]
    fn event_counters() {
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n";
        assert_eq!((keyed(events, "oom"), keyed(events, "oom_kill")), (1, 2));
        assert_eq!(keyed("oom 1\n", "oom_kill"), 0);
        assert_eq!(keyed("oom_kill lots\n", "oom_kill"), 0);
    }

    #[test]
    fn only_the_containers_own_limit_or_the_zones_memory_make_an_oom_kill_its() {
        let events = |oom: u64, kills: u64| format!("low 0\nhigh 0\nmax 9\noom {oom}\noom_kill {kills}\noom_group_kill 0\n");
        assert!(container_oom(&events(1, 1), &events(1, 0)), "its own limit");
        assert!(!container_oom(&events(1, 1), &events(0, 0)), "a child cgroup's limit");
        assert!(container_oom(&events(2, 2), &events(1, 0)), "both");
        assert!(container_oom(&events(0, 1), &events(0, 0)), "the zone's memory");
        assert!(!container_oom(&events(0, 0), &events(0, 0)));
        assert!(!container_oom("", ""), "no memory controller");
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_status(WaitStatus::Exited(PID, 7), false), Some(ExitStatus::Code { code: 7 }));
        assert_eq!(exit_status(WaitStatus::Signaled(PID, Signal::SIGTERM, false), false), Some(ExitStatus::Signal { signal: 15 }));
        assert_eq!(exit_status(WaitStatus::Signaled(PID, Signal::SIGKILL, false), false), Some(ExitStatus::Signal { signal: 9 }));
        assert_eq!(exit_status(WaitStatus::Signaled(PID, Signal::SIGKILL, false), true), Some(ExitStatus::OomKilled));
        assert_eq!(exit_status(WaitStatus::Exited(PID, 137), true), Some(ExitStatus::OomKilled));
        assert_eq!(exit_status(WaitStatus::Exited(PID, 137), false), Some(ExitStatus::Code { code: 137 }));
        assert_eq!(exit_status(WaitStatus::Signaled(PID, Signal::SIGTERM, false), true), Some(ExitStatus::Signal { signal: 15 }));
        assert_eq!(exit_status(WaitStatus::StillAlive, false), None);
    }
}
