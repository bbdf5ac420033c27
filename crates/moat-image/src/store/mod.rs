//! The image store under `<root>/images`: blobs by digest, an index of references, and the
//! EROFS image of each image, cached by its config digest.

pub(crate) mod blobs;
mod gc;
pub(crate) mod layout;
mod lock;
pub(crate) mod refs;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::ImageConfiguration;

pub use blobs::BlobError;
pub use gc::{DiskUsage, PruneReport};
pub use refs::{RefError, RefRecord};

use self::layout::Layout;
use crate::digest::Digest;
use crate::erofs::{self, ErofsError};
use crate::limits::{Limits, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::{self, BlobRef, ManifestError};
use crate::reference;
use crate::unpack::{self, LayerSource, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("image {0} is not in the store (pull or import it first)")]
    NotStored(String),
    #[error("`{0}` holds a digest, which a tag cannot")]
    DigestTag(String),
    #[error("stored manifest {0} is an index, not an image manifest")]
    NotAnImage(Digest),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Erofs(#[from] ErofsError),
    #[error("the new layer: {0}")]
    Layer(crate::unpack::RetarError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_owned(), source }
}

/// An image in the store, with everything needed to run it.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Fully qualified, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    pub manifest_digest: Digest,
    /// Also the image's ID and the key of its EROFS image.
    pub config_digest: Digest,
    pub index_digest: Option<Digest>,
    pub layers: Vec<BlobRef>,
    pub diff_ids: Vec<Digest>,
    pub config: ImageConfiguration,
    pub source: String,
    pub stored_at: u64,
}

impl StoredImage {
    /// Sum of the layer blob sizes (compressed, as transferred).
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// An image whose blobs are all stored and checked, not yet converted or named.
pub(crate) struct Fetched {
    pub reference: String,
    pub manifest: Digest,
    pub index: Option<Digest>,
    pub image: manifest::Image,
    pub config: manifest::Config,
    pub source: String,
}

/// Handle on the store; cheap to create, safe to use from several processes at once.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
}

impl Store {
    /// Opens (creating if needed) the store under `<root>/images`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let layout = Layout::new(root);
        layout.create().map_err(io_err("create store directories under", layout.base()))?;
        Ok(Self { layout, limits: Limits::default() })
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn base(&self) -> &Path {
        self.layout.base()
    }

    pub(crate) fn lock_shared(&self) -> Result<lock::Lock, StoreError> {
        let path = self.layout.store_lock();
        lock::shared(&path).map_err(io_err("lock", &path))
    }

    /// Looks a reference up without touching the network.
    pub fn get(&self, reference: &str) -> Result<Option<StoredImage>, crate::Error> {
        let normalized = reference::normalized(&reference::parse(reference)?);
        match refs::read(&self.layout, &normalized)? {
            Some(record) => Ok(Some(self.load_record(record)?)),
            None => Ok(None),
        }
    }

    /// The stored image for `reference`, or [`StoreError::NotStored`].
    pub fn find(&self, reference: &str) -> Result<StoredImage, crate::Error> {
        self.get(reference)?.ok_or_else(|| StoreError::NotStored(reference.to_owned()).into())
    }

    /// Records `target` as a second name of the image stored as `source` (as `docker tag`
    /// does); whatever `target` named before is replaced. The blobs are shared.
    pub fn tag(&self, source: &str, target: &str) -> Result<StoredImage, crate::Error> {
        let target_ref = reference::parse(target)?;
        if target_ref.digest().is_some() {
            return Err(StoreError::DigestTag(target.to_owned()).into());
        }
        let _store = self.lock_shared()?;
        let image = self.find(source)?;
        let record = refs::read(&self.layout, &image.reference)?.ok_or_else(|| StoreError::NotStored(source.to_owned()))?;
        let record = RefRecord { reference: reference::normalized(&target_ref), stored_at: unix_now(), ..record };
        refs::write(&self.layout, &record)?;
        Ok(self.load_record(record)?)
    }

    /// Every stored image, sorted by reference.
    pub fn list(&self) -> Result<Vec<StoredImage>, StoreError> {
        refs::list(&self.layout)?.into_iter().map(|r| self.load_record(r)).collect()
    }

