//! The shim's two faces: the `start`/`delete` bootstrap containerd runs in a bundle, and the
//! long-running task service. Each request is translated to moat-runtime and back; the runtime
//! owns the zones and their containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics::{TASK_EXIT_EVENT_TOPIC, TASK_OOM_EVENT_TOPIC};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, Context, DeleteResponse, ExitSignal, Flags, StartOpts, TtrpcContext, TtrpcResult};
use moat_runtime::network::NetworkRequest;
use moat_runtime::{exit_report, ContainerConfig, Found, Placement, Resources, Runtime, SandboxConfig};
use moat_proto::{ExecRequest, ExitStatus};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::api::ApiRequest;

use crate::bundle::{Bundle, Role};
use crate::errors::ShimError;
use crate::metrics;
use crate::options::ShimOptions;
use crate::rootfs;
use crate::rootfs_image;
use crate::stdio::{self, StdioPaths};
use crate::supervise;
use crate::tasks::{Process, Task, TaskStatus};

/// Where zones live unless `MOAT_ROOT` (in containerd's environment) says otherwise: the CLI's
/// root, so `moat ps` shows the shim's zones.
const DEFAULT_ROOT: &str = "/var/lib/moat";

fn open_runtime() -> Result<Runtime, ShimError> {
    let root = std::env::var_os("MOAT_ROOT").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
    let supervisor = supervise::command(&root).map_err(|err| ShimError::Io { what: "locating the shim binary", err })?;
    Ok(Runtime::open(&root, supervisor)?)
}

/// The moat name of a containerd container: its id, which is unique in the pod's zone and,
/// for CRI's 64-hex ids, everywhere.
fn moat_name(id: &str) -> Option<String> {
    moat_zone::state::validate_name(id).ok().map(|()| id.to_string())
}

pub struct MoatShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
}

impl containerd_shim::Shim for MoatShim {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        MoatShim { exit: Arc::new(ExitSignal::default()), namespace: args.namespace.clone(), id: args.id.clone() }
    }

    /// One shim per pod: a pod's later containers get the address of the shim its sandbox
    /// started (the spawned shim finds its socket taken and answers with it).
    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        let bundle = Bundle::read(Path::new(".")).map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        let group = bundle.shim_group(&opts.id);
        let (_, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    /// containerd's clean-up after a shim died: take down what is left of the container.
    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        let cleanup = || -> Result<(), ShimError> {
            let runtime = open_runtime()?;
            let bundle = Bundle::read(Path::new("."))?;
            if let Some(found) = moat_name(&self.id).and_then(|name| runtime.containers().find(&name).ok()) {
                runtime.containers().remove(&found, true)?;
            }
            if let Role::Sandbox { pod } = &bundle.role {
                let _ = runtime.pods().remove(pod, true);
            }
            rootfs::release(&bundle.dir.join("rootfs"));
            Ok(())
        };
        if let Err(err) = cleanup() {
            log::warn!("cleaning up {}: {err}", self.id);
        }
        Ok(DeleteResponse { exit_status: 128 + libc::SIGKILL as u32, exited_at: MessageField::some(Timestamp::from(SystemTime::now())), ..Default::default() })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let runtime = open_runtime().unwrap_or_else(|err| {
            eprintln!("containerd-shim-moat-v2: {err}");
            std::process::exit(1)
        });
        TaskService {
            inner: Arc::new(Inner { runtime, namespace: self.namespace.clone(), publisher, exit: self.exit.clone(), tasks: Mutex::default(), changed: Condvar::new() }),
        }
    }
}

#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    namespace: String,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    tasks: Mutex<HashMap<String, Task>>,
    /// Signalled whenever a task's status changes.
    changed: Condvar,
}

impl Inner {
    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_task<T>(&self, id: &str, f: impl FnOnce(&mut Task) -> T) -> Result<T, ShimError> {
        self.tasks().get_mut(id).map(f).ok_or_else(|| ShimError::NoSuchTask(id.to_string()))
    }

    fn with_process<T>(&self, id: &str, exec_id: &str, f: impl FnOnce(&mut Process) -> T) -> Result<T, ShimError> {
        let mut tasks = self.tasks();
        let task = tasks.get_mut(id).ok_or_else(|| ShimError::NoSuchTask(id.to_string()))?;
        task.process(exec_id).map(f).ok_or_else(|| ShimError::NoSuchTask(format!("{id} exec {exec_id}")))
    }

    fn found(&self, id: &str) -> Result<Found, ShimError> {
        let container = self.with_task(id, |t| t.container.clone())?;
        Ok(self.runtime.containers().find(&container)?)
    }

