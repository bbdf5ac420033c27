//! Copy a tree of files that may be hostile, between directory descriptors.
//!
//! - Only regular files, directories and symbolic links are copied. A link is copied as a link
//!   and never followed. A named pipe, a socket or a device is refused, never opened.
//! - Nothing is resolved by path. Each step opens one name relative to a directory that is
//!   already open, with `O_NOFOLLOW`, so a symlink planted or swapped in mid-copy, in the source
//!   or in the destination, leads nowhere. An existing symlink in the destination is replaced,
//!   never written through, and a directory never replaces a file or a link (or the reverse).
//! - Every name is checked, and the entries, the bytes and the depth are bounded.
//!
//! A copy is two passes over one walk. [`check`] reads the source, looks at the destination and
//! writes nothing; [`copy`] writes. Checking first means that a copy which would break a bound,
//! meet a special file or put a directory over a file fails before anything changed. The copy
//! pass checks everything again, since a hostile source can change in between.
//!
//! Shared by the zone's init (`moat cp`, both ways) and the host (moving what a zone staged).

mod exact;
pub use exact::Exact;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, futimens, mkdirat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Longest file name (Linux's `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// What one copy may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content, over every file.
    pub bytes: u64,
    /// Files, directories and links, the top one included.
    pub entries: u64,
    /// Directories between the top of the copy and its deepest entry.
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    /// The permission bits kept from the source: `0o7777` keeps set-user-id, set-group-id and
    /// sticky, `0o777` drops them.
    pub mode_mask: u32,
    /// Give each copy the source's owner and group (the copier needs CAP_CHOWN); otherwise
    /// whatever the copier creates is owned by its own fsuid and fsgid.
    pub keep_owner: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
}

/// What a pass saw (check) or wrote (copy).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub entries: u64,
    pub bytes: u64,
}

/// What to copy where.
#[derive(Debug, Clone, Copy)]
pub enum What<'a> {
    /// The entry `name` of the directory `from`, as `to_name` in the directory `to`; `label`
    /// names it in messages.
    Entry { from: BorrowedFd<'a>, name: &'a OsStr, to: BorrowedFd<'a>, to_name: &'a OsStr, label: &'a OsStr },
    /// The open directory `from`, as `to_name` in the directory `to`; `label` names it in
    /// messages.
    Directory { from: BorrowedFd<'a>, to: BorrowedFd<'a>, to_name: &'a OsStr, label: &'a OsStr },
    /// Everything the directory `from` holds, merged into the directory `to`.
    Contents { from: BorrowedFd<'a>, to: BorrowedFd<'a> },
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path:?} is {what}; only regular files, directories and symbolic links can be copied")]
    Unsupported { path: PathBuf, what: &'static str },
    #[error("{path:?} is not a plain file name")]
    BadName { path: PathBuf },
    #[error("the copy holds more than {max} files, directories and links")]
    TooManyEntries { max: u64 },
    #[error("the copy holds more than {max} bytes")]
    TooLarge { max: u64 },
    #[error("{path:?} is nested more than {max} directories deep")]
    TooDeep { path: PathBuf, max: usize },
    #[error("cannot overwrite non-directory {path:?} with a directory")]
    DirectoryOverOther { path: PathBuf },
    #[error("cannot overwrite directory {path:?} with a non-directory")]
    OtherOverDirectory { path: PathBuf },
    #[error("{what} {path:?}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
}

/// What kind of failure a [`TreeError`] is, for the caller's own error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A bound was reached.
    Limit,
    /// The tree holds something that cannot be copied, or meets the destination badly.
    Refused,
    /// Something named is not there.
    NotFound,
    /// Any other failure of the filesystem.
    Io,
}

