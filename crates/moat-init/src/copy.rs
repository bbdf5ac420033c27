//! `moat cp` in the zone: copies between the share and a container's root filesystem.
//!
//! Each copy runs in a forked child so that init keeps serving (relaying output, answering
//! other requests) while it runs; init answers the host once it reaps the child. A copy into a
//! container runs with the container root's filesystem ids, so what it creates belongs to that
//! root (and an idmapped layer accepts it); a copy out runs as the zone's root.
//!
//! Container paths resolve inside the container's root (`RESOLVE_IN_ROOT`): an absolute symlink
//! or `..` in the container never leads to the zone's own files. Below that, [`moat_tree`] copies
//! without following any symlink, and checks the whole copy against the bounds in
//! [`moat_proto::copy`] before it writes anything.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use moat_proto::copy::{MAX_COPIES, MAX_COPY_BYTES, MAX_COPY_DEPTH, MAX_COPY_ENTRIES, STAGED_ITEM};
use moat_proto::layout::SHARE_DIR;
use moat_proto::copy::MAX_ARCHIVE_BYTES;
use moat_proto::{CopyIn, CopyOut, CopyPath, CopySource, FailureKind, GuestMessage, Response};
use moat_tree::{ErrorClass, Kind, Limits, Options, TreeError, What};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::wait::WaitStatus;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxIdMapping;

use crate::channel::Channel;
use crate::runner::Container;
use crate::archive::{self, ArchiveError, Tree, View};
use crate::disks::RootfsDirs;
use crate::{idmap, log, Error};

/// Longest share path the host may name for a copy.
const MAX_SHARE_PATH: usize = 255;
/// Most bytes of a child's answer init reads: one JSON [`Response`] with a clipped message.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Longest message a child reports.
const MAX_MESSAGE_CHARS: usize = 1024;
/// The descriptor a child writes its answer to; it closes every other one it inherited.
const ANSWER_FD: i32 = 3;

const OPTIONS_IN: Options = Options {
    limits: Limits { bytes: MAX_COPY_BYTES, entries: MAX_COPY_ENTRIES, depth: MAX_COPY_DEPTH },
    // Within the zone, modes are copied whole, as Docker does; the host strips them on its side.
    mode_mask: 0o7777,
    keep_owner: false,
};

/// What a copy needs to know of its container.
pub struct Target {
    /// The container's root filesystem as init sees it.
    pub rootfs: PathBuf,
    /// Its writable layer: overlayfs's upper directory, on the scratch disk.
    pub upper: PathBuf,
    /// The zone's uid and gid of the container's root.
    pub root_ids: (u32, u32),
    pub read_only: bool,
    /// The container's own mounts (volumes, tmpfs, /proc ...), which a copy does not reach.
    pub mounts: Vec<String>,
    /// Its user namespace's mappings, when it has one: how it sees the zone's ids.
    pub ids: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
}

impl Target {
    pub fn of(container: &Container) -> Result<Self, idmap::IdmapError> {
        let spec = &container.spec;
        let mounts = spec.mounts().as_deref().unwrap_or_default().iter().map(|m| m.destination().to_string_lossy().into_owned()).collect();
        Ok(Self {
            rootfs: container.rootfs.clone(),
            upper: RootfsDirs::of(&container.id).upper(),
            root_ids: idmap::root_ids(spec)?,
            read_only: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            mounts,
            ids: spec.linux().as_ref().filter(|_| moat_spec::user::has_user_namespace(spec)).map(|linux| {
                (linux.uid_mappings().clone().unwrap_or_default(), linux.gid_mappings().clone().unwrap_or_default())
            }),
        })
    }

    /// How the container sees `tree`, for a tar of it.
    fn view(&self, tree: Tree) -> View {
        let mount_points = self.mounts.iter().map(|m| PathBuf::from(m.trim_start_matches('/'))).collect();
        View { ids: if tree == Tree::Merged { self.ids.clone() } else { None }, mount_points }
    }

