//! What moat-oci keeps of each container beside the zone's own record: its bundle, the keeper
//! (the host process `--pid-file` names) and what `state` reports. One directory per container
//! under `<root>/oci/`, its record written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use moat_zone::state::{read_bounded, validate_name, write_atomic, ProcessId, StateError};
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

/// The OCI runtime spec version `state` reports.
pub const OCI_VERSION: &str = "1.0.2";
/// Largest record moat-oci reads back.
const MAX_RECORD_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container id {0:?} is invalid: use letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit")]
    BadId(String),
    #[error("{what} {path}: {err}")]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error("container record {path}: {err}")]
    Corrupt { path: PathBuf, err: serde_json::Error },
    #[error(transparent)]
    State(#[from] StateError),
}

/// The OCI lifecycle, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    /// `kill` reaches a process only while there is one.
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }

    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    pub fn can_delete(self) -> bool {
        self == Status::Stopped
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The `create` that is making the container, until it is made.
    pub creator: Option<ProcessId>,
    /// The keeper: the process conmon waits on.
    pub keeper: Option<ProcessId>,
    /// RFC 3339.
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// The signal that `kill` sent before `start`: the keeper ends with it.
    #[serde(default)]
    pub killed_before_start: Option<i32>,
    /// The spec's hooks, run on the host (poststop still runs once the bundle is gone).
    #[serde(default)]
    pub hooks: Option<Hooks>,
}

/// The OCI state document (runtime-spec `state`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    pub annotations: &'a HashMap<String, String>,
    pub created: &'a str,
}

/// Where the records live.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn open(root: &Path) -> Result<Self, RecordError> {
        let dir = root.join("oci");
        std::fs::create_dir_all(&dir).map_err(|err| RecordError::Io { what: "creating", path: dir.clone(), err })?;
        Ok(Self { dir })
    }

    /// The container's own directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir(id).join("record.json")
    }

    /// The fifo `start` writes to, which the keeper waits on.
    pub fn start_fifo(&self, id: &str) -> PathBuf {
        self.dir(id).join("start")
    }

    /// Where the keeper says why the container's process did not start.
    pub fn start_error(&self, id: &str) -> PathBuf {
        self.dir(id).join("start-error")
    }

    /// Claim `id` for a new container: its directory is made exclusively, so two creates of one
    /// id cannot both succeed.
    pub fn claim(&self, record: &Record) -> Result<(), RecordError> {
        check_id(&record.id)?;
        let dir = self.dir(&record.id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Err(RecordError::Exists(record.id.clone())),
            Err(err) => return Err(RecordError::Io { what: "creating", path: dir, err }),
        }
        self.write(record)
    }

    pub fn write(&self, record: &Record) -> Result<(), RecordError> {
        let json = serde_json::to_vec(record).map_err(|err| RecordError::Corrupt { path: self.path(&record.id), err })?;
        Ok(write_atomic(&self.path(&record.id), &json)?)
    }

    pub fn read(&self, id: &str) -> Result<Record, RecordError> {
        check_id(id).map_err(|_| RecordError::NotFound(id.to_string()))?;
        let path = self.path(id);
        let text = match read_bounded(&path, MAX_RECORD_BYTES) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(RecordError::NotFound(id.to_string())),
            Err(err) => return Err(RecordError::Io { what: "reading", path, err }),
        };
        serde_json::from_str(&text).map_err(|err| RecordError::Corrupt { path, err })
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut Record)) -> Result<Record, RecordError> {
        let mut record = self.read(id)?;
        change(&mut record);
        self.write(&record)?;
        Ok(record)
    }

    pub fn remove(&self, id: &str) -> Result<(), RecordError> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(RecordError::Io { what: "removing", path: dir, err }),
        }
    }
}

fn check_id(id: &str) -> Result<(), RecordError> {
    validate_name(id).map_err(|_| RecordError::BadId(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record { id: id.into(), bundle: "/b".into(), creator: None, keeper: None, created: "2026-01-01T00:00:00Z".into(), annotations: HashMap::new(), killed_before_start: None, hooks: None }
    }

    #[test]
    fn an_id_is_claimed_once() {
        let root = tempfile::tempdir().unwrap();
        let records = Records::open(root.path()).unwrap();
        records.claim(&record("c1")).unwrap();
        assert!(matches!(records.claim(&record("c1")), Err(RecordError::Exists(_))));
        assert_eq!(records.read("c1").unwrap(), record("c1"));
        records.remove("c1").unwrap();
        assert!(matches!(records.read("c1"), Err(RecordError::NotFound(_))));
    }

    #[test]
    fn ids_are_plain_names() {
        let root = tempfile::tempdir().unwrap();
        let records = Records::open(root.path()).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", &"a".repeat(65)] {
            assert!(matches!(records.claim(&record(bad)), Err(RecordError::BadId(_))), "{bad:?}");
            assert!(matches!(records.read(bad), Err(RecordError::NotFound(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_lifecycle_allows_what_runc_allows() {
        assert!(Status::Created.can_start() && !Status::Running.can_start() && !Status::Stopped.can_start());
        assert!(Status::Created.can_kill() && Status::Running.can_kill() && !Status::Stopped.can_kill());
        assert!(Status::Stopped.can_delete() && !Status::Running.can_delete());
    }
}
