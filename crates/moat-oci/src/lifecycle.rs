//! create, start, state, kill and delete: runc's lifecycle over the runtime library. Each
//! command checks the container's status first, so bad input changes nothing.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use moat_runtime::network::{NameConfig, NetworkRequest};
use moat_runtime::{ContainerConfig, Placement, Resources, SandboxConfig};
use moat_zone::accel::{self, AccelChoice, HostFacts};
use moat_zone::assets::Assets;
use moat_zone::state::{read_bounded, write_atomic, ProcessId};
use nix::sys::signal::Signal;

use crate::context::{this_process, Container, Context};
use crate::{hooks, keeper};
use crate::record::{OciState, Record, Status, OCI_VERSION};
use crate::translate::{self, Translated};

/// A zone's size unless the bundle's annotations say otherwise.
const DEFAULT_MEMORY: &str = "512m";
const DEFAULT_CPUS: &str = "1";
/// Annotations that size the container's zone.
const MEMORY_ANNOTATION: &str = "moat.memory";
const CPUS_ANNOTATION: &str = "moat.cpus";
/// How long `start` waits for the keeper to start the process (runc in a TCG zone is slow).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `delete` lets a keeper end on its own before it is killed.
const KEEPER_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

pub fn create(ctx: &Context, args: &liboci_cli::Create) -> anyhow::Result<ExitCode> {
    let id = &args.container_id;
    let bundle = std::fs::canonicalize(&args.bundle).with_context(|| format!("bundle {}", args.bundle.display()))?;
    let config = bundle.join("config.json");
    let text = read_bounded(&config, moat_spec::MAX_SPEC_JSON_BYTES as u64).with_context(|| format!("reading {}", config.display()))?;
    let spec = moat_spec::from_json(&text).with_context(|| format!("{} is not a valid runtime spec", config.display()))?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let translated = translate::translate(spec, &bundle, translate::host_capabilities())?;
    if !translated.rootfs.is_dir() {
        bail!("the bundle's root filesystem {} is not a directory", translated.rootfs.display());
    }
    match (translated.tty, &args.console_socket) {
        (true, None) => bail!("the spec asks for a terminal (process.terminal): give --console-socket"),
        (false, Some(_)) => bail!("--console-socket was given, but the spec asks for no terminal (process.terminal is false)"),
        _ => {}
    }
    let resources = Resources::parse(
        annotations.get(MEMORY_ANNOTATION).map_or(DEFAULT_MEMORY, String::as_str),
        annotations.get(CPUS_ANNOTATION).map_or(DEFAULT_CPUS, String::as_str),
    )?;
    Assets::locate(&Assets::default_dir())?;
    let record = Record {
        id: id.clone(),
        bundle: bundle.clone(),
        creator: this_process(),
        keeper: None,
        created: chrono::Utc::now().to_rfc3339(),
        annotations,
        killed_before_start: None,
        hooks: translated.hooks.clone(),
    };
    ctx.records.claim(&record)?;
    let made = make(ctx, id, translated, resources, args);
    if made.is_err() {
        if let Ok(found) = ctx.runtime.containers().find(id) {
            let _ = ctx.runtime.containers().remove(&found, true);
        }
        let _ = ctx.records.remove(id);
    }
    made
}