    /// Refuse a path at or below one of the container's mounts: init sees only the root
    /// filesystem under it, so the copy would miss what the container sees there.
    fn check_not_mounted(&self, path: &CopyPath) -> Result<(), Failure> {
        match self.mounts.iter().find(|m| path.is_within(m)) {
            Some(mount) => Err(Failure::bad(format!("{path} is at or below {mount}, a mount in the container (a volume, tmpfs or kernel filesystem); moat cp reaches only the container's root filesystem"))),
            None => Ok(()),
        }
    }
}

/// Why a copy failed, as the host hears it.
#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    message: String,
}

impl Failure {
    fn bad(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::BadRequest, message: message.into() }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::NotFound, message: message.into() }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self { kind: FailureKind::Internal, message: message.into() }
    }

    fn response(self) -> Response {
        Response::Failed { kind: self.kind, message: self.message.chars().take(MAX_MESSAGE_CHARS).collect() }
    }

    fn archive(err: ArchiveError) -> Self {
        let kind = if err.is_limit() { FailureKind::Limit } else { FailureKind::Internal };
        Self { kind, message: format!("writing the container's files as a tar: {err}") }
    }

    /// A tree error, in words that say where.
    fn tree(context: impl std::fmt::Display, err: &TreeError) -> Self {
        let kind = match err.class() {
            ErrorClass::Limit => FailureKind::Limit,
            ErrorClass::Refused => FailureKind::BadRequest,
            ErrorClass::NotFound => FailureKind::NotFound,
            ErrorClass::Io => FailureKind::Internal,
        };
        Self { kind, message: format!("{context}: {err}") }
    }
}

/// A copy running in a child.
struct Running {
    /// The host's request id, which the answer carries.
    request: u64,
    pid: Pid,
    answer: OwnedFd,
    status: Option<WaitStatus>,
}

/// The copies in flight.
#[derive(Default)]
pub struct Copies {
    running: Vec<Running>,
}

impl Copies {
    /// Start a copy into `target`; `Err` holds the answer when it cannot start.
    pub fn copy_in(&mut self, request: u64, copy: &CopyIn, target: Target) -> Result<(), Response> {
        let checked = (|| {
            let to = parse(&copy.to)?;
            target.check_not_mounted(&to)?;
            if target.read_only {
                return Err(Failure::bad("the container's root filesystem is read-only (--read-only)"));
            }
            if !moat_tree::valid_name(OsStr::new(&copy.name)) {
                return Err(Failure::bad(format!("{:?} is not a plain file name", copy.name)));
            }
            Ok((share_path(&copy.from)?, to))
        })();
        let (from, to) = checked.map_err(Failure::response)?;
        let (name, contents, ids) = (copy.name.clone(), copy.contents, target.root_ids);
        self.spawn(request, move || {
            if ids != (0, 0) {
                idmap::set_fs_ids(ids.0, ids.1).map_err(|e| Failure::internal(format!("taking the container root's ids: {e}")))?;
            }
            copy_in(&from, &name, contents, &target.rootfs, &to)
        })
    }

    /// Start a copy out of `target` into a staging directory on the share.
    pub fn copy_out(&mut self, request: u64, copy: &CopyOut, target: Target) -> Result<(), Response> {
        let staging = share_path(&copy.to).map_err(Failure::response)?;
        let (root, tree, max_bytes) = match copy.from {
            CopySource::Path(ref from) => {
                let from = parse(from).and_then(|from| target.check_not_mounted(&from).map(|()| from)).map_err(Failure::response)?;
                return self.spawn(request, move || copy_out(&target.rootfs, &from, &staging));
            }
            CopySource::RootTar { max_bytes } => (&target.rootfs, Tree::Merged, max_bytes),
            CopySource::LayerTar { max_bytes } => (&target.upper, Tree::Layer, max_bytes),
        };
        let (root, view, max_bytes) = (root.clone(), target.view(tree), max_bytes.min(MAX_ARCHIVE_BYTES));
        self.spawn(request, move || {
            let staging = open_in_share(&staging)?;
            archive::write(&root, tree, &view, &staging, OsStr::new(STAGED_ITEM), max_bytes).map_err(Failure::archive)
        })
    }

