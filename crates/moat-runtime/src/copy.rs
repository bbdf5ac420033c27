//! `moat cp`: files and directories between the host and a container, with Docker's rules.
//!
//! - **Into a container**, the zone's supervisor exposes the host's file or directory read-only
//!   on the zone's share, and init copies it into the container's root as that root
//!   (`moat-init/src/copy.rs`).
//! - **Out of a container**, init copies into a fresh staging tmpfs on the host, bounded in size
//!   and inodes (`moat_zone::staging`). This module then moves what it finds there to the
//!   destination as hostile input. The tmpfs is first made read-only, so what is checked is what
//!   is copied. Only regular files, directories and symlinks are taken, and a symlink is copied
//!   as a link, never followed. Nothing is resolved by path below the destination. The bounds
//!   are checked again. Set-user-id, set-group-id and sticky bits are dropped, and everything is
//!   created by, so owned by, the user running `moat` (root).
//!
//! Docker's rules, for a destination `DEST` and a source `SRC`:
//! - `DEST` is an existing directory: `SRC` goes into it under its own name. With `SRC/.`, a
//!   directory's contents are merged into it instead.
//! - `DEST` is an existing file: a file replaces it, and a directory is an error.
//! - `DEST` is missing: `SRC` is created as `DEST`. Its parent must exist, and a `DEST/` that
//!   is missing must not receive a file.
//!
//! A directory never replaces a non-directory or the reverse, and bad input is refused before
//! anything changed.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_proto::copy::{MAX_ARCHIVE_BYTES, MAX_COPY_BYTES, MAX_COPY_DEPTH, MAX_COPY_ENTRIES, STAGED_ITEM};
use moat_proto::{CopyPath, CopyPathError, CopySource, FailureKind};
use nix::fcntl::OFlag;
use moat_tree::{ErrorClass, Kind, Limits, Options, TreeError, Totals, What};
use moat_zone::api::{self, ApiRequest, ApiResponse};
use moat_zone::lifecycle::ZoneState;
use moat_zone::staging::{self, StagingError};

use crate::containers::{done, Containers, Found};
use crate::error::{Result, RuntimeError};

/// What the host takes from a zone in one copy out: the bounds of [`moat_proto::copy`],
/// checked again here, since the guest's own checks count for nothing. Modes lose set-user-id,
/// set-group-id and sticky: a zone must not hand the host a set-user-id file.
pub const FROM_ZONE: Options = Options { limits: Limits { bytes: MAX_COPY_BYTES, entries: MAX_COPY_ENTRIES, depth: MAX_COPY_DEPTH }, mode_mask: 0o777, keep_owner: false };

/// How long a copy may take in the zone (1 GiB through virtio-fs, under TCG, is slow).
const COPY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("moat cp copies between the host and a container: name the container's side as CONTAINER:PATH")]
    NoContainer,
    #[error("moat cp does not copy between two containers; copy to the host first")]
    BetweenContainers,
    #[error("'-' (a tar stream on stdin or stdout) is not supported; give a path")]
    Stream,
    #[error(transparent)]
    Path(#[from] CopyPathError),
    #[error("no such file or directory on the host: {0}")]
    HostMissing(PathBuf),
    #[error("{0} is neither a regular file nor a directory; only those can be copied into a container")]
    HostUnsupported(PathBuf),
    #[error("{0} names no file or directory of its own; name one below it")]
    NoName(PathBuf),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error("destination directory {0} does not exist; create it first")]
    ParentMissing(PathBuf),
    #[error("cannot copy a directory to a file: {0} exists and is not a directory")]
    DirectoryOntoFile(PathBuf),
    #[error("container {container}'s files cannot be reached: its zone is {state} (a stopped container's files stay reachable only while its pod runs)")]
    ZoneNotRunning { container: String, state: String },
    #[error("copying {what} to {dest}: {err}")]
    Tree { what: String, dest: PathBuf, err: TreeError },
    #[error("the zone answered a copy out with {0}")]
    Unexpected(String),
    #[error("the zone staged no tar: {0}")]
    NotATar(String),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
}