    fn create(&self, req: &api::CreateTaskRequest) -> Result<u32, ShimError> {
        if self.tasks().contains_key(&req.id) {
            return Err(ShimError::TaskExists(req.id.clone()));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unsupported("restoring a checkpoint"));
        }
        let bundle = Bundle::read(Path::new(&req.bundle))?;
        let (image_file, rootfs_mounted) = rootfs::prepare(&bundle.dir, &req.rootfs)?;
        let created = self.create_in_zone(req, &bundle, image_file.clone(), rootfs_mounted);
        if created.is_err() && rootfs_mounted {
            rootfs::release(&image_file);
        }
        created
    }

    fn create_in_zone(&self, req: &api::CreateTaskRequest, bundle: &Bundle, rootfs: std::path::PathBuf, rootfs_mounted: bool) -> Result<u32, ShimError> {
        let options = ShimOptions::of_task(req.options.as_ref())?;
        let (spec, mounts) = bundle.zone_spec(options.user_namespace)?;
        // A container in a user namespace takes its root filesystem as an image the zone can
        // idmap; the snapshot's mount has then served its purpose.
        let (image_file, rootfs_mounted) = if moat_spec::user::has_user_namespace(&spec) {
            let image = rootfs_image::erofs_of(&rootfs, &req.rootfs, self.runtime.root(), &bundle.dir)?;
            if rootfs_mounted {
                rootfs::release(&rootfs);
            }
            (image, false)
        } else {
            (rootfs, rootfs_mounted)
        };
        let sandbox = || -> Result<SandboxConfig, ShimError> {
            let (accel, accel_note) = accel::resolve(AccelChoice::Auto, &HostFacts::probe())?;
            let (memory, cpus) = bundle.zone_size();
            let resources = Resources::parse(&memory, &cpus).map_err(moat_runtime::RuntimeError::from)?;
            let network = NetworkRequest { mode: bundle.zone_network(), ..Default::default() };
            Ok(SandboxConfig { name: None, id: None, resources, accel, accel_note, pod: false, debug: false, network })
        };
        // Kubernetes decided already (a privileged container needs a privileged pod, which
        // admission allows or not): the privileged container gets the zone, and its pod's other
        // containers are within its reach, as under runc, but the host is not.
        let placement = match &bundle.role {
            Role::Sandbox { pod } => {
                self.runtime.pods().create(SandboxConfig { name: Some(pod.clone()), pod: true, ..sandbox()? })?;
                Placement::Pod { key: pod.clone(), allow_privileged: true }
            }
            Role::InPod { pod } => Placement::Pod { key: pod.clone(), allow_privileged: true },
            Role::Alone => Placement::OwnZone(sandbox()?),
        };
        let config = ContainerConfig {
            name: moat_name(&req.id),
            image: format!("containerd:{}/{}", self.namespace, req.id),
            image_file: image_file.clone(),
            spec,
            tty: req.terminal,
            stdin: !req.stdin.is_empty(),
            auto_remove: false,
            mounts,
            names: Default::default(),
        };
        let created = self.runtime.containers().create(placement, config);
        let (found, warnings) = match created {
            Ok(created) => created,
            Err(err) => {
                if let Role::Sandbox { pod } = &bundle.role {
                    let _ = self.runtime.pods().remove(pod, true);
                }
                return Err(err.into());
            }
        };
        warnings.iter().for_each(|w| log::warn!("{w}"));
        let pid = found.zone.qemu.as_ref().or(found.zone.supervisor.as_ref()).map_or(0, |p| p.pid);
        let init = Process::new(stdio_paths(&req.stdin, &req.stdout, &req.stderr), req.terminal, None);
        let rootfs = rootfs_mounted.then_some(image_file);
        let task = Task { bundle: bundle.dir.clone(), role: bundle.role.clone(), container: found.container.id, pid, init, execs: HashMap::new(), rootfs };
        self.tasks().insert(req.id.clone(), task);
        Ok(pid)
    }

    /// Register an exec'd process; it runs on `start`.
    fn exec(&self, req: &api::ExecProcessRequest) -> Result<(), ShimError> {
        let process_json = String::from_utf8(req.spec.value.clone()).map_err(|_| ShimError::BadRequest("its process is not UTF-8 JSON"))?;
        let exec = ExecRequest { process_json, user: None, tty: req.terminal, stdin: !req.stdin.is_empty() };
        let process = Process::new(stdio_paths(&req.stdin, &req.stdout, &req.stderr), req.terminal, Some(exec));
        let mut tasks = self.tasks();
        let task = tasks.get_mut(&req.id).ok_or_else(|| ShimError::NoSuchTask(req.id.clone()))?;
        if task.execs.contains_key(&req.exec_id) || req.exec_id.is_empty() {
            return Err(ShimError::TaskExists(format!("{} exec {}", req.id, req.exec_id)));
        }
        task.execs.insert(req.exec_id.clone(), process);
        Ok(())
    }

    fn start(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let (status, stdio, exec) = self.with_process(id, exec_id, |p| (p.status, p.stdio.clone(), p.exec.take()))?;
        let pid = self.with_task(id, |t| t.pid)?;
        if status != TaskStatus::Created {
            return Err(ShimError::WrongState { id: id.to_string(), state: status.name() });
        }
        let found = self.found(id)?;
        let conn = match exec {
            Some(exec) => self.runtime.containers().exec(&found, exec)?,
            None => self.runtime.containers().start(&found)?,
        };
        let control = conn.sender().map_err(moat_runtime::RuntimeError::from)?;
        let relay = stdio::relay(conn, stdio).map_err(moat_runtime::RuntimeError::from)?;
        self.with_process(id, exec_id, |p| p.control = Some(control))?;
        self.set_status(id, exec_id, TaskStatus::Running);
        let inner = Arc::clone(self);
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        std::thread::spawn(move || {
            let outcome = relay.join().unwrap_or(moat_runtime::ProcessEnd::ZoneEnded(None));
            if exec_id.is_empty() && outcome == moat_runtime::ProcessEnd::Exited(ExitStatus::OomKilled) {
                inner.publish(TASK_OOM_EVENT_TOPIC, Box::new(TaskOOM { container_id: id.clone(), ..Default::default() }));
            }
            let what = if exec_id.is_empty() { "container" } else { "process" };
            let exit_code = u32::from(exit_report(outcome, &found, what).code);
            inner.exited(&id, &exec_id, pid, exit_code);
        });
        Ok(pid)
    }

    fn set_status(&self, id: &str, exec_id: &str, to: TaskStatus) {
        let _ = self.with_process(id, exec_id, |p| {
            if let Some(next) = p.status.advance(to) {
                p.status = next;
            }
            if let TaskStatus::Stopped { .. } = p.status {
                p.control = None;
            }
        });
        self.changed.notify_all();
    }

    fn exited(&self, id: &str, exec_id: &str, pid: u32, exit_code: u32) {
        let at = SystemTime::now();
        self.set_status(id, exec_id, TaskStatus::Stopped { exit_code, at });
        let process = if exec_id.is_empty() { id } else { exec_id };
        let event = TaskExit { container_id: id.to_string(), id: process.to_string(), pid, exit_status: exit_code, exited_at: MessageField::some(Timestamp::from(at)), ..Default::default() };
        self.publish(TASK_EXIT_EVENT_TOPIC, Box::new(event));
    }

    fn publish(&self, topic: &str, event: Box<dyn containerd_shim::protos::protobuf::MessageDyn>) {
        if let Err(err) = self.publisher.publish(Context::default(), topic, &self.namespace, event) {
            log::warn!("publishing {topic}: {err}");
        }
    }

    /// The task's container's figures from its cgroup in the zone, as containerd's metrics.
    fn stats(&self, id: &str) -> Result<containerd_shim::protos::protobuf::well_known_types::any::Any, ShimError> {
        let stats = self.runtime.containers().stats(&self.found(id)?)?;
        metrics::pack(&metrics::metrics(&stats.container)).map_err(|err| ShimError::Encode(err.to_string()))
    }

    /// Block until the process stopped: its exit code and when.
    fn wait(&self, id: &str, exec_id: &str) -> Result<(u32, SystemTime), ShimError> {
        let mut tasks = self.tasks();
        loop {
            match tasks.get_mut(id).and_then(|t| t.process(exec_id)).map(|p| p.status) {
                None => return Err(ShimError::NoSuchTask(id.to_string())),
                Some(TaskStatus::Stopped { exit_code, at }) => return Ok((exit_code, at)),
                Some(_) => tasks = self.changed.wait(tasks).unwrap_or_else(|poisoned| poisoned.into_inner()),
            }
        }
    }

    /// Send a request to a running process over its connection (stdin's end, terminal size,
    /// an exec'd process's signal).
    fn control(&self, id: &str, exec_id: &str, request: &ApiRequest) -> Result<(), ShimError> {
        let sent = self.with_process(id, exec_id, |p| match (&p.status, p.control.as_mut()) {
            (TaskStatus::Running, Some(control)) => Ok(control.send(request)),
            (status, _) => Err(ShimError::WrongState { id: format!("{id} {exec_id}"), state: status.name() }),
        })??;
        sent.map_err(|err| ShimError::Runtime(moat_runtime::RuntimeError::from(err)))
    }

    fn kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ShimError> {
        let signal = i32::try_from(signal).map_err(|_| ShimError::BadRequest("the signal is out of range"))?;
        if !exec_id.is_empty() {
            return self.control(id, exec_id, &ApiRequest::Signal { signal });
        }
        let status = self.with_task(id, |t| t.init.status)?;
        if let TaskStatus::Stopped { .. } = status {
            return Err(ShimError::NoSuchTask(format!("{id} (its process ended)")));
        }
        let found = self.found(id)?;
        Ok(self.runtime.containers().kill(&found, signal)?)
    }

    fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, u32, SystemTime), ShimError> {
        let (status, pid) = self.with_process(id, exec_id, |p| p.status).and_then(|s| Ok((s, self.with_task(id, |t| t.pid)?)))?;
        let (exit_code, at) = match status {
            TaskStatus::Running => return Err(ShimError::WrongState { id: id.to_string(), state: status.name() }),
            TaskStatus::Stopped { exit_code, at } => (exit_code, at),
            TaskStatus::Created => (0, SystemTime::now()),
        };
        if !exec_id.is_empty() {
            self.with_task(id, |t| t.execs.remove(exec_id))?;
            return Ok((pid, exit_code, at));
        }
        if let Ok(found) = self.found(id) {
            self.runtime.containers().remove(&found, true)?;
        }
        if let Some(task) = self.tasks().remove(id) {
            if let Role::Sandbox { pod } = &task.role {
                self.runtime.pods().remove(pod, true)?;
            }
            if let Some(rootfs) = &task.rootfs {
                rootfs::release(rootfs);
            }
        }
        self.changed.notify_all();
        Ok((pid, exit_code, at))
    }
}

