//! The rootfs being built: every lookup resolves inside it with `openat2(RESOLVE_IN_ROOT)`, and
//! every change is made relative to a directory descriptor with a single, checked name. No path
//! is ever joined as a string, so no symlink in the tree can redirect a write out of it.

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::entry::RelPath;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{op} `{path}` in the rootfs")]
    Sys { op: &'static str, path: String, source: Errno },
    #[error("writing `{path}` in the rootfs")]
    Write { path: String, source: io::Error },
    #[error("`{0}` is a symlink to a directory missing from the rootfs")]
    Dangling(String),
    #[error("hardlink `{entry}` -> `{target}`: the target is missing or is a directory")]
    HardlinkTarget { entry: String, target: String },
}

/// What kind of file an entry creates.
#[derive(Debug)]
pub enum Node {
    File,
    Dir,
    Symlink(Vec<u8>),
    CharDevice(u64),
    BlockDevice(u64),
    Fifo,
}

/// Ownership, permissions and extended attributes of one entry.
#[derive(Debug, Default)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

/// A directory tree under construction, addressed only through [`RelPath`]s.
pub struct Rootfs {
    root: OwnedFd,
    /// The last parent directory resolved, since consecutive entries usually share one.
    /// Cleared whenever anything is removed, so it never names a replaced directory.
    last_dir: RefCell<Option<(RelPath, OwnedFd)>>,
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sys<'a>(op: &'static str, path: &'a RelPath) -> impl FnOnce(Errno) -> RootfsError + 'a {
    move |source| RootfsError::Sys { op, path: path.display(), source }
}

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_RDONLY).union(OFlag::O_CLOEXEC);

impl Rootfs {
    /// Creates the empty directory `path` (which must not exist) as a new rootfs.
    pub fn create(path: &Path) -> io::Result<Self> {
        std::fs::create_dir(path)?;
        let root = File::open(path)?;
        Ok(Self { root: root.into(), last_dir: RefCell::new(None) })
    }

