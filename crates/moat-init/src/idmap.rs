//! Idmapped mounts: a mount whose files appear to the container's user namespace as owned by
//! its own ids, so container root owns the image and its writable layer without any file on
//! disk being rewritten. The mapping is the spec's, held by a user namespace that a short-lived
//! child creates for the purpose.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, Spec};

/// Most lines the kernel accepts in a uid_map or gid_map; a spec with more is refused before
/// anything is written.
pub const MAX_ID_MAPPINGS: usize = 340;

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("the spec has {0} {1} mappings, more than the kernel's {MAX_ID_MAPPINGS}")]
    TooManyMappings(usize, &'static str),
    #[error("the spec has a user namespace but no {0} mappings")]
    NoMappings(&'static str),
    #[error("{what}: {err}")]
    Sys { what: &'static str, err: nix::Error },
    #[error("the spec's {0} mappings do not map the container's root")]
    RootUnmapped(&'static str),
    #[error("mounting {fstype} on {}: {err}", target.display())]
    MountAs { fstype: &'static str, target: PathBuf, err: nix::Error },
    #[error("the user namespace helper failed to unshare its user namespace")]
    Unshare,
    #[error("writing {path}: {err}")]
    WriteMap { path: PathBuf, err: std::io::Error },
    #[error("opening {path}: {err}")]
    OpenNs { path: PathBuf, err: std::io::Error },
    #[error("{step} for an idmapped mount of {path}: {err}")]
    Mount { step: &'static str, path: PathBuf, err: std::io::Error },
}

/// The contents of a uid_map or gid_map file for `mappings`: `inside outside count` lines.
pub fn map_file(mappings: &[LinuxIdMapping], kind: &'static str) -> Result<String, IdmapError> {
    if mappings.is_empty() {
        return Err(IdmapError::NoMappings(kind));
    }
    if mappings.len() > MAX_ID_MAPPINGS {
        return Err(IdmapError::TooManyMappings(mappings.len(), kind));
    }
    Ok(mappings.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect())
}

/// The container's user namespace, as init needs it to build the container's root.
pub struct ContainerIds {
    pub userns: OwnedFd,
    /// The zone's uid and gid for the container's root.
    pub root_uid: u32,
    pub root_gid: u32,
}

/// A user namespace holding the spec's id mappings, or `None` when the container has no user
/// namespace (a privileged container sees the zone's ids as they are).
pub fn spec_user_namespace(spec: &Spec) -> Result<Option<ContainerIds>, IdmapError> {
    let Some(linux) = spec.linux().as_ref().filter(|_| moat_spec::user::has_user_namespace(spec)) else { return Ok(None) };
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    let (uid_map, gid_map) = (map_file(uids, "uid")?, map_file(gids, "gid")?);
    let (root_uid, root_gid) = (zone_id_of_root(uids, "uid")?, zone_id_of_root(gids, "gid")?);
    let userns = user_namespace(&uid_map, &gid_map)?;
    Ok(Some(ContainerIds { userns, root_uid, root_gid }))
}

/// The zone's uid and gid for the container's root: the ids of what it creates. For a
/// container without a user namespace (a privileged one), the zone's root.
pub fn root_ids(spec: &Spec) -> Result<(u32, u32), IdmapError> {
    let Some(linux) = spec.linux().as_ref().filter(|_| moat_spec::user::has_user_namespace(spec)) else { return Ok((0, 0)) };
    let uids = linux.uid_mappings().as_deref().unwrap_or_default();
    let gids = linux.gid_mappings().as_deref().unwrap_or_default();
    Ok((zone_id_of_root(uids, "uid")?, zone_id_of_root(gids, "gid")?))
}

/// Take the filesystem ids `uid` and `gid`, keeping the effective capabilities that leaving
/// fsuid 0 would otherwise drop. Only for a forked child: init's own credentials never change.
/// What the child creates is then owned by those ids, which an idmapped layer requires (a file
/// created as the zone's root has no id on it and is refused with EOVERFLOW).
pub fn set_fs_ids(uid: u32, gid: u32) -> Result<(), nix::Error> {
    // SAFETY: prctl, setfsgid and setfsuid take plain values and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, libc::SECBIT_NO_SETUID_FIXUP) != 0 {
            return Err(nix::Error::last());
        }
        libc::setfsgid(gid);
        libc::setfsuid(uid);
        // Each returns the previous id and never fails loudly: ask again (-1 changes nothing).
        if libc::setfsuid(u32::MAX) != uid.cast_signed() || libc::setfsgid(u32::MAX) != gid.cast_signed() {
            return Err(nix::Error::EPERM);
        }
    }
    Ok(())
}

/// The zone id that container id 0 maps to.
pub fn zone_id_of_root(mappings: &[LinuxIdMapping], kind: &'static str) -> Result<u32, IdmapError> {
    moat_spec::user::zone_id_of_root(mappings).ok_or(IdmapError::RootUnmapped(kind))
}

/// The container's id for the zone's `id`, as the container sees it: through `mappings`, or the
/// kernel's overflow id (65534) for an id they leave out.
pub fn container_id(mappings: &[LinuxIdMapping], id: u32) -> u32 {
    let inside = mappings.iter().find(|m| id >= m.host_id() && u64::from(id) < u64::from(m.host_id()) + u64::from(m.size()));
    inside.map_or(OVERFLOW_ID, |m| id - m.host_id() + m.container_id())
}

/// What the kernel shows for an id a user namespace does not map.
const OVERFLOW_ID: u32 = 65_534;

/// A user namespace with these uid_map and gid_map contents, as an fd for `mount_setattr`.
///
/// A forked child unshares a new user namespace and waits; init, which holds CAP_SETUID and
/// CAP_SETGID over the zone, writes the child's maps and opens its namespace, then lets it exit.
/// The open fd keeps the namespace alive after the child is gone.
pub fn user_namespace(uid_map: &str, gid_map: &str) -> Result<OwnedFd, IdmapError> {
    let sys = |what| move |err| IdmapError::Sys { what, err };
    let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("creating a pipe"))?;
    let (done_read, done_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("creating a pipe"))?;
    // SAFETY: init is single-threaded, so the child's copy of the address space is consistent;
    // the child only calls async-signal-safe functions (close, unshare, write, read, _exit).
    let child = match unsafe { fork() }.map_err(sys("forking the user namespace helper"))? {
        ForkResult::Child => {
            drop((ready_read, done_write));
            namespace_helper(ready_write, done_read)
        }
        ForkResult::Parent { child } => child,
    };
    drop((ready_write, done_read));
    let result = map_child(child, &ready_read, uid_map, gid_map);
    // Closing the pipe ends the helper, which is then reaped here rather than by init's loop.
    drop(done_write);
    let _ = waitpid(child, None);
    result
}

/// The helper child: unshare, report, wait for the parent to close `done`, exit.
fn namespace_helper(ready: OwnedFd, done: OwnedFd) -> ! {
    let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
    let _ = nix::unistd::write(&ready, &[u8::from(unshared)]);
    let mut byte = [0u8; 1];
    let _ = nix::unistd::read(done.as_raw_fd(), &mut byte);
    // SAFETY: _exit ends the forked child at once, without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

fn map_child(child: Pid, ready: &OwnedFd, uid_map: &str, gid_map: &str) -> Result<OwnedFd, IdmapError> {
    let mut byte = [0u8; 1];
    let read = nix::unistd::read(ready.as_raw_fd(), &mut byte).map_err(|err| IdmapError::Sys { what: "waiting for the user namespace helper", err })?;
    if read != 1 || byte[0] != 1 {
        return Err(IdmapError::Unshare);
    }
    let proc_dir = PathBuf::from(format!("/proc/{child}"));
    for (file, contents) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = proc_dir.join(file);
        std::fs::write(&path, contents).map_err(|err| IdmapError::WriteMap { path, err })?;
    }
    let path = proc_dir.join("ns/user");
    let ns = std::fs::File::open(&path).map_err(|err| IdmapError::OpenNs { path, err })?;
    Ok(ns.into())
}

/// Cover the mount at `path` with an idmapped copy of itself that maps its ids through
/// `userns`: a file owned by id N on disk appears owned by whatever N maps to outside `userns`.
pub fn idmap_in_place(path: &Path, userns: BorrowedFd<'_>) -> Result<(), IdmapError> {
    let mount_err = |step| move |err| IdmapError::Mount { step, path: path.to_path_buf(), err };
    let c_path = c_path(path.as_os_str()).map_err(mount_err("naming the mount"))?;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new fd or -1; no memory of
    // ours is kept.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c_path.as_ptr(), libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) };
    let tree = owned_fd(tree).map_err(mount_err("open_tree"))?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::from(userns.as_raw_fd().unsigned_abs()),
    };
    // SAFETY: mount_setattr reads `attr` for the size passed and the empty path; both outlive
    // the call, and `tree` is an open detached mount.
    let set = unsafe { libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, &raw const attr, std::mem::size_of::<libc::mount_attr>()) };
    check(set).map_err(mount_err("mount_setattr(MOUNT_ATTR_IDMAP)"))?;
    // SAFETY: move_mount reads the two NUL-terminated paths during the call only; `tree` is an
    // open detached mount.
    let moved = unsafe { libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, c_path.as_ptr(), libc::MOVE_MOUNT_F_EMPTY_PATH) };
    check(moved).map_err(mount_err("move_mount"))
}

