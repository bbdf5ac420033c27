//! The index of references: one small JSON record per reference, replaced atomically.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::layout::Layout;
use crate::digest::Digest;

/// Largest reference record read back. Threat: a corrupted or planted file in the store.
const MAX_RECORD_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("reference record {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What the store knows about one reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefRecord {
    pub reference: String,
    pub manifest: Digest,
    pub config: Digest,
    /// The multi-platform index the manifest was chosen from, if any.
    pub index: Option<Digest>,
    /// Where the image came from: a registry, or the imported file's path.
    pub source: String,
    /// Seconds since the Unix epoch.
    pub stored_at: u64,
}

/// Writes `bytes` to `dest` through a temporary file in `tmp_dir` and a rename.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), RefError> {
    let err = |op| move |source| RefError::Io { op, path: dest.to_owned(), source };
    let mut file = NamedTempFile::with_prefix_in("ref-", tmp_dir).map_err(err("create temporary file for"))?;
    file.write_all(bytes).map_err(err("write"))?;
    file.as_file().sync_all().map_err(err("sync"))?;
    file.persist(dest).map_err(|e| RefError::Io { op: "rename into", path: dest.to_owned(), source: e.error })?;
    Ok(())
}

pub fn write(layout: &Layout, record: &RefRecord) -> Result<(), RefError> {
    let path = layout.reference(&record.reference);
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| RefError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    write_atomic(&layout.tmp_dir(), &path, &bytes)
}

fn read_file(path: &Path) -> Result<Option<RefRecord>, RefError> {
    let bytes = match fs::File::open(path) {
        Ok(file) => {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(file, MAX_RECORD_BYTES + 1), &mut bytes)
                .map_err(|source| RefError::Io { op: "read", path: path.to_owned(), source })?;
            bytes
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RefError::Io { op: "open", path: path.to_owned(), source }),
    };
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(RefError::Corrupt { path: path.to_owned(), reason: "too large".into() });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RefError::Corrupt { path: path.to_owned(), reason: e.to_string() })
}

pub fn read(layout: &Layout, reference: &str) -> Result<Option<RefRecord>, RefError> {
    let path = layout.reference(reference);
    let record = read_file(&path)?;
    match record {
        Some(r) if r.reference != reference => {
            Err(RefError::Corrupt { path, reason: format!("holds `{}`, not `{reference}`", r.reference) })
        }
        other => Ok(other),
    }
}

/// Every record, sorted by reference.
pub fn list(layout: &Layout) -> Result<Vec<RefRecord>, RefError> {
    let dir = layout.refs_dir();
    let entries = fs::read_dir(&dir).map_err(|source| RefError::Io { op: "list", path: dir.clone(), source })?;
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RefError::Io { op: "list", path: dir.clone(), source })?;
        if entry.path().extension().is_some_and(|e| e == "json") {
            records.extend(read_file(&entry.path())?);
        }
    }
    records.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(records)
}

/// Removes the record; false if there was none.
pub fn remove(layout: &Layout, reference: &str) -> Result<bool, RefError> {
    let path = layout.reference(reference);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(RefError::Io { op: "remove", path, source }),
    }
}