impl TreeError {
    pub fn class(&self) -> ErrorClass {
        match self {
            TreeError::TooManyEntries { .. } | TreeError::TooLarge { .. } | TreeError::TooDeep { .. } => ErrorClass::Limit,
            TreeError::Unsupported { .. } | TreeError::BadName { .. } | TreeError::DirectoryOverOther { .. } | TreeError::OtherOverDirectory { .. } => ErrorClass::Refused,
            TreeError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => ErrorClass::NotFound,
            TreeError::Io { .. } => ErrorClass::Io,
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> TreeError + 'a {
    move |errno| TreeError::Io { what, path: path.to_path_buf(), err: errno.into() }
}

/// Whether `name` is one plain file name: not empty, `.` or `..`, without `/` or NUL, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn valid_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_NAME_LEN && bytes != b"." && bytes != b".." && !bytes.iter().any(|b| *b == b'/' || *b == 0)
}

/// The kind of the entry `name` in `dir`, not following a symlink; a special file is refused.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Kind, TreeError> {
    let path = Path::new(name);
    let stat = fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io("inspecting", path))?;
    kind_of(&stat).map_err(|what| TreeError::Unsupported { path: path.to_path_buf(), what })
}

/// Walk `what` without writing: every bound, name and kind is checked, and so is each place a
/// directory would meet a non-directory in the destination.
pub fn check(what: What<'_>, options: &Options) -> Result<Totals, TreeError> {
    Walk { options, pass: Pass::Check, totals: Totals::default() }.run(what)
}

/// Copy `what`, checking everything again as it goes. Call [`check`] first, so that bad input
/// changes nothing.
pub fn copy(what: What<'_>, options: &Options) -> Result<Totals, TreeError> {
    Walk { options, pass: Pass::Copy, totals: Totals::default() }.run(what)
}

/// [`check`], then [`copy`].
pub fn check_and_copy(what: What<'_>, options: &Options) -> Result<Totals, TreeError> {
    check(what, options)?;
    copy(what, options)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Check,
    Copy,
}

struct Walk<'o> {
    options: &'o Options,
    pass: Pass,
    totals: Totals,
}