    /// Forgets a reference; its blobs stay until [`Store::prune`]. False if it was not stored.
    pub fn remove(&self, reference: &str) -> Result<bool, crate::Error> {
        let normalized = reference::normalized(&reference::parse(reference)?);
        Ok(refs::remove(&self.layout, &normalized)?)
    }

    /// Deletes blobs, EROFS images and temporary files no reference needs.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        gc::prune(self)
    }

    /// The bytes the store holds, and those that the images `in_use` (by reference) need.
    pub fn disk_usage(&self, in_use: &dyn Fn(&str) -> bool) -> Result<DiskUsage, StoreError> {
        gc::usage(self, in_use)
    }

    /// The cached EROFS image, if it has been built.
    pub fn cached_erofs(&self, image: &StoredImage) -> Option<PathBuf> {
        let path = self.layout.erofs(&image.config_digest);
        path.is_file().then_some(path)
    }

    /// The EROFS image of `image`, converting it on first use.
    pub fn erofs(&self, image: &StoredImage) -> Result<PathBuf, StoreError> {
        let _store = self.lock_shared()?;
        self.convert(&image.config_digest, &image.layers, &image.diff_ids)
    }

    fn convert(&self, config: &Digest, layers: &[BlobRef], diff_ids: &[Digest]) -> Result<PathBuf, StoreError> {
        let target = self.layout.erofs(config);
        if target.is_file() {
            return Ok(target);
        }
        let lock_path = self.layout.conversion_lock(config);
        let _converting = lock::exclusive(&lock_path).map_err(io_err("lock", &lock_path))?;
        if target.is_file() {
            return Ok(target); // Another process converted it while we waited.
        }
        let sources = layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                let blob = self.layout.blob(&layer.digest);
                if !blobs::has(&self.layout, layer) {
                    return Err(BlobError::Missing(layer.digest.clone()));
                }
                Ok(LayerSource { blob, digest: layer.digest.clone(), diff_id: diff_id.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tmp_root = self.layout.tmp_dir();
        let work = tempfile::Builder::new()
            .prefix("convert-")
            .tempdir_in(&tmp_root)
            .map_err(io_err("create work directory in", &tmp_root))?;
        let rootfs = work.path().join("rootfs");
        unpack::flatten(&rootfs, &sources, self.limits.max_layer_bytes)?;
        let built = work.path().join("image.erofs");
        erofs::build(&rootfs, &built, config)?;
        std::fs::rename(&built, &target).map_err(io_err("store EROFS image", &target))?;
        Ok(target)
    }

    /// Converts a fetched image, then records its reference: a reference in the index always
    /// names an image whose blobs and EROFS image are complete.
    pub(crate) fn commit(&self, fetched: Fetched) -> Result<StoredImage, StoreError> {
        self.convert(&fetched.image.config.digest, &fetched.image.layers, &fetched.config.diff_ids)?;
        let record = RefRecord {
            reference: fetched.reference,
            manifest: fetched.manifest,
            config: fetched.image.config.digest.clone(),
            index: fetched.index,
            source: fetched.source,
            stored_at: unix_now(),
        };
        refs::write(&self.layout, &record)?;
        Ok(stored_image(record, fetched.image, fetched.config))
    }

    fn load_record(&self, record: RefRecord) -> Result<StoredImage, StoreError> {
        let bytes = blobs::read_small(&self.layout, &record.manifest, MAX_MANIFEST_BYTES)?;
        let manifest::Manifest::Image(image) = manifest::parse(&bytes)? else {
            return Err(StoreError::NotAnImage(record.manifest));
        };
        let config_bytes = blobs::read_small(&self.layout, &image.config.digest, MAX_CONFIG_BYTES)?;
        let config = manifest::parse_config(&config_bytes, image.layers.len())?;
        Ok(stored_image(record, *image, config))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn stored_image(record: RefRecord, image: manifest::Image, config: manifest::Config) -> StoredImage {
    StoredImage {
        reference: record.reference,
        manifest_digest: record.manifest,
        config_digest: image.config.digest,
        index_digest: record.index,
        layers: image.layers,
        diff_ids: config.diff_ids,
        config: config.config,
        source: record.source,
        stored_at: record.stored_at,
    }
}
