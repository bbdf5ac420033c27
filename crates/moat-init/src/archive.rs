//! `moat export` and `moat commit` in the zone: a container's root filesystem, or its writable
//! layer, written as one tar file into a staging directory on the share.
//!
//! The walk opens one name at a time below an open directory, with `O_NOFOLLOW`: a container
//! that swaps a directory for a symlink mid-walk leads it nowhere outside what it walks. A
//! directory on another filesystem (a mount) is written empty. Hard links are written as
//! separate files, sockets are left out, and xattrs are not kept.
//!
//! The writable layer is overlayfs's upper directory. Its whiteouts become OCI's: a character
//! device 0/0 is `.wh.NAME`, and a directory marked opaque gets `.wh..wh..opq`. The host checks
//! the tar again, entry by entry, whatever this side wrote.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use moat_proto::copy::MAX_COPY_DEPTH;
use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, major, minor, FileStat, Mode, SFlag};
use oci_spec::runtime::LinuxIdMapping;

use crate::idmap;

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
/// Overlay features whose upper entries do not hold what the container sees: a redirected
/// directory's contents and a metadata-only copy's data live in the image.
const UNSUPPORTED_XATTRS: [(&CStr, &str); 2] = [(c"trusted.overlay.redirect", "redirected directory"), (c"trusted.overlay.metacopy", "metadata-only copy")];
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WRITE_BUFFER: usize = 256 << 10;

/// Which tree, and so whether overlay whiteouts are translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The merged view: the container's root as it sees it.
    Merged,
    /// Overlayfs's upper directory, as an OCI layer.
    Layer,
}

/// What the container makes of the tree it is written from.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The container's uid and gid mappings, when it has a user namespace and the tree shows
    /// the zone's ids (the merged view does; the upper directory, written through an idmapped
    /// mount, holds the image's own).
    pub ids: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
    /// The destinations of the container's mounts, relative to its root: an empty file there
    /// in the writable layer is the mount point runc made, not the container's content.
    pub mount_points: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the tar would be larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0} is nested more than {MAX_COPY_DEPTH} directories deep")]
    TooDeep(String),
    #[error("{path} is an overlayfs {what}, which cannot be written as a layer")]
    Overlay { path: String, what: &'static str },
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: String, err: io::Error },
}

impl ArchiveError {
    pub fn is_limit(&self) -> bool {
        matches!(self, ArchiveError::TooLarge(_) | ArchiveError::TooDeep(_))
    }
}

/// Write the tree at `root` as a tar to `out_name` in the directory `out_dir` (created; it must
/// not exist), at most `max_bytes` long.
pub fn write(root: &Path, tree: Tree, view: &View, out_dir: &OwnedFd, out_name: &OsStr, max_bytes: u64) -> Result<(), ArchiveError> {
    let top = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(io("opening", root.display()))?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    let top = unsafe { OwnedFd::from_raw_fd(top) };
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file = openat(Some(out_dir.as_raw_fd()), out_name, flags, Mode::from_bits_truncate(0o600)).map_err(io("creating", "the staged tar"))?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(file) };
    let out = Bounded { inner: BufWriter::with_capacity(WRITE_BUFFER, file), written: 0, max: max_bytes };
    let mut walk = Walk { tree, view, builder: tar::Builder::new(out), device: fstat(top.as_raw_fd()).map_err(io("inspecting", root.display()))?.st_dev };
    walk.builder.mode(tar::HeaderMode::Complete);
    let walked = walk.directory(&top, Path::new(""), 0).and_then(|()| walk.builder.finish().map_err(io("writing", "the tar")));
    let over = walk.builder.get_ref().written > max_bytes;
    match walked {
        Err(_) if over => Err(ArchiveError::TooLarge(max_bytes)),
        Err(err) => Err(err),
        Ok(()) => {
            let out = walk.builder.into_inner().map_err(io("writing", "the tar"))?;
            let file = out.inner.into_inner().map_err(|e| io("writing", "the tar")(e.into_error()))?;
            file.sync_all().map_err(io("syncing", "the tar"))
        }
    }
}

/// An I/O failure of `what` on `path` (a nix or std error).
fn io<E: Into<io::Error>>(what: &'static str, path: impl std::fmt::Display) -> impl FnOnce(E) -> ArchiveError {
    move |err| ArchiveError::Io { what, path: path.to_string(), err: err.into() }
}

struct Walk<'v> {
    tree: Tree,
    view: &'v View,
    builder: tar::Builder<Bounded<BufWriter<File>>>,
    /// The root's filesystem: a directory on another is a mount, written empty.
    device: u64,
}

