//! Assembles the runtime spec from the parts the other modules compute.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    BoxBuilder as ConsoleSizeBuilder, LinuxCapabilities, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxResources, LinuxSeccomp, Process, Root, Spec, VERSION,
};

use crate::caps::{self, CapSet};
use crate::devices::{allow_all_rule, default_cgroup_rules, default_devices};
use crate::profile::{
    DeviceSet, Profile, MASKED_PATHS, READONLY_PATHS, ZONE_ID_MAP_SIZE, ZONE_ID_MAP_START,
};
use crate::resources;
use crate::seccomp::{default_profile, parse_profile, ZoneTarget};
use crate::security_opt::{parse_security_opts, SeccompChoice};
use crate::user::{validate_user_spec, USER_ANNOTATION};
use crate::{env, mounts, process, to_json, RunOptions, SpecError, PRIVILEGED_ANNOTATION};

/// Where the runtime finds the rootfs, relative to the bundle.
const ROOTFS: &str = "rootfs";

/// Builds the spec for a zone of moat's default kind (see [`ZoneTarget::DEFAULT`]).
///
/// `caller_env` is the environment of whoever runs `moat run`, for `-e KEY` and bare names
/// in env files.
pub fn build_spec(
    image: &ImageConfiguration,
    opts: &RunOptions,
    caller_env: &BTreeMap<String, String>,
) -> Result<Spec, SpecError> {
    build_spec_for(image, opts, caller_env, &ZoneTarget::DEFAULT)
}

/// Builds the spec for a zone of the given architecture and kernel.
pub fn build_spec_for(
    image: &ImageConfiguration,
    opts: &RunOptions,
    caller_env: &BTreeMap<String, String>,
    target: &ZoneTarget,
) -> Result<Spec, SpecError> {
    let profile = Profile::for_privileged(opts.privileged);
    let security = parse_security_opts(&opts.security_opt)?;
    let caps = caps::adjust(profile.base_caps.set(), &opts.cap_add, &opts.cap_drop)?;
    let seccomp = seccomp_for(&profile, &security.seccomp, caps, target)?;

    let config = image.config().clone().unwrap_or_default();
    let args = process::command(
        config.entrypoint().as_deref().unwrap_or_default(),
        config.cmd().as_deref().unwrap_or_default(),
        opts.entrypoint.as_deref(),
        &opts.command,
    )?;
    let cwd = process::workdir(opts.workdir.as_deref(), config.working_dir().as_deref())?;
    let hostname = opts
        .hostname
        .as_deref()
        .map(process::hostname)
        .transpose()?;
    let user = opts
        .user
        .as_deref()
        .or(config.user().as_deref())
        .unwrap_or_default();
    validate_user_spec(user)?;
    let user_env = env::user_env(&opts.env_files, &opts.env, caller_env)?;
    let env = env::container_env(
        config.env().as_deref().unwrap_or_default(),
        &user_env,
        hostname.unwrap_or_default(),
        opts.tty,
    )?;

    let mut process = Process::default();
    if let Some((rows, cols)) = opts.console_size.filter(|_| opts.tty) {
        let size = ConsoleSizeBuilder::default()
            .height(u64::from(rows))
            .width(u64::from(cols))
            .build()
            .map_err(|e| SpecError::Oci(e.to_string()))?;
        process.set_console_size(Some(size));
    }
    process
        .set_terminal(Some(opts.tty))
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_capabilities(Some(capabilities(caps)))
        .set_no_new_privileges(Some(security.no_new_privileges))
        // Docker's default; without it the process would inherit the zone init's -1000.
        .set_oom_score_adj(Some(0))
        .set_rlimits(None);

    let mut root = Root::default();
    root.set_path(PathBuf::from(ROOTFS))
        .set_readonly(Some(opts.read_only));

    let annotations = HashMap::from([
        (USER_ANNOTATION.to_string(), user.to_string()),
        (
            PRIVILEGED_ANNOTATION.to_string(),
            opts.privileged.to_string(),
        ),
    ]);

    let mut spec = Spec::default();
    spec.set_version(VERSION.to_string())
        .set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(hostname.map(str::to_string))
        .set_mounts(Some(mounts::default_mounts(&profile)))
        .set_annotations(Some(annotations))
        .set_linux(Some(linux(&profile, seccomp, opts)?));
    to_json(&spec)?;
    Ok(spec)
}