impl Walk<'_> {
    fn run(mut self, what: What<'_>) -> Result<Totals, TreeError> {
        match what {
            What::Entry { from, name, to, to_name, label } => {
                for name in [name, to_name] {
                    if !valid_name(name) {
                        return Err(TreeError::BadName { path: PathBuf::from(name) });
                    }
                }
                self.entry(from.as_raw_fd(), name, Some(to.as_raw_fd()), to_name, 0, Path::new(label))?;
            }
            What::Directory { from, to, to_name, label } => {
                if !valid_name(to_name) {
                    return Err(TreeError::BadName { path: PathBuf::from(to_name) });
                }
                let path = Path::new(label);
                let source = open_dir(from.as_raw_fd(), OsStr::new("."), path)?;
                let stat = fstat(source.as_raw_fd()).map_err(io("inspecting", path))?;
                self.count_entry()?;
                let to = to.as_raw_fd();
                match existing(to, to_name, path)? {
                    Some(Existing::Other) => return Err(TreeError::DirectoryOverOther { path: path.to_path_buf() }),
                    exists => self.directory(source, Some(to), to_name, exists.is_some(), &stat, 0, path)?,
                }
            }
            What::Contents { from, to } => {
                let mut source = open_dir(from.as_raw_fd(), OsStr::new("."), Path::new("."))?;
                self.children(&mut source, Some(to.as_raw_fd()), 1, Path::new(""))?;
            }
        }
        Ok(self.totals)
    }

    /// Copy the entry `name` of `from` as `to_name` in `to` (`None` in the check pass: a
    /// directory the copy pass will create). `path` names it for messages.
    fn entry(&mut self, from: RawFd, name: &OsStr, to: Option<RawFd>, to_name: &OsStr, depth: usize, path: &Path) -> Result<(), TreeError> {
        let stat = fstatat(Some(from), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io("inspecting", path))?;
        let kind = kind_of(&stat).map_err(|what| TreeError::Unsupported { path: path.to_path_buf(), what })?;
        self.count_entry()?;
        let existing = match to {
            Some(dir) => existing(dir, to_name, path)?,
            None => None,
        };
        match (kind, existing) {
            (Kind::Directory, Some(Existing::Other)) => Err(TreeError::DirectoryOverOther { path: path.to_path_buf() }),
            (Kind::File | Kind::Symlink, Some(Existing::Directory)) => Err(TreeError::OtherOverDirectory { path: path.to_path_buf() }),
            (Kind::Directory, _) => self.directory(open_dir(from, name, path)?, to, to_name, existing.is_some(), &stat, depth, path),
            (Kind::File, _) => self.file(from, name, to, to_name, existing.is_some(), &stat, path),
            (Kind::Symlink, _) => self.symlink(from, name, to, to_name, existing.is_some(), &stat, path),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn file(&mut self, from: RawFd, name: &OsStr, to: Option<RawFd>, to_name: &OsStr, replace: bool, stat: &FileStat, path: &Path) -> Result<(), TreeError> {
        let max = self.options.limits.bytes;
        let budget = max.saturating_sub(self.totals.bytes);
        if self.pass == Pass::Check {
            let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
            if size > budget {
                return Err(TreeError::TooLarge { max });
            }
            self.totals.bytes += size;
            return Ok(());
        }
        let to = destination(to, path)?;
        // O_NONBLOCK: a file swapped for a named pipe since it was inspected must not block.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let source = open_at(from, name, flags, Mode::empty(), "opening", path)?;
        let opened = fstat(source.as_raw_fd()).map_err(io("inspecting", path))?;
        if let Err(what) = kind_of(&opened).and_then(|k| if k == Kind::File { Ok(()) } else { Err("no longer a regular file") }) {
            return Err(TreeError::Unsupported { path: path.to_path_buf(), what });
        }
        if replace {
            remove_other(to, to_name, path)?;
        }
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let target = open_at(to, to_name, flags, Mode::from_bits_truncate(0o600), "creating", path)?;
        let mut target = File::from(target);
        let copied = std::io::copy(&mut File::from(source).take(budget.saturating_add(1)), &mut target).map_err(|err| TreeError::Io { what: "copying", path: path.to_path_buf(), err })?;
        if copied > budget {
            // The source grew since it was checked.
            let _ = unlinkat(Some(to), to_name, UnlinkatFlags::NoRemoveDir);
            return Err(TreeError::TooLarge { max });
        }
        self.totals.bytes += copied;
        // After the writes, which would clear set-user-id and set-group-id.
        self.finish(target.as_raw_fd(), &opened, path)
    }

    #[allow(clippy::too_many_arguments)]
    fn symlink(&mut self, from: RawFd, name: &OsStr, to: Option<RawFd>, to_name: &OsStr, replace: bool, stat: &FileStat, path: &Path) -> Result<(), TreeError> {
        if self.pass == Pass::Check {
            return Ok(());
        }
        let to = destination(to, path)?;
        // The kernel bounds a link's target (PATH_MAX); it is copied as bytes, never resolved.
        let target = nix::fcntl::readlinkat(Some(from), name).map_err(io("reading the link", path))?;
        if replace {
            remove_other(to, to_name, path)?;
        }
        symlinkat(target.as_os_str(), Some(to), to_name).map_err(io("creating the link", path))?;
        if self.options.keep_owner {
            let (uid, gid) = (Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid)));
            fchownat(Some(to), to_name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io("setting the owner of", path))?;
        }
        // Not every filesystem keeps a link's times; the link is what matters.
        let (atime, mtime) = times(stat);
        let _ = utimensat(Some(to), to_name, &atime, &mtime, UtimensatFlags::NoFollowSymlink);
        Ok(())
    }

    fn count_entry(&mut self) -> Result<(), TreeError> {
        self.totals.entries += 1;
        if self.totals.entries > self.options.limits.entries {
            return Err(TreeError::TooManyEntries { max: self.options.limits.entries });
        }
        Ok(())
    }

    /// Copy the open directory `source` as `to_name` in `to`.
    #[allow(clippy::too_many_arguments)]
    fn directory(&mut self, mut source: Dir, to: Option<RawFd>, to_name: &OsStr, exists: bool, stat: &FileStat, depth: usize, path: &Path) -> Result<(), TreeError> {
        let max = self.options.limits.depth;
        if depth >= max {
            return Err(TreeError::TooDeep { path: path.to_path_buf(), max });
        }
        let target = match (self.pass, to) {
            (Pass::Copy, to) => {
                let to = destination(to, path)?;
                if !exists {
                    match mkdirat(Some(to), to_name, Mode::from_bits_truncate(0o700)) {
                        // Made since it was inspected: it is opened below, never followed.
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(errno) => return Err(io("creating", path)(errno)),
                    }
                }
                Some(open_dir(to, to_name, path)?)
            }
            (Pass::Check, Some(to)) if exists => Some(open_dir(to, to_name, path)?),
            (Pass::Check, _) => None,
        };
        self.children(&mut source, target.as_ref().map(AsRawFd::as_raw_fd), depth + 1, path)?;
        match target {
            Some(target) if self.pass == Pass::Copy => self.finish(target.as_raw_fd(), stat, path),
            _ => Ok(()),
        }
    }

    /// Copy each entry of `source` into `target`.
    fn children(&mut self, source: &mut Dir, target: Option<RawFd>, depth: usize, path: &Path) -> Result<(), TreeError> {
        let names = self.list(source, path)?;
        for name in names {
            let child = path.join(&name);
            self.entry(source.as_raw_fd(), &name, target, &name, depth, &child)?;
        }
        Ok(())
    }

    /// The names in `dir`, checked, and no more than the entries still allowed.
    fn list(&self, dir: &mut Dir, path: &Path) -> Result<Vec<OsString>, TreeError> {
        let limit = self.options.limits.entries;
        let room = limit.saturating_sub(self.totals.entries);
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io("listing", path))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if !valid_name(name) {
                return Err(TreeError::BadName { path: path.join(name) });
            }
            if names.len() as u64 >= room {
                return Err(TreeError::TooManyEntries { max: limit });
            }
            names.push(name.to_os_string());
        }
        names.sort();
        Ok(names)
    }

    /// Give a copied file or directory the source's permission bits (masked) and times, and
    /// its owner when asked (first: a change of owner clears set-user-id and set-group-id).
    fn finish(&self, fd: RawFd, stat: &FileStat, path: &Path) -> Result<(), TreeError> {
        if self.options.keep_owner {
            fchown(fd, Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid))).map_err(io("setting the owner of", path))?;
        }
        let mode = Mode::from_bits_truncate(stat.st_mode & self.options.mode_mask & 0o7777);
        fchmod(fd, mode).map_err(io("setting the mode of", path))?;
        let (atime, mtime) = times(stat);
        futimens(fd, &atime, &mtime).map_err(io("setting the times of", path))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Directory,
    Other,
}

