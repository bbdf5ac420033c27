//! Writing stored images into archives other engines load: `docker save`'s format
//! (`docker-archive`) and an OCI image layout in a tar (`oci-archive`). Every blob is checked
//! against its digest as it is written; a blob that changed in the store fails the save.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use tempfile::NamedTempFile;

use crate::digest::{limit_exceeded, Digest, MeteredReader};
use crate::limits::MAX_MANIFEST_BYTES;
use crate::manifest::{self, BlobRef, OCI_INDEX, OCI_MANIFEST};
use crate::store::blobs::{self, BlobError};
use crate::store::{Store, StoreError, StoredImage};
use crate::unpack::decompressed;

const WRITE_BUFFER: usize = 256 << 10;

/// The archive formats `moat image save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `manifest.json`, the config and uncompressed layer tars, as `docker save` writes them.
    #[default]
    DockerArchive,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in a tar; blobs and
    /// manifests exactly as stored, so digests are kept.
    OciArchive,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("no image to save")]
    NothingToSave,
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("writing the archive")]
    Write(#[source] io::Error),
    #[error("stored blob {expected} now has digest {actual}; pull or import the image again")]
    Corrupt { expected: Digest, actual: Digest },
    #[error("stored blob {digest} has {actual} bytes, not the {declared} its manifest declares; pull or import the image again")]
    Resized { digest: Digest, declared: u64, actual: u64 },
    #[error("layer {layer} decompresses to {actual}, not its diff ID {expected}")]
    DiffId { layer: Digest, expected: Digest, actual: Digest },
    #[error("layer {layer} decompresses to more than the {limit}-byte limit")]
    TooLarge { layer: Digest, limit: u64 },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SaveError + 'a {
    move |source| SaveError::Io { op, path: path.to_owned(), source }
}

impl Store {
    /// Writes `images` to `dest` as one archive. The file appears whole or not at all: it is
    /// written beside `dest` under a temporary name and renamed into place once complete.
    pub fn save_file(&self, images: &[StoredImage], format: ArchiveFormat, dest: &Path) -> Result<(), SaveError> {
        let dir = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let tmp = NamedTempFile::with_prefix_in(".moat-save-", dir).map_err(io_err("create a file in", dir))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, tmp);
        self.save(images, format, &mut out)?;
        let tmp = out.into_inner().map_err(|e| SaveError::Write(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err("sync", dest))?;
        tmp.persist(dest).map_err(|e| SaveError::Io { op: "rename into", path: dest.to_owned(), source: e.error })?;
        Ok(())
    }

    /// Streams `images` as one archive into `out`.
    pub fn save(&self, images: &[StoredImage], format: ArchiveFormat, out: &mut dyn Write) -> Result<(), SaveError> {
        if images.is_empty() {
            return Err(SaveError::NothingToSave);
        }
        let _store = self.lock_shared()?;
        let mut archive = Archive { tar: tar::Builder::new(out), written: HashSet::new() };
        match format {
            ArchiveFormat::DockerArchive => self.write_docker_archive(images, &mut archive)?,
            ArchiveFormat::OciArchive => self.write_oci_archive(images, &mut archive)?,
        }
        archive.tar.into_inner().map_err(SaveError::Write)?.flush().map_err(SaveError::Write)
    }

