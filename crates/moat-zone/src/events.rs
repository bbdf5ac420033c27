//! The event journal (`moat events`): what happened to containers and zones, one JSON object a
//! line in `<root>/events/events.jsonl`.
//!
//! Several processes write it: the CLI and runtime library (create, destroy) and each zone's
//! supervisor (start, kill, die, oom, the zone's end). A writer holds the journal's `flock` while
//! it appends, so lines never interleave and rotation is never raced: past [`ROTATE_AT`] bytes the
//! file is renamed to `events.jsonl.1` (replacing the older one) under the same lock, and the
//! next append creates a fresh file. Writers open the file anew for each append, so nothing is
//! ever written to a rotated file. Readers take no lock: they tolerate a torn line (a writer that
//! died mid-write; the next writer starts on a new line) by skipping what does not parse.
//!
//! Journaling never fails an operation: [`Journal::record`] logs a warning and goes on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use moat_proto::ExitStatus;
use serde::{Deserialize, Serialize};

use crate::lifecycle::ZoneState;
use crate::state::{ContainerRecord, FileLock, StateError, ZoneRecord};

/// Past this size the journal is rotated; with the one older file kept, it takes at most about
/// twice this on disk.
pub const ROTATE_AT: u64 = 4 << 20;
/// The longest line written or read; a longer one read is skipped.
pub const MAX_LINE: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("an event of {len} bytes is longer than the journal's {MAX_LINE}-byte lines")]
    TooLong { len: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EventError + '_ {
    move |err| EventError::Io { path: path.to_path_buf(), err }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Container,
    Zone,
}

impl EventType {
    pub const ALL: [EventType; 2] = [EventType::Container, EventType::Zone];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Container => "container",
            EventType::Zone => "zone",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Start,
    Kill,
    Oom,
    Die,
    Destroy,
    ZoneStopped,
    ZoneFailed,
}

impl Action {
    pub const ALL: [Action; 8] = [Action::Create, Action::Start, Action::Kill, Action::Oom, Action::Die, Action::Destroy, Action::ZoneStopped, Action::ZoneFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Start => "start",
            Action::Kill => "kill",
            Action::Oom => "oom",
            Action::Die => "die",
            Action::Destroy => "destroy",
            Action::ZoneStopped => "zone-stopped",
            Action::ZoneFailed => "zone-failed",
        }
    }
}

/// One event, with Docker's fields: `time` in seconds and `timeNano` in nanoseconds since the
/// Unix epoch, and string attributes (`image`, `exitCode`, `signal`, `reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: u64,
    #[serde(rename = "timeNano")]
    pub time_nano: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub action: Action,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    fn now(kind: EventType, action: Action, id: &str, name: &str) -> Self {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            time: since_epoch.as_secs(),
            time_nano: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
            kind,
            action,
            id: id.to_string(),
            name: name.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    fn container(action: Action, container: &ContainerRecord) -> Self {
        Self::now(EventType::Container, action, &container.id, &container.name).with("image", &container.image)
    }

    fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }

    pub fn created(container: &ContainerRecord) -> Self {
        Self::container(Action::Create, container)
    }

    pub fn started(container: &ContainerRecord) -> Self {
        Self::container(Action::Start, container)
    }

    pub fn killed(container: &ContainerRecord, signal: i32) -> Self {
        Self::container(Action::Kill, container).with("signal", signal)
    }

    /// The container's process ended: `die` with Docker's exit code, after `oom` for an OOM kill.
    pub fn exited(container: &ContainerRecord, status: ExitStatus) -> Vec<Self> {
        // Made in the order they are journaled, so their times are in that order too.
        let oom = (status == ExitStatus::OomKilled).then(|| Self::container(Action::Oom, container));
        let mut die = Self::container(Action::Die, container).with("exitCode", status.shell_code());
        if let ExitStatus::Signal { signal } = status {
            die = die.with("signal", signal);
        }
        oom.into_iter().chain([die]).collect()
    }

    pub fn destroyed(container: &ContainerRecord) -> Self {
        Self::container(Action::Destroy, container)
    }

    /// The zone's end, once its state is final.
    pub fn zone_ended(zone: &ZoneRecord) -> Option<Self> {
        let action = match &zone.state {
            ZoneState::Stopped { .. } => Action::ZoneStopped,
            ZoneState::Failed { .. } => Action::ZoneFailed,
            _ => return None,
        };
        let event = Self::now(EventType::Zone, action, &zone.id, &zone.name);
        Some(match zone.state.reason() {
            Some(reason) => event.with("reason", reason),
            None => event,
        })
    }
}