impl CopyError {
    pub fn kind(&self) -> FailureKind {
        match self {
            CopyError::HostMissing(_) | CopyError::ParentMissing(_) => FailureKind::NotFound,
            CopyError::ZoneNotRunning { .. } => FailureKind::WrongState,
            CopyError::Tree { err, .. } => match err.class() {
                ErrorClass::Limit => FailureKind::Limit,
                ErrorClass::Refused => FailureKind::BadRequest,
                ErrorClass::NotFound => FailureKind::NotFound,
                ErrorClass::Io => FailureKind::Internal,
            },
            CopyError::Unexpected(_) | CopyError::Staging(_) | CopyError::Io { .. } => FailureKind::Internal,
            CopyError::NotATar(_) => FailureKind::BadRequest,
            _ => FailureKind::BadRequest,
        }
    }
}

/// One side of `moat cp`, as Docker splits it: `CONTAINER:PATH`, or a host path (one that is
/// absolute, has no `:`, or starts with `.`, as `./a:b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyArg {
    Host(String),
    Container { container: String, path: String },
}

impl CopyArg {
    pub fn parse(arg: &str) -> Self {
        if arg.starts_with('/') {
            return CopyArg::Host(arg.to_string());
        }
        match arg.split_once(':') {
            Some((container, path)) if !container.starts_with('.') => CopyArg::Container { container: container.to_string(), path: path.to_string() },
            _ => CopyArg::Host(arg.to_string()),
        }
    }
}

impl Containers<'_> {
    /// `moat cp SRC DEST`: exactly one side in a container.
    pub fn copy(&self, source: &CopyArg, dest: &CopyArg) -> Result<()> {
        match (source, dest) {
            (CopyArg::Host(from), CopyArg::Container { container, path }) => self.copy_in(&self.find(container)?, from, path),
            (CopyArg::Container { container, path }, CopyArg::Host(to)) => self.copy_out(&self.find(container)?, path, to),
            (CopyArg::Host(_), CopyArg::Host(_)) => Err(CopyError::NoContainer.into()),
            (CopyArg::Container { .. }, CopyArg::Container { .. }) => Err(CopyError::BetweenContainers.into()),
        }
    }

    /// Copy the host's `source` to `to` in the container.
    pub fn copy_in(&self, found: &Found, source: &str, to: &str) -> Result<()> {
        CopyPath::parse(to).map_err(CopyError::from)?;
        let source = HostSource::resolve(source)?;
        check_zone(found)?;
        let request = api::CopyIn { container: found.container.id.clone(), source: source.path, name: source.name, to: to.to_string(), contents: source.contents };
        done(api::call(&found.dir.api_socket(), &ApiRequest::CopyIn(Box::new(request)), COPY_TIMEOUT))
    }

    /// Copy the container's `from` to `dest` on the host.
    pub fn copy_out(&self, found: &Found, from: &str, dest: &str) -> Result<()> {
        let from_path = CopyPath::parse(from).map_err(CopyError::from)?;
        let dest = HostDest::resolve(dest)?;
        let staged = self.stage(found, CopySource::Path(from.to_string()))?;
        deliver(&staged.dir, &from_path, &dest, &FROM_ZONE)?;
        Ok(())
    }

    /// The container's root filesystem (`moat export`) or writable layer (`moat commit`) as a
    /// tar the zone wrote, at most `max_bytes`: hostile, so read it through a checker
    /// (`moat_image::unpack::retar`). A stopped container's files stay reachable while its zone
    /// runs (a pod's).
    pub fn tar_out(&self, found: &Found, tree: TarTree, max_bytes: u64) -> Result<StagedTar> {
        let max_bytes = max_bytes.min(MAX_ARCHIVE_BYTES);
        let from = match tree {
            TarTree::Root => CopySource::RootTar { max_bytes },
            TarTree::Layer => CopySource::LayerTar { max_bytes },
        };
        let staged = self.stage(found, from)?;
        let file = open_staged(&staged.dir, OFlag::O_RDONLY).map_err(|err| CopyError::NotATar(err.to_string()))?;
        let meta = file.metadata().map_err(|err| CopyError::Io { what: "inspecting", path: staged.dir.join(STAGED_ITEM), err })?;
        if !meta.is_file() {
            return Err(CopyError::NotATar(format!("{} is not a regular file", staged.dir.join(STAGED_ITEM).display())).into());
        }
        Ok(StagedTar { file: std::io::Read::take(file, max_bytes.saturating_add(1)), _staged: staged })
    }

    /// Ask the zone to copy `from` into a fresh staging directory, and freeze what it wrote.
    fn stage(&self, found: &Found, from: CopySource) -> Result<Staged> {
        check_zone(found)?;
        let request = ApiRequest::CopyOut { container: found.container.id.clone(), from };
        let dir = match api::call(&found.dir.api_socket(), &request, COPY_TIMEOUT)? {
            ApiResponse::Staged { dir } => dir,
            ApiResponse::Error { kind, message } => return Err(RuntimeError::Zone { kind, message }),
            other => return Err(CopyError::Unexpected(format!("{other:?}")).into()),
        };
        let staged = Staged { dir };
        staging::freeze(&staged.dir).map_err(CopyError::from)?;
        Ok(staged)
    }
}

