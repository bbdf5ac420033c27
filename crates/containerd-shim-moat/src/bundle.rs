//! An OCI bundle as containerd hands it over: its `config.json`, the pod it belongs to (from
//! the CRI annotations), and the spec rewritten for a zone, where no host path means anything.

use std::path::{Path, PathBuf};

use moat_runtime::network::NetworkMode;
use moat_zone::ops::{MAX_MEMORY_MIB, MIN_MEMORY_MIB};
use moat_runtime::volumes::{ContainerPath, MountSource, VolumeMount};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// containerd's CRI marks a pod's sandbox (pause) container with this annotation …
const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const SANDBOX_TYPE: &str = "sandbox";
/// … and every container of the pod with the sandbox's id.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// A pod's zone size, from pod annotations containerd passes on (`pod_annotations = ["moat.*"]`):
/// memory as Docker writes sizes (`768m`), CPUs as a decimal (`1.5`).
const MEMORY_ANNOTATION: &str = "moat.memory";
const CPUS_ANNOTATION: &str = "moat.cpus";
/// What containerd's CRI (1.6 and later) writes on a pod's sandbox container when kubelet
/// gives the pod's resources: the sum of its containers' memory limits in bytes, and their CPU
/// quota over its period. "0" means a container set no limit.
const CRI_SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
const CRI_SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
const CRI_SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
/// A zone's size when the pod does not say.
const DEFAULT_MEMORY: &str = "512m";
const DEFAULT_CPUS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("the bundle's config.json: {0}")]
    Spec(#[from] moat_spec::SpecError),
    #[error("the bundle's mount at {target}: {err}")]
    Mount { target: String, err: moat_runtime::volumes::VolumeError },
}

/// Where a container belongs, from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The pod's sandbox container: it brings the pod's zone.
    Sandbox { pod: String },
    /// A container of the pod whose sandbox is `pod`.
    InPod { pod: String },
    /// No pod (`ctr run`): a zone of its own.
    Alone,
}

impl Role {
    fn of(spec: &Spec) -> Role {
        let annotations = spec.annotations().clone().unwrap_or_default();
        match (annotations.get(CONTAINER_TYPE).map(String::as_str), annotations.get(SANDBOX_ID)) {
            (Some(SANDBOX_TYPE), Some(pod)) => Role::Sandbox { pod: pod.clone() },
            (_, Some(pod)) => Role::InPod { pod: pod.clone() },
            _ => Role::Alone,
        }
    }
}

/// A positive number CRI wrote; "0", "-1" and anything else mean none.
fn cri_figure(annotations: &std::collections::HashMap<String, String>, key: &str) -> Option<u64> {
    annotations.get(key)?.parse::<u64>().ok().filter(|n| *n > 0)
}

/// A zone whose containers may use the pod's summed memory limits, within a zone's bounds.
fn cri_pod_memory(annotations: &std::collections::HashMap<String, String>) -> Option<String> {
    let limits_mib = cri_figure(annotations, CRI_SANDBOX_MEMORY)?.div_ceil(1 << 20);
    let zone_mib = moat_spec::resources::zone_memory_for(limits_mib).clamp(MIN_MEMORY_MIB.into(), MAX_MEMORY_MIB.into());
    Some(format!("{zone_mib}m"))
}

/// The pod's summed CPU quota as whole vCPUs, at most the host's: each container keeps its own
/// quota inside the zone.
fn cri_pod_cpus(annotations: &std::collections::HashMap<String, String>, host_cpus: u64) -> Option<String> {
    let quota = cri_figure(annotations, CRI_SANDBOX_CPU_QUOTA)?;
    let period = cri_figure(annotations, CRI_SANDBOX_CPU_PERIOD)?;
    Some(quota.div_ceil(period).clamp(1, host_cpus).to_string())
}

/// A bundle, read.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub role: Role,
}