fn stdio_paths(stdin: &str, stdout: &str, stderr: &str) -> StdioPaths {
    StdioPaths { stdin: stdin.to_string(), stdout: stdout.to_string(), stderr: stderr.to_string() }
}

fn rpc<T>(result: Result<T, ShimError>) -> TtrpcResult<T> {
    result.map_err(Into::into)
}

impl containerd_shim::Task for TaskService {
    fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        let pid = rpc(self.inner.create(&req))?;
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        rpc(self.inner.exec(&req))?;
        Ok(api::Empty::default())
    }

    fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        let pid = rpc(self.inner.start(&req.id, &req.exec_id))?;
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let (bundle, pid) = rpc(self.inner.with_task(&req.id, |t| (t.bundle.to_string_lossy().into_owned(), t.pid)))?;
        rpc(self.inner.with_process(&req.id, &req.exec_id, |p| {
            let (exit_status, exited_at) = match p.status {
                TaskStatus::Stopped { exit_code, at } => (exit_code, MessageField::some(Timestamp::from(at))),
                _ => (0, MessageField::none()),
            };
            api::StateResponse {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                bundle,
                pid,
                status: p.status.to_proto().into(),
                stdin: p.stdio.stdin.clone(),
                stdout: p.stdio.stdout.clone(),
                stderr: p.stdio.stderr.clone(),
                terminal: p.terminal,
                exit_status,
                exited_at,
                ..Default::default()
            }
        }))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        rpc(self.inner.kill(&req.id, &req.exec_id, req.signal))?;
        Ok(api::Empty::default())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        let size = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        rpc(self.inner.control(&req.id, &req.exec_id, &ApiRequest::Resize { rows: size(req.height), cols: size(req.width) }))?;
        Ok(api::Empty::default())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        if req.stdin {
            rpc(self.inner.control(&req.id, &req.exec_id, &ApiRequest::Stdin { data: Vec::new() }))?;
        }
        Ok(api::Empty::default())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        let (pid, exit_status, at) = rpc(self.inner.delete(&req.id, &req.exec_id))?;
        Ok(api::DeleteResponse { pid, exit_status, exited_at: MessageField::some(Timestamp::from(at)), ..Default::default() })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let (exit_status, at) = rpc(self.inner.wait(&req.id, &req.exec_id))?;
        Ok(api::WaitResponse { exit_status, exited_at: MessageField::some(Timestamp::from(at)), ..Default::default() })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let pid = rpc(self.inner.with_task(&req.id, |t| t.pid))?;
        Ok(api::PidsResponse { processes: vec![ProcessInfo { pid, ..Default::default() }], ..Default::default() })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let stats = rpc(self.inner.stats(&req.id))?;
        Ok(api::StatsResponse { stats: MessageField::some(stats), ..Default::default() })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.inner.with_task(&req.id, |t| t.pid).unwrap_or(0);
        Ok(api::ConnectResponse { shim_pid: std::process::id(), task_pid, ..Default::default() })
    }

    /// containerd asks after each task's delete; the shim ends once it serves no task.
    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.inner.tasks().is_empty() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::default())
    }
}
