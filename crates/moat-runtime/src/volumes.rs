//! Volumes as Docker means them: host paths bound into a container, named volumes kept under
//! the state root, and tmpfs mounts.
//!
//! Front-ends turn their flags into [`VolumeMount`]s. Named volumes live in a [`VolumeStore`]:
//! `<root>/volumes/<name>/_data` holds the files and `volume.json` the record. While a container
//! uses a volume, a marker `users/<container-id>` sits next to them, so the volume cannot be
//! removed under it.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use moat_zone::state::{validate_name, write_atomic, FileLock, StateError};
use serde::{Deserialize, Serialize};

/// Longest container path accepted as a mount target (Linux's `PATH_MAX`).
pub const MAX_CONTAINER_PATH: usize = 4096;

/// Longest image path quoted in an error.
const MAX_ECHOED_PATH: usize = 80;

/// Most volumes an image may declare: each is made, and seeded from the image, in the zone.
pub const MAX_IMAGE_VOLUMES: usize = 64;

/// The driver every volume here has: a directory on the host.
pub const LOCAL_DRIVER: &str = "local";

/// Random bytes in a generated volume name; hex-encoded, 64 digits, as Docker's.
const GENERATED_NAME_BYTES: usize = 32;

const DATA_DIR: &str = "_data";
const RECORD_FILE: &str = "volume.json";
const USERS_DIR: &str = "users";
const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("mount target {0:?} is not absolute; give a container path starting with '/'")]
    TargetRelative(String),
    #[error("mount target {0:?} contains '..'; give a path without '..' components")]
    TargetDotDot(String),
    #[error("mount target '/' would replace the container's root; mount at a directory below it")]
    TargetRoot,
    #[error("mount target is {0} bytes long; give a path of at most {MAX_CONTAINER_PATH} bytes")]
    TargetTooLong(usize),
    #[error("mount target {0:?} contains a NUL byte; remove it")]
    TargetNul(String),
    #[error("duplicate mount point: {0}")]
    DuplicateTarget(ContainerPath),
    #[error("volume name {0:?} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName(String),
    #[error("container id {0:?} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadContainerId(String),
    #[error("no such volume: {0} (`moat volume ls` lists them)")]
    NotFound(String),
    #[error("volume {0} is in use; remove the containers that use it first")]
    InUse(String),
    #[error("bind source path must be absolute: {0}")]
    BindSourceRelative(PathBuf),
    #[error("bind source path does not exist: {0}; create it first")]
    BindSourceMissing(PathBuf),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path} is corrupt: {err}")]
    Corrupt { path: PathBuf, err: serde_json::Error },
    #[error("the image declares volume {path:?}, which cannot be mounted: {err}")]
    BadImageVolume { path: String, err: Box<VolumeError> },
    #[error("the image declares {0} volumes, more than the {MAX_IMAGE_VOLUMES} moat mounts")]
    TooManyImageVolumes(usize),
    #[error(transparent)]
    State(#[from] StateError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |err| VolumeError::Io { path: path.to_path_buf(), err }
}

/// An absolute path inside the container, normalised: repeated slashes, a trailing slash and
/// `.` components are dropped, so `/data/` and `//data/.` name the same mount point as `/data`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerPath(String);