/// The seccomp filter of a container that `moat run` makes without security flags, if the
/// default profile gives it one: what a pooled zone prepares its runtime for.
pub fn default_seccomp() -> Result<Option<LinuxSeccomp>, SpecError> {
    let profile = Profile::for_privileged(false);
    let caps = caps::adjust(profile.base_caps.set(), &[], &[])?;
    seccomp_for(&profile, &SeccompChoice::ProfileDefault, caps, &ZoneTarget::DEFAULT)
}

fn seccomp_for(
    profile: &Profile,
    choice: &SeccompChoice,
    caps: CapSet,
    target: &ZoneTarget,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let chosen = match choice {
        SeccompChoice::Unconfined => None,
        SeccompChoice::Custom(text) => Some(parse_profile(text)?),
        SeccompChoice::Builtin => Some(default_profile()?),
        SeccompChoice::ProfileDefault if profile.default_seccomp => Some(default_profile()?),
        SeccompChoice::ProfileDefault => None,
    };
    Ok(chosen.map(|p| p.evaluate(caps, target)))
}

/// Bounding, effective and permitted get the set; inheritable and ambient stay empty.
fn capabilities(caps: CapSet) -> LinuxCapabilities {
    let mut oci = LinuxCapabilities::default();
    oci.set_bounding(Some(caps.to_oci()))
        .set_effective(Some(caps.to_oci()))
        .set_permitted(Some(caps.to_oci()))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    oci
}

fn linux(
    profile: &Profile,
    seccomp: Option<LinuxSeccomp>,
    opts: &RunOptions,
) -> Result<oci_spec::runtime::Linux, SpecError> {
    let namespaces = profile
        .namespaces()
        .into_iter()
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            ns
        })
        .collect();
    let (devices, rules) = match profile.devices {
        DeviceSet::DockerDefault => (default_devices(), default_cgroup_rules()),
        DeviceSet::Zone => (Vec::new(), vec![allow_all_rule()]),
    };
    let mut resources = LinuxResources::default();
    resources
        .set_devices(Some(rules))
        .set_memory(opts.zone_memory_mib.map(resources::memory).transpose()?)
        .set_cpu(opts.cpus.and_then(resources::cpu));

    let mut sysctl = HashMap::from([(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "0".to_string(),
    )]);
    if profile.ping_group_range {
        sysctl.insert(
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        );
    }
    let paths = |list: &[&str]| {
        profile
            .restrict_proc
            .then(|| list.iter().map(|p| p.to_string()).collect())
    };

    let id_map = profile.user_namespace.then(id_map).transpose()?;
    let mut linux = oci_spec::runtime::Linux::default();
    linux
        .set_namespaces(Some(namespaces))
        .set_uid_mappings(id_map.clone())
        .set_gid_mappings(id_map)
        .set_devices(Some(devices))
        .set_resources(Some(resources))
        .set_sysctl(Some(sysctl))
        .set_masked_paths(paths(&MASKED_PATHS))
        .set_readonly_paths(paths(&READONLY_PATHS))
        .set_seccomp(seccomp);
    Ok(linux)
}

/// Give a spec from elsewhere (containerd's, for an unprivileged container) the user namespace
/// moat's own containers get, with the same mapping, unless it has one.
pub fn give_user_namespace(spec: &mut Spec) -> Result<(), SpecError> {
    if crate::user::has_user_namespace(spec) {
        return Ok(());
    }
    let map = id_map()?;
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut user = LinuxNamespace::default();
    user.set_typ(oci_spec::runtime::LinuxNamespaceType::User);
    namespaces.push(user);
    linux.set_namespaces(Some(namespaces)).set_uid_mappings(Some(map.clone())).set_gid_mappings(Some(map));
    Ok(())
}

fn id_map() -> Result<Vec<LinuxIdMapping>, SpecError> {
    let map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(ZONE_ID_MAP_START)
        .size(ZONE_ID_MAP_SIZE)
        .build()
        .map_err(|e| SpecError::Oci(e.to_string()))?;
    Ok(vec![map])
}
