//! Specs other engines wrote (podman through moat-oci, containerd through the shim): how moat
//! tells a privileged one, and gives it moat's privileged profile in the zone.

use oci_spec::runtime::{Process, Spec};

use crate::caps::CapSet;

/// What a privileged container of podman or containerd gets: every capability the host has
/// (its bounding set, `host_caps`: a host without CAP_SYS_RESOURCE hands out 40 of the 41) and
/// no user namespace.
pub fn is_privileged(spec: &Spec, host_caps: CapSet) -> bool {
    let bounding = spec.process().as_ref().and_then(|p| p.capabilities().as_ref()).and_then(|c| c.bounding().as_ref());
    let every = bounding.is_some_and(|set| {
        let set: CapSet = set.iter().copied().collect();
        set.mask() & host_caps.mask() == host_caps.mask() && host_caps != CapSet::EMPTY
    });
    every && !crate::user::has_user_namespace(spec)
}

/// This host's capability bounding set: what a privileged container of the host could have.
pub fn host_capabilities() -> CapSet {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    mask.map_or_else(CapSet::all, CapSet::from_mask)
}

/// moat's privileged profile on a spec another engine wrote: marked for the zone (which then
/// lends it its modules), every capability the zone's kernel has (in every set but inheritable
/// and ambient, as `moat run --privileged`), and the zone's whole /dev instead of the host's
/// devices the spec lists. Returns how many host devices were dropped.
pub fn apply_privileged_profile(spec: &mut Spec) -> usize {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(crate::PRIVILEGED_ANNOTATION.to_string(), "true".into());
    spec.set_annotations(Some(annotations));
    if let Some(process) = spec.process_mut() {
        grant_every_capability(process);
    }
    let Some(linux) = spec.linux_mut() else { return 0 };
    let dropped = linux.devices().as_ref().map_or(0, Vec::len);
    linux.set_devices(Some(Vec::new()));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(vec![crate::devices::allow_all_rule()]));
    linux.set_resources(Some(resources));
    dropped
}

/// Every capability the zone's kernel has, in every set but inheritable and ambient: a
/// privileged container's process, or one exec'd in it (see moat-runtime's `Containers::exec`).
pub fn grant_every_capability(process: &mut Process) {
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let all = CapSet::all().to_oci();
    caps.set_bounding(Some(all.clone())).set_effective(Some(all.clone())).set_permitted(Some(all));
    process.set_capabilities(Some(caps));
}
