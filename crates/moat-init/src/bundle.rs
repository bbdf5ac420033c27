//! The bundle for the OCI runtime: the host's spec completed with what only the zone knows (the
//! rootfs, the image's accounts, the masks over the zone's links to the host), written as
//! config.json; and the process
//! file of each `exec`, its user resolved the same way.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use moat_spec::devices::{mask_host_links, DeviceError, MAX_DEV_NAMES};
use moat_spec::user::{apply_user, set_process_user, UserError, MAX_ACCOUNT_FILE_BYTES};
use moat_spec::SpecError;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, Process, Spec};

use crate::modules::{self, ModuleError};

/// Per container: its bundle (config.json), and the process and pid files of what starts in it.
const BUNDLES_DIR: &str = "/run/moat/bundles";
/// Where the container's cgroups live, under the zone's cgroup2 mount.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Parent cgroup of every container in the zone.
const CGROUP_PARENT: &str = "/moat";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Devices(#[from] DeviceError),
    #[error("listing the zone's /dev: {0}")]
    ListDev(std::io::Error),
    #[error("enabling module autoload: {0}")]
    Autoload(std::io::Error),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("reading {file} in the image: {err}")]
    Account { file: &'static str, err: std::io::Error },
    #[error("{file} in the image is not a regular file")]
    AccountNotAFile { file: &'static str },
    #[error("the spec has no process")]
    NoProcess,
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// Point the spec at `rootfs`, resolve its user against the image, and place it in the zone's
/// cgroup tree. For a privileged container, load the modules it expects, turn on the zone
/// kernel's module autoload, and mask the zone's links to the host in its /dev.
pub fn complete(spec: &mut Spec, rootfs: &Path, container_id: &str, tty: bool) -> Result<(), BundleError> {
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_path_buf());
    spec.set_root(Some(root));
    let process = spec.process_mut().as_mut().ok_or(BundleError::NoProcess)?;
    process.set_terminal(Some(tty));
    default_oom_score(process);
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(format!("{CGROUP_PARENT}/{container_id}"))));
    }

    let passwd = read_account(rootfs, "/etc/passwd")?;
    let group = read_account(rootfs, "/etc/group")?;
    apply_user(spec, passwd.as_deref(), group.as_deref())?;
    if moat_spec::is_privileged(spec) {
        modules::load_modules(moat_proto::layout::PRIVILEGED_MODULES_FILE)?;
        crate::sysctl::enable_module_autoload().map_err(BundleError::Autoload)?;
        mask_host_links(spec, &dev_names(Path::new("/dev"))?, tty)?;
    }
    Ok(())
}

/// A process whose spec leaves its OOM score alone gets 0 rather than init's -1000 (see
/// `sysctl`), which runc would pass on: the kernel never OOM-kills a -1000 process, so a
/// container at its cgroup limit would spin in reclaim instead of dying. containerd's specs
/// (with `restrict_oom_score_adj`) and its exec'd processes carry none.
pub fn default_oom_score(process: &mut Process) {
    if process.oom_score_adj().is_none() {
        process.set_oom_score_adj(Some(0));
    }
}

/// The file names in `dev` (the zone's /dev), one past [`MAX_DEV_NAMES`] at most, which
/// `mask_host_links` then refuses.
fn dev_names(dev: &Path) -> Result<Vec<String>, BundleError> {
    let entries = std::fs::read_dir(dev).map_err(BundleError::ListDev)?;
    Ok(entries.flatten().take(MAX_DEV_NAMES + 1).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
}

/// The directory of the container's cgroup, as runc creates it from the completed spec.
pub fn cgroup_dir(spec: &Spec) -> Option<PathBuf> {
    let path = spec.linux().as_ref()?.cgroups_path().as_ref()?;
    Some(Path::new(CGROUP_ROOT).join(path.strip_prefix("/").unwrap_or(path)))
}

/// The directory of `container`'s bundle.
fn bundle_dir(container: &str) -> PathBuf {
    Path::new(BUNDLES_DIR).join(container)
}

/// Where runc writes the pid of the container's process, or of its exec'd process `process`.
pub fn pid_file(container: &str, process: Option<u32>) -> PathBuf {
    match process {
        Some(process) => bundle_dir(container).join(format!("exec-{process}.pid")),
        None => bundle_dir(container).join("container.pid"),
    }
}

/// Write the spec into the container's bundle directory; returns that directory.
pub fn write(spec: &Spec, container: &str) -> Result<PathBuf, BundleError> {
    let dir = bundle_dir(container);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |err| BundleError::Write { path, err }
    };
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let json = serde_json::to_vec(spec).map_err(|e| SpecError::Json(e.to_string()))?;
    let config = dir.join("config.json");
    std::fs::write(&config, json).map_err(write_err(&config))?;
    Ok(dir)
}

