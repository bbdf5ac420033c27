//! Pushing a stored image to its registry: the blobs the registry lacks (mounted from another
//! repository of that registry when the store knows one that holds them, uploaded otherwise),
//! then the manifest, byte for byte as stored, so its digest is kept.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use indicatif::ProgressBar;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use tokio::io::AsyncReadExt;

use super::{Reach, Registry, RegistryError};
use crate::digest::Digest;
use crate::limits::{DEFAULT_REGISTRY_TIMEOUT, MAX_MANIFEST_BYTES};
use crate::manifest::{self, BlobRef, Manifest, OCI_MANIFEST};
use crate::progress::Progress;
use crate::reference;
use crate::store::blobs::{self, BlobError};
use crate::store::{Store, StoreError, StoredImage};

/// Bytes read from a blob file per upload chunk.
const UPLOAD_CHUNK: usize = 1 << 20;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Registries (host or host:port) reached over plain HTTP. Loopback always is.
    pub insecure_registries: Vec<String>,
    /// Longest wait for a registry to answer a request or take more bytes.
    pub timeout: Duration,
    /// Draw per-blob progress bars (only ever on a terminal).
    pub progress: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self { insecure_registries: Vec::new(), timeout: DEFAULT_REGISTRY_TIMEOUT, progress: false }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub reference: String,
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    /// Blobs sent, and their bytes.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs the registry took from another of its repositories.
    pub mounted: usize,
    /// Blobs the registry had already.
    pub present: usize,
}

/// What happened to one blob.
enum Sent {
    Present,
    Mounted,
    Uploaded(u64),
}

impl Store {
    /// Pushes the image stored as `reference` to the registry that reference names.
    pub async fn push(&self, reference: &str, opts: &PushOptions) -> Result<PushReport, crate::Error> {
        let image = self.find(reference)?;
        let target = reference::parse(&image.reference)?;
        let _store = self.lock_shared()?;
        let manifest_bytes = blobs::read_small(&self.layout, &image.manifest_digest, MAX_MANIFEST_BYTES).map_err(StoreError::from)?;
        let media_type = match manifest::parse(&manifest_bytes).map_err(StoreError::from)? {
            Manifest::Image(parsed) => parsed.manifest.media_type().as_ref().map_or(OCI_MANIFEST.to_owned(), ToString::to_string),
            Manifest::Index(_) => return Err(StoreError::NotAnImage(image.manifest_digest.clone()).into()),
        };
        let reach = Reach { insecure_registries: &opts.insecure_registries, timeout: opts.timeout, operation: RegistryOperation::Push };
        let session = Registry::connect(&target, &reach).await?;
        let mount_sources = self.mount_sources(&image, &session.registry)?;

        let config_size = std::fs::metadata(self.layout.blob(&image.config_digest)).map_or(0, |m| m.len());
        let config = BlobRef { digest: image.config_digest.clone(), size: config_size, media_type: String::new() };
        let progress = Progress::new(opts.progress);
        let mut report = PushReport {
            reference: image.reference.clone(),
            manifest_digest: image.manifest_digest.clone(),
            manifest_size: manifest_bytes.len() as u64,
            uploaded: 0,
            uploaded_bytes: 0,
            mounted: 0,
            present: 0,
        };
        for blob in image.layers.iter().chain(std::iter::once(&config)) {
            match session.send_blob(self, blob, &mount_sources, &progress).await? {
                Sent::Present => report.present += 1,
                Sent::Mounted => report.mounted += 1,
                Sent::Uploaded(bytes) => {
                    report.uploaded += 1;
                    report.uploaded_bytes += bytes;
                }
            }
        }
        let content_type = reqwest::header::HeaderValue::from_str(&media_type)
            .map_err(|_| StoreError::from(manifest::ManifestError::MediaType(media_type.clone())))?;
        session
            .bounded(session.client.push_manifest_raw(&target, manifest_bytes, content_type))
            .await?
            .map_err(|source| session.client_error(source))?;
        Ok(report)
    }

