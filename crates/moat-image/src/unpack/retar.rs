//! Rewriting a hostile tar stream (one a zone wrote: `moat commit`, `moat export`) as a fresh
//! one, entry by entry, under the rules a layer is unpacked by: paths inside the root, symlinks
//! that do not climb out, whiteouts that name something, bounded extension headers, entries and
//! bytes. Every header written is built here from checked values; only file data is copied.
//! Xattrs are dropped.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::EntryType;

use super::entry::{self, EntryError, RelPath};
use super::layer::meta;
use super::members::{self, MemberError};
use crate::digest::{limit_exceeded, MeteredReader};
use crate::limits::MAX_LAYER_ENTRIES;

#[derive(Debug, thiserror::Error)]
pub enum RetarError {
    #[error("the tar is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the tar has more than {MAX_LAYER_ENTRIES} entries")]
    TooManyEntries,
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Tar(#[from] MemberError),
    #[error("entry `{path}`: {problem}")]
    Header { path: String, problem: String },
    #[error("{0} the tar")]
    Io(Side, #[source] io::Error),
}

/// Where an I/O failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Reading,
    /// An entry's data, read from one side while written to the other.
    Copying,
    Writing,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Reading => "reading",
            Side::Copying => "copying an entry of",
            Side::Writing => "writing",
        })
    }
}

impl RetarError {
    /// A limit hit by the input or by the writer (a store's metered blob), or another failure.
    fn from_io(err: io::Error, side: Side) -> Self {
        match limit_exceeded(&err) {
            Some(limit) => RetarError::TooLarge { limit },
            None => RetarError::Io(side, err),
        }
    }
}

/// What a rewrite wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub entries: u64,
    /// Bytes read from the input.
    pub read: u64,
}