    fn write_docker_archive(&self, images: &[StoredImage], archive: &mut Archive<'_>) -> Result<(), SaveError> {
        // One manifest.json entry per image, carrying every tag it was saved under.
        let mut entries: BTreeMap<(Digest, Digest), (&StoredImage, Vec<String>)> = BTreeMap::new();
        for image in images {
            let entry = entries.entry((image.config_digest.clone(), image.manifest_digest.clone())).or_insert((image, Vec::new()));
            if is_tagged(&image.reference) && !entry.1.contains(&image.reference) {
                entry.1.push(image.reference.clone());
            }
        }
        let mut manifest = Vec::new();
        for (image, tags) in entries.into_values() {
            let config_name = format!("{}.json", image.config_digest.hex());
            archive.blob(self, &image.config_digest, None, &config_name)?;
            let mut layers = Vec::new();
            for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
                let name = format!("{}/layer.tar", diff_id.hex());
                archive.dir(&format!("{}/", diff_id.hex()))?;
                self.write_uncompressed_layer(archive, layer, diff_id, &name)?;
                layers.push(name);
            }
            manifest.push(json!({ "Config": config_name, "RepoTags": tags, "Layers": layers }));
        }
        archive.bytes("manifest.json", &serde_json::to_vec(&manifest).map_err(|e| SaveError::Write(e.into()))?)
    }

    /// A docker-archive layer is the uncompressed tar whose digest is the diff ID. A compressed
    /// blob is inflated into the store's temporary directory first, since a tar header needs
    /// the size up front.
    fn write_uncompressed_layer(&self, archive: &mut Archive<'_>, layer: &BlobRef, diff_id: &Digest, name: &str) -> Result<(), SaveError> {
        if layer.digest == *diff_id {
            return archive.blob(self, &layer.digest, Some(layer.size), name);
        }
        if !archive.written.insert(name.to_owned()) {
            return Ok(());
        }
        let path = self.layout.blob(&layer.digest);
        let blob = File::open(&path).map_err(|_| BlobError::Missing(layer.digest.clone()))?;
        let limit = self.limits.max_layer_bytes;
        let mut inflating = MeteredReader::new(decompressed(blob).map_err(io_err("read", &path))?, limit);
        let tmp_dir = self.layout.tmp_dir();
        let mut tar_file = tempfile::tempfile_in(&tmp_dir).map_err(io_err("create a file in", &tmp_dir))?;
        io::copy(&mut inflating, &mut tar_file).map_err(|e| match limit_exceeded(&e) {
            Some(limit) => SaveError::TooLarge { layer: layer.digest.clone(), limit },
            None => SaveError::Io { op: "decompress", path: path.clone(), source: e },
        })?;
        let (actual, size) = inflating.drain_and_finish().map_err(io_err("decompress", &path))?;
        if actual != *diff_id {
            return Err(SaveError::DiffId { layer: layer.digest.clone(), expected: diff_id.clone(), actual });
        }
        io::Seek::rewind(&mut tar_file).map_err(io_err("rewind", &tmp_dir))?;
        archive.append(name, size, &mut tar_file)
    }

    fn write_oci_archive(&self, images: &[StoredImage], archive: &mut Archive<'_>) -> Result<(), SaveError> {
        archive.dir("blobs/")?;
        archive.dir("blobs/sha256/")?;
        let mut index = Vec::new();
        for image in images {
            let manifest_bytes = blobs::read_small(&self.layout, &image.manifest_digest, MAX_MANIFEST_BYTES)?;
            let media_type = match manifest::parse(&manifest_bytes).map_err(StoreError::from)? {
                manifest::Manifest::Image(parsed) => parsed.manifest.media_type().as_ref().map_or(OCI_MANIFEST.to_owned(), ToString::to_string),
                manifest::Manifest::Index(_) => return Err(StoreError::NotAnImage(image.manifest_digest.clone()).into()),
            };
            let manifest_ref = BlobRef { digest: image.manifest_digest.clone(), size: manifest_bytes.len() as u64, media_type };
            for blob in std::iter::once(&manifest_ref).chain(&image.layers) {
                archive.blob(self, &blob.digest, Some(blob.size), &format!("blobs/sha256/{}", blob.digest.hex()))?;
            }
            let config = &image.config_digest;
            archive.blob(self, config, None, &format!("blobs/sha256/{}", config.hex()))?;
            let mut annotations = serde_json::Map::new();
            annotations.insert("io.containerd.image.name".into(), image.reference.clone().into());
            if is_tagged(&image.reference) {
                annotations.insert("org.opencontainers.image.ref.name".into(), image.reference.clone().into());
            }
            index.push(json!({
                "mediaType": manifest_ref.media_type,
                "digest": manifest_ref.digest.to_string(),
                "size": manifest_ref.size,
                "platform": {
                    "architecture": image.config.architecture().to_string(),
                    "os": image.config.os().to_string(),
                },
                "annotations": annotations,
            }));
        }
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index });
        archive.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        archive.bytes("index.json", &serde_json::to_vec(&index).map_err(|e| SaveError::Write(e.into()))?)
    }
}

/// A reference with a tag, which archives can name (a digest-only one has no tag to give).
fn is_tagged(reference: &str) -> bool {
    crate::reference::parse(reference).is_ok_and(|r| r.tag().is_some())
}

/// The tar being written, and the members already in it (blobs shared by images go in once).
struct Archive<'a> {
    tar: tar::Builder<&'a mut dyn Write>,
    written: HashSet<String>,
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

impl Archive<'_> {
    fn append(&mut self, name: &str, size: u64, data: &mut dyn io::Read) -> Result<(), SaveError> {
        let mut header = header(tar::EntryType::Regular, 0o644, size);
        self.tar.append_data(&mut header, name, data).map_err(SaveError::Write)
    }

    fn dir(&mut self, name: &str) -> Result<(), SaveError> {
        if !self.written.insert(name.to_owned()) {
            return Ok(());
        }
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        self.tar.append_data(&mut header, name, io::empty()).map_err(SaveError::Write)
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), SaveError> {
        self.append(name, bytes.len() as u64, &mut &bytes[..])
    }

    /// Copies the stored blob `digest` in as `name`, hashing it on the way. `declared` is the
    /// size its descriptor gives, when one is at hand (a config's is in the manifest only).
    fn blob(&mut self, store: &Store, digest: &Digest, declared: Option<u64>, name: &str) -> Result<(), SaveError> {
        if !self.written.insert(name.to_owned()) {
            return Ok(());
        }
        let path = store.layout.blob(digest);
        let file = File::open(&path).map_err(|_| BlobError::Missing(digest.clone()))?;
        let size = file.metadata().map_err(io_err("inspect", &path))?.len();
        if let Some(declared) = declared.filter(|d| *d != size) {
            return Err(SaveError::Resized { digest: digest.clone(), declared, actual: size });
        }
        let mut hashing = MeteredReader::new(file, size);
        self.append(name, size, &mut hashing)?;
        let (actual, count) = hashing.drain_and_finish().map_err(io_err("read", &path))?;
        if count != size {
            return Err(SaveError::Resized { digest: digest.clone(), declared: size, actual: count });
        }
        if actual != *digest {
            return Err(SaveError::Corrupt { expected: digest.clone(), actual });
        }
        Ok(())
    }
}
