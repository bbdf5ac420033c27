//! Builds the zone's initramfs (a newc cpio archive) from moat-init and the boot modules, and
//! the digest that names it in the cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("writing the initramfs: {0}")]
    Write(#[from] std::io::Error),
    #[error("{path} is too large for a cpio entry")]
    TooLarge { path: PathBuf },
}

/// One thing to put in the archive.
pub enum Entry {
    Dir { path: String },
    File { path: String, source: PathBuf, mode: u32 },
    Bytes { path: String, data: Vec<u8>, mode: u32 },
    CharDevice { path: String, major: u32, minor: u32, mode: u32 },
    Symlink { path: String, target: String },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::Bytes { path, .. } | Entry::CharDevice { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// Write `entries` as a newc archive. Parent directories must be listed before their children.
pub fn write_archive<W: Write>(out: W, entries: &[Entry]) -> Result<W, InitramfsError> {
    let mut out = out;
    for (index, entry) in entries.iter().enumerate() {
        let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
        out = match entry {
            Entry::Dir { path } => {
                let header = Builder::new(path).ino(ino).mode(0o755).nlink(2).set_mode_file_type(ModeFileType::Directory);
                header.write(out, 0).finish()?
            }
            Entry::CharDevice { path, major, minor, mode } => {
                let header = Builder::new(path).ino(ino).mode(*mode).nlink(1).rdev_major(*major).rdev_minor(*minor).set_mode_file_type(ModeFileType::Char);
                header.write(out, 0).finish()?
            }
            Entry::Symlink { path, target } => write_data(out, ino, path, ModeFileType::Symlink, 0o777, target.as_bytes())?,
            Entry::Bytes { path, data, mode } => write_data(out, ino, path, ModeFileType::Regular, *mode, data)?,
            Entry::File { path, source, mode } => {
                let data = read(source)?;
                write_data(out, ino, path, ModeFileType::Regular, *mode, &data)?
            }
        };
    }
    Ok(cpio::newc::trailer(out)?)
}

/// Hex SHA-256 over every entry's kind, path, mode and content: the archive's cache key.
pub fn digest(entries: &[Entry]) -> Result<String, InitramfsError> {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for entry in entries {
        match entry {
            Entry::Dir { path } => {
                field(b"dir");
                field(path.as_bytes());
            }
            Entry::CharDevice { path, major, minor, mode } => {
                field(b"char");
                field(path.as_bytes());
                field(&[major.to_le_bytes(), minor.to_le_bytes(), mode.to_le_bytes()].concat());
            }
            Entry::Symlink { path, target } => {
                field(b"symlink");
                field(path.as_bytes());
                field(target.as_bytes());
            }
            Entry::Bytes { path, data, mode } => {
                field(b"file");
                field(path.as_bytes());
                field(&mode.to_le_bytes());
                field(data);
            }
            Entry::File { path, source, mode } => {
                field(b"file");
                field(path.as_bytes());
                field(&mode.to_le_bytes());
                field(&read(source)?);
            }
        }
    }
    Ok(hex::encode(hash.finalize()))
}

/// An entry with content: a regular file's bytes or a symlink's target.
fn write_data<W: Write>(out: W, ino: u32, path: &str, kind: ModeFileType, mode: u32, data: &[u8]) -> Result<W, InitramfsError> {
    let size = u32::try_from(data.len()).map_err(|_| InitramfsError::TooLarge { path: path.into() })?;
    let header = Builder::new(path).ino(ino).mode(mode).nlink(1).set_mode_file_type(kind);
    let mut writer = header.write(out, size);
    writer.write_all(data)?;
    Ok(writer.finish()?)
}

fn read(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|err| InitramfsError::Read { path: path.to_path_buf(), err })?;
    Ok(data)
}

/// The directories every path in `paths` needs, parents first, without duplicates.
pub fn parent_dirs<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in paths {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.insert(prefix.clone());
        }
    }
    // BTreeSet order puts "a" before "a/b", so parents precede children.
    dirs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_reads_back() {
        let entries = vec![
            Entry::Dir { path: "etc".into() },
            Entry::Bytes { path: "etc/hello".into(), data: b"hi".to_vec(), mode: 0o644 },
            Entry::CharDevice { path: "console".into(), major: 5, minor: 1, mode: 0o600 },
            Entry::Symlink { path: "runc".into(), target: "/tools/runc".into() },
        ];
        let bytes = write_archive(Vec::new(), &entries).unwrap();
        let mut reader = cpio::newc::Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.entry().name(), "etc");
        reader = cpio::newc::Reader::new(reader.finish().unwrap()).unwrap();
        assert_eq!(reader.entry().name(), "etc/hello");
        assert_eq!(reader.entry().file_size(), 2);
        reader = cpio::newc::Reader::new(reader.finish().unwrap()).unwrap();
        assert_eq!((reader.entry().rdev_major(), reader.entry().rdev_minor()), (5, 1));
        reader = cpio::newc::Reader::new(reader.finish().unwrap()).unwrap();
        assert_eq!(reader.entry().mode() & 0o170000, 0o120000, "a symlink");
        let mut target = String::new();
        reader.read_to_string(&mut target).unwrap();
        assert_eq!(target, "/tools/runc");
    }

    #[test]
    fn digest_covers_content_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("runc");
        std::fs::write(&source, b"v1").unwrap();
        let entries = |path: &str| vec![Entry::Dir { path: "usr".into() }, Entry::File { path: path.into(), source: source.clone(), mode: 0o755 }];
        let first = digest(&entries("usr/runc")).unwrap();
        assert_eq!(first, digest(&entries("usr/runc")).unwrap(), "stable");
        assert_ne!(first, digest(&entries("usr/runc2")).unwrap(), "the path counts");
        std::fs::write(&source, b"v2").unwrap();
        assert_ne!(first, digest(&entries("usr/runc")).unwrap(), "a changed file changes the key");
        let same_bytes = vec![Entry::Dir { path: "usr".into() }, Entry::Bytes { path: "usr/runc".into(), data: b"v2".to_vec(), mode: 0o755 }];
        assert_eq!(digest(&same_bytes).unwrap(), digest(&entries("usr/runc")).unwrap(), "bytes and files hash alike");
    }

    #[test]
    fn parents_first() {
        let dirs = parent_dirs(["lib/modules/x/a.ko", "lib/modules/y/b.ko", "init"]);
        assert_eq!(dirs, ["lib", "lib/modules", "lib/modules/x", "lib/modules/y"]);
    }
}
