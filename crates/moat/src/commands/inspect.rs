//! `moat inspect NAME…`: a container, pod, zone or image, looked up in that order (a container
//! first, as Docker does), as one JSON array. Containers and images come in Docker's shape;
//! pods and zones as `moat pod inspect` and `moat zone inspect` show them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use moat_image::Store;
use moat_proto::ExitStatus;
use moat_runtime::{pod_name, Found, Runtime, RuntimeError};
use moat_zone::state::StateError;

use super::volume::rfc3339_utc;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Container,
    Pod,
    Zone,
    Image,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Look only for objects of this kind.
    #[arg(long = "type", value_enum)]
    kind: Option<Kind>,
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(root: &Path, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let images = Store::open(root)?;
    // Every name is resolved before anything is printed: one missing name is one error line.
    let shown = args.names.iter().map(|name| lookup(&runtime, &images, name, args.kind)).collect::<anyhow::Result<Vec<_>>>()?;
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(ExitCode::SUCCESS)
}

fn wanted(kind: Option<Kind>, this: Kind) -> bool {
    kind.is_none_or(|k| k == this)
}

fn lookup(runtime: &Runtime, images: &Store, name: &str, kind: Option<Kind>) -> anyhow::Result<serde_json::Value> {
    if wanted(kind, Kind::Container) {
        match runtime.containers().find(name) {
            Ok(found) => return Ok(container_json(&found)),
            Err(RuntimeError::NoSuchContainer(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if wanted(kind, Kind::Pod) {
        match runtime.pods().find(name) {
            Ok((_, record)) => return Ok(super::pod::inspect_json(&record)),
            Err(RuntimeError::NoSuchPod(_) | RuntimeError::NotAPod(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if wanted(kind, Kind::Zone) {
        match runtime.store().find(name) {
            Ok((dir, record)) => return Ok(super::zone::inspect_json(&dir.path, &record)),
            Err(StateError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if wanted(kind, Kind::Image) {
        // A name that is no valid reference is simply no image.
        if let Ok(Some(image)) = images.get(name) {
            return super::image::docker_json(images, &image);
        }
    }
    match kind {
        Some(Kind::Container) => bail!("no such container: {name}"),
        Some(Kind::Pod) => bail!("no such pod: {name}"),
        Some(Kind::Zone) => bail!("no such zone: {name}"),
        Some(Kind::Image) => bail!("no such image: {name}"),
        None => bail!("no such container, pod, zone or image: {name}"),
    }
}

/// A container in the shape of `docker container inspect`, with moat's zone beside it.
fn container_json(found: &Found) -> serde_json::Value {
    let c = &found.container;
    let zone_state = found.zone.effective_state();
    let running = moat_runtime::is_running(found);
    let status = match (c.started_unix, c.exit) {
        (_, Some(_)) => "exited",
        (Some(_), None) if running => "running",
        (Some(_), None) => "dead",
        (None, None) => "created",
    };
    let (path, args) = c.command.split_first().map_or((String::new(), Vec::new()), |(p, a)| (p.clone(), a.to_vec()));
    serde_json::json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "Created": rfc3339_utc(c.created_unix),
        "Path": path,
        "Args": args,
        "State": {
            "Status": status,
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": c.exit == Some(ExitStatus::OomKilled),
            "Dead": status == "dead",
            "ExitCode": c.exit.map_or(0, |e| e.shell_code()),
            "StartedAt": c.started_unix.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339_utc),
        },
        "Image": c.image,
        "Config": {
            "Image": c.image,
            "Cmd": c.command,
            "Tty": c.tty,
            "OpenStdin": c.stdin,
        },
        "HostConfig": {
            "Privileged": c.privileged,
            "AutoRemove": c.auto_remove,
            "Memory": c.memory_limit.unwrap_or(0),
        },
        "Moat": {
            "Zone": found.zone.id,
            "ZoneState": zone_state.name(),
            "Pod": pod_name(&found.zone),
        },
    })
}