/// The name of a throwaway container's one file: empty, executable, never run.
const THROWAWAY_COMMAND: &str = "pause";

/// Write the bundle of a throwaway container that carries `seccomp` and nothing else of note:
/// its root an empty directory in the bundle, holding only the command the runtime checks for.
/// Creating it makes the runtime compile and cache the filter. Returns the bundle directory.
pub fn write_throwaway(container: &str, seccomp: LinuxSeccomp) -> Result<PathBuf, BundleError> {
    let dir = bundle_dir(container);
    let rootfs = dir.join("rootfs");
    // The runtime opens the root's /dev whatever the spec mounts.
    let dev = rootfs.join("dev");
    std::fs::create_dir_all(&dev).map_err(|err| BundleError::Write { path: dev.clone(), err })?;
    let command = rootfs.join(THROWAWAY_COMMAND);
    std::fs::write(&command, b"").and_then(|()| std::fs::set_permissions(&command, std::os::unix::fs::PermissionsExt::from_mode(0o755))).map_err(|err| BundleError::Write { path: command.clone(), err })?;

    let mut spec = Spec::default();
    spec.set_mounts(Some(Vec::new())).set_hostname(None);
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs).set_readonly(Some(false));
    spec.set_root(Some(root));
    let mut process = Process::default();
    process.set_args(Some(vec![format!("/{THROWAWAY_COMMAND}")])).set_terminal(Some(false)).set_capabilities(None).set_rlimits(None);
    spec.set_process(Some(process));
    let mut linux = oci_spec::runtime::Linux::default();
    let mut mount = LinuxNamespace::default();
    mount.set_typ(LinuxNamespaceType::Mount);
    linux
        .set_namespaces(Some(vec![mount]))
        .set_resources(None)
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_cgroups_path(Some(PathBuf::from(format!("{CGROUP_PARENT}/{container}"))))
        .set_seccomp(Some(seccomp));
    spec.set_linux(Some(linux));
    write(&spec, container)
}

/// Delete the container's bundle directory.
pub fn remove(container: &str) {
    let _ = std::fs::remove_dir_all(bundle_dir(container));
}

/// Resolve `user` for a process exec'd into the container: against the container's account
/// files as they are now (the container may have changed them), within its user namespace.
pub fn set_exec_user(process: &mut Process, container: &Spec, rootfs: &Path, user: &str) -> Result<(), BundleError> {
    let passwd = read_account(rootfs, "/etc/passwd")?;
    let group = read_account(rootfs, "/etc/group")?;
    set_process_user(process, container.linux().as_ref(), user, passwd.as_deref(), group.as_deref())?;
    Ok(())
}

/// Write exec'd process `number` of `container` for `runc exec --process`; returns the file.
pub fn write_exec_process(process: &Process, container: &str, number: u32) -> Result<PathBuf, BundleError> {
    let path = bundle_dir(container).join(format!("exec-{number}.json"));
    let json = moat_spec::exec::process_to_json(process)?;
    std::fs::write(&path, json).map_err(|err| BundleError::Write { path: path.clone(), err })?;
    Ok(path)
}

