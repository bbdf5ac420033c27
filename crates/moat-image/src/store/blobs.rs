//! Content-addressed blobs: written to a temporary file while hashed and counted, then renamed
//! into place only once digest and size check out. A blob file that exists is a verified one.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::layout::Layout;
use crate::digest::{limit_exceeded, Digest, MeteredWriter};
use crate::manifest::BlobRef;

const WRITE_BUFFER: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("blob {digest} is larger than the {declared} bytes declared for it")]
    Oversized { digest: Digest, declared: u64 },
    #[error("blob {digest} is declared as {declared} bytes, more than the {limit}-byte limit")]
    Declared { digest: Digest, declared: u64, limit: u64 },
    #[error("blob is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("blob {digest} is truncated: got {got} of {declared} bytes")]
    Truncated { digest: Digest, got: u64, declared: u64 },
    #[error("blob content has digest {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("reading blob source")]
    Source(#[source] io::Error),
    #[error("blob {0} is missing from the store (pull or import the image again)")]
    Missing(Digest),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io { op, path: path.to_owned(), source }
}

/// A blob being written. Nothing is visible in the store until [`BlobWriter::commit`].
pub struct BlobWriter {
    out: MeteredWriter<BufWriter<NamedTempFile>>,
    expected: Option<BlobRef>,
    tmp_dir: PathBuf,
}

impl BlobWriter {
    /// Starts a blob that must match `expected` exactly, or, without one, stay under `limit`.
    pub fn begin(layout: &Layout, expected: Option<&BlobRef>, limit: u64) -> Result<Self, BlobError> {
        if let Some(e) = expected.filter(|e| e.size > limit) {
            return Err(BlobError::Declared { digest: e.digest.clone(), declared: e.size, limit });
        }
        let tmp_dir = layout.tmp_dir();
        let file = NamedTempFile::with_prefix_in("blob-", &tmp_dir).map_err(io_err("create temporary file in", &tmp_dir))?;
        let limit = expected.map_or(limit, |e| e.size);
        Ok(Self {
            out: MeteredWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), limit),
            expected: expected.cloned(),
            tmp_dir,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.out.write_all(bytes).map_err(|e| match (limit_exceeded(&e), &self.expected) {
            (Some(_), Some(expected)) => {
                BlobError::Oversized { digest: expected.digest.clone(), declared: expected.size }
            }
            (Some(limit), _) => BlobError::TooLarge { limit },
            (None, _) => BlobError::Io { op: "write to temporary file in", path: self.tmp_dir.clone(), source: e },
        })
    }

    /// Verifies size and digest, then moves the blob into place. Returns what was stored.
    pub fn commit(self, layout: &Layout, media_type: &str) -> Result<BlobRef, BlobError> {
        let (buffered, digest, size) = self.out.finish();
        if let Some(expected) = &self.expected {
            if size != expected.size {
                return Err(BlobError::Truncated { digest: expected.digest.clone(), got: size, declared: expected.size });
            }
            if digest != expected.digest {
                return Err(BlobError::DigestMismatch { expected: expected.digest.clone(), actual: digest });
            }
        }
        let file = buffered.into_inner().map_err(|e| BlobError::Io {
            op: "flush temporary file in",
            path: self.tmp_dir.clone(),
            source: e.into_error(),
        })?;
        let path = layout.blob(&digest);
        file.persist(&path).map_err(|e| BlobError::Io { op: "store blob", path: path.clone(), source: e.error })?;
        Ok(BlobRef { digest, size, media_type: media_type.to_owned() })
    }
}

/// For streams that write a blob as they go; a limit surfaces as an error that
/// [`limit_exceeded`] recognises.
impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Streams `source` into the store. See [`BlobWriter::begin`] for `expected` and `limit`.
pub fn put_reader(
    layout: &Layout,
    source: &mut dyn Read,
    expected: Option<&BlobRef>,
    limit: u64,
    media_type: &str,
) -> Result<BlobRef, BlobError> {
    let mut writer = BlobWriter::begin(layout, expected, limit)?;
    let mut buf = vec![0u8; WRITE_BUFFER];
    loop {
        match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => writer.write(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BlobError::Source(e)),
        }
    }
    writer.commit(layout, media_type)
}

/// Stores bytes held in memory (manifests, synthesized or fetched).
pub fn put_bytes(layout: &Layout, bytes: &[u8], media_type: &str) -> Result<BlobRef, BlobError> {
    put_reader(layout, &mut &bytes[..], None, bytes.len() as u64, media_type)
}

/// True if the blob is stored with the expected size.
pub fn has(layout: &Layout, blob: &BlobRef) -> bool {
    std::fs::metadata(layout.blob(&blob.digest)).is_ok_and(|m| m.len() == blob.size)
}

/// Reads a stored blob that must fit in `limit` bytes.
pub fn read_small(layout: &Layout, digest: &Digest, limit: u64) -> Result<Vec<u8>, BlobError> {
    let path = layout.blob(digest);
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BlobError::Missing(digest.clone()),
        _ => BlobError::Io { op: "open", path: path.clone(), source: e },
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io_err("read", &path))?;
    if bytes.len() as u64 > limit {
        return Err(BlobError::TooLarge { limit });
    }
    Ok(bytes)
}