/// The zone and the container in it, then the keeper.
fn make(ctx: &Context, id: &str, translated: Translated, resources: Resources, args: &liboci_cli::Create) -> anyhow::Result<ExitCode> {
    let Translated { spec, rootfs, mounts, tty, mut notes, privileged, hooks } = translated;
    if privileged {
        notes.push("every capability and no user namespace: the privileged profile, inside the zone".into());
    }
    nix::unistd::mkfifo(&ctx.records.start_fifo(id), nix::sys::stat::Mode::from_bits_truncate(0o600)).context("creating the start fifo")?;
    let (accel, accel_note) = accel::resolve(AccelChoice::Auto, &HostFacts::probe())?;
    let sandbox = SandboxConfig { name: None, id: None, resources, accel, accel_note: accel_note.clone(), pod: false, debug: false, network: NetworkRequest::default() };
    let config = ContainerConfig {
        name: Some(id.to_string()),
        image: rootfs.display().to_string(),
        image_file: rootfs,
        spec,
        tty,
        // Without -i conmon hands the process /dev/null, whose end reaches the container.
        stdin: true,
        auto_remove: false,
        mounts,
        names: NameConfig::default(),
    };
    let (_, warnings) = ctx.runtime.containers().create(Placement::OwnZone(sandbox), config)?;
    for note in notes.iter().chain(&warnings).chain(&accel_note) {
        ctx.log.note(note);
    }
    let terminal = match &args.console_socket {
        Some(socket) => Some(crate::console::send_new_pty(socket)?),
        None => None,
    };
    let keeper = keeper::spawn(ctx, keeper::KeepArgs::container(id), terminal.as_ref(), None)?;
    ctx.records.update(id, |r| {
        r.keeper = ProcessId::of(keeper);
        r.creator = None;
    })?;
    if let Some(hooks) = &hooks {
        let state = state_json(&ctx.container(id)?)?;
        hooks::run_all("prestart", hooks.prestart().as_deref().unwrap_or_default(), &state)?;
        hooks::run_all("createRuntime", hooks.create_runtime().as_deref().unwrap_or_default(), &state)?;
    }
    if let Some(pid_file) = &args.pid_file {
        write_pid_file(pid_file, keeper)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn write_pid_file(path: &Path, pid: u32) -> anyhow::Result<()> {
    write_atomic(path, pid.to_string().as_bytes()).with_context(|| format!("writing the pid file {}", path.display()))
}

pub fn start(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let container = ctx.container(id)?;
    if !container.status.can_start() {
        bail!("container {id} is {}: only a created container can be started", status_name(container.status));
    }
    signal_keeper(ctx, &container)?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(message) = std::fs::read_to_string(ctx.records.start_error(id)) {
            bail!("{}", message.trim_end());
        }
        let container = ctx.container(id)?;
        if matches!(container.status, Status::Running | Status::Stopped) {
            if let Some(hooks) = &container.record.hooks {
                // A poststart hook that fails is a warning: the process runs already.
                if let Err(err) = hooks::run_all("poststart", hooks.poststart().as_deref().unwrap_or_default(), &state_json(&container)?) {
                    ctx.log.note(&err.to_string());
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            bail!("container {id} did not start within {} s", START_TIMEOUT.as_secs());
        }
        std::thread::sleep(POLL);
    }
}

/// Write to the start fifo the keeper reads. The open is non-blocking, so it fails at once
/// (ENXIO) while no keeper reads: one that was just spawned gets a moment to open it.
fn signal_keeper(ctx: &Context, container: &Container) -> anyhow::Result<()> {
    let id = &container.record.id;
    let fifo = ctx.records.start_fifo(id);
    let deadline = Instant::now() + KEEPER_GRACE;
    let mut writer = loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo) {
            Ok(writer) => break writer,
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) && container.record.keeper.is_some_and(|k| k.is_alive()) && Instant::now() < deadline => {
                std::thread::sleep(POLL);
            }
            Err(err) => return Err(err).with_context(|| format!("container {id} has lost its keeper process")),
        }
    };
    writer.write_all(b"s").context("signalling the container's keeper")
}

pub fn state(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let container = ctx.container(id)?;
    println!("{}", serde_json::to_string_pretty(&oci_state(&container))?);
    Ok(ExitCode::SUCCESS)
}

fn state_json(container: &Container) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&oci_state(container))?)
}

pub fn oci_state(container: &Container) -> OciState<'_> {
    OciState {
        oci_version: OCI_VERSION,
        id: &container.record.id,
        status: container.status,
        pid: container.pid(),
        bundle: container.bundle(),
        annotations: &container.record.annotations,
        created: &container.record.created,
    }
}

/// Signal the container's process. Before `start` there is only the zone: it stops, and the
/// keeper ends as the signal would have ended the process. A stopped container has no process:
/// that is an error, as the runtime spec asks (podman then finds the keeper gone and goes on).
pub fn kill(ctx: &Context, id: &str, signal: &str) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(signal)?;
    let container = ctx.container(id)?;
    if !container.status.can_kill() {
        bail!("container {id} is {}: it has no process to signal", status_name(container.status));
    }
    match (container.status, &container.found) {
        (Status::Running, Some(found)) => ctx.runtime.containers().kill(found, signal as i32)?,
        (Status::Created, Some(found)) => {
            ctx.records.update(id, |r| r.killed_before_start = Some(signal as i32))?;
            ctx.runtime.containers().stop(found, Duration::ZERO)?;
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(text: &str) -> anyhow::Result<Signal> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| anyhow::anyhow!("unknown signal {text:?}"));
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<Signal>().map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

/// Remove the container, its zone and its record. One that is not stopped needs `force`.
pub fn delete(ctx: &Context, id: &str, force: bool) -> anyhow::Result<ExitCode> {
    let container = ctx.container(id)?;
    if !force && !container.status.can_delete() {
        bail!("container {id} is {}: stop it first, or use --force", status_name(container.status));
    }
    if let Some(found) = &container.found {
        ctx.runtime.containers().remove(found, true)?;
    }
    if let Some(keeper) = container.record.keeper {
        end_keeper(keeper);
    }
    ctx.records.remove(id)?;
    if let Some(hooks) = &container.record.hooks {
        let mut state = oci_state(&container);
        state.status = Status::Stopped;
        state.pid = 0;
        if let Err(err) = hooks::run_all("poststop", hooks.poststop().as_deref().unwrap_or_default(), &serde_json::to_string(&state)?) {
            ctx.log.note(&err.to_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The keeper ends by itself once its zone is gone; kill it if it does not.
fn end_keeper(keeper: ProcessId) {
    let deadline = Instant::now() + KEEPER_GRACE;
    while keeper.is_alive() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    if keeper.is_alive() {
        if let Ok(pid) = i32::try_from(keeper.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Creating => "creating",
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        for bad in ["", "NOPE", "999", "-1"] {
            assert!(parse_signal(bad).is_err(), "{bad:?}");
        }
    }
}