/// An account file of the image, or `None` when it does not exist. The image is hostile:
/// symlinks resolve inside the rootfs only, a fifo or device is refused rather than read, and
/// at most one byte more than moat-spec accepts is read, so it can report the size.
fn read_account(rootfs: &Path, file: &'static str) -> Result<Option<String>, BundleError> {
    let account_err = |err| BundleError::Account { file, err };
    let root = std::fs::File::open(rootfs).map_err(account_err)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    let fd = match openat2(root.as_raw_fd(), file, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(err) => return Err(account_err(err.into())),
    };
    // SAFETY: openat2 just returned this descriptor and nothing else owns it.
    let file_handle = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let meta = file_handle.metadata().map_err(account_err)?;
    if !meta.is_file() {
        return Err(BundleError::AccountNotAFile { file });
    }
    let mut bytes = Vec::new();
    file_handle
        .take(MAX_ACCOUNT_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(account_err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        dir
    }

    #[test]
    fn account_files_are_read_inside_the_rootfs() {
        let dir = rootfs();
        assert_eq!(read_account(dir.path(), "/etc/passwd").unwrap(), None, "a missing file is fine");
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
        assert_eq!(read_account(dir.path(), "/etc/group").unwrap().as_deref(), Some("root:x:0:\n"));

        // An absolute symlink resolves against the rootfs, never the zone's own files.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "zone\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("etc/passwd")).unwrap();
        assert_eq!(read_account(dir.path(), "/etc/passwd").unwrap(), None);
    }

    #[test]
    fn account_files_must_be_regular_and_are_bounded() {
        let dir = rootfs();
        nix::unistd::mkfifo(&dir.path().join("etc/passwd"), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(read_account(dir.path(), "/etc/passwd"), Err(BundleError::AccountNotAFile { .. })));
        std::fs::write(dir.path().join("etc/group"), vec![b'x'; MAX_ACCOUNT_FILE_BYTES * 2]).unwrap();
        let group = read_account(dir.path(), "/etc/group").unwrap().unwrap();
        assert_eq!(group.len(), MAX_ACCOUNT_FILE_BYTES + 1, "read stops one byte past the limit");
    }

    #[test]
    fn complete_points_at_the_rootfs_and_resolves_the_user() {
        let dir = rootfs();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["id"], "user": {"uid": 0, "gid": 0}, "terminal": true},
            "linux": {},
            "annotations": {"moat.user": "app"}
        }))
        .unwrap();
        complete(&mut spec, dir.path(), "c1", false).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), dir.path());
        let process = spec.process().as_ref().unwrap();
        assert_eq!((process.user().uid(), process.user().gid()), (1000, 1000));
        assert_eq!(process.terminal(), Some(false));
        assert!(process.env().as_ref().unwrap().contains(&"HOME=/home/app".to_string()));
        assert_eq!(cgroup_dir(&spec).unwrap(), Path::new("/sys/fs/cgroup/moat/c1"));
        assert_eq!(process.oom_score_adj(), Some(0), "not init's -1000");

        let mut unknown = spec.clone();
        unknown.set_annotations(Some([("moat.user".to_string(), "nobody-here".to_string())].into()));
        let err = complete(&mut unknown, dir.path(), "c1", false).unwrap_err();
        assert!(err.to_string().contains("nobody-here"), "{err}");
    }

    #[test]
    fn a_specs_own_oom_score_stays() {
        let mut process = Process::default();
        process.set_oom_score_adj(Some(500));
        default_oom_score(&mut process);
        assert_eq!(process.oom_score_adj(), Some(500));
    }

    #[test]
    fn exec_users_resolve_against_the_current_files_inside_the_user_namespace() {
        let dir = rootfs();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
            "linux": {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}], "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}
        }))
        .unwrap();
        let mut process = spec.process().clone().unwrap();
        set_exec_user(&mut process, &spec, dir.path(), "app").unwrap();
        assert_eq!((process.user().uid(), process.user().gid()), (1000, 1000));
        assert_eq!(process.user().additional_gids().clone(), Some(vec![1000, 50]));
        assert!(process.env().as_ref().unwrap().contains(&"HOME=/home/app".to_string()));

        // A user the container added after it started.
        std::fs::write(dir.path().join("etc/passwd"), "late:x:2000:2000::/late:/bin/sh\n").unwrap();
        let mut late = spec.process().clone().unwrap();
        set_exec_user(&mut late, &spec, dir.path(), "late").unwrap();
        assert_eq!(late.user().uid(), 2000);

        let mut outside = spec.process().clone().unwrap();
        let err = set_exec_user(&mut outside, &spec, dir.path(), "70000").unwrap_err();
        assert!(err.to_string().contains("70000"), "{err}");
        let err = set_exec_user(&mut outside, &spec, dir.path(), "ghost").unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
    }
}
