//! A bundle's spec, as the zone runs it. The spec is passed on as given except for what names the
//! host: the host's devices (mapped to the zone's, or dropped), namespaces joined by path (the
//! zone's pod has its own), bind mounts of host paths (exposed through the zone's share), the
//! host's name files (the zone writes its own), and hooks (host programs). Every change is
//! reported as one note.

use std::path::{Path, PathBuf};

use moat_runtime::volumes::{ContainerPath, MountSource, VolumeError, VolumeMount};
use moat_spec::caps::CapSet;
pub use moat_spec::foreign::{host_capabilities, is_privileged};
use moat_spec::profile::PRIVILEGED;
use oci_spec::runtime::{Hooks, LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

/// Files the zone writes for every container from its own network (see moat-runtime's
/// `network::name_files`); the host's copies would name the host's resolvers.
const NAME_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];
/// Device nodes the zone's kernel has under the same name, with its numbers: what a host device
/// entry of the spec maps to. Every other host device is dropped.
const ZONE_DEVICES: [(&str, LinuxDeviceType, i64, i64); 11] = [
    ("/dev/null", LinuxDeviceType::C, 1, 3),
    ("/dev/zero", LinuxDeviceType::C, 1, 5),
    ("/dev/full", LinuxDeviceType::C, 1, 7),
    ("/dev/random", LinuxDeviceType::C, 1, 8),
    ("/dev/urandom", LinuxDeviceType::C, 1, 9),
    ("/dev/tty", LinuxDeviceType::C, 5, 0),
    ("/dev/console", LinuxDeviceType::C, 5, 1),
    ("/dev/ptmx", LinuxDeviceType::C, 5, 2),
    ("/dev/fuse", LinuxDeviceType::C, 10, 229),
    ("/dev/net/tun", LinuxDeviceType::C, 10, 200),
    ("/dev/loop-control", LinuxDeviceType::C, 10, 237),
];
/// The size of the /dev/shm that replaces a bind of the host's (runc's and podman's default).
const SHM_SIZE: &str = "size=65536k";

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("config.json has no process")]
    NoProcess,
    #[error("config.json has no root")]
    NoRoot,
    #[error("mount at {target}: {err}")]
    Mount { target: String, err: VolumeError },
    #[error("the spec asks for a user namespace: moat-oci cannot map the bundle's root directory into one (it reaches the zone through virtio-fs, which the zone's kernel cannot idmap); run without a user namespace")]
    UserNamespace,
}

/// What the runtime gets from a bundle.
#[derive(Debug)]
pub struct Translated {
    pub spec: Spec,
    /// The bundle's root filesystem on the host, which the zone's share carries.
    pub rootfs: PathBuf,
    /// Host paths bound into the container, for the zone's share.
    pub mounts: Vec<VolumeMount>,
    pub privileged: bool,
    pub tty: bool,
    /// One line per change made to the spec.
    pub notes: Vec<String>,
    /// The spec's hooks, which run on the host.
    pub hooks: Option<Hooks>,
}

/// Translate the spec of the bundle at `bundle`; `host_caps` is the bounding set of this host
/// (see [`is_privileged`]).
pub fn translate(mut spec: Spec, bundle: &Path, host_caps: CapSet) -> Result<Translated, TranslateError> {
    let process = spec.process().as_ref().ok_or(TranslateError::NoProcess)?;
    let tty = process.terminal().unwrap_or(false);
    let user = process.user();
    let user = format!("{}:{}", user.uid(), user.gid());
    let root = spec.root().as_ref().ok_or(TranslateError::NoRoot)?;
    let rootfs = bundle.join(root.path());
    if moat_spec::user::has_user_namespace(&spec) {
        return Err(TranslateError::UserNamespace);
    }
    let privileged = is_privileged(&spec, host_caps);
    let mut notes = Vec::new();
    if privileged {
        let dropped = moat_spec::foreign::apply_privileged_profile(&mut spec);
        if dropped > 0 {
            notes.push(format!("{dropped} host devices dropped: a privileged container gets the zone's devices"));
        }
    }

    let mut annotations = spec.annotations().clone().unwrap_or_default();
    // The zone resolves the process's user from this annotation; numbers resolve as themselves.
    annotations.insert(moat_spec::user::USER_ANNOTATION.to_string(), user);
    spec.set_annotations(Some(annotations));

    // The runtime-namespace hooks run on the host (see `hooks`); the zone never sees any.
    let hooks = spec.hooks().clone();
    if hooks.as_ref().is_some_and(|h| h.create_container().is_some() || h.start_container().is_some()) {
        notes.push("createContainer and startContainer hooks dropped: they would run in the zone, which has no host programs".into());
    }
    spec.set_hooks(None);
    translate_namespaces(&mut spec, &mut notes);
    if !privileged {
        translate_devices(&mut spec, &mut notes);
    }
    let mounts = translate_mounts(&mut spec, privileged, &mut notes)?;
    Ok(Translated { spec, rootfs, mounts, privileged, tty, notes, hooks })
}

