//! QEMU's jail, in the manner of Firecracker's jailer but done in the fork before exec: the
//! zone's cgroup, its own PID namespace (where it is process 1 and sees no other), its own
//! mount and IPC namespaces whose root is a small tmpfs holding only what QEMU must open by
//! path (its binary and libraries, its firmware, a few device nodes,
//! the zone's kernel and initramfs), an unprivileged uid of its own with no capabilities and
//! no_new_privs. Everything else QEMU uses (disks, sockets, the network) arrives as inherited
//! descriptors, so the store and the zone directory stay closed to it.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The first uid (and gid) of the range zones' host processes run as. Each zone takes two,
/// from its supervisor's pid (unique among live processes, so no allocation state is
/// needed): [`vmm_uid`] for QEMU and [`vmm_uid`] + 1 for passt. Linux pids stay below 2^22,
/// so the range ends below 0x6080_0000, clear of the usual subordinate-id ranges.
pub const ZONE_UID_BASE: u32 = 0x6000_0000;

/// Host directories QEMU runs from: its binary, shared libraries and firmware. Each is bound
/// read-only, or recreated as the same symlink on a merged-/usr host.
const SYSTEM_PATHS: &[&str] = &["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"];
/// Device nodes QEMU may open; /dev/kvm is added when the zone uses KVM.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];
pub const KVM_DEVICE: &str = "/dev/kvm";
/// Where the zone's own files appear inside the jail.
pub const ZONE_DIR_IN_JAIL: &str = "/zone";

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("preparing QEMU's jail: {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("preparing QEMU's jail: {0} holds a NUL byte")]
    Nul(PathBuf),
}

/// QEMU's uid (and gid) for the zone whose supervisor is `supervisor_pid`.
pub fn vmm_uid(supervisor_pid: u32) -> u32 {
    ZONE_UID_BASE + 2 * supervisor_pid
}

/// passt's uid (and gid) for the same zone: another than QEMU's, so neither can signal or
/// trace the other.
pub fn passt_uid(supervisor_pid: u32) -> u32 {
    vmm_uid(supervisor_pid) + 1
}

/// A host file or directory that QEMU sees at `target` in its jail, read-only unless `writable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

/// What the jail holds and who QEMU runs as.
#[derive(Debug, Clone)]
pub struct Jail {
    /// An empty directory the supervisor owns (`<zone>/jail`): the tmpfs root is mounted on it
    /// in QEMU's mount namespace only.
    pub root: PathBuf,
    pub uid: u32,
    /// Supplementary groups (the group of /dev/kvm, for a KVM zone).
    pub groups: Vec<u32>,
    /// The zone's own files, at paths under [`ZONE_DIR_IN_JAIL`].
    pub files: Vec<Bind>,
    pub kvm: bool,
    /// The `cgroup.procs` files of the zone's cgroups, joined before anything else.
    pub cgroups: Vec<PathBuf>,
    /// Descriptors QEMU keeps, under their own numbers.
    pub inherit: Vec<RawFd>,
}

/// One filesystem step inside the new mount namespace, with every path made before the fork.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Mkdir(CString),
    /// An empty file to bind a file onto.
    Touch(CString),
    Symlink { target: CString, link: CString },
    Bind { source: CString, target: CString, writable: bool },
}

fn cstring(path: &Path) -> Result<CString, JailError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| JailError::Nul(path.to_path_buf()))
}

fn meta(path: &Path) -> Result<std::fs::Metadata, JailError> {
    std::fs::symlink_metadata(path).map_err(|err| JailError::Io { path: path.to_path_buf(), err })
}

impl Jail {
    fn binds(&self) -> Vec<Bind> {
        let mut binds: Vec<Bind> = SYSTEM_PATHS.iter().map(|p| Bind { source: p.into(), target: p.into(), writable: false }).collect();
        let devices = DEVICES.iter().copied().chain(self.kvm.then_some(KVM_DEVICE));
        binds.extend(devices.map(|d| Bind { source: d.into(), target: d.into(), writable: true }));
        binds.extend(self.files.iter().cloned());
        binds
    }

