//! Where everything lives under `<root>/images`.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Paths of the store. Blobs are content-addressed; nothing here is named by untrusted text
/// (references are hashed into file names).
#[derive(Debug, Clone)]
pub struct Layout {
    base: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self { base: root.join("images") }
    }

    /// Creates the directories. The base is 0700: unpacked trees hold setuid files and devices.
    pub fn create(&self) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.base)?;
        for dir in [self.blobs_dir(), self.refs_dir(), self.erofs_dir(), self.locks_dir(), self.tmp_dir()] {
            fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Shared by readers and writers, exclusive for garbage collection.
    pub fn store_lock(&self) -> PathBuf {
        self.base.join("lock")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.base.join("blobs").join("sha256")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn refs_dir(&self) -> PathBuf {
        self.base.join("refs")
    }

    /// A reference's index record, named by the hash of the reference text.
    pub fn reference(&self, reference: &str) -> PathBuf {
        self.refs_dir().join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    pub fn erofs_dir(&self) -> PathBuf {
        self.base.join("erofs")
    }

    /// The EROFS image of the image whose config has digest `config`.
    pub fn erofs(&self, config: &Digest) -> PathBuf {
        self.erofs_dir().join(format!("{}.erofs", config.hex()))
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.base.join("locks")
    }

    /// Held while converting one image, so concurrent conversions of it happen once.
    pub fn conversion_lock(&self, config: &Digest) -> PathBuf {
        self.locks_dir().join(config.hex())
    }

    /// Temporary files and trees; whatever is here never reads as stored content.
    pub fn tmp_dir(&self) -> PathBuf {
        self.base.join("tmp")
    }
}