    /// Other repositories of `registry` that the store's images came from: a blob they share
    /// with this image can be mounted from them instead of uploaded.
    fn mount_sources(&self, image: &StoredImage, registry: &str) -> Result<Vec<(Reference, Vec<Digest>)>, StoreError> {
        let target = reference::parse(&image.reference).ok();
        let mut sources: Vec<(Reference, Vec<Digest>)> = Vec::new();
        for other in self.list()? {
            let Ok(parsed) = reference::parse(&other.reference) else { continue };
            let same_repository = target.as_ref().is_some_and(|t| t.repository() == parsed.repository());
            if parsed.resolve_registry() != registry || other.source != registry || same_repository {
                continue;
            }
            if sources.iter().any(|(r, _)| r.repository() == parsed.repository()) {
                continue;
            }
            let mut digests: Vec<Digest> = other.layers.iter().map(|l| l.digest.clone()).collect();
            digests.push(other.config_digest.clone());
            sources.push((parsed, digests));
        }
        Ok(sources)
    }
}

impl Registry {
    /// A refusal of access reads as one; anything else keeps oci-client's words.
    fn client_error(&self, source: OciDistributionError) -> RegistryError {
        let status = match &source {
            OciDistributionError::UnauthorizedError { .. } => Some(401),
            OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()).filter(|s| matches!(s, 401 | 403)),
            OciDistributionError::ServerError { code, .. } if matches!(code, 401 | 403) => Some(*code),
            _ => None,
        };
        match status {
            Some(status) => RegistryError::Unauthorized { registry: self.registry.clone(), reference: self.reference.whole(), status },
            None => RegistryError::Client { registry: self.registry.clone(), source },
        }
    }

    async fn send_blob(
        &self,
        store: &Store,
        blob: &BlobRef,
        mount_sources: &[(Reference, Vec<Digest>)],
        progress: &Progress,
    ) -> Result<Sent, RegistryError> {
        let digest = blob.digest.to_string();
        let present = self.bounded(self.client.blob_exists(&self.reference, &digest)).await?.map_err(|e| self.client_error(e))?;
        if present {
            return Ok(Sent::Present);
        }
        for (source, _) in mount_sources.iter().filter(|(_, digests)| digests.contains(&blob.digest)) {
            // A registry that will not mount answers 202 and opens an upload, which is dropped.
            if let Ok(Ok(())) = self.bounded(self.client.mount_blob(&self.reference, source, &digest)).await {
                return Ok(Sent::Mounted);
            }
        }
        let path = store.layout.blob(&blob.digest);
        if !blobs::has(&store.layout, blob) {
            return Err(RegistryError::Blob { registry: self.registry.clone(), digest: blob.digest.clone(), source: BlobError::Missing(blob.digest.clone()) });
        }
        let file = tokio::fs::File::open(&path).await.map_err(|source| RegistryError::Blob {
            registry: self.registry.clone(),
            digest: blob.digest.clone(),
            source: BlobError::Io { op: "open", path: path.clone(), source },
        })?;
        let bar = progress.bar(blob.digest.short(), blob.size);
        self.client
            .push_blob_stream(&self.reference, file_chunks(file, path, bar.clone()), &digest, Some(blob.size))
            .await
            .map_err(|e| self.client_error(e))?;
        bar.finish();
        Ok(Sent::Uploaded(blob.size))
    }
}

/// The blob file as a stream of chunks, counted on `bar`.
fn file_chunks(file: tokio::fs::File, path: PathBuf, bar: ProgressBar) -> impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static {
    futures_util::stream::unfold(Some((file, path, bar)), |state| async move {
        let (mut file, path, bar) = state?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                bar.inc(n as u64);
                Some((Ok(Bytes::from(buf)), Some((file, path, bar))))
            }
            Err(e) => Some((Err(std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())).into()), None)),
        }
    })
}
