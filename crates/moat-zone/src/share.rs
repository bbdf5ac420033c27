//! The zone's virtio-fs share: the one directory through which the host hands files to a
//! running zone (a microvm has no hotplug). virtiofsd serves `<zone>/share`; each exposed host
//! file or directory is a bind mount below it.
//!
//! Layout and why:
//! - `<zone>/share-base` holds the mount points. Only the host reaches it by that path.
//! - `<zone>/share` is a read-only, `nosuid,nodev` bind of `share-base` with shared
//!   propagation. virtiofsd's sandbox (a private mount namespace whose mounts are slaves)
//!   receives every mount added below it later. The guest sees the skeleton read-only, so it
//!   cannot plant a symlink where the host will make a mount point.
//! - Each exposure is cloned, given its flags (`ro` too) while still detached, and only then
//!   attached: mount flags do not propagate, so a bind remounted read-only afterwards would
//!   stay writable in virtiofsd's namespace.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use moat_proto::layout::SHARE_DIR;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::state::ZoneDir;

/// Longest exposure name, in bytes. Names become host paths under the zone directory.
pub const MAX_NAME_LEN: usize = 255;
/// Most components in an exposure name.
pub const MAX_NAME_DEPTH: usize = 8;
/// Most mounts [`cleanup`] takes off one path before it gives up (stacked mounts).
const MAX_UNMOUNT_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("share name {name:?} is invalid: {why}")]
    BadName { name: String, why: &'static str },
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{path} is neither a regular file nor a directory; only those can be exposed")]
    Unsupported { path: PathBuf },
    #[error("{name:?} is already exposed in the share, or lies inside or around an exposure")]
    Taken { name: String },
    #[error("nothing is exposed as {name:?}")]
    NotExposed { name: String },
    #[error("mounts remain under {dir} after cleanup: {left:?}")]
    Busy { dir: PathBuf, left: Vec<PathBuf> },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> ShareError + 'a {
    move |errno| ShareError::Io { what, path: path.to_path_buf(), err: errno.into() }
}

/// One zone's share, as the host manages it. Cheap: holds paths only, so any process of the
/// host's mount namespace (the supervisor, the CLI) can make one.
#[derive(Debug, Clone)]
pub struct Share {
    /// What virtiofsd serves.
    root: PathBuf,
    /// Where the mount points are made.
    base: PathBuf,
}

impl Share {
    pub fn new(dir: &ZoneDir) -> Self {
        Self { root: dir.share_dir(), base: dir.share_base() }
    }

    /// The directory virtiofsd serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Make the share's mount, before virtiofsd starts. Whatever an earlier run left is
    /// removed first.
    pub fn prepare(&self) -> Result<(), ShareError> {
        self.clear()?;
        for dir in [&self.base, &self.root] {
            std::fs::create_dir(dir).map_err(|err| ShareError::Io { what: "creating", path: dir.clone(), err })?;
        }
        let base = open_path(&self.base, OFlag::O_DIRECTORY)?;
        let tree = clone_detached(&base, &self.base)?;
        set_attributes(&tree, true, &self.base)?;
        let root = open_path(&self.root, OFlag::O_DIRECTORY)?;
        attach(&tree, &root, &self.root)?;
        nix::mount::mount(None::<&str>, &self.root, None::<&str>, MsFlags::MS_SHARED, None::<&str>).map_err(io("making shared", &self.root))
    }

