//! `moat volume …`, and Docker's mount flags (`-v`, `--mount`, `--tmpfs`) turned into the
//! runtime's typed [`VolumeMount`]s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use moat_runtime::size::parse_byte_size;
use moat_runtime::volumes::{
    check_unique_targets, new_volume_name, resolve_bind_source, validate_volume_name, ContainerPath, MountSource,
    VolumeError, VolumeMount, VolumeRecord, VolumeStore,
};

use super::image::Format;

#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume (with a generated name when none is given) and print its name.
    Create { name: Option<String> },
    /// List volumes.
    Ls {
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show volumes as a JSON array, in Docker's shape.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their files. A volume a container uses is never removed.
    Rm {
        /// Ignore volumes that do not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(root: &Path, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    let store = VolumeStore::open(root).with_context(|| format!("cannot open the volume store under {}", root.display()))?;
    match cmd {
        VolumeCommand::Create { name } => create(&store, name.as_deref()),
        VolumeCommand::Ls { quiet, format } => list(&store, quiet, format),
        VolumeCommand::Inspect { names } => inspect(&store, &names),
        VolumeCommand::Rm { force, names } => remove(root, &store, &names, force),
    }
}

fn create(store: &VolumeStore, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let record = store.create(name).context("cannot create the volume")?;
    println!("{}", record.name);
    Ok(ExitCode::SUCCESS)
}

fn list(store: &VolumeStore, quiet: bool, format: Format) -> anyhow::Result<ExitCode> {
    let volumes = store.list().context("cannot list volumes")?;
    let mut out = std::io::stdout().lock();
    match (quiet, format) {
        (true, _) => {
            for volume in &volumes {
                writeln!(out, "{}", volume.name)?;
            }
        }
        (false, Format::Json) => {
            let rows: Vec<_> = volumes.iter().map(docker_shape).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        (false, Format::Table) => {
            let width = volumes.iter().map(|v| v.driver.len()).max().unwrap_or(0).max("DRIVER".len()) + 4;
            writeln!(out, "{:<width$}VOLUME NAME", "DRIVER")?;
            for volume in &volumes {
                writeln!(out, "{:<width$}{}", volume.driver, volume.name)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print every volume, or nothing when any is missing.
fn inspect(store: &VolumeStore, names: &[String]) -> anyhow::Result<ExitCode> {
    let records = names.iter().map(|name| store.inspect(name)).collect::<Result<Vec<_>, _>>().context("cannot inspect")?;
    let shaped: Vec<_> = records.iter().map(docker_shape).collect();
    println!("{}", serde_json::to_string_pretty(&shaped)?);
    Ok(ExitCode::SUCCESS)
}

/// `docker volume inspect`'s fields, in its (alphabetical) order.
fn docker_shape(record: &VolumeRecord) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": rfc3339_utc(record.created_unix),
        "Driver": record.driver,
        "Labels": {},
        "Mountpoint": record.mountpoint,
        "Name": record.name,
        "Options": {},
        "Scope": "local",
    })
}

pub(super) fn rfc3339_utc(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| unix.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Check every name before removing any, so that bad input changes nothing. As in Docker, `-f`
/// skips missing volumes but never removes one in use.
fn remove(root: &Path, store: &VolumeStore, names: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let runtime = moat_runtime::Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let containers = runtime.containers();
    let exists = |id: &str| containers.find(id).is_ok();
    let mut doomed = Vec::new();
    for name in names {
        match store.users(name, exists) {
            Err(VolumeError::NotFound(_)) if force => continue,
            Err(err) => return Err(err).with_context(|| format!("cannot remove volume {name}")),
            Ok(users) if !users.is_empty() => {
                bail!("cannot remove volume {name}: it is in use by {}; remove those containers first", users.join(", "))
            }
            Ok(_) => doomed.push(name),
        }
    }
    // A volume that gained a user since the check is refused here, under the store's lock.
    let in_use = |name: &str| store.users(name, exists).map_or(true, |users| !users.is_empty());
    for name in doomed {
        store.remove(name, in_use).with_context(|| format!("cannot remove volume {name}"))?;
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The mounts one container asks for with `-v`, `--mount` and `--tmpfs`, checked together and
/// with bind sources resolved. It creates missing `-v` host directories, as Docker does, but
/// only once every flag has parsed and every `--mount` source exists, so bad input creates
/// nothing. Named volumes are not created here: that is the runtime's `get_or_create`.
pub fn mounts_from_flags(volumes: &[String], mounts: &[String], tmpfs: &[String]) -> anyhow::Result<Vec<VolumeMount>> {
    let mut from_volumes = volumes.iter().map(|spec| parse_volume_flag(spec)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut from_mounts = mounts.iter().map(|spec| parse_mount_flag(spec)).collect::<anyhow::Result<Vec<_>>>()?;
    let from_tmpfs = tmpfs.iter().map(|spec| parse_tmpfs_flag(spec)).collect::<anyhow::Result<Vec<_>>>()?;
    let all: Vec<_> = from_volumes.iter().chain(&from_mounts).chain(&from_tmpfs).cloned().collect();
    check_unique_targets(&all)?;
    for mount in &mut from_mounts {
        resolve_bind(mount, false)?;
    }
    for mount in &mut from_volumes {
        resolve_bind(mount, true)?;
    }
    Ok(from_volumes.into_iter().chain(from_mounts).chain(from_tmpfs).collect())
}

fn resolve_bind(mount: &mut VolumeMount, create_missing: bool) -> anyhow::Result<()> {
    if let MountSource::Bind(path) = &mut mount.source {
        *path = resolve_bind_source(path, create_missing)?;
    }
    Ok(())
}

/// `-v [SOURCE:]TARGET[:OPTIONS]`. A SOURCE starting with `/` is a host path; any other is a
/// volume name; none at all is an anonymous volume, given a fresh name. OPTIONS is a
/// comma-separated list of `ro`, `rw`, `z` and `Z`. `z` and `Z` ask Docker to relabel the
/// source for SELinux; moat has no SELinux labels to set, so they are accepted and do nothing.
pub fn parse_volume_flag(spec: &str) -> anyhow::Result<VolumeMount> {
    parse_volume_spec(spec).with_context(|| format!("invalid -v {spec:?}"))
}

fn parse_volume_spec(spec: &str) -> anyhow::Result<VolumeMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("empty field; use [SOURCE:]TARGET[:OPTIONS]");
    }
    let (source, target, options) = match parts[..] {
        [target] => (None, target, None),
        [target, options] if is_option_list(options) => (None, target, Some(options)),
        [source, target] => (Some(source), target, None),
        [source, target, options] => (Some(source), target, Some(options)),
        _ => bail!("too many ':'-separated fields; use [SOURCE:]TARGET[:OPTIONS]"),
    };
    let source = match source {
        None => MountSource::Volume(new_volume_name()?),
        Some(path) if path.starts_with('/') => MountSource::Bind(PathBuf::from(path)),
        Some(path) if path.contains('/') => {
            bail!("{path:?} is neither an absolute host path nor a volume name; give a host directory as an absolute path")
        }
        Some(name) => {
            validate_volume_name(name)?;
            MountSource::Volume(name.to_string())
        }
    };
    let read_only = options.map(parse_volume_options).transpose()?.unwrap_or(false);
    Ok(VolumeMount { source, target: ContainerPath::parse(target)?, read_only })
}

/// Whether a `-v` field is options rather than a target, as Docker tells `/data:ro` from
/// `/srv:/data`.
fn is_option_list(field: &str) -> bool {
    field.split(',').all(|option| matches!(option, "ro" | "rw" | "z" | "Z"))
}

/// Whether `-v`'s options make the mount read-only. Like Docker, refuses `ro` with `rw` and
/// `z` with `Z`.
fn parse_volume_options(options: &str) -> anyhow::Result<bool> {
    let (mut ro, mut rw, mut label) = (0, 0, 0);
    for option in options.split(',') {
        match option {
            "ro" => ro += 1,
            "rw" => rw += 1,
            "z" | "Z" => label += 1,
            "" => bail!("empty option; use a comma-separated list of ro, rw, z, Z"),
            other => bail!("unknown option {other:?}; use ro, rw, z or Z"),
        }
    }
    if ro + rw > 1 || label > 1 {
        bail!("conflicting options {options:?}; give at most one of ro, rw and one of z, Z");
    }
    Ok(ro == 1)
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`,
/// with Docker's keys and their aliases (`src`, `destination`, `dst`, `ro`). The type defaults to
/// `volume`; a volume without a source is anonymous. `consistency` is accepted and ignored, as
/// Docker on Linux ignores it. Values are not CSV-quoted.
pub fn parse_mount_flag(spec: &str) -> anyhow::Result<VolumeMount> {
    parse_mount_spec(spec).with_context(|| format!("invalid --mount {spec:?}"))
}

#[derive(Default)]
struct MountFields<'a> {
    kind: Option<&'a str>,
    source: Option<&'a str>,
    target: Option<&'a str>,
    read_only: bool,
    tmpfs_size: Option<u64>,
    tmpfs_mode: Option<u32>,
}

fn parse_mount_spec(spec: &str) -> anyhow::Result<VolumeMount> {
    let mut fields = MountFields::default();
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (field, None),
        };
        set_mount_field(&mut fields, &key.to_ascii_lowercase(), value)?;
    }
    let target = ContainerPath::parse(fields.target.context("no target; add target=/path/in/container")?)?;
    let kind = fields.kind.map_or_else(|| "volume".to_string(), str::to_ascii_lowercase);
    if kind != "tmpfs" && (fields.tmpfs_size.is_some() || fields.tmpfs_mode.is_some()) {
        bail!("tmpfs-size and tmpfs-mode need type=tmpfs");
    }
    let source = match (kind.as_str(), fields.source) {
        ("bind", None) => bail!("type=bind needs source=/host/path"),
        ("bind", Some(path)) if !path.starts_with('/') => bail!("bind source path must be absolute: {path}"),
        ("bind", Some(path)) => MountSource::Bind(PathBuf::from(path)),
        ("volume", None) => MountSource::Volume(new_volume_name()?),
        ("volume", Some(name)) if name.contains('/') => bail!("type=volume takes a volume name; for a host path use type=bind"),
        ("volume", Some(name)) => {
            validate_volume_name(name)?;
            MountSource::Volume(name.to_string())
        }
        ("tmpfs", None) => MountSource::Tmpfs { size_bytes: fields.tmpfs_size, mode: fields.tmpfs_mode },
        ("tmpfs", Some(_)) => bail!("type=tmpfs takes no source"),
        (other, _) => bail!("unknown type {other:?}; use bind, volume or tmpfs"),
    };
    Ok(VolumeMount { source, target, read_only: fields.read_only })
}

fn set_mount_field<'a>(fields: &mut MountFields<'a>, key: &str, value: Option<&'a str>) -> anyhow::Result<()> {
    let need = |value: Option<&'a str>| match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(anyhow::anyhow!("{key} needs a value, as in {key}=…")),
    };
    match key {
        "type" => fields.kind = Some(need(value)?),
        "source" | "src" => fields.source = Some(need(value)?),
        "target" | "destination" | "dst" => fields.target = Some(need(value)?),
        "readonly" | "ro" => fields.read_only = value.map_or(Ok(true), parse_bool)?,
        "tmpfs-size" => fields.tmpfs_size = Some(parse_tmpfs_size(need(value)?)?),
        "tmpfs-mode" => fields.tmpfs_mode = Some(parse_mode(need(value)?)?),
        "consistency" => {
            need(value)?;
        }
        "" => bail!("empty field; use comma-separated key=value pairs"),
        "bind-propagation" | "bind-recursive" | "bind-nonrecursive" | "bind-create-mountpoint" | "volume-driver"
        | "volume-opt" | "volume-label" | "volume-nocopy" | "volume-subpath" | "tmpfs-options" => {
            bail!("{key} is not supported by moat; leave it out")
        }
        other => bail!("unknown key {other:?}; use type, source, target, readonly, tmpfs-size or tmpfs-mode"),
    }
    Ok(())
}

fn parse_bool(text: &str) -> anyhow::Result<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("{text:?} is not a boolean; use true or false"),
    }
}

/// `--tmpfs TARGET[:OPTIONS]`, OPTIONS being `size=`, `mode=` (octal), `ro` and `rw`. Docker
/// mounts every tmpfs `noexec,nosuid,nodev`, so those are accepted; `exec`, `suid` and `dev`,
/// which would undo them, are refused.
pub fn parse_tmpfs_flag(spec: &str) -> anyhow::Result<VolumeMount> {
    parse_tmpfs_spec(spec).with_context(|| format!("invalid --tmpfs {spec:?}"))
}

fn parse_tmpfs_spec(spec: &str) -> anyhow::Result<VolumeMount> {
    let (target, options) = match spec.split_once(':') {
        Some((target, options)) => (target, Some(options)),
        None => (spec, None),
    };
    let (mut size_bytes, mut mode, mut read_only) = (None, None, false);
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option.split_once('=') {
            Some(("size", value)) => size_bytes = Some(parse_tmpfs_size(value)?),
            Some(("mode", value)) => mode = Some(parse_mode(value)?),
            None if option == "ro" => read_only = true,
            None if option == "rw" => read_only = false,
            None if matches!(option, "noexec" | "nosuid" | "nodev") => {}
            None if matches!(option, "exec" | "suid" | "dev") => {
                bail!("option {option} is not supported: moat mounts tmpfs noexec,nosuid,nodev, as Docker does")
            }
            None if option.is_empty() => bail!("empty option; use a comma-separated list such as size=64m,mode=1777"),
            _ => bail!("unknown option {option:?}; use size=, mode=, ro or rw"),
        }
    }
    let source = MountSource::Tmpfs { size_bytes, mode };
    Ok(VolumeMount { source, target: ContainerPath::parse(target)?, read_only })
}

fn parse_tmpfs_size(text: &str) -> anyhow::Result<u64> {
    match parse_byte_size(text)? {
        0 => bail!("a tmpfs size of 0 is no limit; give a size such as 64m, or leave it out"),
        bytes => Ok(bytes),
    }
}

/// A permission mode in octal, as `chmod` takes it: at most 7777.
fn parse_mode(text: &str) -> anyhow::Result<u32> {
    let bad = || anyhow::anyhow!("mode {text:?} is not an octal permission mode such as 1777 or 755");
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| matches!(b, b'0'..=b'7')) {
        return Err(bad());
    }
    u32::from_str_radix(text, 8).ok().filter(|mode| *mode <= 0o7777).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(result: anyhow::Result<VolumeMount>) -> String {
        super::super::one_line(&result.expect_err("expected an error"))
    }

    fn bind(path: &str, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount { source: MountSource::Bind(path.into()), target: ContainerPath::parse(target).unwrap(), read_only }
    }

    fn volume(name: &str, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount { source: MountSource::Volume(name.into()), target: ContainerPath::parse(target).unwrap(), read_only }
    }

    fn is_anonymous(mount: &VolumeMount) -> bool {
        matches!(&mount.source, MountSource::Volume(name) if name.len() == 64)
    }

    #[test]
    fn volume_flag_forms() {
        assert_eq!(parse_volume_flag("/srv:/data").unwrap(), bind("/srv", "/data", false));
        assert_eq!(parse_volume_flag("/srv:/data:ro").unwrap(), bind("/srv", "/data", true));
        assert_eq!(parse_volume_flag("/srv:/data:rw,Z").unwrap(), bind("/srv", "/data", false));
        assert_eq!(parse_volume_flag("/srv:/data:z,ro").unwrap(), bind("/srv", "/data", true));
        assert_eq!(parse_volume_flag("cache:/data/").unwrap(), volume("cache", "/data", false));
        assert_eq!(parse_volume_flag("my.vol_1-x:/data:ro").unwrap(), volume("my.vol_1-x", "/data", true));

        let anonymous = parse_volume_flag("/data").unwrap();
        assert!(is_anonymous(&anonymous) && anonymous.target.as_str() == "/data" && !anonymous.read_only);
        let anonymous_ro = parse_volume_flag("/data:ro").unwrap();
        assert!(is_anonymous(&anonymous_ro) && anonymous_ro.read_only);
        assert_ne!(anonymous.source, anonymous_ro.source);
    }

    #[test]
    fn volume_flag_errors() {
        for (spec, why) in [
            ("", "empty field"),
            ("/srv::/data", "empty field"),
            ("/srv:/data:", "empty field"),
            (":/data", "empty field"),
            ("/a:/b:ro:x", "too many"),
            ("/srv:data", "is not absolute"),
            ("data", "is not absolute"),
            ("/srv:/a/../b", "contains '..'"),
            ("/srv:/", "mount target '/'"),
            ("./srv:/data", "\"./srv\" is neither an absolute host path"),
            ("srv/x:/data", "give a host directory as an absolute path"),
            (".srv:/data", "volume name \".srv\" is invalid"),
            ("~:/data", "is invalid"),
            ("/srv:/data:ro,rw", "conflicting options"),
            ("/srv:/data:z,Z", "conflicting options"),
            ("/srv:/data:ro,ro", "conflicting options"),
            ("/srv:/data:ro,", "empty option"),
            ("/srv:/data:nocopy", "unknown option \"nocopy\""),
            ("/srv:/data:shared", "unknown option"),
            ("/data:bogus", "\"bogus\" is not absolute"),
            ("/data:ro,rw", "conflicting options"),
        ] {
            let message = err(parse_volume_flag(spec));
            assert!(message.starts_with(&format!("invalid -v {spec:?}: ")), "{spec}: {message}");
            assert!(message.contains(why), "{spec}: {message}");
            assert!(!message.contains('\n'), "{spec}: {message}");
        }
    }

    #[test]
    fn mount_flag_forms() {
        assert_eq!(parse_mount_flag("type=bind,source=/srv,target=/data").unwrap(), bind("/srv", "/data", false));
        assert_eq!(parse_mount_flag("type=bind,src=/srv,dst=/data,readonly").unwrap(), bind("/srv", "/data", true));
        assert_eq!(parse_mount_flag("Type=bind,Source=/srv,Destination=/data,ro=true").unwrap(), bind("/srv", "/data", true));
        assert_eq!(parse_mount_flag("type=bind,source=/srv,target=/data,readonly=false").unwrap(), bind("/srv", "/data", false));
        assert_eq!(parse_mount_flag("type=bind,source=/srv,target=/data,ro=1,consistency=cached").unwrap(), bind("/srv", "/data", true));
        assert_eq!(parse_mount_flag("type=volume,source=v,target=/data").unwrap(), volume("v", "/data", false));
        assert_eq!(parse_mount_flag("type=BIND,source=/srv,target=/data").unwrap(), bind("/srv", "/data", false));
        assert_eq!(parse_mount_flag("source=v,target=/data,ro=0").unwrap(), volume("v", "/data", false));
        assert!(is_anonymous(&parse_mount_flag("target=/data").unwrap()));
        assert!(is_anonymous(&parse_mount_flag("type=volume,dst=/data").unwrap()));

        let tmpfs = parse_mount_flag("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777").unwrap();
        assert_eq!(tmpfs.source, MountSource::Tmpfs { size_bytes: Some(64 << 20), mode: Some(0o1777) });
        let plain = parse_mount_flag("type=tmpfs,dst=/run,ro").unwrap();
        assert_eq!(plain.source, MountSource::Tmpfs { size_bytes: None, mode: None });
        assert!(plain.read_only);
    }

    #[test]
    fn mount_flag_errors() {
        for (spec, why) in [
            ("", "empty field"),
            ("type=bind,source=/srv", "no target"),
            ("type=bind,source=/srv,target=", "target needs a value"),
            ("type=bind,source=/srv,target=/data,", "empty field"),
            ("type=bind,target=/data", "type=bind needs source="),
            ("type=bind,source=srv,target=/data", "bind source path must be absolute: srv"),
            ("type=bind,source=/srv,target=data", "is not absolute"),
            ("type=bind,source=/srv,target=/a/..", "contains '..'"),
            ("type=volume,source=a/b,target=/data", "use type=bind"),
            ("type=volume,source=/srv,target=/data", "for a host path use type=bind"),
            ("type=volume,source=.v,target=/data", "volume name \".v\" is invalid"),
            ("type=tmpfs,source=x,target=/run", "takes no source"),
            ("type=npipe,source=x,target=/run", "unknown type \"npipe\""),
            ("type=bind,source=/srv,target=/data,readonly=yes", "not a boolean"),
            ("type=bind,source=/srv,target=/data,bind-propagation=rshared", "bind-propagation is not supported"),
            ("type=volume,source=v,target=/data,volume-opt=type=nfs", "volume-opt is not supported"),
            ("type=volume,source=v,target=/data,volume-nocopy", "volume-nocopy is not supported"),
            ("type=volume,source=v,target=/data,colour=blue", "unknown key \"colour\""),
            ("type=volume,target=/data,tmpfs-size=1m", "need type=tmpfs"),
            ("type=tmpfs,target=/run,tmpfs-size=lots", "not a whole number"),
            ("type=tmpfs,target=/run,tmpfs-size=0", "size of 0"),
            ("type=tmpfs,target=/run,tmpfs-size=99999999999p", "does not fit in 64 bits"),
            ("type=tmpfs,target=/run,tmpfs-mode=999", "not an octal permission mode"),
            ("type=tmpfs,target=/run,tmpfs-mode=17777", "not an octal permission mode"),
        ] {
            let message = err(parse_mount_flag(spec));
            assert!(message.starts_with(&format!("invalid --mount {spec:?}: ")), "{spec}: {message}");
            assert!(message.contains(why), "{spec}: {message}");
        }
    }

    #[test]
    fn tmpfs_flag_forms() {
        let plain = parse_tmpfs_flag("/run").unwrap();
        assert_eq!(plain.source, MountSource::Tmpfs { size_bytes: None, mode: None });
        assert!(!plain.read_only);
        let full = parse_tmpfs_flag("/tmp:rw,noexec,nosuid,size=65536k").unwrap();
        assert_eq!(full.source, MountSource::Tmpfs { size_bytes: Some(64 << 20), mode: None });
        let moded = parse_tmpfs_flag("/tmp/:ro,mode=0755,size=1g").unwrap();
        assert_eq!(moded.source, MountSource::Tmpfs { size_bytes: Some(1 << 30), mode: Some(0o755) });
        assert!(moded.read_only);
        assert_eq!(moded.target.as_str(), "/tmp");
    }

    #[test]
    fn tmpfs_flag_errors() {
        for (spec, why) in [
            ("", "is not absolute"),
            ("run", "is not absolute"),
            ("/", "mount target '/'"),
            ("/run/../etc", "contains '..'"),
            ("/run:", "empty option"),
            ("/run:size=64m,", "empty option"),
            ("/run:size=", "not a whole number"),
            ("/run:size=50%", "not a whole number"),
            ("/run:size=18446744073709551616", "does not fit in 64 bits"),
            ("/run:size=20000000p", "does not fit in 64 bits"),
            ("/run:mode=8", "not an octal permission mode"),
            ("/run:mode=", "not an octal permission mode"),
            ("/run:mode=-1", "not an octal permission mode"),
            ("/run:exec", "option exec is not supported"),
            ("/run:nr_inodes=1k", "unknown option \"nr_inodes=1k\""),
            ("/run:uid=1000", "unknown option"),
        ] {
            let message = err(parse_tmpfs_flag(spec));
            assert!(message.starts_with(&format!("invalid --tmpfs {spec:?}: ")), "{spec}: {message}");
            assert!(message.contains(why), "{spec}: {message}");
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn flags_together() {
        let host = tempfile::tempdir().unwrap();
        let canonical = host.path().canonicalize().unwrap();
        let missing = canonical.join("made/by/v");
        let volumes = strings(&[&format!("{}:/data", missing.display()), "cache:/cache:ro"]);
        let mounts = strings(&[&format!("type=bind,src={}/.,dst=/host", canonical.display())]);
        let tmpfs = strings(&["/run:size=1m"]);
        let all = mounts_from_flags(&volumes, &mounts, &tmpfs).unwrap();
        let targets: Vec<_> = all.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/data", "/cache", "/host", "/run"]);
        assert_eq!(all[0].source, MountSource::Bind(missing.clone()));
        assert_eq!(all[2].source, MountSource::Bind(canonical.clone()));
        assert!(missing.is_dir());
    }

    #[test]
    fn duplicate_targets_across_flags() {
        let volumes = strings(&["a:/data"]);
        for (mounts, tmpfs) in [(strings(&["type=volume,src=b,dst=/data/"]), vec![]), (vec![], strings(&["//data"]))] {
            let message = super::super::one_line(&mounts_from_flags(&volumes, &mounts, &tmpfs).unwrap_err());
            assert_eq!(message, "duplicate mount point: /data");
        }
        let message = super::super::one_line(&mounts_from_flags(&strings(&["a:/x", "b:/x"]), &[], &[]).unwrap_err());
        assert_eq!(message, "duplicate mount point: /x");
    }

    #[test]
    fn bad_input_creates_nothing() {
        let host = tempfile::tempdir().unwrap();
        let would_create = host.path().join("new");
        let volumes = strings(&[&format!("{}:/data", would_create.display())]);
        let cases = [
            (strings(&[&format!("type=bind,src={}/absent,dst=/host", host.path().display())]), vec![]),
            (vec![], strings(&["/run:bogus"])),
            (vec![], strings(&["/data"])),
        ];
        for (mounts, tmpfs) in cases {
            assert!(mounts_from_flags(&volumes, &mounts, &tmpfs).is_err());
            assert!(!would_create.exists());
        }
        let message = super::super::one_line(&mounts_from_flags(&[], &strings(&["type=bind,src=/nonexistent/moat,dst=/x"]), &[]).unwrap_err());
        assert_eq!(message, "bind source path does not exist: /nonexistent/moat; create it first");
    }

    #[test]
    fn created_at_is_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