/// One event is a journal entry of its own.
impl IntoIterator for Event {
    type Item = Event;
    type IntoIter = std::iter::Once<Event>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self)
    }
}

/// The journal of a state root.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    rotate_at: u64,
}

impl Journal {
    /// The journal in `dir` (the state root's `events` directory).
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir, rotate_at: ROTATE_AT }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// The previous file, before the last rotation.
    pub fn rotated_path(&self) -> PathBuf {
        self.dir.join("events.jsonl.1")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// Append `events`; a failure is only logged, as no operation fails for its journal.
    pub fn record(&self, events: impl IntoIterator<Item = Event>) {
        let events: Vec<Event> = events.into_iter().collect();
        if let Err(err) = self.append(&events) {
            tracing::warn!(%err, "recording an event in the journal");
        }
    }

    /// Append `events` in one write, rotating the journal first when it would pass its size.
    pub fn append(&self, events: &[Event]) -> Result<(), EventError> {
        let mut lines = Vec::new();
        for event in events {
            let line = serde_json::to_vec(event)?;
            if line.len() >= MAX_LINE {
                return Err(EventError::TooLong { len: line.len() });
            }
            lines.extend_from_slice(&line);
            lines.push(b'\n');
        }
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let _lock = FileLock::acquire(&self.lock_path())?;
        let path = self.path();
        let mut file = open_append(&path)?;
        let mut len = file.metadata().map_err(io_err(&path))?.len();
        if len > 0 && len + lines.len() as u64 > self.rotate_at {
            let rotated = self.rotated_path();
            std::fs::rename(&path, &rotated).map_err(io_err(&rotated))?;
            file = open_append(&path)?;
            len = 0;
        }
        if len > 0 && !ends_with_newline(&file, len).map_err(io_err(&path))? {
            // A writer died mid-line: end that line, so ours parses.
            lines.insert(0, b'\n');
        }
        file.write_all(&lines).map_err(io_err(&path))
    }

    /// A reader from the journal's oldest kept event.
    pub fn reader(&self) -> Reader {
        Reader { journal: self.clone(), current: None, started: false }
    }
}

fn open_append(path: &Path) -> Result<File, EventError> {
    File::options().append(true).create(true).read(true).open(path).map_err(io_err(path))
}

fn ends_with_newline(file: &File, len: u64) -> std::io::Result<bool> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// Reads the journal's events in order, and those appended since on each further call,
/// following rotations. Only a file rotated away twice between two calls (8 MiB of events
/// in one poll interval) is missed.
pub struct Reader {
    journal: Journal,
    current: Option<OpenFile>,
    started: bool,
}

/// The file being read, and the start of a line not yet complete.
struct OpenFile {
    file: File,
    inode: u64,
    lines: LineSplitter,
}

impl OpenFile {
    fn open(path: &Path) -> Result<Option<Self>, EventError> {
        match File::open(path) {
            Ok(file) => {
                let inode = file.metadata().map_err(io_err(path))?.ino();
                Ok(Some(Self { file, inode, lines: LineSplitter::default() }))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_err(path)(err)),
        }
    }

    /// Pass each complete line from here to the end of the file to `each`.
    fn read_to_end(&mut self, path: &Path, each: &mut impl FnMut(Event)) -> Result<(), EventError> {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let read = self.file.read(&mut chunk).map_err(io_err(path))?;
            if read == 0 {
                return Ok(());
            }
            self.lines.push(&chunk[..read], &mut |line| {
                if let Ok(event) = serde_json::from_slice(line) {
                    each(event);
                }
            });
        }
    }
}