/// Mount a filesystem with the zone's root privileges but filesystem ids `uid` and `gid`, in a
/// forked child so init's own credentials never change. Overlayfs does its later work (copy-up,
/// its work directory) with the mounter's credentials, and an idmapped layer only accepts
/// files created under ids its mapping covers: the container root's, not the zone root's.
pub fn mount_as(uid: u32, gid: u32, fstype: &'static str, target: &Path, data: &str) -> Result<(), IdmapError> {
    let mount_err = |err| IdmapError::MountAs { fstype, target: target.to_path_buf(), err };
    // Allocate before forking: the child must not.
    let c_target = c_path(target.as_os_str()).map_err(|_| mount_err(nix::Error::EINVAL))?;
    let c_fstype = CString::new(fstype).map_err(|_| mount_err(nix::Error::EINVAL))?;
    let c_data = CString::new(data).map_err(|_| mount_err(nix::Error::EINVAL))?;
    // SAFETY: init is single-threaded; the child only makes raw syscalls and _exits.
    let child = match unsafe { fork() }.map_err(|err| IdmapError::Sys { what: "forking to mount", err })? {
        ForkResult::Child => {
            let errno = match set_fs_ids(uid, gid) {
                Err(errno) => errno as i32,
                // SAFETY: mount reads NUL-terminated strings that live until _exit.
                Ok(()) => unsafe {
                    let data = c_data.as_ptr().cast::<libc::c_void>();
                    if libc::mount(c_fstype.as_ptr(), c_target.as_ptr(), c_fstype.as_ptr(), 0, data) == 0 { 0 } else { nix::Error::last() as i32 }
                },
            };
            // SAFETY: _exit ends the forked child at once, without the parent's exit handlers.
            unsafe { libc::_exit(errno) }
        }
        ForkResult::Parent { child } => child,
    };
    match waitpid(child, None).map_err(|err| IdmapError::Sys { what: "waiting for the mount helper", err })? {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, errno) => Err(mount_err(nix::Error::from_raw(errno))),
        _ => Err(mount_err(nix::Error::ECHILD)),
    }
}