/// Which tree of a container [`Containers::tar_out`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarTree {
    /// Its root filesystem as it sees it.
    Root,
    /// Its writable layer, as an OCI layer.
    Layer,
}

/// A tar a zone staged, open for reading; its staging directory goes when it is dropped.
pub struct StagedTar {
    /// Bounded one byte past the limit, so the checker sees the limit broken.
    file: std::io::Take<std::fs::File>,
    _staged: Staged,
}

impl std::io::Read for StagedTar {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

/// A staging directory, removed when dropped, whatever happened.
struct Staged {
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(err) = staging::remove(&self.dir) {
            tracing::warn!(%err, "removing a copy's staging directory; it goes with the zone");
        }
    }
}

fn check_zone(found: &Found) -> Result<(), CopyError> {
    let state = found.zone.effective_state();
    if state != ZoneState::Running {
        return Err(CopyError::ZoneNotRunning { container: found.container.name.clone(), state: state.name().into() });
    }
    Ok(())
}

/// The host side of a copy into a container.
#[derive(Debug, PartialEq, Eq)]
struct HostSource {
    /// Absolute, symlinks resolved: the supervisor exposes it, from its own directory.
    path: PathBuf,
    /// Its name as given, which it keeps in the container.
    name: String,
    /// `SRC/.`: a directory's contents.
    contents: bool,
}

impl HostSource {
    fn resolve(text: &str) -> Result<Self, CopyError> {
        if text == "-" {
            return Err(CopyError::Stream);
        }
        let given = PathBuf::from(text);
        let meta = std::fs::metadata(&given).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => CopyError::HostMissing(given.clone()),
            std::io::ErrorKind::NotADirectory => CopyError::NotADirectory(text.to_string()),
            _ => CopyError::Io { what: "inspecting", path: given.clone(), err },
        })?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(CopyError::HostUnsupported(given));
        }
        let contents = text == "." || text.ends_with("/.");
        if (contents || text.ends_with('/')) && !meta.is_dir() {
            return Err(CopyError::NotADirectory(text.to_string()));
        }
        let path = std::fs::canonicalize(&given).map_err(|err| CopyError::Io { what: "resolving", path: given.clone(), err })?;
        let name = given.file_name().or_else(|| path.file_name()).map(|n| n.to_string_lossy().into_owned());
        let name = match name {
            Some(name) => name,
            None if contents => String::new(),
            None => return Err(CopyError::NoName(given)),
        };
        Ok(Self { path, name, contents })
    }
}

/// Where a copy out of a container lands on the host, as far as it is known before the copy.
#[derive(Debug, PartialEq, Eq)]
pub enum HostDest {
    /// An existing directory: the copy goes into it.
    Directory(PathBuf),
    /// An existing file (a symlink to one is followed, as Docker does): a file replaces it.
    File { parent: PathBuf, name: OsString },
    /// Nothing yet: the copy is created there. `directory`: the path ended with `/`.
    Missing { parent: PathBuf, name: OsString, directory: bool },
}