    /// Bind `source` (a file or a directory) at `name` in the share, read-only on the host's
    /// side when `read_only`, and return the path the guest sees it at. `source` is resolved
    /// once, here: swapping a symlink on its path later changes nothing. A directory is bound
    /// without the mounts below it.
    pub fn expose(&self, source: &Path, name: &str, read_only: bool) -> Result<PathBuf, ShareError> {
        validate_name(name)?;
        let source_fd = open_path(source, OFlag::empty())?;
        let stat = fstat(source_fd.as_raw_fd()).map_err(io("inspecting", source))?;
        let is_dir = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => true,
            SFlag::S_IFREG => false,
            _ => return Err(ShareError::Unsupported { path: source.to_path_buf() }),
        };
        self.make_mount_point(name, is_dir)?;
        let attached = self.attach_at(&source_fd, source, name, read_only);
        if attached.is_err() {
            let _ = self.remove_mount_point(name);
        }
        attached.map(|()| Path::new(SHARE_DIR).join(name))
    }

    /// Take the exposure at `name` away (lazily: a guest that holds a file open keeps it until
    /// it closes it) and remove its mount point.
    pub fn withdraw(&self, name: &str) -> Result<(), ShareError> {
        validate_name(name)?;
        let target = self.root.join(name);
        match umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            // EINVAL: not a mount; a mount point left by a failed expose is still removed.
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(Errno::ENOENT) => return Err(ShareError::NotExposed { name: name.to_string() }),
            Err(errno) => return Err(io("unmounting", &target)(errno)),
        }
        self.remove_mount_point(name)
    }

    /// Create the empty file or directory to mount on, and any parent directories, below the
    /// base directory, never following a symlink or leaving the base.
    fn make_mount_point(&self, name: &str, is_dir: bool) -> Result<(), ShareError> {
        let (parents, leaf) = split_name(name);
        let mut dir = open_path(&self.base, OFlag::O_DIRECTORY)?;
        for component in parents {
            match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), component, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(errno) => return Err(io("creating", &self.base.join(name))(errno)),
            }
            dir = open_beneath(&dir, component, OFlag::O_DIRECTORY).map_err(|errno| self.taken_or_io(name, errno))?;
        }
        let made = if is_dir {
            nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), leaf, Mode::from_bits_truncate(0o755))
        } else {
            let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            nix::fcntl::openat(Some(dir.as_raw_fd()), leaf, flags, Mode::from_bits_truncate(0o444)).map(|fd| drop(owned(fd)))
        };
        made.map_err(|errno| self.taken_or_io(name, errno))
    }

    fn attach_at(&self, source_fd: &OwnedFd, source: &Path, name: &str, read_only: bool) -> Result<(), ShareError> {
        let root = open_path(&self.root, OFlag::O_DIRECTORY)?;
        // Beneath the share's own mount only: a name inside another exposure is refused.
        let target = open_beneath(&root, name, OFlag::empty()).map_err(|errno| self.taken_or_io(name, errno))?;
        let tree = clone_detached(source_fd, source)?;
        set_attributes(&tree, read_only, source)?;
        attach(&tree, &target, &self.root.join(name))
    }

    fn remove_mount_point(&self, name: &str) -> Result<(), ShareError> {
        let (parents, leaf) = split_name(name);
        let mut dir = open_path(&self.base, OFlag::O_DIRECTORY)?;
        let mut above = Vec::new();
        for component in &parents {
            let next = match open_beneath(&dir, component, OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Err(ShareError::NotExposed { name: name.to_string() }),
                Err(errno) => return Err(self.taken_or_io(name, errno)),
            };
            above.push(std::mem::replace(&mut dir, next));
        }
        remove_entry(&dir, leaf).map_err(|errno| match errno {
            Errno::ENOENT => ShareError::NotExposed { name: name.to_string() },
            errno => io("removing", &self.base.join(name))(errno),
        })?;
        // Prune the parents the name created, stopping at one still in use.
        for component in parents.iter().rev() {
            let Some(up) = above.pop() else { break };
            if unlinkat(Some(up.as_raw_fd()), *component, UnlinkatFlags::RemoveDir).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Unmount and remove the share's directories (see [`cleanup`]).
    fn clear(&self) -> Result<(), ShareError> {
        unmount_below(&self.root)?;
        unmount_below(&self.base)?;
        if self.base.exists() {
            std::fs::remove_dir_all(&self.base).map_err(|err| ShareError::Io { what: "removing", path: self.base.clone(), err })?;
        }
        match std::fs::remove_dir(&self.root) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ShareError::Io { what: "removing", path: self.root.clone(), err }),
            _ => Ok(()),
        }
    }

    fn taken_or_io(&self, name: &str, errno: Errno) -> ShareError {
        match errno {
            Errno::EEXIST | Errno::EXDEV | Errno::ELOOP | Errno::ENOTDIR => ShareError::Taken { name: name.to_string() },
            errno => io("resolving", &self.base.join(name))(errno),
        }
    }
}

/// Undo a zone's share: unmount everything below it (deepest first) and the share itself, and
/// remove its directories. Idempotent, and safe for a zone whose supervisor died. An error
/// means a mount is still there: the zone directory must then not be deleted, since deleting
/// it would reach into the exposed host directories.
pub fn cleanup(dir: &ZoneDir) -> Result<(), ShareError> {
    Share::new(dir).clear()
}

/// Lazily unmount every mount at or below `dir`, deepest first, until none is left.
fn unmount_below(dir: &Path) -> Result<(), ShareError> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(dir) => dir,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(ShareError::Io { what: "resolving", path: dir.to_path_buf(), err }),
    };
    for _ in 0..MAX_UNMOUNT_ROUNDS {
        let mut mounts = mounts_below(&dir)?;
        if mounts.is_empty() {
            return Ok(());
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in &mounts {
            // A mount inside one unmounted just before has gone with it.
            match umount2(mount, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
                Err(errno) => return Err(io("unmounting", mount)(errno)),
            }
        }
    }
    Err(ShareError::Busy { dir: dir.clone(), left: mounts_below(&dir)? })
}