    /// Run `work` in a child whose answer init sends once it reaps it.
    fn spawn(&mut self, request: u64, work: impl FnOnce() -> Result<(), Failure>) -> Result<(), Response> {
        if self.running.len() >= MAX_COPIES {
            return Err(Failure { kind: FailureKind::Limit, message: format!("{MAX_COPIES} copies already run in this zone; wait for one to end") }.response());
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| Failure::internal(format!("creating a pipe: {e}")).response())?;
        // SAFETY: init is single-threaded, so the child's copy of the address space (the
        // allocator included) is consistent; it leaves only through _exit.
        match unsafe { fork() } {
            Err(errno) => Err(Failure::internal(format!("forking the copy: {errno}")).response()),
            Ok(ForkResult::Child) => {
                drop(read);
                child(write, work)
            }
            Ok(ForkResult::Parent { child }) => {
                drop(write);
                log::info(&format!("copy for request {request} runs as pid {child}"));
                self.running.push(Running { request, pid: child, answer: read, status: None });
                Ok(())
            }
        }
    }

    /// Record a reaped child's status; false when it was no copy.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        match self.running.iter_mut().find(|r| r.pid == pid && r.status.is_none()) {
            Some(running) => {
                running.status = Some(status);
                true
            }
            None => false,
        }
    }

    /// Answer the host for every copy whose child ended.
    pub fn report(&mut self, channel: &mut Channel) -> Result<(), Error> {
        let (ended, running): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running).into_iter().partition(|r| r.status.is_some());
        self.running = running;
        for copy in ended {
            let response = answer_of(&copy);
            channel.send(&GuestMessage::Response { id: copy.request, response })?;
        }
        Ok(())
    }
}

/// The child: do the work, write the answer, exit. Every inherited descriptor but the answer's
/// is closed first (the channel, other containers' stdio).
fn child(answer: OwnedFd, work: impl FnOnce() -> Result<(), Failure>) -> ! {
    // Init's hook powers the zone off; a copy that panics only ends itself, and init answers
    // that it left no answer.
    std::panic::set_hook(Box::new(|info| {
        log::info(&format!("copy panicked: {info}"));
        // SAFETY: _exit ends this forked child at once.
        unsafe { libc::_exit(101) }
    }));
    // SAFETY: dup2 and close_range take plain descriptors; nothing of ours is used afterwards
    // except ANSWER_FD.
    let ready = unsafe { libc::dup2(answer.as_raw_fd(), ANSWER_FD) == ANSWER_FD && libc::syscall(libc::SYS_close_range, ANSWER_FD + 1, u32::MAX, 0) == 0 };
    std::mem::forget(answer);
    let response = if ready { work().map_or_else(Failure::response, |()| Response::Done) } else { Failure::internal("preparing the copy's descriptors").response() };
    let bytes = serde_json::to_vec(&response).unwrap_or_default();
    // SAFETY: ANSWER_FD is the pipe, open in this child; write reads `bytes`, which outlives it.
    let written = unsafe { libc::write(ANSWER_FD, bytes.as_ptr().cast(), bytes.len()) };
    let code = i32::from(usize::try_from(written).ok() != Some(bytes.len()));
    // SAFETY: _exit ends the forked child at once, without running init's exit handlers.
    unsafe { libc::_exit(code) }
}

/// The answer a reaped child left, or why it left none.
fn answer_of(copy: &Running) -> Response {
    let mut bytes = vec![0u8; MAX_ANSWER_BYTES];
    // Non-blocking: the child wrote all of it before exiting.
    let read = nix::unistd::read(copy.answer.as_raw_fd(), &mut bytes).unwrap_or(0);
    bytes.truncate(read);
    match serde_json::from_slice::<Response>(&bytes) {
        Ok(response) => response,
        Err(_) => Failure::internal(format!("the copy ended without an answer ({:?})", copy.status)).response(),
    }
}

fn parse(path: &str) -> Result<CopyPath, Failure> {
    CopyPath::parse(path).map_err(|e| Failure::bad(e.to_string()))
}

/// A path on the share, refused unless it is plain and relative.
fn share_path(path: &str) -> Result<PathBuf, Failure> {
    let plain = !path.is_empty() && path.len() <= MAX_SHARE_PATH && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Failure::bad(format!("share path {:?} is not a plain relative path", path.chars().take(MAX_SHARE_PATH).collect::<String>())));
    }
    Ok(PathBuf::from(path))
}