/// What is at `name` in the destination directory `dir`, not following a symlink.
fn existing(dir: RawFd, name: &OsStr, path: &Path) -> Result<Option<Existing>, TreeError> {
    match fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if kind_of(&stat) == Ok(Kind::Directory) => Ok(Some(Existing::Directory)),
        Ok(_) => Ok(Some(Existing::Other)),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(io("inspecting the destination of", path)(errno)),
    }
}

/// Remove the non-directory at `name` in `dir`, to put a copy in its place.
fn remove_other(dir: RawFd, name: &OsStr, path: &Path) -> Result<(), TreeError> {
    match unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(io("replacing", path)(errno)),
    }
}

/// The destination directory, which the copy pass always has.
fn destination(to: Option<RawFd>, path: &Path) -> Result<RawFd, TreeError> {
    to.ok_or_else(|| io("copying", path)(Errno::EBADF))
}

fn kind_of(stat: &FileStat) -> Result<Kind, &'static str> {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Ok(Kind::File),
        SFlag::S_IFDIR => Ok(Kind::Directory),
        SFlag::S_IFLNK => Ok(Kind::Symlink),
        SFlag::S_IFIFO => Err("a named pipe"),
        SFlag::S_IFSOCK => Err("a socket"),
        SFlag::S_IFCHR => Err("a character device"),
        SFlag::S_IFBLK => Err("a block device"),
        _ => Err("of an unknown type"),
    }
}

fn times(stat: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(stat.st_atime, stat.st_atime_nsec), TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec))
}

