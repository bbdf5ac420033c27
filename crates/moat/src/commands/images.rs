//! The image steps of `moat run`: find the image, or pull it, and get its EROFS disk.

use std::path::{Path, PathBuf};

use anyhow::Context;
use moat_image::{Platform, PullOptions, Store, StoredImage};

#[derive(clap::Args)]
pub struct PullFlags {
    /// Platform to pick when the image has several.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: Platform,
    /// Registry (host[:port]) to reach over plain HTTP; loopback always is. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Draw no progress bars while pulling.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The stored image for `reference`, pulled first when the store lacks it (as Docker does).
pub fn get_or_pull(root: &Path, reference: &str, flags: &PullFlags) -> anyhow::Result<StoredImage> {
    let store = Store::open(root).with_context(|| format!("opening the image store under {}", root.display()))?;
    if let Some(image) = store.get(reference).with_context(|| format!("image {reference}"))? {
        return Ok(image);
    }
    let opts = PullOptions {
        platform: flags.platform.clone(),
        insecure_registries: flags.insecure_registries.clone(),
        progress: !flags.quiet,
        ..PullOptions::default()
    };
    pull(&store, reference, &opts).with_context(|| format!("image {reference} is not stored and pulling it failed"))
}

/// Pull from the CLI's synchronous code: the registry client is async.
pub fn pull(store: &Store, reference: &str, opts: &PullOptions) -> anyhow::Result<StoredImage> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    Ok(runtime.block_on(store.pull(reference, opts))?)
}

/// The image's read-only EROFS disk, converted on first use and cached by content.
pub fn erofs(root: &Path, image: &StoredImage) -> anyhow::Result<PathBuf> {
    let store = Store::open(root)?;
    store.erofs(image).with_context(|| format!("converting {} to EROFS", image.reference))
}