/// Open a directory below the share's mount, through no symlink.
fn open_in_share(path: &Path) -> Result<OwnedFd, Failure> {
    let share = open(Path::new(SHARE_DIR))?;
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(share.as_raw_fd(), path, how).map_err(|e| Failure::internal(format!("opening {} on the share: {e}", path.display())))?;
    Ok(owned(fd))
}

fn open(path: &Path) -> Result<OwnedFd, Failure> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| Failure::internal(format!("opening {}: {e}", path.display())))?;
    Ok(owned(fd))
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: the descriptor was just returned by a successful open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Open `path` inside the container's root: symlinks (absolute ones too) and `..` resolve
/// against that root, never the zone's; a symlink at the end is followed.
fn open_in_root(root: &OwnedFd, path: &CopyPath, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV);
    openat2(root.as_raw_fd(), path.relative().as_str(), how).map(owned)
}

/// The directory `dir` in the container, or the failure to report.
fn container_dir(root: &OwnedFd, dir: &CopyPath, role: &str) -> Result<OwnedFd, Failure> {
    open_in_root(root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|errno| match errno {
        Errno::ENOENT => Failure::not_found(format!("{role} {dir} does not exist in the container")),
        Errno::ENOTDIR => Failure::bad(format!("{role} {dir} in the container is not a directory")),
        errno => Failure::internal(format!("opening {dir} in the container: {errno}")),
    })
}