    fn open_in_root(&self, rel: &RelPath) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new().flags(DIR_FLAGS).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.root.as_raw_fd(), &rel.to_path(), how).map(own)
    }

    /// Opens directory `rel`, creating missing components (mode 0755, root-owned) if `create`.
    fn dir(&self, rel: &RelPath, create: bool) -> Result<Option<OwnedFd>, RootfsError> {
        if let Some((cached, fd)) = self.last_dir.borrow().as_ref() {
            if cached == rel {
                return fd.try_clone().map(Some).map_err(|e| RootfsError::Write { path: rel.display(), source: e });
            }
        }
        let fd = match self.open_in_root(rel) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => self.create_dirs(rel)?,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(sys("open directory", rel)(e)),
        };
        let copy = fd.try_clone().map_err(|e| RootfsError::Write { path: rel.display(), source: e })?;
        *self.last_dir.borrow_mut() = Some((rel.clone(), copy));
        Ok(Some(fd))
    }

    fn create_dirs(&self, rel: &RelPath) -> Result<OwnedFd, RootfsError> {
        let mut prefix = RelPath::parse(b"").map_err(|_| sys("open directory", rel)(Errno::EINVAL))?;
        let mut current = self.open_in_root(&prefix).map_err(sys("open directory", rel))?;
        for name in rel.components() {
            let next = prefix.join(name);
            current = match self.open_in_root(&next) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(Some(current.as_raw_fd()), name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => self.open_in_root(&next).map_err(sys("open directory", &next))?,
                        // Something is there yet does not resolve: a symlink to nowhere.
                        Err(Errno::EEXIST) => return Err(RootfsError::Dangling(next.display())),
                        Err(e) => return Err(sys("create directory", &next)(e)),
                    }
                }
                Err(e) => return Err(sys("open directory", &next)(e)),
            };
            prefix = next;
        }
        Ok(current)
    }

    fn forget_cached_dir(&self) {
        self.last_dir.borrow_mut().take();
    }

    /// Creates `path` as `node` with `meta`, replacing what was there (a directory over a
    /// directory is kept and only takes the new metadata). `content` fills a regular file.
    pub fn put(&self, path: &RelPath, node: Node, meta: &Meta, content: &mut dyn Read) -> Result<(), RootfsError> {
        let Some((parent_rel, name)) = path.split_last() else {
            return Ok(()); // The rootfs directory itself keeps the mode and owner we gave it.
        };
        let parent = self.dir(&parent_rel, true)?.ok_or_else(|| sys("open directory", &parent_rel)(Errno::ENOENT))?;
        let pfd = parent.as_raw_fd();
        match kind_at(pfd, name) {
            Some(SFlag::S_IFDIR) if matches!(node, Node::Dir) => return self.apply(pfd, name, meta, false, path),
            Some(kind) => self.remove_at(pfd, name, kind == SFlag::S_IFDIR, path)?,
            None => {}
        }
        let scratch = Mode::from_bits_truncate(0o600);
        let is_symlink = matches!(node, Node::Symlink(_));
        match node {
            Node::File => {
                let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(Some(pfd), name, flags, scratch).map_err(sys("create file", path))?;
                let mut file = File::from(own(fd));
                copy_content(content, &mut file).map_err(|source| RootfsError::Write { path: path.display(), source })?;
            }
            Node::Dir => mkdirat(Some(pfd), name, Mode::from_bits_truncate(0o700)).map_err(sys("create directory", path))?,
            Node::Symlink(target) => symlinkat(OsStr::from_bytes(&target), Some(pfd), name).map_err(sys("create symlink", path))?,
            Node::CharDevice(dev) => mknodat(Some(pfd), name, SFlag::S_IFCHR, scratch, dev).map_err(sys("create device", path))?,
            Node::BlockDevice(dev) => mknodat(Some(pfd), name, SFlag::S_IFBLK, scratch, dev).map_err(sys("create device", path))?,
            Node::Fifo => mknodat(Some(pfd), name, SFlag::S_IFIFO, scratch, 0).map_err(sys("create fifo", path))?,
        }
        self.apply(pfd, name, meta, is_symlink, path)
    }

    /// Owner first (it clears setuid bits and file capabilities), then mode, then xattrs.
    fn apply(&self, pfd: RawFd, name: &OsStr, meta: &Meta, is_symlink: bool, path: &RelPath) -> Result<(), RootfsError> {
        let ids = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        fchownat(Some(pfd), name, ids.0, ids.1, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys("chown", path))?;
        if !is_symlink {
            let mode = Mode::from_bits_truncate(meta.mode & 0o7777);
            fchmodat(Some(pfd), name, mode, FchmodatFlags::FollowSymlink).map_err(sys("chmod", path))?;
        }
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        // The parent is already resolved; `name` is one component and lsetxattr does not
        // follow it, so the attribute lands on exactly this entry.
        let mut proc_path = format!("/proc/self/fd/{pfd}/").into_bytes();
        proc_path.extend_from_slice(name.as_bytes());
        let proc_path = CString::new(proc_path).map_err(|_| sys("set xattr on", path)(Errno::EINVAL))?;
        for (key, value) in &meta.xattrs {
            // SAFETY: both strings are NUL-terminated CStrings and `value` is a live slice whose
            // pointer and length are passed together.
            let rc = unsafe {
                libc::lsetxattr(proc_path.as_ptr(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0)
            };
            if rc != 0 {
                let errno = Errno::last();
                if errno == Errno::EOPNOTSUPP {
                    tracing::warn!(path = %path.display(), key = ?key, "filesystem does not support this xattr; dropped");
                    continue;
                }
                return Err(sys("set xattr on", path)(errno));
            }
        }
        Ok(())
    }

    /// Hardlinks `path` to the existing non-directory `target`.
    pub fn hardlink(&self, path: &RelPath, target: &RelPath) -> Result<(), RootfsError> {
        let bad_target = || RootfsError::HardlinkTarget { entry: path.display(), target: target.display() };
        let (Some((tparent_rel, tname)), Some((parent_rel, name))) = (target.split_last(), path.split_last()) else {
            return Err(bad_target());
        };
        let tparent = self.dir(&tparent_rel, false)?.ok_or_else(bad_target)?;
        let target_stat = match fstatat(Some(tparent.as_raw_fd()), tname, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => st,
            _ => return Err(bad_target()),
        };
        let parent = self.dir(&parent_rel, true)?.ok_or_else(|| sys("open directory", &parent_rel)(Errno::ENOENT))?;
        let pfd = parent.as_raw_fd();
        if let Ok(existing) = fstatat(Some(pfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            if (existing.st_dev, existing.st_ino) == (target_stat.st_dev, target_stat.st_ino) {
                return Ok(());
            }
            let is_dir = SFlag::from_bits_truncate(existing.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            self.remove_at(pfd, name, is_dir, path)?;
        }
        linkat(Some(tparent.as_raw_fd()), tname, Some(pfd), name, nix::fcntl::AtFlags::empty())
            .map_err(sys("hardlink", path))
    }

    /// Removes `name` from `dir` (a whiteout); a name that is not there is already gone.
    pub fn whiteout(&self, dir: &RelPath, name: &OsStr) -> Result<(), RootfsError> {
        let Some(parent) = self.dir(dir, false)? else { return Ok(()) };
        let path = dir.join(name);
        match kind_at(parent.as_raw_fd(), name) {
            Some(kind) => self.remove_at(parent.as_raw_fd(), name, kind == SFlag::S_IFDIR, &path),
            None => Ok(()),
        }
    }

    /// Hides what lower layers put under `dir` (an opaque-directory marker): removes every
    /// descendant for which `keep` says no, descending into kept directories.
    pub fn make_opaque(&self, dir: &RelPath, keep: &dyn Fn(&RelPath) -> bool) -> Result<(), RootfsError> {
        let Some(fd) = self.dir(dir, true)? else { return Ok(()) };
        self.prune_children(fd.as_raw_fd(), dir, keep)
    }

    fn prune_children(&self, fd: RawFd, dir: &RelPath, keep: &dyn Fn(&RelPath) -> bool) -> Result<(), RootfsError> {
        for (name, is_dir) in list_dir(fd).map_err(sys("list directory", dir))? {
            let child = dir.join(&name);
            if !keep(&child) {
                self.remove_at(fd, &name, is_dir, &child)?;
            } else if is_dir {
                let flags = DIR_FLAGS | OFlag::O_NOFOLLOW;
                let sub = own(openat(Some(fd), name.as_os_str(), flags, Mode::empty()).map_err(sys("open directory", &child))?);
                self.prune_children(sub.as_raw_fd(), &child, keep)?;
            }
        }
        Ok(())
    }

    fn remove_at(&self, pfd: RawFd, name: &OsStr, is_dir: bool, path: &RelPath) -> Result<(), RootfsError> {
        self.forget_cached_dir();
        if is_dir {
            let flags = DIR_FLAGS | OFlag::O_NOFOLLOW;
            let dir = own(openat(Some(pfd), name, flags, Mode::empty()).map_err(sys("open directory", path))?);
            for (child, child_is_dir) in list_dir(dir.as_raw_fd()).map_err(sys("list directory", path))? {
                self.remove_at(dir.as_raw_fd(), &child, child_is_dir, &path.join(&child))?;
            }
        }
        let flag = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
        unlinkat(Some(pfd), name, flag).map_err(sys("remove", path))
    }
}

/// The file type of `name` in `dir`, without following a symlink; `None` if absent.
fn kind_at(dir: RawFd, name: &OsStr) -> Option<SFlag> {
    fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

/// Names in a directory (without `.` and `..`) and whether each is a directory.
fn list_dir(dir: RawFd) -> Result<Vec<(std::ffi::OsString, bool)>, Errno> {
    // A fresh open file description, so listing never shares a read offset with `dir`.
    let fd = openat(Some(dir), ".", DIR_FLAGS, Mode::empty())?;
    let mut handle = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in handle.iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            None => kind_at(dir, name) == Some(SFlag::S_IFDIR),
        };
        names.push((name.to_owned(), is_dir));
    }
    Ok(names)
}

/// Copies with a large buffer: layer files are written in few, big writes.
fn copy_content(from: &mut dyn Read, to: &mut File) -> io::Result<()> {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 << 10]);
    }
    BUF.with_borrow_mut(|buf| loop {
        match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    })
}
