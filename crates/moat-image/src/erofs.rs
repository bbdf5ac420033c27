//! Turning a flattened rootfs directory into an EROFS image with `mkfs.erofs`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::digest::Digest;

/// Most of mkfs.erofs' stderr kept for an error message.
const MAX_TOOL_MESSAGE_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ErofsError {
    #[error("cannot run mkfs.erofs (install erofs-utils)")]
    Spawn(#[source] io::Error),
    #[error("mkfs.erofs failed on {dir}: {message}")]
    Failed { dir: PathBuf, message: String },
}

/// A filesystem UUID derived from the image, so the same image always yields the same bytes.
fn uuid_for(config: &Digest) -> String {
    let h = config.hex();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Writes the EROFS image of `dir` to `out`. Timestamps are fixed (`-T0`) and the UUID comes
/// from `config`, so the output is reproducible.
pub fn build(dir: &Path, out: &Path, config: &Digest) -> Result<(), ErofsError> {
    let output = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg("-T0")
        .arg(format!("-U{}", uuid_for(config)))
        .arg(out)
        .arg(dir)
        .output()
        .map_err(ErofsError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&output.stderr[..output.stderr.len().min(MAX_TOOL_MESSAGE_BYTES)])
        .trim()
        .replace('\n', "; ");
    if message.is_empty() {
        message = output.status.to_string();
    }
    Err(ErofsError::Failed { dir: dir.to_owned(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_derived_from_the_digest() {
        let d = Digest::of(b"config");
        let uuid = uuid_for(&d);
        assert_eq!(uuid.len(), 36);
        assert!(d.hex().starts_with(&uuid[..8]));
        assert_eq!(uuid, uuid_for(&Digest::of(b"config")));
    }
}