impl Bundle {
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join("config.json");
        let text = moat_zone::state::read_bounded(&path, moat_spec::MAX_SPEC_JSON_BYTES as u64).map_err(|err| BundleError::Read { path, err })?;
        let spec = moat_spec::from_json(&text)?;
        Ok(Bundle { dir: dir.to_path_buf(), role: Role::of(&spec), spec })
    }

    /// The id that names the shim serving this container: the pod's, so that one shim serves
    /// the whole pod, or the container's own.
    pub fn shim_group(&self, container_id: &str) -> String {
        match &self.role {
            Role::Sandbox { pod } | Role::InPod { pod } => pod.clone(),
            Role::Alone => container_id.to_string(),
        }
    }

    /// The size of the zone this container brings (its pod's or its own), for
    /// `Resources::parse`: the pod's `moat.*` annotations; else, as Kata sizes its sandbox, room
    /// for the limits CRI summed over the pod's containers plus the zone's own reserve; else a
    /// default.
    pub fn zone_size(&self) -> (String, String) {
        let annotations = self.spec.annotations().clone().unwrap_or_default();
        let host_cpus = u64::from(moat_runtime::resources::host_cpus());
        let memory = annotations.get(MEMORY_ANNOTATION).cloned().or_else(|| cri_pod_memory(&annotations)).unwrap_or_else(|| DEFAULT_MEMORY.into());
        let cpus = annotations.get(CPUS_ANNOTATION).cloned().or_else(|| cri_pod_cpus(&annotations, host_cpus)).unwrap_or_else(|| DEFAULT_CPUS.into());
        (memory, cpus)
    }

    /// The network the container's zone gets: the CNI namespace containerd set up for a pod,
    /// none for a container that asked for a network namespace of its own (it sees only `lo`,
    /// as under runc), and NAT for one that shares "the host's" (`ctr run --net-host`).
    pub fn zone_network(&self) -> NetworkMode {
        match self.namespace_path(LinuxNamespaceType::Network) {
            Some(Some(path)) => NetworkMode::Namespace(path),
            Some(None) => NetworkMode::None,
            None => NetworkMode::Nat,
        }
    }

    /// `Some(path)` for a namespace the spec joins, `Some(None)` for a new one, `None` if the
    /// container shares its parent's.
    fn namespace_path(&self, kind: LinuxNamespaceType) -> Option<Option<PathBuf>> {
        let namespaces = self.spec.linux().as_ref()?.namespaces().clone()?;
        namespaces.iter().find(|n| n.typ() == kind).map(|n| n.path().clone())
    }

    /// The spec as the zone runs it: host paths removed (hooks; namespaces to join, which then
    /// are new ones, except the pod's network: the zone's own); host bind mounts taken out, to
    /// go through the runtime's share instead; a privileged container (CRI's
    /// `securityContext.privileged`, `ctr run --privileged`) given moat's privileged profile,
    /// and any other, with `user_namespace`, a user namespace of its own.
    pub fn zone_spec(&self, user_namespace: bool) -> Result<(Spec, Vec<VolumeMount>), BundleError> {
        let mut spec = self.spec.clone();
        spec.set_hooks(None);
        if moat_spec::foreign::is_privileged(&spec, moat_spec::foreign::host_capabilities()) {
            moat_spec::foreign::apply_privileged_profile(&mut spec);
        } else if user_namespace {
            moat_spec::give_user_namespace(&mut spec)?;
        }
        let joins_pod_network = matches!(self.zone_network(), NetworkMode::Namespace(_));
        if let Some(linux) = spec.linux_mut() {
            if let Some(namespaces) = linux.namespaces().clone() {
                let kept = namespaces
                    .into_iter()
                    .filter(|n| !(joins_pod_network && n.typ() == LinuxNamespaceType::Network))
                    .map(|mut n| {
                        n.set_path(None);
                        n
                    })
                    .collect();
                linux.set_namespaces(Some(kept));
            }
        }
        let mut binds = Vec::new();
        let mut kept = Vec::new();
        for mount in spec.mounts().clone().unwrap_or_default() {
            let is_bind = mount.typ().as_deref() == Some("bind") || mount.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
            match (is_bind, mount.source()) {
                (true, Some(source)) => {
                    let target = mount.destination().to_string_lossy().to_string();
                    let read_only = mount.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "ro"));
                    let target = ContainerPath::parse(&target).map_err(|err| BundleError::Mount { target, err })?;
                    binds.push(VolumeMount { source: MountSource::Bind(source.clone()), target, read_only });
                }
                _ => kept.push(mount),
            }
        }
        spec.set_mounts(Some(kept));
        Ok((spec, binds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(json: &str) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        Bundle::read(dir.path()).unwrap()
    }

    const PLAIN: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"},
        "linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc","path":"/proc/42/ns/ipc"}]},
        "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                  {"destination":"/etc/hosts","type":"bind","source":"/var/lib/x/hosts","options":["rbind","ro"]}]}"#;

    #[test]
    fn a_plain_container_is_alone_with_no_network() {
        let b = bundle(PLAIN);
        assert_eq!(b.role, Role::Alone);
        assert_eq!(b.shim_group("c1"), "c1");
        assert_eq!(b.zone_network(), NetworkMode::None);
    }

    #[test]
    fn an_unprivileged_container_gets_a_user_namespace_unless_the_handler_says_not() {
        let (spec, _) = bundle(PLAIN).zone_spec(true).unwrap();
        assert!(moat_spec::user::has_user_namespace(&spec));
        let linux = spec.linux().as_ref().unwrap();
        let map = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((map.container_id(), map.host_id(), map.size()), (0, 100_000, 65_536), "moat run's mapping");
        assert_eq!(linux.gid_mappings(), linux.uid_mappings());
        let (spec, _) = bundle(PLAIN).zone_spec(false).unwrap();
        assert!(!moat_spec::user::has_user_namespace(&spec));
    }

    #[test]
    fn the_zone_spec_has_no_host_paths() {
        let (spec, binds) = bundle(PLAIN).zone_spec(false).unwrap();
        let namespaces = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert_eq!(namespaces.len(), 3);
        assert!(namespaces.iter().all(|n| n.path().is_none()));
        assert_eq!(spec.mounts().as_ref().unwrap().len(), 1);
        assert_eq!(binds.len(), 1);
        assert!(binds[0].read_only);
        assert_eq!(binds[0].source, MountSource::Bind("/var/lib/x/hosts".into()));
    }

    #[test]
    fn cri_annotations_place_containers_in_their_pod() {
        let sandbox = PLAIN.replacen(
            r#""root""#,
            r#""annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"p1"},"root""#,
            1,
        );
        let sandbox = sandbox.replace(r#"{"type":"network"}"#, r#"{"type":"network","path":"/var/run/netns/cni-1"}"#);
        let b = bundle(&sandbox);
        assert_eq!(b.role, Role::Sandbox { pod: "p1".into() });
        assert_eq!(b.shim_group("c1"), "p1");
        assert_eq!(b.zone_network(), NetworkMode::Namespace("/var/run/netns/cni-1".into()));
        let (spec, _) = b.zone_spec(false).unwrap();
        let namespaces = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(namespaces.iter().all(|n| n.typ() != LinuxNamespaceType::Network), "the pod's network is the zone's own");

        assert_eq!(b.zone_size(), ("512m".to_string(), "1".to_string()));
        let sized = sandbox.replace(r#""io.kubernetes.cri.sandbox-id":"p1""#, r#""io.kubernetes.cri.sandbox-id":"p1","moat.memory":"768m","moat.cpus":"2""#);
        assert_eq!(bundle(&sized).zone_size(), ("768m".to_string(), "2".to_string()));
        let cri = |memory: &str, quota: &str| {
            let figures = format!(r#""io.kubernetes.cri.sandbox-id":"p1","io.kubernetes.cri.sandbox-memory":"{memory}","io.kubernetes.cri.sandbox-cpu-quota":"{quota}","io.kubernetes.cri.sandbox-cpu-period":"100000""#);
            bundle(&sandbox.replace(r#""io.kubernetes.cri.sandbox-id":"p1""#, &figures)).zone_size()
        };
        let host_cpus = moat_runtime::resources::host_cpus().to_string();
        assert_eq!(cri("134217728", "50000"), ("239m".to_string(), "1".to_string()), "128 MiB of limits: (128 + 96 reserved) × 16/15; half a CPU");
        assert_eq!(cri("0", "0"), ("512m".to_string(), "1".to_string()), "no limits: the default");
        assert_eq!(cri("-1", "-1"), ("512m".to_string(), "1".to_string()));
        assert_eq!(cri("1", "100000000"), ("128m".to_string(), host_cpus.clone()), "within a zone's bounds and the host's CPUs");
        assert_eq!(cri("99999999999999999", "x"), (format!("{MAX_MEMORY_MIB}m"), "1".to_string()));
        let both = sized.replace(r#""moat.memory":"768m""#, r#""moat.memory":"768m","io.kubernetes.cri.sandbox-memory":"134217728""#);
        assert_eq!(bundle(&both).zone_size().0, "768m", "the pod's own annotation wins");
        for (memory, cpus) in [cri("134217728", "150000"), cri("1", "1")] {
            assert!(moat_runtime::resources::Resources::parse(&memory, &cpus).is_ok(), "{memory} {cpus}");
        }

        let member = PLAIN.replacen(r#""root""#, r#""annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-id":"p1"},"root""#, 1);
        assert_eq!(bundle(&member).role, Role::InPod { pod: "p1".into() });
    }

    #[test]
    fn a_container_on_the_hosts_network_gets_nat() {
        let b = bundle(&PLAIN.replace(r#"{"type":"network"},"#, ""));
        assert_eq!(b.zone_network(), NetworkMode::Nat);
    }
}