    /// The steps that build the jail's tree under [`Self::root`], in order.
    fn steps(&self) -> Result<Vec<Step>, JailError> {
        let mut steps = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        for bind in self.binds() {
            let relative = bind.target.strip_prefix("/").unwrap_or(&bind.target);
            let inside = self.root.join(relative);
            // Parents first; each is made once.
            for parent in relative.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
                if parent.as_os_str().is_empty() || made.iter().any(|m| m == parent) {
                    continue;
                }
                made.push(parent.to_path_buf());
                steps.push(Step::Mkdir(cstring(&self.root.join(parent))?));
            }
            let meta = match meta(&bind.source) {
                Ok(meta) => meta,
                // A system path this host lacks (no /lib64, say) is simply absent.
                Err(_) if SYSTEM_PATHS.iter().any(|p| Path::new(p) == bind.source) => continue,
                Err(err) => return Err(err),
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&bind.source).map_err(|err| JailError::Io { path: bind.source.clone(), err })?;
                steps.push(Step::Symlink { target: cstring(&target)?, link: cstring(&inside)? });
                continue;
            }
            steps.push(if meta.is_dir() { Step::Mkdir(cstring(&inside)?) } else { Step::Touch(cstring(&inside)?) });
            steps.push(Step::Bind { source: cstring(&bind.source)?, target: cstring(&inside)?, writable: bind.writable });
        }
        Ok(steps)
    }

    /// Make `command` start in the jail. Register this before anything else that runs in the
    /// child: a change of uid clears the parent-death signal, which must be set after it.
    pub fn apply(&self, command: &mut std::process::Command) -> Result<(), JailError> {
        std::fs::create_dir_all(&self.root).map_err(|err| JailError::Io { path: self.root.clone(), err })?;
        let steps = self.steps()?;
        let root = cstring(&self.root)?;
        let old = cstring(&self.root.join(".old"))?;
        let cgroups = self.cgroups.iter().map(|p| cstring(p)).collect::<Result<Vec<_>, _>>()?;
        let (uid, groups, inherit) = (self.uid, self.groups.clone(), self.inherit.clone());
        // SAFETY: the closure makes raw system calls on memory prepared before the fork (no
        // allocation, no locks), which is what is allowed between fork and exec.
        unsafe {
            command.pre_exec(move || enter(&root, &old, &steps, &cgroups, uid, &groups, &inherit));
        }
        Ok(())
    }
}

/// Run `spawn` on a thread of its own whose children start in a new PID namespace, as its
/// process 1: QEMU then has no other process to signal or trace, whatever its uid. Only that
/// thread's children go there (`unshare` of a PID namespace is per thread and moves no one),
/// so the supervisor's other children stay in the host's namespace. The child keeps its host
/// pid as the supervisor sees it, so it is waited on, killed and measured as before.
///
/// The thread then parks for the rest of the supervisor's life: a parent-death signal fires
/// when the parent *thread* ends, and the child's must fire only with the supervisor.
pub fn spawn_in_own_pid_namespace<T: Send + 'static>(spawn: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    let (sent, spawned) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("vmm-parent".into()).spawn(move || {
        // SAFETY: unshare with a flag that changes only this thread's namespace for its future
        // children.
        let result = if unsafe { libc::unshare(libc::CLONE_NEWPID) } == 0 { spawn() } else { Err(std::io::Error::last_os_error()) };
        let _ = sent.send(result);
        loop {
            std::thread::park();
        }
    })?;
    spawned.recv().unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
}

/// The group that owns /dev/kvm, which a KVM zone's QEMU needs as a supplementary group.
pub fn kvm_group() -> Result<u32, JailError> {
    Ok(meta(Path::new(KVM_DEVICE))?.gid())
}

