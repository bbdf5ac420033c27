//! Cgroup delegation for containers that may write their cgroupfs (privileged ones).
//!
//! runc puts the container's process in the container's cgroup and roots the container's cgroup
//! namespace there, so the process sits at the root of the tree the container sees. Under
//! cgroup v2's rule that a cgroup holding processes cannot pass controllers to children, nested
//! runtimes and systemd could then create child cgroups but give them no limits. So once runc
//! created the container, init moves its process into a leaf, [`LEAF`], and enables every
//! controller the container's cgroup has for its children. The container's own limits stay on
//! its cgroup, above everything it makes.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// The leaf the container's processes start in. systemd, as a container's PID 1, takes the
/// cgroup it starts in less a trailing `/init.scope` as the root of the tree it manages, so it
/// finds the namespace's root, with its controllers, as on a host.
pub const LEAF: &str = "init.scope";

/// Where the container sees its cgroupfs.
const CGROUPFS: &str = "/sys/fs/cgroup";

/// Most bytes of a `cgroup.procs` or `cgroup.controllers` file read. Before `runc start` the
/// container holds a single process, and the kernel's controller list is a short line.
const MAX_LIST_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |err| CgroupError::Io { what, path: path.to_path_buf(), err }
}

/// Whether the container may write its cgroupfs: the spec mounts it without `ro`.
pub fn writable_cgroupfs(spec: &Spec) -> bool {
    spec.mounts().as_deref().unwrap_or_default().iter().any(|m| {
        m.destination() == Path::new(CGROUPFS) && m.typ().as_deref().is_some_and(|t| t.starts_with("cgroup")) && !m.options().as_deref().unwrap_or_default().iter().any(|o| o == "ro")
    })
}

/// Move every process of the cgroup `dir` into its [`LEAF`] and enable the controllers `dir`
/// has for its children.
pub fn delegate(dir: &Path) -> Result<(), CgroupError> {
    let leaf = dir.join(LEAF);
    match std::fs::create_dir(&leaf) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_err("creating", &leaf)(err)),
        _ => {}
    }
    let procs = dir.join("cgroup.procs");
    let leaf_procs = leaf.join("cgroup.procs");
    for pid in read_list(&procs)?.split_whitespace() {
        // One pid per write: the kernel takes one at a time. A process that exited meanwhile
        // is gone from the cgroup either way.
        match std::fs::write(&leaf_procs, pid) {
            Err(err) if err.raw_os_error() != Some(libc::ESRCH) => return Err(io_err("moving a process into", &leaf_procs)(err)),
            _ => {}
        }
    }
    let controllers = read_list(&dir.join("cgroup.controllers"))?;
    let enable = subtree_line(&controllers);
    if !enable.is_empty() {
        let subtree = dir.join("cgroup.subtree_control");
        std::fs::write(&subtree, enable).map_err(io_err("enabling controllers in", &subtree))?;
    }
    Ok(())
}

/// `+name` for each controller of a `cgroup.controllers` line.
fn subtree_line(controllers: &str) -> String {
    controllers.split_whitespace().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ")
}

fn read_list(path: &Path) -> Result<String, CgroupError> {
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_LIST_BYTES).read_to_string(&mut text)).map_err(io_err("reading", path))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_is_enabled_for_the_subtree() {
        assert_eq!(subtree_line("cpuset cpu io memory hugetlb pids rdma misc\n"), "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc");
        assert_eq!(subtree_line("\n"), "");
    }

    #[test]
    fn only_a_writable_cgroupfs_is_delegated() {
        let spec = |options: &[&str]| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2",
                "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": options}]
            }))
            .unwrap()
        };
        assert!(writable_cgroupfs(&spec(&["nosuid", "noexec", "nodev"])));
        assert!(!writable_cgroupfs(&spec(&["nosuid", "ro"])));
        let none: Spec = serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2", "mounts": []})).unwrap();
        assert!(!writable_cgroupfs(&none));
    }

    /// Against moat-spec's own profiles, so the two stay in step.
    #[test]
    fn privileged_specs_delegate_and_unprivileged_ones_do_not() {
        for (privileged, expected) in [(true, true), (false, false)] {
            let opts = moat_spec::RunOptions { privileged, command: vec!["true".into()], ..Default::default() };
            let spec = moat_spec::build_spec(&oci_spec::image::ImageConfiguration::default(), &opts, &Default::default()).unwrap();
            assert_eq!(writable_cgroupfs(&spec), expected, "privileged: {privileged}");
        }
    }
}