impl ContainerPath {
    pub fn parse(text: &str) -> Result<Self, VolumeError> {
        if text.len() > MAX_CONTAINER_PATH {
            return Err(VolumeError::TargetTooLong(text.len()));
        }
        if text.contains('\0') {
            return Err(VolumeError::TargetNul(text.to_string()));
        }
        if !text.starts_with('/') {
            return Err(VolumeError::TargetRelative(text.to_string()));
        }
        let mut normal = String::with_capacity(text.len());
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(VolumeError::TargetDotDot(text.to_string())),
                name => {
                    normal.push('/');
                    normal.push_str(name);
                }
            }
        }
        if normal.is_empty() {
            return Err(VolumeError::TargetRoot);
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<Path> for ContainerPath {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl TryFrom<String> for ContainerPath {
    type Error = VolumeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<ContainerPath> for String {
    fn from(path: ContainerPath) -> Self {
        path.0
    }
}

/// Where a mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// An absolute host path, already resolved (see [`resolve_bind_source`]).
    Bind(PathBuf),
    /// A named volume in the [`VolumeStore`]; an anonymous volume is one with a generated name.
    Volume(String),
    /// A fresh tmpfs. Docker mounts it `noexec,nosuid,nodev`, and so must the runtime; without a
    /// size the kernel's default (half the zone's memory) applies.
    Tmpfs { size_bytes: Option<u64>, mode: Option<u32> },
    /// A volume the image declares: an anonymous volume in the zone, on its scratch disk,
    /// seeded with the image's files there, gone with the container.
    Image,
}

/// One mount a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub source: MountSource,
    pub target: ContainerPath,
    pub read_only: bool,
}

/// Refuse two mounts at the same container path.
pub fn check_unique_targets(mounts: &[VolumeMount]) -> Result<(), VolumeError> {
    let mut seen = HashSet::new();
    for mount in mounts {
        if !seen.insert(&mount.target) {
            return Err(VolumeError::DuplicateTarget(mount.target.clone()));
        }
    }
    Ok(())
}

/// The user's mounts plus a volume for each path the image declares (its config's `Volumes`)
/// that no user mount takes: as in Docker, `-v` or `--mount` at the same path wins. The result
/// is ordered parents first, as Docker mounts them, so an image's `/var/lib/docker` stays
/// visible under a user's `/var/lib`.
pub fn add_image_volumes(mut mounts: Vec<VolumeMount>, declared: &[String]) -> Result<Vec<VolumeMount>, VolumeError> {
    if declared.len() > MAX_IMAGE_VOLUMES {
        return Err(VolumeError::TooManyImageVolumes(declared.len()));
    }
    for path in declared {
        let target = ContainerPath::parse(path).map_err(|err| VolumeError::BadImageVolume { path: path.chars().take(MAX_ECHOED_PATH).collect(), err: Box::new(err) })?;
        if !mounts.iter().any(|m| m.target == target) {
            mounts.push(VolumeMount { source: MountSource::Image, target, read_only: false });
        }
    }
    mounts.sort_by_key(|m| m.target.as_str().matches('/').count());
    Ok(mounts)
}

/// Check a bind mount's host path and return its canonical form: resolved once, here, it is
/// the path the runtime mounts. A missing path is created as a directory when
/// `create_missing` holds (Docker does this for `-v`, not for `--mount type=bind`).
pub fn resolve_bind_source(path: &Path, create_missing: bool) -> Result<PathBuf, VolumeError> {
    if !path.is_absolute() {
        return Err(VolumeError::BindSourceRelative(path.to_path_buf()));
    }
    match path.canonicalize() {
        Ok(canonical) => Ok(canonical),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(err)),
        Err(_) if !create_missing => Err(VolumeError::BindSourceMissing(path.to_path_buf())),
        Err(_) => {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path).map_err(io_err(path))?;
            path.canonicalize().map_err(io_err(path))
        }
    }
}

/// Docker's volume name rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters: the rule
/// zone names follow too.
pub fn validate_volume_name(name: &str) -> Result<(), VolumeError> {
    validate_name(name).map_err(|_| VolumeError::BadName(name.to_string()))
}