/// A failed step is named on QEMU's stderr (the zone's qemu.log): only the errno reaches the
/// supervisor. No allocation: this runs between fork and exec.
fn check(step: &'static str, ret: libc::c_int) -> std::io::Result<()> {
    if ret >= 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    for part in [&b"moat: QEMU's jail: "[..], step.as_bytes(), &b" failed\n"[..]] {
        // SAFETY: write(2) of a static buffer to stderr.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    Err(err)
}

/// Runs in the child between fork and exec.
fn enter(root: &CString, old: &CString, steps: &[Step], cgroups: &[CString], uid: u32, groups: &[u32], inherit: &[RawFd]) -> std::io::Result<()> {
    // SAFETY: plain system calls on NUL-terminated strings and slices that outlive them.
    unsafe {
        for procs in cgroups {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check("joining the cgroup", fd)?;
            // "0" is the writing process.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        check("unshare", libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC))?;
        let none = c"none".as_ptr();
        check("making mounts private", libc::mount(none, c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
        check("mounting the root tmpfs", libc::mount(c"tmpfs".as_ptr(), root.as_ptr(), c"tmpfs".as_ptr(), libc::MS_NOSUID, c"mode=0755,size=64k".as_ptr().cast()))?;
        for step in steps {
            match step {
                Step::Mkdir(path) => check("mkdir", libc::mkdir(path.as_ptr(), 0o755))?,
                Step::Touch(path) => {
                    let fd = libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    check("creating a bind target", fd)?;
                    libc::close(fd);
                }
                Step::Symlink { target, link } => check("symlink", libc::symlink(target.as_ptr(), link.as_ptr()))?,
                Step::Bind { source, target, writable } => {
                    check("bind mount", libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()))?;
                    let readonly = if *writable { 0 } else { libc::MS_RDONLY };
                    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | readonly;
                    check("bind remount", libc::mount(none, target.as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
                }
            }
        }
        check("mkdir /.old", libc::mkdir(old.as_ptr(), 0o700))?;
        check("pivot_root", libc::c_int::try_from(libc::syscall(libc::SYS_pivot_root, root.as_ptr(), old.as_ptr())).unwrap_or(-1))?;
        check("chdir /", libc::chdir(c"/".as_ptr()))?;
        check("unmounting the old root", libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH))?;
        check("rmdir /.old", libc::rmdir(c"/.old".as_ptr()))?;
        check("remounting / read-only", libc::mount(none, c"/".as_ptr(), std::ptr::null(), libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID, std::ptr::null()))?;

        // No capability may come back: empty the bounding and ambient sets, then leave root.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                return Err(std::io::Error::last_os_error());
            }
        }
        check("clearing ambient capabilities", libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))?;
        check("setgroups", libc::setgroups(groups.len(), groups.as_ptr()))?;
        check("setresgid", libc::setresgid(uid, uid, uid))?;
        // With every uid non-zero and no SECBIT_KEEP_CAPS, this empties the permitted and
        // effective sets.
        check("setresuid", libc::setresuid(uid, uid, uid))?;
        check("no_new_privs", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        // Only the listed descriptors pass: the supervisor may hold others it inherited.
        check("close_range", libc::c_int::try_from(libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC)).unwrap_or(-1))?;
        for &fd in inherit {
            check("passing a descriptor", libc::fcntl(fd, libc::F_SETFD, 0))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real jail around a shell instead of QEMU (needs root, as zones do).
    #[test]
    fn a_jailed_process_sees_only_its_files_and_keeps_only_its_descriptors() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, b"kernel").unwrap();
        let (kept, dropped) = (std::fs::File::open(&kernel).unwrap(), std::fs::File::open(&kernel).unwrap());
        let (kept_fd, dropped_fd) = (std::os::fd::AsRawFd::as_raw_fd(&kept), std::os::fd::AsRawFd::as_raw_fd(&dropped));
        // Without close-on-exec, as a descriptor the supervisor inherited would be.
        // SAFETY: fcntl on a descriptor this test owns.
        assert_eq!(unsafe { libc::fcntl(dropped_fd, libc::F_SETFD, 0) }, 0);
        let jail = Jail {
            root: dir.path().join("jail"),
            uid: vmm_uid(1),
            groups: vec![],
            files: vec![Bind { source: kernel, target: "/zone/vmlinuz".into(), writable: false }],
            kvm: false,
            cgroups: vec![],
            inherit: vec![kept_fd],
        };
        let script = format!("id -u; cat /zone/vmlinuz <&{kept_fd}; echo; ls /; test -e /etc/passwd || echo no-passwd; (: <&{dropped_fd}) 2>/dev/null || echo closed; touch /zone/x 2>/dev/null || echo read-only");
        let mut command = std::process::Command::new("/bin/sh");
        command.args(["-c", &script]);
        jail.apply(&mut command).unwrap();
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], vmm_uid(1).to_string());
        assert_eq!(lines[1], "kernel");
        assert!(lines.contains(&"zone") && lines.contains(&"usr") && !lines.contains(&"var") && !lines.contains(&"tmp"), "{text}");
        assert!(text.contains("no-passwd") && text.contains("closed") && text.contains("read-only"), "{text}");
        assert!(std::fs::read_dir(dir.path().join("jail")).unwrap().next().is_none(), "the jail's mounts stay in its namespace");
        drop((kept, dropped));
    }

    #[test]
    fn zone_uids_are_unprivileged_and_distinct() {
        assert_eq!(vmm_uid(0), ZONE_UID_BASE);
        assert_ne!(vmm_uid(7), passt_uid(7));
        assert_ne!(passt_uid(7), vmm_uid(8));
        assert!(passt_uid(1 << 22) < 0x6080_0002);
    }

    #[test]
    fn the_jail_holds_the_system_paths_the_devices_and_the_zones_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinuz");
        std::fs::write(&kernel, b"k").unwrap();
        let jail = Jail {
            root: "/z/jail".into(),
            uid: vmm_uid(1),
            groups: vec![],
            files: vec![Bind { source: kernel.clone(), target: "/zone/vmlinuz".into(), writable: false }],
            kvm: false,
            cgroups: vec![],
            inherit: vec![],
        };
        let steps = jail.steps().unwrap();
        let c = |p: &str| CString::new(p).unwrap();
        assert!(steps.contains(&Step::Bind { source: c("/usr"), target: c("/z/jail/usr"), writable: false }));
        assert!(steps.contains(&Step::Bind { source: c("/dev/null"), target: c("/z/jail/dev/null"), writable: true }));
        assert!(steps.contains(&Step::Touch(c("/z/jail/zone/vmlinuz"))));
        let zone = steps.iter().position(|s| *s == Step::Mkdir(c("/z/jail/zone"))).unwrap();
        let file = steps.iter().position(|s| *s == Step::Touch(c("/z/jail/zone/vmlinuz"))).unwrap();
        assert!(zone < file, "parents come first");
        assert_eq!(steps.iter().filter(|s| **s == Step::Mkdir(c("/z/jail/dev"))).count(), 1);
        assert!(!steps.iter().any(|s| matches!(s, Step::Bind { target, .. } if target.to_bytes().ends_with(b"kvm"))));
        if std::fs::symlink_metadata("/lib").unwrap().file_type().is_symlink() {
            assert!(steps.iter().any(|s| matches!(s, Step::Symlink { link, .. } if *link == c("/z/jail/lib"))), "merged /usr keeps its symlinks");
        }
    }
}
