//! Flattening an image: its layers applied in order into one directory tree, with whiteouts,
//! hardlinks, symlinks, ownership, modes, xattrs, devices and FIFOs kept.

pub mod entry;
mod layer;
pub mod members;
pub mod retar;
mod rootfs;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use layer::{decompressed, LayerError};
pub use retar::{retar, RetarError};
pub use rootfs::RootfsError;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("creating rootfs directory {path}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("opening layer blob {path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("layer {index} ({digest})")]
    Layer { index: usize, digest: Digest, source: LayerError },
}

/// One layer to apply: its blob on disk and the digest of its uncompressed tar stream.
pub struct LayerSource {
    pub blob: PathBuf,
    pub digest: Digest,
    pub diff_id: Digest,
}

/// Creates `dir` (which must not exist) and applies `layers` to it, bottom layer first.
pub fn flatten(dir: &Path, layers: &[LayerSource], max_layer_bytes: u64) -> Result<(), UnpackError> {
    let rootfs = rootfs::Rootfs::create(dir).map_err(|source| UnpackError::Create { path: dir.to_owned(), source })?;
    for (index, layer) in layers.iter().enumerate() {
        let blob = File::open(&layer.blob).map_err(|source| UnpackError::Open { path: layer.blob.clone(), source })?;
        layer::apply(&rootfs, blob, &layer.diff_id, max_layer_bytes).map_err(|source| UnpackError::Layer {
            index,
            digest: layer.digest.clone(),
            source,
        })?;
    }
    Ok(())
}