/// Namespaces joined by path are the host's: the container gets the zone's instead.
fn translate_namespaces(spec: &mut Spec, notes: &mut Vec<String>) {
    let Some(linux) = spec.linux_mut() else { return };
    let Some(namespaces) = linux.namespaces_mut() else { return };
    for ns in namespaces.iter_mut() {
        if let Some(path) = ns.path().clone() {
            notes.push(format!("{} namespace {}: the zone's own instead", namespace_name(ns.typ()), path.display()));
            ns.set_path(None);
        }
    }
    // Cgroups are the zone's; init places the container in its tree.
    linux.set_cgroups_path(None);
}

fn namespace_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// An unprivileged container keeps the devices the zone has under the same name, with the
/// zone's numbers (a privileged one gets the zone's whole /dev).
fn translate_devices(spec: &mut Spec, notes: &mut Vec<String>) {
    let Some(linux) = spec.linux_mut() else { return };
    let listed = linux.devices().clone().unwrap_or_default();
    let mut kept = Vec::new();
    for device in listed {
        // A fifo names no device of the host: the zone makes it as it is.
        if device.typ() == LinuxDeviceType::P {
            kept.push(device);
            continue;
        }
        match zone_device(&device) {
            Some(zone) => {
                if (zone.major(), zone.minor()) != (device.major(), device.minor()) {
                    notes.push(format!("device {} mapped to the zone's {}:{}", device.path().display(), zone.major(), zone.minor()));
                }
                kept.push(zone);
            }
            None => notes.push(format!("device {} dropped: the zone has no such device", device.path().display())),
        }
    }
    linux.set_devices(Some(kept));
}

/// The zone's device at the path of `device`, if the zone has one there.
fn zone_device(device: &LinuxDevice) -> Option<LinuxDevice> {
    let (_, typ, major, minor) = ZONE_DEVICES.iter().find(|(path, ..)| Path::new(path) == device.path())?;
    let mut zone = device.clone();
    zone.set_typ(*typ).set_major(*major).set_minor(*minor);
    Some(zone)
}

/// Binds of host paths become exposures of the zone's share (taken out of the spec: the runtime
/// adds their mounts back); the host's name files and /dev/shm are replaced by the zone's, and a
/// privileged container's /dev is the zone's.
fn translate_mounts(spec: &mut Spec, privileged: bool, notes: &mut Vec<String>) -> Result<Vec<VolumeMount>, TranslateError> {
    let zone_dev = privileged.then(|| moat_spec::mounts::default_mounts(&PRIVILEGED).into_iter().find(|m| m.destination() == Path::new("/dev"))).flatten();
    let mut kept = Vec::new();
    let mut exposed = Vec::new();
    for mount in spec.mounts().clone().unwrap_or_default() {
        let target = mount.destination().to_string_lossy().into_owned();
        if let (Some(zone_dev), "/dev") = (&zone_dev, target.as_str()) {
            kept.push(zone_dev.clone());
            continue;
        }
        if !is_bind(&mount) {
            kept.push(mount);
            continue;
        }
        if NAME_FILES.contains(&target.as_str()) {
            notes.push(format!("{target}: the zone's, written from its own network"));
        } else if target == "/dev/shm" {
            kept.push(zone_shm(&mount));
        } else {
            let source = mount.source().clone().unwrap_or_default();
            let read_only = options(&mount).iter().any(|o| o == "ro");
            let container_path = ContainerPath::parse(&target).map_err(|err| TranslateError::Mount { target: target.clone(), err })?;
            exposed.push(VolumeMount { source: MountSource::Bind(source), target: container_path, read_only });
        }
    }
    spec.set_mounts(Some(kept));
    Ok(exposed)
}

fn options(mount: &Mount) -> Vec<String> {
    mount.options().clone().unwrap_or_default()
}

fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind") || options(mount).iter().any(|o| o == "bind" || o == "rbind")
}