/// The mount points at or below `dir` in this process's mount namespace.
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>, ShareError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read(path).map_err(|err| ShareError::Io { what: "reading", path: path.to_path_buf(), err })?;
    Ok(parse_mount_points(&text).into_iter().filter(|m| m.starts_with(dir)).collect())
}

/// Field 5 of each mountinfo line, with the kernel's octal escapes (`\040` for a space)
/// undone.
fn parse_mount_points(mountinfo: &[u8]) -> Vec<PathBuf> {
    mountinfo
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(field))))
        .collect()
}

fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Check an exposure name: relative, 1 to [`MAX_NAME_DEPTH`] components of letters, digits,
/// `.`, `_`, `-`, none of them `.` or `..` or empty, at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &str) -> Result<(), ShareError> {
    let bad = |why| Err(ShareError::BadName { name: name.to_string(), why });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if name.starts_with('/') {
        return bad("it must be relative");
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.len() > MAX_NAME_DEPTH {
        return bad("it has more than 8 components");
    }
    for component in components {
        if component.is_empty() {
            return bad("it has an empty component");
        }
        if component == "." || component == ".." {
            return bad("'.' and '..' are not allowed");
        }
        if !component.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return bad("use letters, digits, '.', '_' and '-' between the slashes");
        }
    }
    Ok(())
}

/// A validated name's parent components and last component.
fn split_name(name: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = name.split('/').collect();
    let leaf = parts.pop().unwrap_or(name);
    (parts, leaf)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An `O_PATH` descriptor of `path` (following symlinks: this is the one resolution).
fn open_path(path: &Path, extra: OFlag) -> Result<OwnedFd, ShareError> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC | extra, Mode::empty()).map(owned).map_err(io("opening", path))
}

/// An `O_PATH` descriptor of `name` below `dir`, refusing symlinks, `..` out of `dir`, and
/// crossing into another mount.
fn open_beneath(dir: &OwnedFd, name: &str, extra: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | extra)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    openat2(dir.as_raw_fd(), name, how).map(owned)
}

fn remove_entry(dir: &OwnedFd, leaf: &str) -> Result<(), Errno> {
    match unlinkat(Some(dir.as_raw_fd()), leaf, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) => unlinkat(Some(dir.as_raw_fd()), leaf, UnlinkatFlags::RemoveDir),
        other => other,
    }
}

// The new mount API (Linux 5.12+): libc has the syscall numbers but not every wrapper.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `fd` (not the mounts below it).
fn clone_detached(fd: &OwnedFd, path: &Path) -> Result<OwnedFd, ShareError> {
    let empty = CString::default();
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC.cast_unsigned() | libc::AT_EMPTY_PATH.cast_unsigned();
    // SAFETY: open_tree reads the NUL-terminated empty path and returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), empty.as_ptr(), flags) };
    let raw = Errno::result(rc).map_err(io("cloning the mount of", path))?;
    let raw = RawFd::try_from(raw).map_err(|_| io("cloning the mount of", path)(Errno::EBADF))?;
    Ok(owned(raw))
}

/// Set `nosuid,nodev` (and `ro`) and private propagation on a detached mount, so that the
/// copies made when it is attached under the shared share carry the same flags.
fn set_attributes(tree: &OwnedFd, read_only: bool, path: &Path) -> Result<(), ShareError> {
    let ro = if read_only { MOUNT_ATTR_RDONLY } else { 0 };
    let attr = MountAttr { attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | ro, attr_clr: 0, propagation: MsFlags::MS_PRIVATE.bits(), userns_fd: 0 };
    let empty = CString::default();
    // SAFETY: mount_setattr reads `attr` (of the size passed) and the empty path; both outlive
    // the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), empty.as_ptr(), libc::AT_EMPTY_PATH, &attr as *const MountAttr, std::mem::size_of::<MountAttr>())
    };
    Errno::result(rc).map(drop).map_err(io("setting the mount flags of", path))
}

