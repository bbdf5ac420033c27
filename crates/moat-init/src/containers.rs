//! The zone's containers and their processes, by the host's ids and numbers. A container is
//! created, started, stopped (its process ended) and removed; each has its own process and up
//! to [`MAX_EXEC_PROCESSES`] (over the zone) that `exec` started in it. Each process is a
//! [`Workload`]: its own stdio relay, signals, terminal and exit report.
//!
//! When a container's process ends, the kernel kills everything else in its pid namespace. Init
//! reports those exits first and the container's last, so the host hears of every process.

use std::collections::BTreeMap;
use std::time::Duration;

use moat_proto::layout::WORKLOAD_MODULES_FILE;
use moat_proto::net::GuestNetwork;
use moat_proto::{CreateContainer, ExecRequest, FailureKind, GuestMessage, OciRuntime, Response, MAX_CONTAINERS, MAX_EXEC_PROCESSES};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::channel::Channel;
use crate::copy;
use crate::modules;
use crate::pod::Pod;
use crate::runner::{self, Container};
use crate::workload::{Watch, Workload};
use crate::{log, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Stopped,
}

struct Entry {
    container: Container,
    /// The host's number for the container's own process.
    process: u32,
    state: State,
}

/// Which process each of one poll round's watches belongs to: (process, how many watches), in
/// the order [`Containers::watches`] returned them.
pub type Layout = Vec<(u32, usize)>;

pub struct Containers {
    /// The zone's network, configured in the pod when the first container comes.
    network: Option<GuestNetwork>,
    /// The OCI runtime the host put on the tools disk.
    runtime: OciRuntime,
    pod: Option<Pod>,
    entries: BTreeMap<String, Entry>,
    processes: BTreeMap<u32, Workload>,
}

fn failed(kind: FailureKind, message: impl Into<String>) -> Response {
    Response::Failed { kind, message: message.into() }
}

impl Containers {
    pub fn new(network: Option<GuestNetwork>, runtime: OciRuntime) -> Self {
        Self { network, runtime, pod: None, entries: BTreeMap::new(), processes: BTreeMap::new() }
    }

    pub fn create(&mut self, request: &CreateContainer) -> Response {
        if self.entries.contains_key(&request.container) {
            return failed(FailureKind::AlreadyExists, format!("a container named {} already exists in this zone", request.container));
        }
        if self.entries.len() >= MAX_CONTAINERS {
            return failed(FailureKind::Limit, format!("this zone already holds {MAX_CONTAINERS} containers; remove one first"));
        }
        if self.processes.contains_key(&request.process) {
            return failed(FailureKind::BadRequest, format!("process number {} is in use", request.process));
        }
        let runtime = self.runtime;
        let pod = match self.pod() {
            Ok(pod) => pod,
            Err(response) => return response,
        };
        log::info(&format!("creating container {}", request.container));
        match runner::create(runtime, request, pod) {
            Ok((workload, container)) => {
                let (done, state) = if request.start { ("started", State::Running) } else { ("created", State::Created) };
                log::info(&format!("container {} {done}, pid {}", container.id, workload.pid()));
                self.processes.insert(request.process, workload);
                self.entries.insert(request.container.clone(), Entry { container, process: request.process, state });
                Response::Done
            }
            Err(err) => {
                log::info(&format!("container {} was not created: {err}", request.container));
                failed(err.kind(), err.to_string())
            }
        }
    }

    /// The zone's pod, made when first asked for.
    fn pod(&mut self) -> Result<&mut Pod, Response> {
        let pod = match self.pod.take() {
            Some(pod) => pod,
            // The network device's driver is among the workload's modules.
            None => modules::load_modules(WORKLOAD_MODULES_FILE)
                .map_err(|err| err.to_string())
                .and_then(|()| Pod::create(self.network.as_ref()).map_err(|err| err.to_string()))
                .map_err(|err| failed(FailureKind::Internal, err))?,
        };
        Ok(self.pod.insert(pod))
    }