impl Reader {
    /// Pass every event not passed yet to `each`. The first call reads the rotated file too.
    pub fn read_new(&mut self, mut each: impl FnMut(Event)) -> Result<(), EventError> {
        let path = self.journal.path();
        if !self.started {
            self.started = true;
            let rotated = self.journal.rotated_path();
            if let Some(mut old) = OpenFile::open(&rotated)? {
                old.read_to_end(&rotated, &mut each)?;
            }
            self.current = OpenFile::open(&path)?;
        }
        // Looked at before reading: once rotated, the file we have is never written again, so
        // reading it to its end misses nothing.
        let now_at_path = match std::fs::metadata(&path) {
            Ok(meta) => Some(meta.ino()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(io_err(&path)(err)),
        };
        if let Some(current) = &mut self.current {
            current.read_to_end(&path, &mut each)?;
        }
        if self.current.as_ref().map(|c| c.inode) != now_at_path {
            self.current = OpenFile::open(&path)?;
            if let Some(current) = &mut self.current {
                current.read_to_end(&path, &mut each)?;
            }
        }
        Ok(())
    }
}

/// Splits bytes into lines of at most [`MAX_LINE`] bytes; longer lines are dropped whole.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// Within a line already too long: dropped up to its newline.
    skipping: bool,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], each: &mut impl FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            if !self.skipping {
                if self.partial.is_empty() {
                    each(&bytes[..end]);
                } else if self.partial.len() + end <= MAX_LINE {
                    self.partial.extend_from_slice(&bytes[..end]);
                    each(&self.partial);
                }
            }
            self.partial.clear();
            self.skipping = false;
            bytes = &bytes[end + 1..];
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_LINE {
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerRecord {
        ContainerRecord {
            id: "0123456789ab".into(),
            name: "web".into(),
            image: "busybox:latest".into(),
            command: vec!["sh".into()],
            privileged: false,
            created_unix: 1,
            started_unix: None,
            exit: None,
            auto_remove: false,
            memory_limit: None,
            tty: false,
            stdin: false,
        }
    }

    fn read_all(journal: &Journal) -> Vec<Event> {
        let mut events = Vec::new();
        journal.reader().read_new(|e| events.push(e)).unwrap();
        events
    }

    fn actions(events: &[Event]) -> Vec<Action> {
        events.iter().map(|e| e.action).collect()
    }

    #[test]
    fn appended_events_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::in_dir(dir.path().join("events"));
        assert!(read_all(&journal).is_empty(), "no journal yet is no event");
        journal.append(&[Event::created(&container()), Event::started(&container())]).unwrap();
        journal.append(&Event::exited(&container(), ExitStatus::Code { code: 3 })).unwrap();
        let events = read_all(&journal);
        assert_eq!(actions(&events), [Action::Create, Action::Start, Action::Die]);
        assert_eq!(events[0].attributes["image"], "busybox:latest");
        assert_eq!(events[2].attributes["exitCode"], "3");
        assert!(events[0].time_nano / 1_000_000_000 == events[0].time && events[0].time > 1_600_000_000);
        let line = std::fs::read_to_string(journal.path()).unwrap();
        let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!((first["type"].as_str(), first["action"].as_str(), first["name"].as_str()), (Some("container"), Some("create"), Some("web")));
        assert!(first["timeNano"].is_u64());
    }

    #[test]
    fn exits_carry_dockers_codes_and_an_oom_comes_first() {
        let signalled = Event::exited(&container(), ExitStatus::Signal { signal: 15 });
        assert_eq!((signalled[0].attributes["exitCode"].as_str(), signalled[0].attributes["signal"].as_str()), ("143", "15"));
        let oom = Event::exited(&container(), ExitStatus::OomKilled);
        assert_eq!(actions(&oom), [Action::Oom, Action::Die]);
        assert_eq!(oom[1].attributes["exitCode"], "137");
        assert!(oom[0].time_nano <= oom[1].time_nano && !oom[1].attributes.contains_key("signal"));
        assert_eq!(Event::killed(&container(), 9).attributes["signal"], "9");
    }

    #[test]
    fn a_torn_line_is_skipped_and_the_next_append_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::in_dir(dir.path().to_path_buf());
        journal.append(&[Event::created(&container())]).unwrap();
        std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap().write_all(b"{\"time\":17000").unwrap();
        journal.append(&[Event::started(&container())]).unwrap();
        std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap().write_all(b"not json\n\xff\xfe\n").unwrap();
        journal.append(&[Event::destroyed(&container())]).unwrap();
        assert_eq!(actions(&read_all(&journal)), [Action::Create, Action::Start, Action::Destroy]);
    }

    #[test]
    fn an_overlong_line_is_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::in_dir(dir.path().to_path_buf());
        journal.append(&[Event::created(&container())]).unwrap();
        let mut long = serde_json::to_vec(&Event::started(&container())).unwrap();
        long.splice(1..1, format!("\"pad\":\"{}\",", "x".repeat(MAX_LINE)).into_bytes());
        long.push(b'\n');
        std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap().write_all(&long).unwrap();
        journal.append(&[Event::destroyed(&container())]).unwrap();
        assert_eq!(actions(&read_all(&journal)), [Action::Create, Action::Destroy]);

        let mut too_long = container();
        too_long.image = "x".repeat(MAX_LINE);
        assert!(matches!(journal.append(&[Event::created(&too_long)]), Err(EventError::TooLong { .. })));
    }

    #[test]
    fn rotation_keeps_one_older_file_and_readers_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::in_dir(dir.path().to_path_buf());
        // Room for three lines: `destroy`'s line is the longest here, by a byte or two.
        let line_len = serde_json::to_vec(&Event::destroyed(&container())).unwrap().len() as u64 + 1;
        journal.rotate_at = 3 * line_len;
        let lines = |path: PathBuf| std::fs::read_to_string(path).unwrap().lines().count();
        journal.append(&[Event::created(&container())]).unwrap();
        let mut follower = journal.reader();
        let mut seen = Vec::new();
        follower.read_new(|e| seen.push(e.action)).unwrap();
        for _ in 0..3 {
            journal.append(&[Event::started(&container())]).unwrap();
        }
        // Three lines fit; the fourth rotated them away.
        assert_eq!((lines(journal.path()), lines(journal.rotated_path())), (1, 3));
        follower.read_new(|e| seen.push(e.action)).unwrap();
        assert_eq!(seen, [Action::Create, Action::Start, Action::Start, Action::Start]);
        for _ in 0..6 {
            journal.append(&[Event::destroyed(&container())]).unwrap();
        }
        assert!(std::fs::metadata(journal.rotated_path()).unwrap().len() <= journal.rotate_at, "the older file is replaced, not grown");
        assert_eq!(actions(&read_all(&journal)).len(), 4, "a new reader sees the two kept files");
        // The follower's file was rotated twice between its reads: it sees that file's end and
        // the new file, and the three events of the file in between were rotated away unread.
        follower.read_new(|e| seen.push(e.action)).unwrap();
        assert_eq!(seen[4..], [Action::Destroy; 3]);
    }

    #[test]
    fn concurrent_writers_neither_interleave_nor_lose_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::in_dir(dir.path().to_path_buf());
        journal.rotate_at = 1 << 20;
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let journal = journal.clone();
                std::thread::spawn(move || (0..200).for_each(|_| journal.append(&Event::exited(&container(), ExitStatus::OomKilled)).unwrap()))
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        let text = std::fs::read_to_string(journal.path()).unwrap();
        assert_eq!(text.lines().count(), 4 * 200 * 2);
        assert!(text.lines().all(|l| serde_json::from_str::<Event>(l).is_ok()));
    }

    #[test]
    fn the_zone_ends_as_stopped_or_failed() {
        let zone: ZoneRecord = serde_json::from_value(serde_json::json!({
            "id": "0123456789ab", "name": "web", "created_unix": 1,
            "config": {"cpus": 1, "memory_mib": 256, "accel": "tcg", "accel_note": null, "debug": false, "scratch_mib": 0, "pod": false},
            "state": "failed", "reason": "guest kernel panic",
            "supervisor": null, "qemu": null, "kernel_release": null, "boot_ms": null, "containers": []
        }))
        .unwrap();
        let event = Event::zone_ended(&zone).unwrap();
        assert_eq!((event.kind, event.action, event.attributes["reason"].as_str()), (EventType::Zone, Action::ZoneFailed, "guest kernel panic"));
    }
}