/// Attach the detached mount `tree` on the file or directory `target` refers to.
fn attach(tree: &OwnedFd, target: &OwnedFd, path: &Path) -> Result<(), ShareError> {
    let empty = CString::default();
    // SAFETY: move_mount reads the two empty paths; the descriptors are ours and open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(rc).map(drop).map_err(io("mounting on", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["rootfs.erofs", "c1/rootfs.erofs", "vol-1/data_2", "a/b/c/d/e/f/g/h"] {
            validate_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let long = "x".repeat(256);
        for bad in ["", "/etc", "a//b", "a/", "./a", "a/..", "..", "a/./b", "a b", "a\\b", "é", "a\0b", "a/b/c/d/e/f/g/h/i", long.as_str()] {
            assert!(matches!(validate_name(bad), Err(ShareError::BadName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let text = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            90 27 8:1 /x /z/share/with\\040space rw - ext4 /dev/sda1 rw\n\
            91 90 8:1 /y /z/share/back\\134slash rw - ext4 /dev/sda1 rw\n";
        let points = parse_mount_points(text);
        assert_eq!(points, ["/proc", "/z/share/with space", "/z/share/back\\slash"].map(PathBuf::from));
        assert_eq!(unescape_octal(b"\\04"), b"\\04", "a short escape is kept as it is");
    }

    /// Mount lines (options included) of process `pid` under `dir`.
    fn mounts_of(pid: &str, dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        text.lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(dir))).map(String::from).collect()
    }

    #[test]
    fn exposures_reach_a_slave_namespace_read_only_and_cleanup_removes_all() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root (mounts); skipped");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = ZoneDir { path: std::fs::canonicalize(tmp.path()).expect("canonical").join("zone") };
        std::fs::create_dir(&dir.path).expect("zone dir");
        let host = tmp.path().join("host");
        std::fs::create_dir_all(host.join("vol")).expect("host dir");
        std::fs::write(host.join("image"), "IMAGE").expect("host file");
        std::os::unix::fs::symlink(host.join("image"), host.join("link")).expect("symlink");

        let share = Share::new(&dir);
        share.prepare().expect("prepare");
        // A namespace made like virtiofsd's sandbox: its copy of the share is a slave.
        let mut sandbox = std::process::Command::new("unshare").args(["--mount", "--propagation", "slave", "sleep", "30"]).spawn().expect("unshare");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pid = sandbox.id().to_string();

        assert_eq!(share.expose(&host.join("link"), "c/image", true).expect("expose file"), Path::new(SHARE_DIR).join("c/image"));
        share.expose(&host.join("vol"), "vol", false).expect("expose dir");
        std::fs::write(dir.share_dir().join("vol/new"), "x").expect("a writable exposure takes writes");
        assert!(host.join("vol/new").is_file());
        let err = std::fs::OpenOptions::new().write(true).open(dir.share_dir().join("c/image")).expect_err("read-only");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        assert!(std::fs::write(dir.share_dir().join("planted"), "x").is_err(), "the share's root is read-only");

        let seen = mounts_of(&pid, &dir.share_dir());
        let image = seen.iter().find(|l| l.contains("/share/c/image ")).unwrap_or_else(|| panic!("propagated: {seen:?}"));
        assert!(image.split(' ').nth(5).is_some_and(|o| o.split(',').any(|f| f == "ro")), "read-only in the slave too: {image}");
        assert!(seen.iter().all(|l| l.split(' ').nth(5).is_some_and(|o| o.contains("nosuid") && o.contains("nodev"))), "{seen:?}");

        // The target of the symlink was resolved once: swapping it changes nothing.
        std::fs::remove_file(host.join("link")).expect("unlink");
        std::os::unix::fs::symlink("/etc", host.join("link")).expect("relink");
        assert_eq!(std::fs::read_to_string(dir.share_dir().join("c/image")).expect("read"), "IMAGE");

        assert!(matches!(share.expose(&host.join("vol"), "vol/x", true), Err(ShareError::Taken { .. })));
        assert!(matches!(share.expose(Path::new("/dev/null"), "null", true), Err(ShareError::Unsupported { .. })));
        share.withdraw("c/image").expect("withdraw");
        assert!(!dir.share_base().join("c").exists(), "emptied parents are pruned");
        assert!(mounts_of(&pid, &dir.share_dir()).iter().all(|l| !l.contains("/share/c/image ")), "the unmount propagated");

        cleanup(&dir).expect("cleanup");
        cleanup(&dir).expect("cleanup is idempotent");
        assert!(mounts_of("self", &dir.path).is_empty());
        assert!(!dir.share_dir().exists() && !dir.share_base().exists());
        assert_eq!(std::fs::read_to_string(host.join("vol/new")).expect("host file kept"), "x");
        let _ = sandbox.kill();
        let _ = sandbox.wait();
    }

    #[test]
    fn split_gives_parents_and_leaf() {
        assert_eq!(split_name("a/b/c"), (vec!["a", "b"], "c"));
        assert_eq!(split_name("c"), (vec![], "c"));
    }
}