    /// Do ahead what a first container would wait for (see [`moat_proto::Request::Prepare`]).
    pub fn prepare(&mut self, seccomp_json: Option<&str>) -> Response {
        if !self.entries.is_empty() {
            return failed(FailureKind::WrongState, "the zone already holds containers");
        }
        let runtime = self.runtime;
        if let Err(response) = self.pod() {
            return response;
        }
        match runner::prepare(runtime, seccomp_json) {
            Ok(()) => {
                log::info("zone prepared for its first container");
                Response::Done
            }
            Err(err) => {
                log::info(&format!("zone not prepared: {err}"));
                failed(err.kind(), err.to_string())
            }
        }
    }

    pub fn start(&mut self, id: &str) -> Response {
        let Some(entry) = self.entries.get_mut(id) else { return no_such(id) };
        if entry.state != State::Created {
            return failed(FailureKind::WrongState, format!("container {id} was started before"));
        }
        match runner::start(self.runtime, &entry.container) {
            Ok(()) => {
                entry.state = State::Running;
                Response::Done
            }
            Err(err) => failed(err.kind(), err.to_string()),
        }
    }

    /// Start an exec'd process numbered `process` in container `id`; the answer for the host.
    pub fn exec(&mut self, id: &str, process: u32, request: &ExecRequest) -> Response {
        let Some(entry) = self.entries.get(id) else { return no_such(id) };
        let running = entry.state == State::Running && self.processes.get(&entry.process).is_some_and(|w| !w.has_ended());
        if !running {
            return failed(FailureKind::WrongState, format!("container {id} is not running"));
        }
        if self.processes.contains_key(&process) {
            return failed(FailureKind::BadRequest, format!("process number {process} is in use"));
        }
        if self.exec_count() >= MAX_EXEC_PROCESSES {
            return failed(FailureKind::Limit, format!("{MAX_EXEC_PROCESSES} exec'd processes already run in this zone; wait for one to end"));
        }
        let Some(pod) = &self.pod else { return failed(FailureKind::Internal, "the pod's namespaces are gone") };
        match runner::exec(self.runtime, &entry.container, process, request, pod) {
            Ok(workload) => {
                log::info(&format!("process {process} of container {id} runs as pid {}", workload.pid()));
                self.processes.insert(process, workload);
                Response::Done
            }
            Err(err) => {
                log::info(&format!("process {process} of container {id} did not start: {err}"));
                failed(err.kind(), err.to_string())
            }
        }
    }

    pub fn remove(&mut self, id: &str, force: bool) -> Response {
        let Some(entry) = self.entries.get(id) else { return no_such(id) };
        let live = self.processes.iter().any(|(_, w)| w.id() == id && !w.has_ended());
        if live && !force {
            return failed(FailureKind::WrongState, format!("container {id} is running: stop it first, or force"));
        }
        match runner::remove(self.runtime, &entry.container, force) {
            Ok(()) => {
                // Its processes are killed; their exits are not reported.
                self.processes.retain(|_, w| w.id() != id);
                self.entries.remove(id);
                Response::Done
            }
            Err(err) => failed(err.kind(), err.to_string()),
        }
    }

    /// Rewrite container `id`'s `/etc/hosts` with the host's new text.
    pub fn update_hosts(&self, id: &str, hosts: &str) -> Response {
        if !self.entries.contains_key(id) {
            return no_such(id);
        }
        if hosts.len() > moat_proto::MAX_HOSTS_FILE {
            return failed(FailureKind::Limit, format!("a hosts file of {} bytes is over {}", hosts.len(), moat_proto::MAX_HOSTS_FILE));
        }
        match crate::name_files::rewrite_hosts(id, hosts) {
            Ok(()) => Response::Done,
            Err(err) => failed(FailureKind::WrongState, err.to_string()),
        }
    }

    /// Container `id`'s figures from its cgroup and its process's network namespace, while runc
    /// keeps it.
    pub fn stats(&self, id: &str) -> Response {
        let Some(entry) = self.entries.get(id) else { return no_such(id) };
        let live_pid = self.processes.get(&entry.process).filter(|w| !w.has_ended()).map(Workload::pid);
        match entry.container.cgroup.as_deref().and_then(|dir| crate::stats::read(dir, live_pid)) {
            Some(stats) => Response::Stats(Box::new(stats)),
            None => failed(FailureKind::WrongState, format!("container {id} has no cgroup")),
        }
    }