impl Walk<'_> {
    /// Write what the open directory `dir` (at `path` in the tar) holds, sorted by name.
    fn directory(&mut self, dir: &OwnedFd, path: &Path, depth: usize) -> Result<(), ArchiveError> {
        if depth > MAX_COPY_DEPTH {
            return Err(ArchiveError::TooDeep(path.display().to_string()));
        }
        let mut names = list(dir, path)?;
        names.sort();
        for name in names {
            self.entry(dir, &name, &path.join(&name), depth)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path, depth: usize) -> Result<(), ArchiveError> {
        let stat = fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io("inspecting", path.display()))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if self.tree == Tree::Layer && kind == SFlag::S_IFCHR && stat.st_rdev == 0 {
            let mut marker = OsString::from(WHITEOUT_PREFIX);
            marker.push(name);
            return self.marker(&path.with_file_name(marker), &stat);
        }
        if self.tree == Tree::Layer && kind == SFlag::S_IFREG && stat.st_size == 0 && self.view.mount_points.iter().any(|m| m == path) {
            return Ok(());
        }
        let mut header = self.header(&stat);
        let append = |builder: &mut tar::Builder<_>, header: &mut tar::Header, data: &mut dyn Read| builder.append_data(header, path, data).map_err(io("writing", path.display()));
        match kind {
            SFlag::S_IFDIR => {
                let sub = open_at(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, path)?;
                if self.tree == Tree::Layer {
                    check_overlay(&sub, path)?;
                }
                header.set_entry_type(tar::EntryType::Directory);
                append(&mut self.builder, &mut header, &mut io::empty())?;
                if self.tree == Tree::Layer && xattr(&sub, OPAQUE_XATTR).as_deref() == Some(b"y") {
                    self.marker(&path.join(OPAQUE_MARKER), &stat)?;
                }
                if stat.st_dev == self.device {
                    self.directory(&sub, path, depth + 1)?;
                }
                Ok(())
            }
            SFlag::S_IFREG => {
                let file = open_at(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY, path)?;
                if self.tree == Tree::Layer {
                    check_overlay(&file, path)?;
                }
                let now = fstat(file.as_raw_fd()).map_err(io("inspecting", path.display()))?;
                if SFlag::from_bits_truncate(now.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                    return Err(ArchiveError::Io { what: "reading", path: path.display().to_string(), err: io::Error::other("it changed from a regular file while being written") });
                }
                let size = u64::try_from(now.st_size).unwrap_or(0);
                header.set_size(size);
                header.set_entry_type(tar::EntryType::Regular);
                append(&mut self.builder, &mut header, &mut moat_tree::Exact::new(File::from(file), size))
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(Some(dir.as_raw_fd()), name).map_err(io("reading", path.display()))?;
                header.set_entry_type(tar::EntryType::Symlink);
                self.builder.append_link(&mut header, path, Path::new(&target)).map_err(io("writing", path.display()))
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                header.set_entry_type(if kind == SFlag::S_IFCHR { tar::EntryType::Char } else { tar::EntryType::Block });
                let device = |n: u64| u32::try_from(n).map_err(|_| ArchiveError::Io { what: "writing", path: path.display().to_string(), err: io::Error::other("device number out of range") });
                header.set_device_major(device(major(stat.st_rdev))?).map_err(io("writing", path.display()))?;
                header.set_device_minor(device(minor(stat.st_rdev))?).map_err(io("writing", path.display()))?;
                append(&mut self.builder, &mut header, &mut io::empty())
            }
            SFlag::S_IFIFO => {
                header.set_entry_type(tar::EntryType::Fifo);
                append(&mut self.builder, &mut header, &mut io::empty())
            }
            // A socket is a live endpoint, not content (tar and Docker leave them out).
            _ => Ok(()),
        }
    }

    /// An empty regular file: a whiteout or an opaque marker.
    fn marker(&mut self, path: &Path, stat: &FileStat) -> Result<(), ArchiveError> {
        let mut header = self.header(stat);
        header.set_mode(0);
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder.append_data(&mut header, path, io::empty()).map_err(io("writing", path.display()))
    }

    /// A header with the entry's owner (as the container sees it), permission bits and
    /// modification time.
    fn header(&self, stat: &FileStat) -> tar::Header {
        let (uid, gid) = match &self.view.ids {
            Some((uids, gids)) => (idmap::container_id(uids, stat.st_uid), idmap::container_id(gids, stat.st_gid)),
            None => (stat.st_uid, stat.st_gid),
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(stat.st_mode & 0o7777);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
        header.set_size(0);
        header
    }
}