/// A tmpfs of the zone in place of the host's /dev/shm.
fn zone_shm(mount: &Mount) -> Mount {
    let mut shm = mount.clone();
    shm.set_typ(Some("tmpfs".into())).set_source(Some(PathBuf::from("shm"))).set_options(Some(
        ["nosuid", "noexec", "nodev", "mode=1777", SHM_SIZE].iter().map(|o| o.to_string()).collect(),
    ));
    shm
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxDeviceBuilder, LinuxNamespaceBuilder, MountBuilder};

    fn bind(source: &str, target: &str, ro: bool) -> Mount {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if ro {
            options.push("ro".into());
        }
        MountBuilder::default().destination(target).typ("bind").source(source).options(options).build().unwrap()
    }

    fn device(path: &str, major: i64, minor: i64) -> LinuxDevice {
        LinuxDeviceBuilder::default().path(path).typ(LinuxDeviceType::C).major(major).minor(minor).build().unwrap()
    }

    /// runc's default spec (`runc spec`), with podman's additions.
    fn podman_like(all_caps: bool) -> Spec {
        let mut spec = Spec::default();
        if all_caps {
            let all: std::collections::HashSet<Capability> = CapSet::all().to_oci();
            let mut process = spec.process().clone().unwrap();
            let mut caps = process.capabilities().clone().unwrap();
            caps.set_bounding(Some(all.clone())).set_effective(Some(all));
            process.set_capabilities(Some(caps));
            spec.set_process(Some(process));
        }
        let mut mounts = spec.mounts().clone().unwrap();
        mounts.push(bind("/var/lib/containers/x/userdata/resolv.conf", "/etc/resolv.conf", false));
        mounts.push(bind("/var/lib/containers/x/userdata/shm", "/dev/shm", false));
        mounts.push(bind("/srv/data", "/data", true));
        spec.set_mounts(Some(mounts));
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap();
        namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path("/run/netns/netns-1").build().unwrap());
        linux.set_namespaces(Some(namespaces));
        linux.set_cgroups_path(Some("/libpod_parent/libpod-x".into()));
        let fifo = LinuxDeviceBuilder::default().path("/dev/pipe").typ(LinuxDeviceType::P).build().unwrap();
        linux.set_devices(Some(vec![device("/dev/sda", 8, 0), device("/dev/fuse", 10, 229), fifo]));
        spec
    }

    #[test]
    fn an_unprivileged_spec_runs_as_given_less_the_host() {
        let t = translate(podman_like(false), Path::new("/b"), CapSet::all()).unwrap();
        assert!(!t.privileged);
        assert_eq!(t.rootfs, Path::new("/b/rootfs"));
        assert_eq!(t.spec.process(), podman_like(false).process(), "the process is untouched");
        let linux = t.spec.linux().as_ref().unwrap();
        let devices: Vec<_> = linux.devices().as_ref().unwrap().iter().map(|d| d.path().clone()).collect();
        assert_eq!(devices, [PathBuf::from("/dev/fuse"), PathBuf::from("/dev/pipe")], "a fifo is no host device");
        assert!(t.notes.iter().any(|n| n.contains("/dev/sda") && n.contains("dropped")), "{:?}", t.notes);
        assert!(linux.namespaces().as_ref().unwrap().iter().all(|ns| ns.path().is_none()));
        assert!(t.notes.iter().any(|n| n.contains("/run/netns/netns-1")));
        assert!(linux.cgroups_path().is_none());
        assert_eq!(t.mounts.len(), 1, "only the volume goes through the share");
        assert_eq!(t.mounts[0].source, MountSource::Bind("/srv/data".into()));
        assert!(t.mounts[0].read_only);
        let mounts = t.spec.mounts().as_ref().unwrap();
        assert!(!mounts.iter().any(|m| m.destination() == Path::new("/etc/resolv.conf")));
        let shm = mounts.iter().find(|m| m.destination() == Path::new("/dev/shm")).unwrap();
        assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
        assert!(!moat_spec::is_privileged(&t.spec));
    }

    #[test]
    fn every_capability_without_a_user_namespace_is_privileged_in_the_zone() {
        let t = translate(podman_like(true), Path::new("/b"), CapSet::all()).unwrap();
        assert!(t.privileged);
        assert!(moat_spec::is_privileged(&t.spec), "the zone applies its privileged profile");
        let linux = t.spec.linux().as_ref().unwrap();
        assert!(linux.devices().as_ref().unwrap().is_empty(), "never the host's devices");
        assert!(t.notes.iter().any(|n| n.contains("3 host devices dropped")));
        let dev = t.spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/dev")).unwrap();
        assert_eq!(dev.typ().as_deref(), Some("bind"), "the zone's /dev");
        let rules = linux.resources().as_ref().and_then(|r| r.devices().clone()).unwrap();
        assert_eq!(rules, vec![moat_spec::devices::allow_all_rule()]);
    }

    #[test]
    fn every_capability_of_the_host_is_enough() {
        let mut host = CapSet::all();
        host.remove(Capability::SysResource);
        let mut spec = podman_like(false);
        let mut process = spec.process().clone().unwrap();
        let mut caps = process.capabilities().clone().unwrap();
        caps.set_bounding(Some(host.to_oci()));
        process.set_capabilities(Some(caps));
        spec.set_process(Some(process));
        assert!(is_privileged(&spec, host));
        assert!(!is_privileged(&spec, CapSet::all()));
        let t = translate(spec, Path::new("/b"), host).unwrap();
        let bounding: CapSet = t.spec.process().as_ref().unwrap().capabilities().as_ref().unwrap().bounding().as_ref().unwrap().iter().copied().collect();
        assert_eq!(bounding, CapSet::all(), "the zone grants all of its kernel's");
    }

    #[test]
    fn a_user_namespace_is_not_privileged() {
        let mut spec = podman_like(true);
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap();
        namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build().unwrap());
        linux.set_namespaces(Some(namespaces));
        assert!(!is_privileged(&spec, CapSet::all()));
        assert!(matches!(translate(spec, Path::new("/b"), CapSet::all()), Err(TranslateError::UserNamespace)), "refused before any zone boots");
    }
}
