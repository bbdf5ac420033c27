//! moat's image store: pull from a registry or import from a file, verify every digest, flatten
//! the layers and convert them into a read-only EROFS image that a zone attaches, cached by
//! content under `<root>/images`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moat_image::Error> {
//! use moat_image::{PullOptions, Store};
//! let store = Store::open(std::path::Path::new("/var/lib/moat"))?;
//! let image = store.pull("busybox", &PullOptions::default()).await?;
//! let rootfs = store.erofs(&image)?; // a cache hit: pull already converted it
//! # let _ = rootfs; Ok(()) }
//! ```

pub mod commit;
pub mod digest;
pub mod erofs;
mod import;
pub mod limits;
pub mod manifest;
mod progress;
pub mod reference;
mod registry;
mod save;
pub mod store;
pub mod unpack;

pub use commit::{ChangeError, CommitOptions, ConfigChange};
pub use digest::Digest;
pub use import::{ImportError, ImportOptions};
pub use limits::Limits;
pub use reference::Platform;
pub use registry::{PullOptions, PushOptions, PushReport, RegistryError};
pub use save::{ArchiveFormat, SaveError};
pub use store::{DiskUsage, PruneReport, Store, StoreError, StoredImage};

/// Any failure of the store's public operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Save(#[from] SaveError),
}

impl From<store::RefError> for Error {
    fn from(e: store::RefError) -> Self {
        Self::Store(e.into())
    }
}
