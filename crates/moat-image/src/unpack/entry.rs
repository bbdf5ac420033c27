//! Checks on the names inside a layer: what a tar entry's path, link target or whiteout
//! marker may say before anything touches the filesystem. Pure functions, fuzzed.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Longest path accepted in a layer entry (Linux `PATH_MAX`). Threat: pathological names that
/// make every later lookup slow or overflow kernel limits mid-unpack.
pub const MAX_ENTRY_PATH_BYTES: usize = 4096;

/// Longest single path component (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry `{0}` is an absolute path")]
    Absolute(String),
    #[error("entry `{0}` climbs out of the rootfs with `..`")]
    ParentComponent(String),
    #[error("entry `{0}` has a path longer than {MAX_ENTRY_PATH_BYTES} bytes or a name longer than {MAX_COMPONENT_BYTES}")]
    TooLong(String),
    #[error("entry `{0}` has an empty path")]
    Empty(String),
    #[error("symlink `{entry}` -> `{target}` points outside the rootfs")]
    SymlinkEscapes { entry: String, target: String },
    #[error("whiteout `{0}` names nothing")]
    BadWhiteout(String),
}

fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(MAX_ENTRY_PATH_BYTES)]).into_owned()
}

/// A checked path inside the rootfs: no `..`, not absolute, no empty or `.` components.
/// The empty path is the rootfs itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath {
    components: Vec<OsString>,
}

impl RelPath {
    /// Checks a path as it appears in a tar header (entry name or hardlink target).
    pub fn parse(raw: &[u8]) -> Result<Self, EntryError> {
        if raw.len() > MAX_ENTRY_PATH_BYTES {
            return Err(EntryError::TooLong(shown(raw)));
        }
        if raw.first() == Some(&b'/') {
            return Err(EntryError::Absolute(shown(raw)));
        }
        let mut components = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(EntryError::ParentComponent(shown(raw))),
                _ if part.len() > MAX_COMPONENT_BYTES => return Err(EntryError::TooLong(shown(raw))),
                _ => components.push(OsString::from_vec(part.to_vec())),
            }
        }
        Ok(Self { components })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The parent directory and the final name; `None` for the rootfs itself.
    pub fn split_last(&self) -> Option<(RelPath, &OsStr)> {
        let (last, parent) = self.components.split_last()?;
        Some((Self { components: parent.to_vec() }, last.as_os_str()))
    }

    pub fn components(&self) -> &[OsString] {
        &self.components
    }

    pub fn join(&self, name: &OsStr) -> Self {
        let mut components = self.components.clone();
        components.push(name.to_owned());
        Self { components }
    }

    /// The path relative to the rootfs, for lookups that resolve inside it (never for a plain join).
    pub fn to_path(&self) -> PathBuf {
        if self.is_root() {
            return PathBuf::from(".");
        }
        self.components.iter().collect()
    }

    pub fn display(&self) -> String {
        self.to_path().display().to_string()
    }
}

/// What one tar entry asks for, once whiteout markers are recognised.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Create or replace the file at this path.
    Put(RelPath),
    /// Delete `name` in `dir` (a `.wh.name` marker).
    Whiteout { dir: RelPath, name: OsString },
    /// Hide everything lower layers put in `dir` (a `.wh..wh..opq` marker).
    Opaque(RelPath),
    /// aufs bookkeeping (`.wh..wh.plnk` and friends) that carries no content.
    Ignore,
}

/// Classifies a checked entry path.
pub fn classify(path: RelPath) -> Result<Change, EntryError> {
    let Some((dir, name)) = path.split_last() else {
        return Ok(Change::Put(path));
    };
    let name = name.as_bytes();
    if name == OPAQUE_MARKER {
        return Ok(Change::Opaque(dir));
    }
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Change::Put(path));
    };
    if hidden.starts_with(WHITEOUT_PREFIX) {
        return Ok(Change::Ignore);
    }
    if hidden.is_empty() || hidden == b"." || hidden == b".." {
        return Err(EntryError::BadWhiteout(path.display()));
    }
    Ok(Change::Whiteout { dir, name: OsString::from_vec(hidden.to_vec()) })
}

/// Rejects a relative symlink target that, read from the link's own directory, climbs above
/// the rootfs. Absolute targets are read inside the rootfs, as the zone's kernel will.
pub fn check_symlink_target(entry: &RelPath, target: &[u8]) -> Result<(), EntryError> {
    let escapes = || EntryError::SymlinkEscapes { entry: entry.display(), target: shown(target) };
    if target.len() > MAX_ENTRY_PATH_BYTES {
        return Err(escapes());
    }
    if target.first() == Some(&b'/') {
        return Ok(());
    }
    let mut depth = entry.components().len().saturating_sub(1);
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => depth = depth.checked_sub(1).ok_or_else(escapes)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).expect("valid path")
    }

    #[test]
    fn normalizes_harmless_forms() {
        assert_eq!(rel("./etc//passwd"), rel("etc/passwd"));
        assert!(rel("./").is_root());
        assert!(rel("").is_root());
        assert_eq!(rel("a/b/").display(), "a/b");
    }

    #[test]
    fn rejects_escapes() {
        assert!(matches!(RelPath::parse(b"../x"), Err(EntryError::ParentComponent(_))));
        assert!(matches!(RelPath::parse(b"a/../../x"), Err(EntryError::ParentComponent(_))));
        assert!(matches!(RelPath::parse(b"a/.."), Err(EntryError::ParentComponent(_))));
        assert!(matches!(RelPath::parse(b"/abs"), Err(EntryError::Absolute(_))));
        assert!(matches!(RelPath::parse(&[b'a'; 300]), Err(EntryError::TooLong(_))));
        assert!(matches!(RelPath::parse(&[b'a'; 5000]), Err(EntryError::TooLong(_))));
    }

    #[test]
    fn recognises_whiteouts() {
        assert_eq!(classify(rel("a/.wh.b")), Ok(Change::Whiteout { dir: rel("a"), name: "b".into() }));
        assert_eq!(classify(rel("a/.wh..wh..opq")), Ok(Change::Opaque(rel("a"))));
        assert_eq!(classify(rel(".wh..wh.plnk")), Ok(Change::Ignore));
        assert_eq!(classify(rel("a/b.wh.c")), Ok(Change::Put(rel("a/b.wh.c"))));
        assert!(classify(rel("a/.wh.")).is_err());
        assert!(classify(rel("a/.wh...")).is_err());
    }

    #[test]
    fn symlink_targets_stay_inside() {
        check_symlink_target(&rel("bin/sh"), b"busybox").expect("sibling");
        check_symlink_target(&rel("usr/bin/x"), b"../../bin/y").expect("up to root");
        check_symlink_target(&rel("lib"), b"/usr/lib").expect("absolute is read in root");
        check_symlink_target(&rel("a/b"), b"c/../../d").expect("stays at root");
        assert!(check_symlink_target(&rel("escape"), b"../etc").is_err());
        assert!(check_symlink_target(&rel("usr/bin/x"), b"../../../etc").is_err());
    }
}