fn open_at(dir: &OwnedFd, name: &OsStr, flags: OFlag, path: &Path) -> Result<OwnedFd, ArchiveError> {
    let fd = openat(Some(dir.as_raw_fd()), name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(io("opening", path.display()))?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names in the open directory `dir`, without `.` and `..`.
fn list(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>, ArchiveError> {
    let err = |e: nix::Error| io("listing", shown_dir(path))(e);
    let mut listing = Dir::openat(Some(dir.as_raw_fd()), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(err)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry.map_err(err)?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from(OsStr::from_bytes(&name)));
        }
    }
    Ok(names)
}

fn shown_dir(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "/".into()
    } else {
        path.display().to_string()
    }
}

/// The value of the xattr `name` on `fd`, if it has one of at most a few bytes.
fn xattr(fd: &OwnedFd, name: &CStr) -> Option<Vec<u8>> {
    let mut value = [0u8; 16];
    // SAFETY: fgetxattr writes at most `value.len()` bytes into `value`, which outlives the call.
    let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    usize::try_from(n).ok().map(|n| value[..n].to_vec())
}

/// Refuse an upper entry that holds less than the container sees.
fn check_overlay(fd: &OwnedFd, path: &Path) -> Result<(), ArchiveError> {
    for (name, what) in UNSUPPORTED_XATTRS {
        // SAFETY: a size query: fgetxattr writes nothing with a null buffer and size 0.
        let present = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) } >= 0;
        if present {
            return Err(ArchiveError::Overlay { path: path.display().to_string(), what });
        }
    }
    Ok(())
}

/// A writer that refuses to go past `max` bytes.
struct Bounded<W> {
    inner: W,
    written: u64,
    max: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = self.written.saturating_add(buf.len() as u64);
        if self.written > self.max {
            return Err(io::Error::other("the tar's size limit was reached"));
        }
        self.inner.write(buf).inspect(|n| self.written -= (buf.len() - n) as u64)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, u64)> {
        let mut archive = tar::Archive::new(bytes);
        archive.entries().unwrap().map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.header().entry_type(), e.size())
        }).collect()
    }

    fn written(root: &Path, tree: Tree, max: u64) -> Result<Vec<u8>, ArchiveError> {
        let out = tempfile::tempdir().unwrap();
        let dir = nix::fcntl::open(out.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        // SAFETY: open just returned it.
        let dir = unsafe { OwnedFd::from_raw_fd(dir) };
        write(root, tree, &View { ids: None, mount_points: vec![PathBuf::from("etc/hosts")] }, &dir, OsStr::new("item"), max)?;
        Ok(std::fs::read(out.path().join("item")).unwrap())
    }

    #[test]
    fn a_tree_is_written_sorted_with_links_as_links() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("d/f"), "hello").unwrap();
        std::fs::write(root.path().join("a"), "").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("pw")).unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/hosts"), "").unwrap();
        let bytes = written(root.path(), Tree::Merged, 1 << 20).unwrap();
        let seen = entries(&bytes);
        let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "d", "d/f", "etc", "etc/hosts", "pw"]);
        let layer = entries(&written(root.path(), Tree::Layer, 1 << 20).unwrap());
        assert!(!layer.iter().any(|(n, _, _)| n == "etc/hosts"), "a mount point runc made is no layer content");
        assert_eq!(seen[2], ("d/f".into(), tar::EntryType::Regular, 5));
        assert_eq!(seen[5].1, tar::EntryType::Symlink);
        assert!(matches!(written(root.path(), Tree::Merged, 2048), Err(ArchiveError::TooLarge(2048))));
    }

    #[test]
    fn whiteouts_become_oci_markers() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root (mknod, trusted xattrs); skipped");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("opaque")).unwrap();
        nix::sys::stat::mknod(&root.path().join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        let dir = std::fs::File::open(root.path().join("opaque")).unwrap();
        // SAFETY: the name and value are valid for the call.
        let set = unsafe { libc::fsetxattr(dir.as_raw_fd(), OPAQUE_XATTR.as_ptr(), c"y".as_ptr().cast(), 1, 0) };
        if set != 0 {
            eprintln!("no trusted xattrs on this filesystem; skipped");
            return;
        }
        let names: Vec<String> = entries(&written(root.path(), Tree::Layer, 1 << 20).unwrap()).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, [".wh.gone", "opaque", "opaque/.wh..wh..opq"]);
        let merged: Vec<(String, tar::EntryType, u64)> = entries(&written(root.path(), Tree::Merged, 1 << 20).unwrap());
        assert_eq!(merged[0].1, tar::EntryType::Char, "only a layer translates whiteouts");
    }
}
