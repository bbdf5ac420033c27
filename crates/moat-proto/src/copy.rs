//! `moat cp`: the bounds on one copy, and container paths, which the host and init parse alike.

/// Most bytes of file content one copy holds, either way.
///
/// Threat: a copy out of a zone is staged on the host by the guest, which chooses what it
/// stages; this bounds the host memory (the staging tmpfs) and disk it can fill. Into a zone, it
/// bounds what init writes to the scratch disk for one request.
pub const MAX_COPY_BYTES: u64 = 1 << 30;

/// Most bytes of one tar out of a container (`moat export`, `moat commit`), headers included.
///
/// Threat: the tar is staged on the host like a copy, in the same bounded tmpfs; a front-end
/// may ask for less, never more.
pub const MAX_ARCHIVE_BYTES: u64 = MAX_COPY_BYTES;

/// Most files, directories and links one copy holds.
///
/// Threat: each is an inode in the staging tmpfs and a file the host creates; a hostile guest
/// could otherwise stage millions of empty files.
pub const MAX_COPY_ENTRIES: u64 = 100_000;

/// Most directories one copy nests.
///
/// Threat: the copier recurses and holds two descriptors per level; a deeper tree would run the
/// host's or init's stack or descriptors out.
pub const MAX_COPY_DEPTH: usize = 128;

/// Most copies in flight in one zone.
///
/// Threat: each is a process in the zone and, out of it, a staging tmpfs on the host; the host
/// refuses more, and so does the guest.
pub const MAX_COPIES: usize = 4;

/// Longest container path (Linux's `PATH_MAX`).
pub const MAX_COPY_PATH: usize = 4096;

/// Longest component of a container path (Linux's `NAME_MAX`).
const MAX_COMPONENT: usize = 255;

/// The name a copy out of a container has in its staging directory.
pub const STAGED_ITEM: &str = "item";

/// A path in a container as `moat cp` names it: absolute, cleaned as Docker cleans it (`//` and
/// `.` dropped, `..` applied), never above the root, with what its end asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPath {
    components: Vec<String>,
    /// It ends with `/` or `/.`: it must be a directory.
    directory: bool,
    /// It ends with `/.`: as a source, the directory's contents rather than the directory.
    contents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyPathError {
    #[error("container path {0:?} is not absolute; give a path starting with '/'")]
    Relative(String),
    #[error("container path {0:?} climbs above the container's root with '..'")]
    Escapes(String),
    #[error("container path is {0} bytes long; the limit is {MAX_COPY_PATH}")]
    TooLong(usize),
    #[error("container path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("container path {0:?} has a component longer than {MAX_COMPONENT} bytes")]
    LongComponent(String),
}

impl CopyPath {
    pub fn parse(text: &str) -> Result<Self, CopyPathError> {
        if text.len() > MAX_COPY_PATH {
            return Err(CopyPathError::TooLong(text.len()));
        }
        let shown = || text.chars().take(256).collect::<String>();
        if text.contains('\0') {
            return Err(CopyPathError::Nul(shown()));
        }
        if !text.starts_with('/') {
            return Err(CopyPathError::Relative(shown()));
        }
        let mut components: Vec<String> = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(CopyPathError::Escapes(shown()));
                    }
                }
                name if name.len() > MAX_COMPONENT => return Err(CopyPathError::LongComponent(shown())),
                name => components.push(name.to_string()),
            }
        }
        let contents = text.ends_with("/.");
        Ok(Self { components, directory: contents || text.ends_with('/'), contents })
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The directory above; the root for the root.
    pub fn parent(&self) -> CopyPath {
        let mut components = self.components.clone();
        components.pop();
        CopyPath { components, directory: true, contents: false }
    }

    /// Whether its end asks for a directory (`/` or `/.`).
    pub fn wants_directory(&self) -> bool {
        self.directory
    }

    /// Whether it names a directory's contents (`/.` at its end).
    pub fn contents(&self) -> bool {
        self.contents
    }

    /// The path relative to the root (`.` for the root), to resolve below a root descriptor.
    pub fn relative(&self) -> String {
        if self.components.is_empty() {
            return ".".into();
        }
        self.components.join("/")
    }

    /// Whether it is `dir` or below it, comparing components (`dir` is absolute).
    pub fn is_within(&self, dir: &str) -> bool {
        let dir: Vec<&str> = dir.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        dir.len() <= self.components.len() && dir.iter().zip(&self.components).all(|(a, b)| a == b)
    }
}

impl std::fmt::Display for CopyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.components.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_as_docker_cleans_them() {
        let p = CopyPath::parse("//etc/./ssl/../passwd").unwrap();
        assert_eq!((p.to_string(), p.name(), p.relative()), ("/etc/passwd".into(), Some("passwd"), "etc/passwd".into()));
        assert!(!p.wants_directory() && !p.contents());
        let dir = CopyPath::parse("/data/").unwrap();
        assert!(dir.wants_directory() && !dir.contents());
        let contents = CopyPath::parse("/data/.").unwrap();
        assert!(contents.wants_directory() && contents.contents());
        assert_eq!(contents.to_string(), "/data");
        let root = CopyPath::parse("/").unwrap();
        assert_eq!((root.name(), root.relative(), root.to_string()), (None, ".".into(), "/".into()));
        assert_eq!(CopyPath::parse("/a/b").unwrap().parent().to_string(), "/a");
        assert_eq!(CopyPath::parse("/a/..").unwrap().to_string(), "/");
    }

    #[test]
    fn bad_paths_are_refused() {
        assert_eq!(CopyPath::parse("etc/passwd"), Err(CopyPathError::Relative("etc/passwd".into())));
        assert_eq!(CopyPath::parse(""), Err(CopyPathError::Relative(String::new())));
        assert!(matches!(CopyPath::parse("/../etc/passwd"), Err(CopyPathError::Escapes(_))));
        assert!(matches!(CopyPath::parse("/tmp/../../etc"), Err(CopyPathError::Escapes(_))));
        assert!(matches!(CopyPath::parse("/a\0b"), Err(CopyPathError::Nul(_))));
        assert!(matches!(CopyPath::parse(&format!("/{}", "x".repeat(256))), Err(CopyPathError::LongComponent(_))));
        assert!(matches!(CopyPath::parse(&"/x".repeat(2049)), Err(CopyPathError::TooLong(4098))));
    }

    #[test]
    fn within_compares_components() {
        let p = CopyPath::parse("/proc/self/status").unwrap();
        assert!(p.is_within("/proc") && p.is_within("/proc/") && p.is_within("/"));
        assert!(!p.is_within("/pro") && !p.is_within("/proc/self/status/x"));
    }
}
