//! The pod's shared namespaces. Every container of a zone joins one network, IPC and UTS
//! namespace, as a Kubernetes pod's containers do: they reach each other over 127.0.0.1 and
//! share a hostname. Each keeps its own mount, PID and cgroup namespaces (and user namespace
//! when unprivileged).
//!
//! Init makes the namespaces once, held open by bind mounts of their nsfs files, and starts runc
//! inside them (see [`Pod::entry`]); a container's spec then lists none of the three, so the
//! container and every process exec'd into it inherit them. (Listing them by path would not do:
//! runc 1.1's `exec` joins the container's user namespace first, and from there may not enter
//! namespaces that the zone's user namespace owns.) What the kernel lets only a namespace's owner do (bring
//! `lo` up, set `net.*` sysctls and the hostname, mount `mqueue` for the IPC namespace and
//! `sysfs` for the network namespace) init does itself, since an unprivileged container's root
//! owns none of them: such a container gets binds of the pod's mqueue and sysfs instead.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use moat_proto::net::GuestNetwork;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

/// Where the pod's namespace files are bind-mounted.
const POD_DIR: &str = "/run/moat/pod";

/// The namespaces the containers share, with their nsfs names.
const SHARED: [(LinuxNamespaceType, &str, CloneFlags); 3] = [
    (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
];

/// The sysctls under this prefix belong to a network namespace.
const NET_SYSCTL: &str = "net.";
/// The pod's own mqueue (of its IPC namespace) and sysfs (of its network namespace).
const POD_MQUEUE: &str = "/run/moat/pod/mqueue";
const POD_SYSFS: &str = "/run/moat/pod/sys";

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("{what}: {err}")]
    Sys { what: &'static str, err: nix::Error },
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("the spec joins a {0:?} namespace by path; containers of a zone share the pod's")]
    ForeignNamespace(LinuxNamespaceType),
    #[error("sysctl {0:?} is not a valid name")]
    BadSysctl(String),
    #[error("the pod's network: {0}")]
    Net(#[from] crate::net::NetError),
}

/// The pod's namespaces, made at the first container.
pub struct Pod {
    hostname_set: bool,
    /// The pod's namespaces, open, in [`SHARED`]'s order.
    namespaces: Vec<OwnedFd>,
}

impl Pod {
    /// Make the pod's namespaces; with `network`, the zone's network device moves into the
    /// pod's network namespace and is configured there.
    pub fn create(network: Option<&GuestNetwork>) -> Result<Self, PodError> {
        std::fs::create_dir_all(POD_DIR).map_err(|err| PodError::Io { what: "creating", path: POD_DIR.into(), err })?;
        let own = own_namespaces()?;
        let flags = SHARED.iter().fold(CloneFlags::empty(), |all, (_, _, flag)| all | *flag);
        unshare(flags).map_err(|err| PodError::Sys { what: "unsharing the pod's namespaces", err })?;
        let held = hold_current();
        let up = held.and_then(|()| loopback_up()).and_then(|()| mount_pod_filesystems());
        // Back to the zone's own namespaces whatever happened: init must stay in them.
        for (fd, (_, _, flag)) in own.iter().zip(SHARED) {
            setns(fd.as_fd(), flag).map_err(|err| PodError::Sys { what: "returning to the zone's namespaces", err })?;
        }
        up?;
        let namespaces = SHARED
            .iter()
            .map(|(_, name, _)| {
                let path = Path::new(POD_DIR).join(name);
                std::fs::File::open(&path).map(OwnedFd::from).map_err(|err| PodError::Io { what: "opening", path, err })
            })
            .collect::<Result<Vec<OwnedFd>, _>>()?;
        if let Some(network) = network {
            // SHARED lists the network namespace first.
            crate::net::move_device(namespaces[0].as_raw_fd())?;
            in_pod(|| Ok(crate::net::configure(network)?))?;
        }
        Ok(Self { hostname_set: false, namespaces })
    }

    /// What a process must `setns` into to be in the pod: descriptors and their kinds. They
    /// stay open as long as the pod, so a forked child may use the raw numbers.
    pub fn entry(&self) -> Vec<(RawFd, CloneFlags)> {
        self.namespaces.iter().zip(SHARED).map(|(fd, (_, _, flag))| (fd.as_raw_fd(), flag)).collect()
    }

    /// Make `spec` join the pod: it leaves its network, IPC and UTS namespaces to the pod's; its
    /// `net.*` sysctls are set on the pod's network namespace, and its hostname becomes the
    /// pod's when the pod has none yet (a container cannot set the hostname of a namespace it
    /// joins, so both leave the spec). A user-namespaced container binds the pod's mqueue and
    /// sysfs, which it could not mount.
    pub fn join(&mut self, spec: &mut Spec) -> Result<(), PodError> {
        let hostname = spec.hostname().clone().filter(|_| !self.hostname_set);
        spec.set_hostname(None);
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        let shared = |typ: LinuxNamespaceType| SHARED.iter().any(|(t, _, _)| *t == typ);
        if let Some(foreign) = namespaces.iter().find(|ns| shared(ns.typ()) && ns.path().is_some()) {
            return Err(PodError::ForeignNamespace(foreign.typ()));
        }
        namespaces.retain(|ns| !shared(ns.typ()));
        let user_namespaced = namespaces.iter().any(|ns| ns.typ() == LinuxNamespaceType::User);
        linux.set_namespaces(Some(namespaces));
        let mut net_sysctls = Vec::new();
        if let Some(sysctl) = linux.sysctl_mut() {
            net_sysctls = sysctl.iter().filter(|(k, _)| k.starts_with(NET_SYSCTL)).map(|(k, v)| (k.clone(), v.clone())).collect();
            sysctl.retain(|k, _| !k.starts_with(NET_SYSCTL));
        }
        spec.set_linux(Some(linux));
        if user_namespaced {
            let mounts = spec.mounts().clone().unwrap_or_default().into_iter().map(bind_pod_filesystem).collect();
            spec.set_mounts(Some(mounts));
        }
        in_pod(|| {
            for (key, value) in &net_sysctls {
                write_sysctl(key, value)?;
            }
            if let Some(name) = &hostname {
                nix::unistd::sethostname(name).map_err(|err| PodError::Sys { what: "setting the pod's hostname", err })?;
            }
            Ok(())
        })?;
        self.hostname_set |= hostname.is_some();
        Ok(())
    }
}