    /// Container `id`'s processes, from its cgroup, while runc keeps it.
    pub fn processes(&self, id: &str) -> Response {
        let Some(entry) = self.entries.get(id) else { return no_such(id) };
        match entry.container.cgroup.as_deref().and_then(crate::processes::read) {
            Some(list) => Response::Processes(Box::new(list)),
            None => failed(FailureKind::WrongState, format!("container {id} has no cgroup")),
        }
    }

    /// What a copy into or out of container `id` needs to know of it; it may be created,
    /// running or stopped, since its root filesystem stays mounted until it is removed.
    pub fn copy_target(&self, id: &str) -> Result<copy::Target, Response> {
        let Some(entry) = self.entries.get(id) else { return Err(no_such(id)) };
        copy::Target::of(&entry.container).map_err(|err| failed(FailureKind::Internal, err.to_string()))
    }

    fn exec_count(&self) -> usize {
        self.processes.keys().filter(|p| !self.entries.values().any(|e| e.process == **p)).count()
    }

    /// A running process, for the host's stdin, signals and resizes.
    pub fn process(&mut self, process: u32) -> Option<&mut Workload> {
        let found = self.processes.get_mut(&process);
        if found.is_none() {
            log::info(&format!("host message for process {process}, which is not running"));
        }
        found
    }

    /// A signal init itself received, passed on to every running container's process.
    pub fn signal_all(&self, signal: Signal) {
        for entry in self.entries.values().filter(|e| e.state == State::Running) {
            if let Some(workload) = self.processes.get(&entry.process) {
                workload.signal(signal);
            }
        }
    }

    pub fn watches(&self) -> (Vec<Watch<'_>>, Layout) {
        let mut watches = Vec::new();
        let mut layout = Layout::new();
        for (process, workload) in &self.processes {
            let own = workload.watches();
            layout.push((*process, own.len()));
            watches.extend(own);
        }
        (watches, layout)
    }

    /// Move data for the watches poll found ready (`ready` follows `layout`).
    pub fn relay(&mut self, layout: &Layout, ready: &[bool], channel: &mut Channel) -> Result<(), Error> {
        let mut offset = 0;
        for (process, count) in layout {
            let own = ready.get(offset..offset + count).unwrap_or_default();
            offset += count;
            if let Some(workload) = self.processes.get_mut(process).filter(|_| own.contains(&true)) {
                workload.relay(own, channel)?;
            }
        }
        Ok(())
    }

    /// Whether init may read more from the channel: no process holds too much unread stdin.
    pub fn accepts_input(&self) -> bool {
        self.processes.values().all(Workload::accepts_input)
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.processes.values().filter_map(Workload::poll_timeout).min()
    }

    /// Record a reaped child's status; false when it was none of the containers' processes.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        match self.processes.values_mut().find(|w| w.pid() == pid && !w.has_ended()) {
            Some(workload) => {
                workload.reaped(status);
                true
            }
            None => false,
        }
    }

    /// Tell the host of every process that ended and whose output is out: exec'd processes
    /// first, a container's own only once it is the last of that container.
    pub fn report_exits(&mut self, channel: &mut Channel) -> Result<(), Error> {
        let own: BTreeMap<u32, String> = self.entries.iter().map(|(id, e)| (e.process, id.clone())).collect();
        let ended: Vec<_> = self.processes.iter().filter(|(p, _)| !own.contains_key(p)).filter_map(|(p, w)| w.exit_status().map(|s| (*p, s))).collect();
        for (process, status) in ended {
            channel.send(&GuestMessage::Exited { process, status })?;
            self.processes.remove(&process);
        }
        for (process, id) in own {
            let Some(status) = self.processes.get(&process).and_then(Workload::exit_status) else { continue };
            let others: Vec<&Workload> = self.processes.iter().filter(|(p, w)| **p != process && w.id() == id).map(|(_, w)| w).collect();
            if !others.is_empty() {
                // Only a process outside the container's pid namespace could outlive it; end it
                // so that its exit can be reported before the container's.
                others.iter().for_each(|w| w.signal(Signal::SIGKILL));
                continue;
            }
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            // A container that never started never ran, as far as the host knows.
            if entry.state == State::Running {
                channel.send(&GuestMessage::Exited { process, status })?;
            }
            entry.state = State::Stopped;
            self.processes.remove(&process);
        }
        Ok(())
    }
}

fn no_such(id: &str) -> Response {
    failed(FailureKind::NoSuchContainer, format!("no container {id} in this zone"))
}
