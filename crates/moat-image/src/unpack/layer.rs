//! Applying one layer: decompress (gzip, zstd or none, told apart by magic bytes), walk the
//! tar stream, and turn each entry into a rootfs change, checking the diff ID at the end.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};

use tar::EntryType;

use super::entry::{self, Change, EntryError, RelPath};
use super::members::{self, Member, MemberError};
use super::rootfs::{Meta, Node, Rootfs, RootfsError};
use crate::digest::{Digest, MeteredReader};
use crate::limits::{MAX_LAYER_ENTRIES, MAX_XATTRS_PER_ENTRY, MAX_XATTR_VALUE_BYTES};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";
const READ_BUFFER: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer decompresses to more than {limit} bytes (raise the layer size limit if the image is genuine)")]
    TooLarge { limit: u64 },
    #[error("layer has more than {MAX_LAYER_ENTRIES} entries")]
    TooManyEntries,
    #[error("layer is not a valid (compressed) tar stream")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Tar(#[from] MemberError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("entry `{path}`: {problem}")]
    Header { path: String, problem: String },
    #[error("uncompressed layer has digest {actual}, but the image config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER, reader);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)
    } else {
        Box::new(buffered)
    })
}

/// Applies the layer in `blob` on top of `rootfs`, failing if it inflates past `max_bytes`
/// or if its uncompressed digest is not `diff_id`.
pub fn apply(rootfs: &Rootfs, blob: impl Read, diff_id: &Digest, max_bytes: u64) -> Result<(), LayerError> {
    let metered = MeteredReader::new(decompressed(blob).map_err(LayerError::Read)?, max_bytes);
    let mut archive = tar::Archive::new(ZeroTail::new(metered));
    let walked = walk(rootfs, &mut archive);
    let metered = archive.into_inner().inner;
    if metered.count() > max_bytes {
        return Err(LayerError::TooLarge { limit: max_bytes });
    }
    walked?;
    let (actual, _) = metered.drain_and_finish().map_err(|e| match crate::digest::limit_exceeded(&e) {
        Some(limit) => LayerError::TooLarge { limit },
        None => LayerError::Read(e),
    })?;
    if actual != *diff_id {
        return Err(LayerError::DiffIdMismatch { expected: diff_id.clone(), actual });
    }
    Ok(())
}

/// Ends a tar stream that stops right after its last file's data, without padding or the
/// end-of-archive blocks (as `umoci insert` writes them), the way Go's archive/tar, and so
/// Docker and containerd, accept it: at the end of the real bytes it supplies zeros. The
/// digest is taken below this reader, over the real bytes only.
struct ZeroTail<R> {
    inner: R,
    position: u64,
    tail: Option<u64>,
}

impl<R: Read> ZeroTail<R> {
    const BLOCK: u64 = 512;

    fn new(inner: R) -> Self {
        Self { inner, position: 0, tail: None }
    }
}

impl<R: Read> Read for ZeroTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tail.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.position += n as u64;
                return Ok(n);
            }
            let padding = (Self::BLOCK - self.position % Self::BLOCK) % Self::BLOCK;
            self.tail = Some(padding + 2 * Self::BLOCK);
        }
        let left = self.tail.unwrap_or(0);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.tail = Some(left - n as u64);
        Ok(n)
    }
}

fn walk<R: Read>(rootfs: &Rootfs, archive: &mut tar::Archive<R>) -> Result<(), LayerError> {
    // Paths this layer wrote: an opaque marker hides lower layers' files, not these.
    let mut touched: HashSet<RelPath> = HashSet::new();
    let mut count = 0u64;
    members::walk(archive, |member, entry| {
        count += 1;
        if count > MAX_LAYER_ENTRIES {
            return Err(LayerError::TooManyEntries);
        }
        let path = RelPath::parse(&member.path)?;
        match entry::classify(path)? {
            Change::Ignore => {}
            Change::Whiteout { dir, name } => rootfs.whiteout(&dir, &name)?,
            Change::Opaque(dir) => rootfs.make_opaque(&dir, &|p| touched.contains(p))?,
            Change::Put(path) => {
                put(rootfs, &path, &member, entry)?;
                touched.insert(path);
            }
        }
        Ok(())
    })
}

fn put<R: Read>(rootfs: &Rootfs, path: &RelPath, member: &Member, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
    let bad = |problem: String| LayerError::Header { path: path.display(), problem };
    let header = entry.header();
    let device = || -> Result<u64, LayerError> {
        let major = header.device_major().ok().flatten().ok_or_else(|| bad("device without a major number".into()))?;
        let minor = header.device_minor().ok().flatten().ok_or_else(|| bad("device without a minor number".into()))?;
        Ok(nix::sys::stat::makedev(major.into(), minor.into()))
    };
    let node = match header.entry_type() {
        EntryType::Regular | EntryType::Continuous => Node::File,
        EntryType::Directory => Node::Dir,
        EntryType::Char => Node::CharDevice(device()?),
        EntryType::Block => Node::BlockDevice(device()?),
        EntryType::Fifo => Node::Fifo,
        EntryType::Symlink => {
            let target = member.link.clone().ok_or_else(|| bad("symlink without a target".into()))?;
            entry::check_symlink_target(path, &target)?;
            Node::Symlink(target)
        }
        EntryType::Link => {
            let target = member.link.as_deref().ok_or_else(|| bad("hardlink without a target".into()))?;
            let target = RelPath::parse(target).map_err(|e| bad(format!("hardlink target: {e}")))?;
            return Ok(rootfs.hardlink(path, &target)?);
        }
        other => return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char))),
    };
    let meta = meta(header, &member.pax).map_err(bad)?;
    Ok(rootfs.put(path, node, &meta, entry)?)
}

/// Owner, mode and xattrs from the header and its PAX records (which win where both speak).
pub(super) fn meta(header: &tar::Header, pax: &[(String, Vec<u8>)]) -> Result<Meta, String> {
    let mode = header.mode().map_err(|e| format!("bad mode: {e}"))?;
    let mut uid = header.uid().map_err(|e| format!("bad uid: {e}"))?;
    let mut gid = header.gid().map_err(|e| format!("bad gid: {e}"))?;
    let mut xattrs = Vec::new();
    for (key, value) in pax {
        let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
        match key.as_str() {
            "uid" => uid = number().ok_or("bad PAX uid")?,
            "gid" => gid = number().ok_or("bad PAX gid")?,
            _ => {
                let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) else { continue };
                if xattrs.len() == MAX_XATTRS_PER_ENTRY || value.len() > MAX_XATTR_VALUE_BYTES {
                    return Err(format!("more than {MAX_XATTRS_PER_ENTRY} xattrs or one over {MAX_XATTR_VALUE_BYTES} bytes"));
                }
                let name = CString::new(name).map_err(|_| format!("xattr name `{name}` holds a NUL byte"))?;
                xattrs.push((name, value.clone()));
            }
        }
    }
    let id = |v: u64| u32::try_from(v).map_err(|_| format!("owner id {v} is out of range"));
    Ok(Meta { mode, uid: id(uid)?, gid: id(gid)?, xattrs })
}