/// Copy the share's `from` into the container, with Docker's rules for the destination `to`:
/// into it when it is a directory (the contents only with `contents`), over it when it is a
/// file, as a new name when it is missing and its parent is a directory.
fn copy_in(from: &Path, name: &str, contents: bool, rootfs: &Path, to: &CopyPath) -> Result<(), Failure> {
    let leaf = from.file_name().ok_or_else(|| Failure::bad("the share path names nothing"))?;
    let source_dir = open_in_share(from.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    let kind = moat_tree::kind_at(source_dir.as_fd(), leaf).map_err(|e| Failure::tree("the copy's source on the share", &e))?;
    let is_dir = kind == Kind::Directory;
    if kind == Kind::Symlink || (contents && !is_dir) {
        return Err(Failure::bad("the copy's source is not a directory"));
    }
    let root = open(rootfs)?;
    let existing = match open_in_root(&root, to, OFlag::O_PATH) {
        Ok(fd) => Some(fstat(fd.as_raw_fd()).map_err(|e| Failure::internal(format!("inspecting {to}: {e}")))?.st_mode),
        Err(Errno::ENOENT) => None,
        Err(Errno::ENOTDIR) => return Err(Failure::bad(format!("a parent of {to} in the container is not a directory"))),
        Err(errno) => return Err(Failure::internal(format!("resolving {to} in the container: {errno}"))),
    };
    let context = format!("copying into {to} in the container");
    let tree = |what| moat_tree::check_and_copy(what, &OPTIONS_IN).map(drop).map_err(|e| Failure::tree(&context, &e));
    match existing.map(|mode| SFlag::from_bits_truncate(mode) & SFlag::S_IFMT == SFlag::S_IFDIR) {
        Some(true) => {
            let into = container_dir(&root, to, "destination")?;
            if contents {
                let source = open_in_share(from)?;
                tree(What::Contents { from: source.as_fd(), to: into.as_fd() })
            } else {
                tree(What::Entry { from: source_dir.as_fd(), name: leaf, to: into.as_fd(), to_name: OsStr::new(name), label: OsStr::new(name) })
            }
        }
        Some(false) if is_dir => Err(Failure::bad(format!("cannot copy a directory to a file: {to} in the container is not a directory"))),
        Some(false) if to.wants_directory() => Err(Failure::bad(format!("destination {to} in the container is not a directory"))),
        None if to.wants_directory() && !is_dir => Err(Failure::not_found(format!("destination directory {to} does not exist in the container"))),
        _ => {
            let Some(to_name) = to.name() else { return Err(Failure::bad("cannot replace the container's root")) };
            let parent = container_dir(&root, &to.parent(), "destination directory")?;
            tree(What::Entry { from: source_dir.as_fd(), name: leaf, to: parent.as_fd(), to_name: OsStr::new(to_name), label: OsStr::new(name) })
        }
    }
}

/// Copy the container's `from` into the staging directory as [`STAGED_ITEM`]: a symlink at its
/// end as the link, unless `/` or `/.` at its end asks for the directory it reaches.
fn copy_out(rootfs: &Path, from: &CopyPath, staging: &Path) -> Result<(), Failure> {
    let root = open(rootfs)?;
    let staging = open_in_share(staging)?;
    let context = format!("copying {from} out of the container");
    let item = OsStr::new(STAGED_ITEM);
    let copied = match from.name() {
        Some(name) if !from.wants_directory() => {
            let parent = container_dir(&root, &from.parent(), "directory").map_err(|failure| match failure.kind {
                FailureKind::NotFound => Failure::not_found(format!("{from} does not exist in the container")),
                _ => failure,
            })?;
            match moat_tree::kind_at(parent.as_fd(), OsStr::new(name)) {
                Err(e) if e.class() == ErrorClass::NotFound => return Err(Failure::not_found(format!("{from} does not exist in the container"))),
                _ => moat_tree::check_and_copy(What::Entry { from: parent.as_fd(), name: OsStr::new(name), to: staging.as_fd(), to_name: item, label: OsStr::new(name) }, &OPTIONS_IN),
            }
        }
        name => {
            let dir = container_dir(&root, from, "source")?;
            let label = OsStr::new(name.unwrap_or("/"));
            moat_tree::check_and_copy(What::Directory { from: dir.as_fd(), to: staging.as_fd(), to_name: item, label }, &OPTIONS_IN)
        }
    };
    copied.map(drop).map_err(|e| Failure::tree(&context, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_paths_are_plain_and_relative() {
        assert_eq!(share_path("cp/1").ok(), Some(PathBuf::from("cp/1")));
        for bad in ["", "/etc", "../x", "cp/../../etc", "./cp", &"x".repeat(256)] {
            assert!(share_path(bad).is_err(), "{bad:?}");
        }
    }

    fn target(mounts: &[&str]) -> Target {
        Target { rootfs: PathBuf::from("/nonexistent"), upper: PathBuf::from("/nonexistent"), root_ids: (0, 0), read_only: false, mounts: mounts.iter().map(|m| m.to_string()).collect(), ids: None }
    }

    #[test]
    fn paths_under_the_containers_mounts_are_refused() {
        let t = target(&["/proc", "/dev", "/data"]);
        assert!(t.check_not_mounted(&CopyPath::parse("/data/x").unwrap()).is_err());
        assert!(t.check_not_mounted(&CopyPath::parse("/proc").unwrap()).is_err());
        assert!(t.check_not_mounted(&CopyPath::parse("/database").unwrap()).is_ok());
        assert!(t.check_not_mounted(&CopyPath::parse("/").unwrap()).is_ok());
    }

    /// A copy in a container path whose symlinks climb out: it stays in the root.
    #[test]
    fn container_paths_resolve_inside_the_root() {
        let zone = tempfile::tempdir().unwrap();
        let rootfs = zone.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::create_dir_all(zone.path().join("secret")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", rootfs.join("tmp/up")).unwrap();
        std::os::unix::fs::symlink(zone.path().join("secret"), rootfs.join("tmp/abs")).unwrap();
        let root = open(&rootfs).unwrap();
        let up = CopyPath::parse("/tmp/up/secret").unwrap();
        assert_eq!(open_in_root(&root, &up, OFlag::O_PATH).unwrap_err(), Errno::ENOENT, "`..` stops at the container's root");
        let abs = CopyPath::parse("/tmp/abs").unwrap();
        assert_eq!(open_in_root(&root, &abs, OFlag::O_PATH).unwrap_err(), Errno::ENOENT, "an absolute link resolves in the root");
        let err = container_dir(&root, &CopyPath::parse("/tmp/up/secret/").unwrap(), "source").unwrap_err();
        assert_eq!((err.kind, err.message.as_str()), (FailureKind::NotFound, "source /tmp/up/secret does not exist in the container"));
        assert!(open_in_root(&root, &CopyPath::parse("/tmp/up/tmp").unwrap(), OFlag::O_PATH).is_ok(), "and reaches the root's own");
    }
}