/// Read the tar `input` (at most `max_bytes`), check every entry, and write it afresh to
/// `output`, ending the archive. Nothing is resolved on the host: it is a stream to a stream.
pub fn retar(input: impl Read, output: impl Write, max_bytes: u64) -> Result<Written, RetarError> {
    let mut archive = tar::Archive::new(MeteredReader::new(input, max_bytes));
    let mut builder = tar::Builder::new(output);
    builder.mode(tar::HeaderMode::Complete);
    let mut entries = 0u64;
    let walked = members::walk(&mut archive, |member, entry| {
        entries += 1;
        if entries > MAX_LAYER_ENTRIES {
            return Err(RetarError::TooManyEntries);
        }
        let path = RelPath::parse(&member.path)?;
        // A whiteout must name something; the marker itself is written as the file it is.
        entry::classify(path.clone())?;
        if path.is_root() {
            return Ok(());
        }
        let bad = |problem: String| RetarError::Header { path: path.display(), problem };
        let from = entry.header();
        let checked = meta(from, &member.pax).map_err(bad)?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(checked.mode & 0o7777);
        header.set_uid(checked.uid.into());
        header.set_gid(checked.gid.into());
        header.set_mtime(from.mtime().map_err(|e| bad(format!("bad mtime: {e}")))?);
        header.set_size(0);
        let target = || member.link.clone().ok_or_else(|| bad("link without a target".into()));
        let written = match from.entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                header.set_entry_type(EntryType::Regular);
                let size = entry.size();
                header.set_size(size);
                builder.append_data(&mut header, path.to_path(), moat_tree::Exact::new(&mut *entry, size))
            }
            EntryType::Directory => {
                header.set_entry_type(EntryType::Directory);
                builder.append_data(&mut header, path.to_path(), io::empty())
            }
            EntryType::Symlink => {
                let target = target()?;
                entry::check_symlink_target(&path, &target)?;
                header.set_entry_type(EntryType::Symlink);
                builder.append_link(&mut header, path.to_path(), Path::new(OsStr::from_bytes(&target)))
            }
            EntryType::Link => {
                let target = RelPath::parse(&target()?).map_err(|e| bad(format!("hardlink target: {e}")))?;
                header.set_entry_type(EntryType::Link);
                builder.append_link(&mut header, path.to_path(), target.to_path())
            }
            kind @ (EntryType::Char | EntryType::Block) => {
                let major = from.device_major().ok().flatten().ok_or_else(|| bad("device without a major number".into()))?;
                let minor = from.device_minor().ok().flatten().ok_or_else(|| bad("device without a minor number".into()))?;
                header.set_entry_type(kind);
                header.set_device_major(major).and_then(|()| header.set_device_minor(minor)).map_err(|e| bad(e.to_string()))?;
                builder.append_data(&mut header, path.to_path(), io::empty())
            }
            EntryType::Fifo => {
                header.set_entry_type(EntryType::Fifo);
                builder.append_data(&mut header, path.to_path(), io::empty())
            }
            other => return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char))),
        };
        written.map_err(|e| RetarError::from_io(e, Side::Copying))
    });
    let read = archive.into_inner().count();
    if read > max_bytes {
        return Err(RetarError::TooLarge { limit: max_bytes });
    }
    walked?;
    builder.finish().map_err(|e| RetarError::from_io(e, Side::Writing))?;
    Ok(Written { entries, read })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::members::tests::stream;

    fn header(name: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o4755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
        }
        h.set_cksum();
        h
    }

    fn listing(bytes: &[u8]) -> Vec<(String, EntryType, u32)> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type(), e.header().mode().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_good_tar_is_rewritten_whole() {
        let input = stream(&[
            (header(b"./", EntryType::Directory, 0, None), b""),
            (header(b"./etc/", EntryType::Directory, 0, None), b""),
            (header(b"etc/new", EntryType::Regular, 5, None), b"hello"),
            (header(b"etc/.wh.passwd", EntryType::Regular, 0, None), b""),
            (header(b"etc/.wh..wh..opq", EntryType::Regular, 0, None), b""),
            (header(b"lib", EntryType::Symlink, 0, Some(b"/usr/lib")), b""),
            (header(b"etc/again", EntryType::Link, 0, Some(b"etc/new")), b""),
        ]);
        let mut out = Vec::new();
        let written = retar(&input[..], &mut out, 1 << 20).unwrap();
        assert_eq!(written.entries, 7);
        let seen = listing(&out);
        let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["etc", "etc/new", "etc/.wh.passwd", "etc/.wh..wh..opq", "lib", "etc/again"]);
        assert_eq!(seen[1].2, 0o4755, "modes are kept, as in any layer");
    }

    #[test]
    fn hostile_entries_are_refused() {
        let refused = |parts: &[(tar::Header, &[u8])]| retar(&stream(parts)[..], io::sink(), 1 << 20).unwrap_err();
        assert!(matches!(refused(&[(header(b"../etc/passwd", EntryType::Regular, 0, None), b"")]), RetarError::Entry(EntryError::ParentComponent(_))));
        assert!(matches!(refused(&[(header(b"/etc/passwd", EntryType::Regular, 0, None), b"")]), RetarError::Entry(EntryError::Absolute(_))));
        assert!(matches!(refused(&[(header(b"escape", EntryType::Symlink, 0, Some(b"../../etc")), b"")]), RetarError::Entry(EntryError::SymlinkEscapes { .. })));
        assert!(matches!(refused(&[(header(b"a/.wh.", EntryType::Regular, 0, None), b"")]), RetarError::Entry(EntryError::BadWhiteout(_))));
        assert!(matches!(refused(&[(header(b"h", EntryType::Link, 0, Some(b"../x")), b"")]), RetarError::Header { .. }));
        let mut short = stream(&[(header(b"f", EntryType::Regular, 4096, None), b"abc")]);
        short.truncate(515);
        assert!(retar(&short[..], io::sink(), 1 << 20).is_err(), "a truncated entry");
        let big = vec![b'x'; 4096];
        let err = retar(&stream(&[(header(b"big", EntryType::Regular, 4096, None), &big)])[..], io::sink(), 2048).unwrap_err();
        assert!(matches!(err, RetarError::TooLarge { limit: 2048 }), "{err}");
    }
}