fn c_path(path: &OsStr) -> Result<CString, std::io::Error> {
    CString::new(path.as_bytes()).map_err(std::io::Error::other)
}

fn check(ret: libc::c_long) -> Result<(), std::io::Error> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn owned_fd(ret: libc::c_long) -> Result<OwnedFd, std::io::Error> {
    check(ret)?;
    let fd = i32::try_from(ret).map_err(std::io::Error::other)?;
    // SAFETY: the syscall just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn mapping(container: u32, host: u32, size: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default().container_id(container).host_id(host).size(size).build().unwrap()
    }

    #[test]
    fn map_files_list_inside_outside_count() {
        assert_eq!(map_file(&[mapping(0, 100_000, 65_536)], "uid").unwrap(), "0 100000 65536\n");
        assert_eq!(map_file(&[mapping(0, 1000, 1), mapping(1, 100_000, 10)], "gid").unwrap(), "0 1000 1\n1 100000 10\n");
    }

    #[test]
    fn container_root_maps_to_the_zone_id_of_container_zero() {
        assert_eq!(zone_id_of_root(&[mapping(1, 5, 10), mapping(0, 100_000, 1)], "uid").unwrap(), 100_000);
        assert!(matches!(zone_id_of_root(&[mapping(1, 100_000, 10)], "gid"), Err(IdmapError::RootUnmapped("gid"))));
    }

    #[test]
    fn zone_ids_map_back_to_the_containers() {
        let map = [mapping(0, 100_000, 1000), mapping(1000, 1000, 1)];
        assert_eq!([0, 100_000, 100_999, 1000, 101_000].map(|id| container_id(&map, id)), [65_534, 0, 999, 1000, 65_534]);
    }

    #[test]
    fn map_files_are_bounded() {
        assert!(matches!(map_file(&[], "uid"), Err(IdmapError::NoMappings("uid"))));
        let many = vec![mapping(0, 100_000, 1); MAX_ID_MAPPINGS + 1];
        let err = map_file(&many, "gid").unwrap_err();
        assert!(err.to_string().contains("341 gid mappings"), "{err}");
        assert!(map_file(&many[..MAX_ID_MAPPINGS], "gid").is_ok());
    }
}