/// A spec's `mqueue` or `sysfs` mount as a bind of the pod's own, keeping its flags.
fn bind_pod_filesystem(mut mount: Mount) -> Mount {
    let source = match mount.typ().as_deref() {
        Some("mqueue") => POD_MQUEUE,
        Some("sysfs") => POD_SYSFS,
        _ => return mount,
    };
    let mut options = vec!["rbind".to_string()];
    options.extend(mount.options().clone().unwrap_or_default());
    mount.set_typ(Some("bind".into())).set_source(Some(source.into())).set_options(Some(options));
    mount
}

/// Mount the pod's mqueue and sysfs while init is in the pod's namespaces: each belongs to the
/// namespace of whoever mounts it.
fn mount_pod_filesystems() -> Result<(), PodError> {
    for (fstype, target) in [("mqueue", POD_MQUEUE), ("sysfs", POD_SYSFS)] {
        std::fs::create_dir_all(target).map_err(|err| PodError::Io { what: "creating", path: target.into(), err })?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some(fstype), target, Some(fstype), flags, None::<&str>).map_err(|err| PodError::Sys { what: "mounting the pod's filesystems", err })?;
    }
    Ok(())
}

/// Init's own network, IPC and UTS namespaces, in [`SHARED`]'s order.
fn own_namespaces() -> Result<Vec<OwnedFd>, PodError> {
    SHARED
        .iter()
        .map(|(_, name, _)| {
            let path = PathBuf::from(format!("/proc/self/ns/{name}"));
            std::fs::File::open(&path).map(OwnedFd::from).map_err(|err| PodError::Io { what: "opening", path, err })
        })
        .collect()
}

/// Bind the namespaces init is in now onto the pod's files, so they outlive every process.
fn hold_current() -> Result<(), PodError> {
    for (_, name, _) in SHARED {
        let target = Path::new(POD_DIR).join(name);
        std::fs::File::create(&target).map_err(|err| PodError::Io { what: "creating", path: target.clone(), err })?;
        let source = format!("/proc/self/ns/{name}");
        mount(Some(source.as_str()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|err| PodError::Sys { what: "holding a pod namespace", err })?;
    }
    Ok(())
}

/// Run `work` inside the pod's network and UTS namespaces, then return to init's own.
fn in_pod<T>(work: impl FnOnce() -> Result<T, PodError>) -> Result<T, PodError> {
    let own = own_namespaces()?;
    let mut entered = Vec::new();
    let mut result = Ok(());
    for ((_, name, flag), fd) in SHARED.iter().zip(&own) {
        let path = Path::new(POD_DIR).join(name);
        let joined = std::fs::File::open(&path)
            .map_err(|err| PodError::Io { what: "opening", path, err })
            .and_then(|pod| setns(pod.as_fd(), *flag).map_err(|err| PodError::Sys { what: "entering the pod's namespaces", err }));
        match joined {
            Ok(()) => entered.push((fd, *flag)),
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    let out = result.and_then(|()| work());
    for (fd, flag) in entered {
        setns(fd.as_fd(), flag).map_err(|err| PodError::Sys { what: "returning to the zone's namespaces", err })?;
    }
    out
}

fn write_sysctl(key: &str, value: &str) -> Result<(), PodError> {
    let valid = !key.is_empty() && key.split('.').all(|part| !part.is_empty() && part != ".." && !part.contains('/'));
    if !valid {
        return Err(PodError::BadSysctl(key.to_string()));
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|err| PodError::Io { what: "writing", path, err })
}

/// Bring up `lo` in the current network namespace: a new one starts with it down.
fn loopback_up() -> Result<(), PodError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sys = |what| move |err| PodError::Sys { what, err };
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(sys("opening a socket in the pod"))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = (*src).cast_signed();
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq we own, for the duration
    // of the call only.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(PodError::Sys { what: "reading lo's flags", err: nix::Error::last() });
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(PodError::Sys { what: "bringing lo up", err: nix::Error::last() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqueue_and_sysfs_become_binds_of_the_pods() {
        let mqueue = oci_spec::runtime::MountBuilder::default().destination("/dev/mqueue").typ("mqueue").source("mqueue").options(vec!["nosuid".to_string()]).build().unwrap();
        let bound = bind_pod_filesystem(mqueue);
        assert_eq!(bound.typ().as_deref(), Some("bind"));
        assert_eq!(bound.source().as_deref(), Some(Path::new(POD_MQUEUE)));
        assert_eq!(bound.options().as_deref(), Some(&["rbind".to_string(), "nosuid".to_string()][..]));
        let proc = oci_spec::runtime::MountBuilder::default().destination("/proc").typ("proc").source("proc").build().unwrap();
        assert_eq!(bind_pod_filesystem(proc.clone()), proc);
    }

    #[test]
    fn sysctl_names_cannot_leave_proc_sys() {
        for bad in ["", "net..x", "net./x", "../etc", "net/ipv4"] {
            assert!(matches!(write_sysctl(bad, "0"), Err(PodError::BadSysctl(_))), "{bad:?}");
        }
    }
}