/// A fresh name for an anonymous volume: 64 hex digits from the kernel's random source.
pub fn new_volume_name() -> Result<String, VolumeError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; GENERATED_NAME_BYTES];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes)).map_err(io_err(path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What `volume.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRecord {
    pub name: String,
    pub created_unix: u64,
    pub driver: String,
    /// The host directory the volume's files live in.
    pub mountpoint: PathBuf,
}

/// The named volumes under a state root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    pub fn open(root: &Path) -> Result<Self, VolumeError> {
        let dir = root.join("volumes");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Mountpoints are recorded absolute, whatever `--root` looked like.
        let dir = dir.canonicalize().map_err(io_err(&dir))?;
        Ok(Self { dir })
    }

    /// Create a volume, or return the existing one of that name, as Docker does. Without a
    /// name, the volume gets a generated one.
    pub fn create(&self, name: Option<&str>) -> Result<VolumeRecord, VolumeError> {
        match name {
            Some(name) => self.get_or_create(name).map(|(record, _)| record),
            None => self.get_or_create(&new_volume_name()?).map(|(record, _)| record),
        }
    }

    /// The volume for `-v NAME:/path`, created on first use.
    /// The volume `name`, created when missing; true when this call created it.
    pub fn get_or_create(&self, name: &str) -> Result<(VolumeRecord, bool), VolumeError> {
        validate_volume_name(name)?;
        let _lock = self.lock()?;
        match self.read_record(name) {
            Err(VolumeError::NotFound(_)) => self.create_locked(name).map(|record| (record, true)),
            found => found.map(|record| (record, false)),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, VolumeError> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let name = entry.map_err(io_err(&self.dir))?.file_name();
            // Dot entries are the lock and half-made or half-removed volumes.
            let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else { continue };
            match self.read_record(name) {
                // A directory without a record is no volume: it was made by hand.
                Err(VolumeError::NotFound(_)) => {}
                record => records.push(record?),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    pub fn inspect(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        validate_volume_name(name)?;
        self.read_record(name)
    }

    /// Delete a volume and its files, unless `in_use` says a container uses it. `in_use` runs
    /// under the store's lock, so no container can [`acquire`](Self::acquire) the volume
    /// between the check and the removal; it must not call the store's locking methods.
    pub fn remove(&self, name: &str, in_use: impl Fn(&str) -> bool) -> Result<(), VolumeError> {
        validate_volume_name(name)?;
        let _lock = self.lock()?;
        self.check_exists(name)?;
        if in_use(name) {
            return Err(VolumeError::InUse(name.to_string()));
        }
        // Renamed first, so a removal cut short leaves no half volume under its name.
        let doomed = self.dir.join(format!(".removing-{name}"));
        remove_if_present(&doomed)?;
        let dir = self.dir.join(name);
        std::fs::rename(&dir, &doomed).map_err(io_err(&dir))?;
        remove_if_present(&doomed)
    }

    /// Record that container `container_id` uses the volume.
    pub fn acquire(&self, name: &str, container_id: &str) -> Result<(), VolumeError> {
        let marker = self.marker(name, container_id)?;
        let _lock = self.lock()?;
        self.check_exists(name)?;
        let users = self.dir.join(name).join(USERS_DIR);
        std::fs::create_dir_all(&users).map_err(io_err(&users))?;
        std::fs::File::create(&marker).map_err(io_err(&marker))?;
        Ok(())
    }

    /// Forget that container `container_id` uses the volume. Releasing twice, or releasing a
    /// volume that is gone, is not an error.
    pub fn release(&self, name: &str, container_id: &str) -> Result<(), VolumeError> {
        let marker = self.marker(name, container_id)?;
        let _lock = self.lock()?;
        match std::fs::remove_file(&marker) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(&marker)(err)),
            _ => Ok(()),
        }
    }

    /// The containers that use the volume, by id. A marker whose container no longer exists
    /// (per `container_exists`) is stale, left by a crash, and is not counted. Reads without
    /// the lock, so it may be called from [`remove`](Self::remove)'s predicate.
    pub fn users(&self, name: &str, container_exists: impl Fn(&str) -> bool) -> Result<Vec<String>, VolumeError> {
        validate_volume_name(name)?;
        self.check_exists(name)?;
        let users = self.dir.join(name).join(USERS_DIR);
        let entries = match std::fs::read_dir(&users) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(io_err(&users))?,
        };
        let mut ids = Vec::new();
        for entry in entries {
            let id = entry.map_err(io_err(&users))?.file_name();
            if let Some(id) = id.to_str().filter(|id| validate_name(id).is_ok() && container_exists(id)) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn lock(&self) -> Result<FileLock, VolumeError> {
        Ok(FileLock::acquire(&self.dir.join(LOCK_FILE))?)
    }

    /// A volume exists when its record does, even a corrupt one, so that it can be removed.
    fn check_exists(&self, name: &str) -> Result<(), VolumeError> {
        if self.dir.join(name).join(RECORD_FILE).is_file() {
            Ok(())
        } else {
            Err(VolumeError::NotFound(name.to_string()))
        }
    }

    fn marker(&self, name: &str, container_id: &str) -> Result<PathBuf, VolumeError> {
        validate_volume_name(name)?;
        validate_name(container_id).map_err(|_| VolumeError::BadContainerId(container_id.to_string()))?;
        Ok(self.dir.join(name).join(USERS_DIR).join(container_id))
    }

    fn read_record(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        let path = self.dir.join(name).join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(VolumeError::NotFound(name.to_string())),
            other => other.map_err(io_err(&path))?,
        };
        serde_json::from_slice(&bytes).map_err(|err| VolumeError::Corrupt { path, err })
    }

    /// Build the volume in a dot directory and rename it into place, so a crash never leaves a
    /// volume without its record. The caller holds the lock.
    fn create_locked(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        let dir = self.dir.join(name);
        let staging = self.dir.join(format!(".creating-{name}"));
        remove_if_present(&staging)?;
        let data = staging.join(DATA_DIR);
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&data).map_err(io_err(&data))?;
        let record = VolumeRecord {
            name: name.to_string(),
            created_unix: moat_zone::state::unix_now(),
            driver: LOCAL_DRIVER.to_string(),
            mountpoint: dir.join(DATA_DIR),
        };
        let path = staging.join(RECORD_FILE);
        let json = serde_json::to_vec_pretty(&record).map_err(|err| VolumeError::Corrupt { path: path.clone(), err })?;
        write_atomic(&path, &json)?;
        std::fs::rename(&staging, &dir).map_err(io_err(&dir))?;
        Ok(record)
    }
}

fn remove_if_present(dir: &Path) -> Result<(), VolumeError> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(dir)(err)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_volumes_yield_to_user_mounts_and_mount_after_their_parents() {
        let user = |source, target: &str| VolumeMount { source, target: ContainerPath::parse(target).unwrap(), read_only: false };
        let mounts = vec![user(MountSource::Volume("mine".into()), "/data"), user(MountSource::Bind("/srv".into()), "/var/lib")];
        let declared = ["/data/".to_string(), "/var/lib/docker".to_string(), "/cache".to_string(), "//cache/.".to_string()];
        let all = add_image_volumes(mounts, &declared).unwrap();
        let summary: Vec<(&str, &MountSource)> = all.iter().map(|m| (m.target.as_str(), &m.source)).collect();
        assert_eq!(
            summary,
            [("/data", &MountSource::Volume("mine".into())), ("/cache", &MountSource::Image), ("/var/lib", &MountSource::Bind("/srv".into())), ("/var/lib/docker", &MountSource::Image)]
        );

        for bad in ["relative", "/a/../b", "/"] {
            let err = add_image_volumes(Vec::new(), &[bad.to_string()]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("the image declares volume {bad:?}")), "{err}");
        }
        let many: Vec<String> = (0..=MAX_IMAGE_VOLUMES).map(|n| format!("/v{n}")).collect();
        assert!(matches!(add_image_volumes(Vec::new(), &many), Err(VolumeError::TooManyImageVolumes(_))));
        assert_eq!(add_image_volumes(Vec::new(), &many[..MAX_IMAGE_VOLUMES]).unwrap().len(), MAX_IMAGE_VOLUMES);
    }

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        (root, store)
    }

    #[test]
    fn container_paths_are_normalised() {
        for (text, normal) in [("/data", "/data"), ("/data/", "/data"), ("//a//b/./c/", "/a/b/c"), ("/a.b/..c", "/a.b/..c")] {
            assert_eq!(ContainerPath::parse(text).unwrap().as_str(), normal, "{text}");
        }
    }

    #[test]
    fn bad_container_paths() {
        assert!(matches!(ContainerPath::parse("data"), Err(VolumeError::TargetRelative(_))));
        assert!(matches!(ContainerPath::parse(""), Err(VolumeError::TargetRelative(_))));
        assert!(matches!(ContainerPath::parse("./data"), Err(VolumeError::TargetRelative(_))));
        assert!(matches!(ContainerPath::parse("/a/../b"), Err(VolumeError::TargetDotDot(_))));
        assert!(matches!(ContainerPath::parse("/.."), Err(VolumeError::TargetDotDot(_))));
        assert!(matches!(ContainerPath::parse("/"), Err(VolumeError::TargetRoot)));
        assert!(matches!(ContainerPath::parse("//./"), Err(VolumeError::TargetRoot)));
        assert!(matches!(ContainerPath::parse("/a\0b"), Err(VolumeError::TargetNul(_))));
        let long = format!("/{}", "a".repeat(MAX_CONTAINER_PATH));
        assert!(matches!(ContainerPath::parse(&long), Err(VolumeError::TargetTooLong(4097))));
        assert!(ContainerPath::parse(&long[..MAX_CONTAINER_PATH]).is_ok());
    }

    #[test]
    fn container_path_serde_validates() {
        let path: ContainerPath = serde_json::from_str("\"/data/\"").unwrap();
        assert_eq!(serde_json::to_string(&path).unwrap(), "\"/data\"");
        assert!(serde_json::from_str::<ContainerPath>("\"/../etc\"").is_err());
    }

    fn mount(target: &str) -> VolumeMount {
        VolumeMount { source: MountSource::Volume("v".into()), target: ContainerPath::parse(target).unwrap(), read_only: false }
    }

    #[test]
    fn duplicate_targets() {
        assert!(check_unique_targets(&[mount("/a"), mount("/b"), mount("/a/b")]).is_ok());
        let err = check_unique_targets(&[mount("/a"), mount("/b"), mount("/a/")]).unwrap_err();
        assert_eq!(err.to_string(), "duplicate mount point: /a");
    }

    #[test]
    fn bind_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let canonical = tmp.path().canonicalize().unwrap();
        assert_eq!(resolve_bind_source(&tmp.path().join("."), false).unwrap(), canonical);
        std::os::unix::fs::symlink(&canonical, canonical.join("link")).unwrap();
        assert_eq!(resolve_bind_source(&canonical.join("link"), false).unwrap(), canonical);

        let missing = canonical.join("a/b");
        let err = resolve_bind_source(&missing, false).unwrap_err();
        assert_eq!(err.to_string(), format!("bind source path does not exist: {}; create it first", missing.display()));
        assert!(!canonical.join("a").exists());
        assert_eq!(resolve_bind_source(&missing, true).unwrap(), missing);
        assert!(missing.is_dir());

        assert!(matches!(resolve_bind_source(Path::new("rel/dir"), true), Err(VolumeError::BindSourceRelative(_))));
    }

    #[test]
    fn generated_names_are_64_hex_digits() {
        let a = new_volume_name().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_volume_name().unwrap());
        assert!(validate_volume_name(&a).is_ok());
    }

    #[test]
    fn volume_names() {
        for good in ["v", "v1", "my_vol.2-x", "0", &"a".repeat(64)] {
            assert!(validate_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".v", "-v", "_v", "a/b", "..", "a b", "v:1", "vé", &"a".repeat(65)] {
            assert!(matches!(validate_volume_name(bad), Err(VolumeError::BadName(_))), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_lists() {
        let (_root, store) = store();
        let v1 = store.create(Some("v1")).unwrap();
        assert_eq!(v1.driver, "local");
        assert!(v1.mountpoint.is_absolute() && v1.mountpoint.is_dir());
        assert!(v1.mountpoint.ends_with("volumes/v1/_data"));
        std::fs::write(v1.mountpoint.join("keep"), "x").unwrap();
        assert_eq!(store.create(Some("v1")).unwrap(), v1);
        assert_eq!(store.get_or_create("v1").unwrap(), (v1.clone(), false));
        assert!(v1.mountpoint.join("keep").exists());

        let anonymous = store.create(None).unwrap();
        assert_eq!(anonymous.name.len(), 64);
        let names: Vec<_> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        let mut expected = vec!["v1".to_string(), anonymous.name.clone()];
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(store.inspect("v1").unwrap(), v1);
    }

    #[test]
    fn a_crash_leftover_is_not_a_volume() {
        let (root, store) = store();
        std::fs::create_dir_all(root.path().join("volumes/.creating-v1/_data")).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.inspect("v1"), Err(VolumeError::NotFound(_))));
        store.create(Some("v1")).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(!root.path().join("volumes/.creating-v1").exists());
    }

    #[test]
    fn a_directory_without_a_record_is_no_volume() {
        let (root, store) = store();
        std::fs::create_dir_all(root.path().join("volumes/stray/_data")).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.remove("stray", |_| false), Err(VolumeError::NotFound(_))));
        assert!(matches!(store.acquire("stray", "c1"), Err(VolumeError::NotFound(_))));
        assert!(root.path().join("volumes/stray/_data").is_dir());
    }

    #[test]
    fn concurrent_creates_agree() {
        let (_root, store) = store();
        let records: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| store.get_or_create("shared").unwrap().0)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(records.iter().all(|r| *r == records[0]));
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn bad_names_touch_nothing() {
        let (root, store) = store();
        for bad in ["../escape", "/abs", "a/b", ""] {
            assert!(matches!(store.create(Some(bad)), Err(VolumeError::BadName(_))), "{bad}");
            assert!(matches!(store.inspect(bad), Err(VolumeError::BadName(_))), "{bad}");
            assert!(matches!(store.remove(bad, |_| false), Err(VolumeError::BadName(_))), "{bad}");
        }
        assert!(!root.path().join("escape").exists());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn remove_refuses_a_volume_in_use() {
        let (_root, store) = store();
        let v = store.create(Some("v")).unwrap();
        let err = store.remove("v", |name| name == "v").unwrap_err();
        assert_eq!(err.to_string(), "volume v is in use; remove the containers that use it first");
        assert!(v.mountpoint.is_dir());
        store.remove("v", |_| false).unwrap();
        assert!(!v.mountpoint.exists());
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.remove("v", |_| false), Err(VolumeError::NotFound(_))));
        assert!(matches!(store.inspect("v"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn markers_count_live_containers_only() {
        let (_root, store) = store();
        store.create(Some("v")).unwrap();
        assert!(store.users("v", |_| true).unwrap().is_empty());
        store.acquire("v", "c2").unwrap();
        store.acquire("v", "c1").unwrap();
        store.acquire("v", "c1").unwrap();
        assert_eq!(store.users("v", |_| true).unwrap(), ["c1", "c2"]);
        assert_eq!(store.users("v", |id| id == "c2").unwrap(), ["c2"]);

        let live = |id: &str| id == "c2";
        assert!(matches!(store.remove("v", |n| !store.users(n, live).unwrap().is_empty()), Err(VolumeError::InUse(_))));
        store.release("v", "c2").unwrap();
        store.release("v", "c2").unwrap();
        assert_eq!(store.users("v", |_| true).unwrap(), ["c1"]);
        store.remove("v", |n| !store.users(n, live).unwrap().is_empty()).unwrap();
        store.release("v", "c1").unwrap();
    }

    #[test]
    fn markers_need_a_volume_and_a_good_id() {
        let (_root, store) = store();
        assert!(matches!(store.acquire("nope", "c1"), Err(VolumeError::NotFound(_))));
        assert!(matches!(store.users("nope", |_| true), Err(VolumeError::NotFound(_))));
        store.create(Some("v")).unwrap();
        for bad in ["../x", "", "a/b", ".hidden"] {
            assert!(matches!(store.acquire("v", bad), Err(VolumeError::BadContainerId(_))), "{bad}");
            assert!(matches!(store.release("v", bad), Err(VolumeError::BadContainerId(_))), "{bad}");
        }
        assert!(store.users("v", |_| true).unwrap().is_empty());
    }

    #[test]
    fn corrupt_record_is_reported() {
        let (root, store) = store();
        store.create(Some("v")).unwrap();
        std::fs::write(root.path().join("volumes/v/volume.json"), "{").unwrap();
        assert!(matches!(store.inspect("v"), Err(VolumeError::Corrupt { .. })));
        store.remove("v", |_| false).unwrap();
    }
}