fn open_at(dir: RawFd, name: &OsStr, flags: OFlag, mode: Mode, what: &'static str, path: &Path) -> Result<OwnedFd, TreeError> {
    let fd = openat(Some(dir), name, flags, mode).map_err(io(what, path))?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `name` in `dir` for listing, refusing a symlink.
fn open_dir(dir: RawFd, name: &OsStr, path: &Path) -> Result<Dir, TreeError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Dir::openat(Some(dir), name, flags, Mode::empty()).map_err(io("opening the directory", path))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const ROOMY: Options = Options { limits: Limits { bytes: 1 << 20, entries: 100, depth: 16 }, mode_mask: 0o7777, keep_owner: false };

    fn dir_fd(path: &Path) -> File {
        File::open(path).expect("open dir")
    }

    fn copy_entry(from: &Path, name: &str, to: &Path, to_name: &str, options: &Options) -> Result<Totals, TreeError> {
        let (from, to) = (dir_fd(from), dir_fd(to));
        check_and_copy(What::Entry { from: from.as_fd(), name: OsStr::new(name), to: to.as_fd(), to_name: OsStr::new(to_name), label: OsStr::new(name) }, options)
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Every path below `dir`, relative to it.
    fn listing(dir: &Path) -> Vec<PathBuf> {
        fn walk(base: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                found.push(path.strip_prefix(base).expect("below").to_path_buf());
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(base, &path, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(dir, dir, &mut found);
        found.sort();
        found
    }

    #[test]
    fn files_directories_and_links_keep_their_contents_modes_and_times() {
        let src = tempfile::tempdir().unwrap();
        let top = src.path().join("top");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        std::fs::write(top.join("f"), "hello\n").unwrap();
        std::fs::write(top.join("sub/run"), "#!/bin/sh\n").unwrap();
        set_mode(&top.join("f"), 0o640);
        set_mode(&top.join("sub/run"), 0o4755);
        set_mode(&top.join("sub"), 0o550);
        std::os::unix::fs::symlink("/etc/passwd", top.join("pw")).unwrap();
        std::os::unix::fs::symlink("../../outside", top.join("sub/up")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::options().write(true).open(top.join("f")).unwrap().set_modified(old).unwrap();

        let dst = tempfile::tempdir().unwrap();
        let totals = copy_entry(src.path(), "top", dst.path(), "copy", &ROOMY).unwrap();
        assert_eq!(totals, Totals { entries: 6, bytes: 16 });
        let out = dst.path().join("copy");
        assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "hello\n");
        assert_eq!(std::fs::metadata(out.join("f")).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::metadata(out.join("f")).unwrap().modified().unwrap(), old);
        assert_eq!(std::fs::metadata(out.join("sub/run")).unwrap().mode() & 0o7777, 0o4755, "a 0o7777 mask keeps set-user-id");
        assert_eq!(std::fs::metadata(out.join("sub")).unwrap().mode() & 0o7777, 0o550, "set after its contents were written");
        assert_eq!(std::fs::read_link(out.join("pw")).unwrap(), Path::new("/etc/passwd"), "copied as a link");
        assert_eq!(std::fs::read_link(out.join("sub/up")).unwrap(), Path::new("../../outside"));

        let stripped = tempfile::tempdir().unwrap();
        copy_entry(src.path(), "top", stripped.path(), "copy", &Options { mode_mask: 0o777, ..ROOMY }).unwrap();
        assert_eq!(std::fs::metadata(stripped.path().join("copy/sub/run")).unwrap().mode() & 0o7777, 0o755, "a 0o777 mask drops set-user-id");
        set_mode(&top.join("sub"), 0o755);
        set_mode(&out.join("sub"), 0o755);
        set_mode(&stripped.path().join("copy/sub"), 0o755);
    }

    /// Run as root (as init is): ownership is copied only when asked.
    #[test]
    fn owners_are_kept_when_asked() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let top = src.path().join("top");
        std::fs::create_dir(&top).unwrap();
        std::fs::write(top.join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", top.join("l")).unwrap();
        for (path, uid, gid) in [(&top, 1000, 1001), (&top.join("f"), 100_005, 100_006)] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
        set_mode(&top.join("f"), 0o2750);
        std::os::unix::fs::lchown(top.join("l"), Some(7), Some(8)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        copy_entry(src.path(), "top", dst.path(), "kept", &Options { keep_owner: true, ..ROOMY }).unwrap();
        let owner = |p: &Path| std::fs::symlink_metadata(p).map(|m| (m.uid(), m.gid(), m.mode() & 0o7777)).unwrap();
        let kept = dst.path().join("kept");
        assert_eq!((owner(&kept).0, owner(&kept).1), (1000, 1001));
        assert_eq!(owner(&kept.join("f")), (100_005, 100_006, 0o2750), "the mode is set after the owner, so set-group-id stays");
        assert_eq!((owner(&kept.join("l")).0, owner(&kept.join("l")).1), (7, 8), "a link's own owner");
        copy_entry(src.path(), "top", dst.path(), "mine", &ROOMY).unwrap();
        assert_eq!((owner(&dst.path().join("mine/f")).0, owner(&dst.path().join("mine/f")).1), (0, 0));
    }

    #[test]
    fn a_symlink_is_never_followed_in_the_source_or_the_destination() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "keep\n").unwrap();
        let src = tempfile::tempdir().unwrap();
        // The top entry itself is a link to a directory: it is copied as the link.
        std::os::unix::fs::symlink(outside.path(), src.path().join("link")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        copy_entry(src.path(), "link", dst.path(), "link", &ROOMY).unwrap();
        assert_eq!(std::fs::read_link(dst.path().join("link")).unwrap(), outside.path());

        // The destination holds links to the outside where the source has a directory and a
        // file: the directory is refused, the file replaces the link, the outside is untouched.
        let tree = src.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/planted"), "x").unwrap();
        std::fs::write(tree.join("victim"), "overwritten\n").unwrap();
        let into = dst.path().join("tree");
        std::fs::create_dir(&into).unwrap();
        std::os::unix::fs::symlink(outside.path(), into.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), into.join("victim")).unwrap();
        let err = copy_entry(src.path(), "tree", dst.path(), "tree", &ROOMY).unwrap_err();
        assert!(matches!(err, TreeError::DirectoryOverOther { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Refused);
        assert_eq!(std::fs::read_link(into.join("victim")).unwrap(), outside.path().join("victim"), "the check failed before any write");

        std::fs::remove_dir_all(tree.join("sub")).unwrap();
        copy_entry(src.path(), "tree", dst.path(), "tree", &ROOMY).unwrap();
        assert!(into.join("victim").symlink_metadata().unwrap().is_file(), "the link was replaced");
        assert_eq!(std::fs::read_to_string(outside.path().join("victim")).unwrap(), "keep\n");
        assert_eq!(listing(outside.path()), vec![PathBuf::from("victim")]);
    }

    #[test]
    fn special_files_are_refused_and_never_opened() {
        let src = tempfile::tempdir().unwrap();
        let tree = src.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a"), "a").unwrap();
        nix::unistd::mkfifo(&tree.join("pipe"), Mode::from_bits_truncate(0o644)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let err = copy_entry(src.path(), "tree", dst.path(), "tree", &ROOMY).unwrap_err();
        assert!(matches!(&err, TreeError::Unsupported { what: "a named pipe", .. }), "{err}");
        assert!(listing(dst.path()).is_empty(), "nothing written");

        // The copy pass alone (as after a swap behind the check) refuses it too, without blocking.
        let (from, to) = (dir_fd(src.path()), dir_fd(dst.path()));
        let what = What::Entry { from: from.as_fd(), name: OsStr::new("tree"), to: to.as_fd(), to_name: OsStr::new("tree"), label: OsStr::new("tree") };
        assert!(matches!(copy(what, &ROOMY), Err(TreeError::Unsupported { .. })));

        std::fs::remove_file(tree.join("pipe")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(tree.join("sock")).unwrap();
        let err = copy_entry(src.path(), "tree", dst.path(), "other", &ROOMY).unwrap_err();
        assert!(matches!(&err, TreeError::Unsupported { what: "a socket", .. }), "{err}");
        assert!(matches!(kind_at(from.as_fd(), OsStr::new("tree")), Ok(Kind::Directory)));
    }

    #[test]
    fn bytes_entries_and_depth_are_bounded_before_anything_is_written() {
        let src = tempfile::tempdir().unwrap();
        let tree = src.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        for name in ["x", "y", "a/b/c/z"] {
            std::fs::write(tree.join(name), vec![b'.'; 600]).unwrap();
        }
        let dst = tempfile::tempdir().unwrap();
        let small = |bytes, entries, depth| Options { limits: Limits { bytes, entries, depth }, mode_mask: 0o777, keep_owner: false };

        let err = copy_entry(src.path(), "tree", dst.path(), "tree", &small(1000, 100, 16)).unwrap_err();
        assert!(matches!(err, TreeError::TooLarge { max: 1000 }), "{err}");
        assert_eq!(err.class(), ErrorClass::Limit);
        let err = copy_entry(src.path(), "tree", dst.path(), "tree", &small(1 << 20, 5, 16)).unwrap_err();
        assert!(matches!(err, TreeError::TooManyEntries { max: 5 }), "{err}");
        let err = copy_entry(src.path(), "tree", dst.path(), "tree", &small(1 << 20, 100, 3)).unwrap_err();
        assert!(matches!(&err, TreeError::TooDeep { path, max: 3 } if path == Path::new("tree/a/b/c")), "{err}");
        assert!(listing(dst.path()).is_empty(), "nothing written");
        assert_eq!(copy_entry(src.path(), "tree", dst.path(), "tree", &small(1800, 7, 4)).unwrap(), Totals { entries: 7, bytes: 1800 }, "exactly at the bounds");

        // A file that grows between the passes is still bounded by the copy pass.
        let checked = tempfile::tempdir().unwrap();
        let (from, to) = (dir_fd(src.path()), dir_fd(checked.path()));
        let what = What::Entry { from: from.as_fd(), name: OsStr::new("tree"), to: to.as_fd(), to_name: OsStr::new("tree"), label: OsStr::new("tree") };
        check(what, &small(1800, 7, 4)).unwrap();
        std::fs::write(tree.join("y"), vec![b'.'; 700]).unwrap();
        assert!(matches!(copy(what, &small(1800, 7, 4)), Err(TreeError::TooLarge { .. })));
    }

    #[test]
    fn contents_merge_into_an_existing_directory_and_a_directory_never_replaces_a_file() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/new"), "new").unwrap();
        std::fs::write(src.path().join("f"), "file").unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(dst.path().join("d")).unwrap();
        std::fs::write(dst.path().join("d/old"), "old").unwrap();
        std::fs::write(dst.path().join("keep"), "keep").unwrap();
        let (from, to) = (dir_fd(src.path()), dir_fd(dst.path()));
        check_and_copy(What::Contents { from: from.as_fd(), to: to.as_fd() }, &ROOMY).unwrap();
        assert_eq!(listing(dst.path()), ["d", "d/new", "d/old", "f", "keep"].map(PathBuf::from));
        let to = dir_fd(dst.path());

        // An open directory, as a new name.
        let d = dir_fd(&src.path().join("d"));
        check_and_copy(What::Directory { from: d.as_fd(), to: to.as_fd(), to_name: OsStr::new("again"), label: OsStr::new("d") }, &ROOMY).unwrap();
        assert_eq!(std::fs::read_to_string(dst.path().join("again/new")).unwrap(), "new");
        let err = check_and_copy(What::Directory { from: d.as_fd(), to: to.as_fd(), to_name: OsStr::new("keep"), label: OsStr::new("d") }, &ROOMY).unwrap_err();
        assert!(matches!(err, TreeError::DirectoryOverOther { .. }), "{err}");
        std::fs::remove_dir_all(dst.path().join("again")).unwrap();

        // A file where the source has a directory: refused.
        std::fs::remove_dir_all(dst.path().join("d")).unwrap();
        std::fs::write(dst.path().join("d"), "a file").unwrap();
        let err = check_and_copy(What::Contents { from: from.as_fd(), to: to.as_fd() }, &ROOMY).unwrap_err();
        assert!(matches!(err, TreeError::DirectoryOverOther { .. }), "{err}");
        // A directory where the source has a file: refused.
        std::fs::create_dir(dst.path().join("dir")).unwrap();
        let err = copy_entry(src.path(), "f", dst.path(), "dir", &ROOMY).unwrap_err();
        assert!(matches!(err, TreeError::OtherOverDirectory { .. }), "{err}");
    }

    #[test]
    fn names_are_plain() {
        for good in ["a", "..a", "a b", "\u{e9}", &"x".repeat(MAX_NAME_LEN)] {
            assert!(valid_name(OsStr::new(good)), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(!valid_name(OsStr::new(bad)), "{bad:?}");
        }
        let src = tempfile::tempdir().unwrap();
        let err = copy_entry(src.path(), ".", src.path(), "x", &ROOMY).unwrap_err();
        assert!(matches!(err, TreeError::BadName { .. }), "{err}");
        let err = copy_entry(src.path(), "missing", src.path(), "x", &ROOMY).unwrap_err();
        assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    }
}