impl HostDest {
    /// The destination `text`, the caller's own path (trusted: followed where it leads).
    pub fn resolve(text: &str) -> Result<Self, CopyError> {
        if text == "-" {
            return Err(CopyError::Stream);
        }
        let given = PathBuf::from(text);
        let directory = text.ends_with('/') || text.ends_with("/.") || text == ".";
        match std::fs::metadata(&given) {
            Ok(meta) if meta.is_dir() => Ok(HostDest::Directory(given)),
            Ok(_) if directory => Err(CopyError::NotADirectory(text.to_string())),
            Ok(_) => {
                let real = std::fs::canonicalize(&given).map_err(|err| CopyError::Io { what: "resolving", path: given.clone(), err })?;
                let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else { return Err(CopyError::NoName(given)) };
                Ok(HostDest::File { parent: parent.to_path_buf(), name: name.to_os_string() })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let name = given.file_name().ok_or_else(|| CopyError::NoName(given.clone()))?.to_os_string();
                let parent = given.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
                if !std::fs::metadata(&parent).is_ok_and(|m| m.is_dir()) {
                    return Err(CopyError::ParentMissing(parent));
                }
                Ok(HostDest::Missing { parent, name, directory })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => Err(CopyError::NotADirectory(text.to_string())),
            Err(err) => Err(CopyError::Io { what: "inspecting", path: given, err }),
        }
    }
}

/// Move what a zone staged in `staging` (as [`STAGED_ITEM`], hostile) to `dest`, with Docker's
/// rules; `from` is the container path it came from, and `options` the bounds and mode mask.
pub fn deliver(staging: &Path, from: &CopyPath, dest: &HostDest, options: &Options) -> Result<Totals, CopyError> {
    let staged = open_dir(staging)?;
    let item = OsStr::new(STAGED_ITEM);
    let what_of = || format!("{from} from the container");
    let tree_err = |dest: &Path| {
        let dest = dest.to_path_buf();
        move |err| CopyError::Tree { what: what_of(), dest, err }
    };
    let kind = moat_tree::kind_at(staged.as_fd(), item).map_err(tree_err(staging))?;
    let is_dir = kind == Kind::Directory;
    if from.contents() && !is_dir {
        return Err(CopyError::NotADirectory(format!("{from} in the container")));
    }
    match dest {
        HostDest::Directory(dir) => {
            let into = open_dir(dir)?;
            let what = match from.name() {
                Some(name) if !from.contents() => What::Entry { from: staged.as_fd(), name: item, to: into.as_fd(), to_name: OsStr::new(name), label: OsStr::new(name) },
                // `/.`, or the container's root, which has no name: the contents.
                _ if is_dir => {
                    let contents = open_staged_dir(&staged, staging)?;
                    return moat_tree::check_and_copy(What::Contents { from: contents.as_fd(), to: into.as_fd() }, options).map_err(tree_err(dir));
                }
                _ => return Err(CopyError::NotADirectory(format!("{from} in the container"))),
            };
            moat_tree::check_and_copy(what, options).map_err(tree_err(dir))
        }
        HostDest::File { parent, name } if !is_dir => copy_as(&staged, parent, name, from, options).map_err(tree_err(&parent.join(name))),
        HostDest::File { parent, name } => Err(CopyError::DirectoryOntoFile(parent.join(name))),
        HostDest::Missing { parent, name, directory } if *directory && !is_dir => Err(CopyError::ParentMissing(parent.join(name))),
        HostDest::Missing { parent, name, .. } => copy_as(&staged, parent, name, from, options).map_err(tree_err(&parent.join(name))),
    }
}

/// Copy the staged item as `name` in the host directory `parent`.
fn copy_as(staged: &std::fs::File, parent: &Path, name: &OsStr, from: &CopyPath, options: &Options) -> Result<Totals, TreeError> {
    let parent_dir = std::fs::File::open(parent).map_err(|err| TreeError::Io { what: "opening", path: parent.to_path_buf(), err })?;
    let label = OsStr::new(from.name().unwrap_or("/"));
    moat_tree::check_and_copy(What::Entry { from: staged.as_fd(), name: OsStr::new(STAGED_ITEM), to: parent_dir.as_fd(), to_name: name, label }, options)
}

/// A host directory, for copying into (the caller's path: followed).
fn open_dir(path: &Path) -> Result<std::fs::File, CopyError> {
    std::fs::File::open(path).map_err(|err| CopyError::Io { what: "opening", path: path.to_path_buf(), err })
}

/// The staged item as a directory, never through a symlink.
fn open_staged_dir(staged: &std::fs::File, staging: &Path) -> Result<std::fs::File, CopyError> {
    use std::os::fd::AsRawFd;
    open_at(staged.as_raw_fd(), staging, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

/// The staged item in the staging directory `staging`, never through a symlink, and never
/// blocking on a named pipe.
fn open_staged(staging: &Path, flags: OFlag) -> Result<std::fs::File, CopyError> {
    use std::os::fd::AsRawFd;
    let dir = open_dir(staging)?;
    open_at(dir.as_raw_fd(), staging, flags | OFlag::O_NONBLOCK)
}

fn open_at(dir: std::os::fd::RawFd, staging: &Path, flags: OFlag) -> Result<std::fs::File, CopyError> {
    use std::os::fd::FromRawFd;
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(Some(dir), STAGED_ITEM, flags, nix::sys::stat::Mode::empty()).map_err(|errno| CopyError::Io { what: "opening", path: staging.join(STAGED_ITEM), err: errno.into() })?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn path(text: &str) -> CopyPath {
        CopyPath::parse(text).unwrap()
    }

    /// A staging directory holding `item` as `make` builds it.
    fn staged(make: impl FnOnce(&Path)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        make(&dir.path().join(STAGED_ITEM));
        dir
    }

    fn small(bytes: u64, entries: u64) -> Options {
        Options { limits: Limits { bytes, entries, depth: 8 }, mode_mask: 0o777, keep_owner: false }
    }

    #[test]
    fn arguments_split_as_dockers() {
        assert_eq!(CopyArg::parse("c1:/etc"), CopyArg::Container { container: "c1".into(), path: "/etc".into() });
        assert_eq!(CopyArg::parse("c1:rel"), CopyArg::Container { container: "c1".into(), path: "rel".into() });
        assert_eq!(CopyArg::parse("/tmp/a:b"), CopyArg::Host("/tmp/a:b".into()));
        assert_eq!(CopyArg::parse("./a:b"), CopyArg::Host("./a:b".into()));
        assert_eq!(CopyArg::parse("file"), CopyArg::Host("file".into()));
    }

    #[test]
    fn destinations_follow_dockers_rules() {
        let host = tempfile::tempdir().unwrap();
        let dir = host.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(host.path().join("file"), "x").unwrap();
        let text = |p: &Path| p.to_str().unwrap().to_string();
        assert_eq!(HostDest::resolve(&text(&dir)).unwrap(), HostDest::Directory(dir.clone()));
        assert!(matches!(HostDest::resolve(&text(&host.path().join("file"))).unwrap(), HostDest::File { name, .. } if name == "file"));
        assert!(matches!(HostDest::resolve(&format!("{}/", text(&host.path().join("file")))), Err(CopyError::NotADirectory(_))));
        let new = HostDest::resolve(&format!("{}/", text(&host.path().join("new")))).unwrap();
        assert_eq!(new, HostDest::Missing { parent: host.path().to_path_buf(), name: "new".into(), directory: true });
        assert!(matches!(HostDest::resolve(&text(&host.path().join("no/such"))), Err(CopyError::ParentMissing(p)) if p == host.path().join("no")));
        assert!(matches!(HostDest::resolve("-"), Err(CopyError::Stream)));
        assert_eq!(CopyError::ParentMissing(PathBuf::new()).kind(), FailureKind::NotFound);

        let source = HostSource::resolve(&format!("{}/", text(&dir))).unwrap();
        assert_eq!((source.name.as_str(), source.contents), ("dir", false));
        assert!(HostSource::resolve(&format!("{}/.", text(&dir))).unwrap().contents);
        assert!(matches!(HostSource::resolve(&text(&host.path().join("missing"))), Err(CopyError::HostMissing(_))));
        assert!(matches!(HostSource::resolve(&format!("{}/.", text(&host.path().join("file")))), Err(CopyError::NotADirectory(_))));
        assert!(matches!(HostSource::resolve(&format!("{}/", text(&host.path().join("file")))), Err(CopyError::NotADirectory(_))));
        assert!(matches!(HostSource::resolve("/dev/null"), Err(CopyError::HostUnsupported(_))));
    }

    #[test]
    fn a_staged_tree_lands_with_its_links_as_links_and_no_set_user_id() {
        let stage = staged(|item| {
            std::fs::create_dir_all(item.join("bin")).unwrap();
            std::fs::write(item.join("bin/tool"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(item.join("bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", item.join("passwd")).unwrap();
        });
        let host = tempfile::tempdir().unwrap();
        // Into an existing directory, under the container path's name.
        deliver(stage.path(), &path("/opt/app"), &HostDest::Directory(host.path().to_path_buf()), &FROM_ZONE).unwrap();
        let out = host.path().join("app");
        assert_eq!(std::fs::read_link(out.join("passwd")).unwrap(), Path::new("/etc/passwd"), "a link, never resolved on the host");
        let tool = std::fs::metadata(out.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o755, "set-user-id dropped");
        assert_eq!(tool.uid(), nix::unistd::geteuid().as_raw(), "owned by the caller");

        // As a new name, and the contents into an existing directory.
        let missing = HostDest::Missing { parent: host.path().to_path_buf(), name: "renamed".into(), directory: true };
        deliver(stage.path(), &path("/opt/app"), &missing, &FROM_ZONE).unwrap();
        assert!(host.path().join("renamed/bin/tool").is_file());
        let merged = host.path().join("merged");
        std::fs::create_dir(&merged).unwrap();
        deliver(stage.path(), &path("/opt/app/."), &HostDest::Directory(merged.clone()), &FROM_ZONE).unwrap();
        assert!(merged.join("bin/tool").is_file() && merged.join("passwd").is_symlink());

        // A directory onto a file is refused.
        std::fs::write(host.path().join("f"), "keep").unwrap();
        let onto = HostDest::File { parent: host.path().to_path_buf(), name: "f".into() };
        assert!(matches!(deliver(stage.path(), &path("/opt/app"), &onto, &FROM_ZONE), Err(CopyError::DirectoryOntoFile(_))));
        assert_eq!(std::fs::read_to_string(host.path().join("f")).unwrap(), "keep");
    }

    #[test]
    fn a_staged_link_in_place_of_the_item_or_a_special_file_is_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
        // The zone stages a link to the host's files as the item itself.
        let link = staged(|item| std::os::unix::fs::symlink(outside.path().join("secret"), item).unwrap());
        let host = tempfile::tempdir().unwrap();
        deliver(link.path(), &path("/x"), &HostDest::Directory(host.path().to_path_buf()), &FROM_ZONE).unwrap();
        assert!(host.path().join("x").is_symlink(), "copied as the link");
        let err = deliver(link.path(), &path("/x/."), &HostDest::Directory(host.path().to_path_buf()), &FROM_ZONE).unwrap_err();
        assert!(matches!(err, CopyError::NotADirectory(_)), "a link is never opened as the directory it names: {err}");

        let fifo = staged(|item| {
            std::fs::create_dir(item).unwrap();
            std::fs::write(item.join("a"), "a").unwrap();
            nix::unistd::mkfifo(&item.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        });
        let dest = host.path().join("fifo-dest");
        std::fs::create_dir(&dest).unwrap();
        let err = deliver(fifo.path(), &path("/d"), &HostDest::Directory(dest.clone()), &FROM_ZONE).unwrap_err();
        assert_eq!(err.kind(), FailureKind::BadRequest, "{err}");
        assert!(err.to_string().contains("named pipe"), "{err}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "nothing written");
    }

    #[test]
    fn the_bounds_hold_whatever_the_zone_staged() {
        let stage = staged(|item| {
            std::fs::create_dir(item).unwrap();
            for n in 0..5 {
                std::fs::write(item.join(format!("f{n}")), vec![b'x'; 100]).unwrap();
            }
        });
        let host = tempfile::tempdir().unwrap();
        let into = HostDest::Directory(host.path().to_path_buf());
        let err = deliver(stage.path(), &path("/d"), &into, &small(499, 100)).unwrap_err();
        assert_eq!(err.kind(), FailureKind::Limit, "{err}");
        let err = deliver(stage.path(), &path("/d"), &into, &small(1 << 20, 5)).unwrap_err();
        assert_eq!(err.kind(), FailureKind::Limit, "{err}");
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0, "nothing written");
        assert_eq!(deliver(stage.path(), &path("/d"), &into, &small(500, 6)).unwrap(), Totals { entries: 6, bytes: 500 });
    }
}
