//! Pulling from OCI/Docker registries. `oci-client` handles the token dance and blob streams;
//! manifests are fetched here so their size is bounded before they are held in memory.

mod auth;
mod push;

pub use push::{PushOptions, PushReport};

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::digest::Digest;
use crate::limits::{DEFAULT_REGISTRY_TIMEOUT, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, PARALLEL_DOWNLOADS};
use crate::manifest::{self, BlobRef, Manifest, ManifestError, ACCEPTED_MANIFEST_TYPES};
use crate::progress::Progress;
use crate::reference::{self, Platform};
use crate::store::blobs::{self, BlobError, BlobWriter};
use crate::store::{Fetched, Store, StoreError, StoredImage};

const USER_AGENT: &str = concat!("moat/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} did not answer within {seconds}s")]
    Timeout { registry: String, seconds: u64 },
    #[error("registry {registry}")]
    Http { registry: String, source: reqwest::Error },
    #[error("registry {registry}")]
    Client { registry: String, source: oci_client::errors::OciDistributionError },
    #[error("registry {registry} refused access to {reference} (HTTP {status}); check the credentials in ~/.docker/config.json")]
    Unauthorized { registry: String, reference: String, status: u16 },
    #[error("{reference} was not found on {registry}")]
    NotFound { registry: String, reference: String },
    #[error("registry {registry} answered HTTP {status} for {url}")]
    Status { registry: String, status: u16, url: String },
    #[error("manifest from {registry} is larger than the {limit}-byte limit")]
    ManifestTooLarge { registry: String, limit: u64 },
    #[error("manifest from {registry} has digest {actual}, but {expected} was expected")]
    ManifestDigest { registry: String, expected: String, actual: Digest },
    #[error("manifest of {reference}")]
    Manifest { reference: String, source: ManifestError },
    #[error("index entry {0} is itself an index; nested indexes are not supported")]
    NestedIndex(Digest),
    #[error("credentials for {registry}: {reason}")]
    Credentials { registry: String, reason: String },
    #[error("blob {digest} from {registry}")]
    Blob { registry: String, digest: Digest, source: BlobError },
    #[error("blob {digest} from {registry} stalled: no data for {seconds}s after {got} of {declared} bytes")]
    Stalled { registry: String, digest: Digest, got: u64, declared: u64, seconds: u64 },
    #[error("downloading blob {digest} from {registry} failed after {got} of {declared} bytes")]
    Download { registry: String, digest: Digest, got: u64, declared: u64, source: std::io::Error },
    #[error("converting the pulled image was interrupted")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform chosen from a multi-platform index (default linux/amd64).
    pub platform: Platform,
    /// Registries (host or host:port) reached over plain HTTP. Loopback always is.
    pub insecure_registries: Vec<String>,
    /// Longest wait for a registry to answer or send more bytes.
    pub timeout: Duration,
    /// Draw per-layer progress bars (only ever on a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::default(),
            insecure_registries: Vec::new(),
            timeout: DEFAULT_REGISTRY_TIMEOUT,
            progress: false,
        }
    }
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// What manifest requests present; blob requests get the same from oci-client's token cache.
enum Authorization {
    Bearer(String),
    Basic(String, String),
}

/// One registry session for one repository.
struct Registry {
    client: Client,
    http: reqwest::Client,
    reference: Reference,
    registry: String,
    base_url: String,
    authorization: Option<Authorization>,
    timeout: Duration,
}

/// How to reach a registry: the settings pull and push share.
struct Reach<'a> {
    insecure_registries: &'a [String],
    timeout: Duration,
    operation: RegistryOperation,
}

impl Registry {
    async fn connect(reference: &Reference, opts: &Reach<'_>) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let registry = reference.resolve_registry().to_owned();
        let plain_http = reference::is_loopback_registry(&registry)
            || opts.insecure_registries.iter().any(|r| r == &registry || r == reference.registry());
        let mut exceptions = opts.insecure_registries.to_vec();
        if plain_http {
            exceptions.push(registry.clone());
        }
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(exceptions),
            platform_resolver: None,
            read_timeout: Some(opts.timeout),
            connect_timeout: Some(opts.timeout),
            user_agent: USER_AGENT,
            // Blobs are pushed as one streamed PUT each: their sizes are known.
            use_monolithic_push: true,
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(opts.timeout)
            .read_timeout(opts.timeout)
            .build()
            .map_err(|source| RegistryError::Http { registry: registry.clone(), source })?;
        let credentials = auth::credentials(reference.registry())
            .map_err(|reason| RegistryError::Credentials { registry: registry.clone(), reason })?;
        let mut session = Self {
            client,
            http,
            reference: reference.clone(),
            base_url: format!("{}://{registry}/v2/{}", if plain_http { "http" } else { "https" }, reference.repository()),
            registry,
            authorization: None,
            timeout: opts.timeout,
        };
        let token = session
            .bounded(session.client.auth(reference, &credentials, opts.operation))
            .await?
            .map_err(|source| RegistryError::Client { registry: session.registry.clone(), source })?;
        session.authorization = match (token, &credentials) {
            (Some(token), _) => Some(Authorization::Bearer(token)),
            (None, RegistryAuth::Basic(user, password)) => Some(Authorization::Basic(user.clone(), password.clone())),
            _ => None,
        };
        Ok(session)
    }

    /// Runs `work` with the session's timeout.
    async fn bounded<T>(&self, work: impl Future<Output = T>) -> Result<T, RegistryError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| RegistryError::Timeout { registry: self.registry.clone(), seconds: self.timeout.as_secs() })
    }

    /// Fetches a manifest or index by tag or digest, never holding more than the manifest limit.
    async fn manifest(&self, tag_or_digest: &str) -> Result<(Vec<u8>, Digest), RegistryError> {
        let url = format!("{}/manifests/{tag_or_digest}", self.base_url);
        let body = self.bounded(self.get_bounded(&url, tag_or_digest)).await??;
        let actual = Digest::of(&body);
        if tag_or_digest.contains(':') && actual.to_string() != tag_or_digest {
            return Err(RegistryError::ManifestDigest {
                registry: self.registry.clone(),
                expected: tag_or_digest.to_owned(),
                actual,
            });
        }
        Ok((body, actual))
    }

    async fn get_bounded(&self, url: &str, what: &str) -> Result<Vec<u8>, RegistryError> {
        let http_err = |source| RegistryError::Http { registry: self.registry.clone(), source };
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, ACCEPTED_MANIFEST_TYPES.join(", "));
        match &self.authorization {
            Some(Authorization::Bearer(token)) => request = request.bearer_auth(token),
            Some(Authorization::Basic(user, password)) => request = request.basic_auth(user, Some(password)),
            None => {}
        }
        let mut response = request.send().await.map_err(http_err)?;
        let status = response.status().as_u16();
        let reference = format!("{}/{}:{what}", self.registry, self.reference.repository());
        match status {
            200..=299 => {}
            401 | 403 => return Err(RegistryError::Unauthorized { registry: self.registry.clone(), reference, status }),
            404 => return Err(RegistryError::NotFound { registry: self.registry.clone(), reference }),
            _ => return Err(RegistryError::Status { registry: self.registry.clone(), status, url: url.to_owned() }),
        }
        let too_large = || RegistryError::ManifestTooLarge { registry: self.registry.clone(), limit: MAX_MANIFEST_BYTES };
        if response.content_length().is_some_and(|len| len > MAX_MANIFEST_BYTES) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_err)? {
            if (body.len() + chunk.len()) as u64 > MAX_MANIFEST_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Downloads `blob` into the store unless it is there already; the digest and size are
    /// checked as bytes arrive, and nothing lands in the store unless both match.
    async fn fetch(&self, store: &Store, blob: &BlobRef, limit: u64, progress: &Progress) -> Result<(), RegistryError> {
        if blobs::has(&store.layout, blob) {
            return Ok(());
        }
        let blob_err = |source| RegistryError::Blob { registry: self.registry.clone(), digest: blob.digest.clone(), source };
        let mut writer = BlobWriter::begin(&store.layout, Some(blob), limit).map_err(blob_err)?;
        let digest = blob.digest.to_string();
        let mut stream = self
            .bounded(self.client.pull_blob_stream(&self.reference, digest.as_str()))
            .await?
            .map_err(|source| RegistryError::Client { registry: self.registry.clone(), source })?;
        let bar = progress.bar(blob.digest.short(), blob.size);
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| {
                let (registry, digest, declared) = (self.registry.clone(), blob.digest.clone(), blob.size);
                if timed_out(&source) {
                    RegistryError::Stalled { registry, digest, got, declared, seconds: self.timeout.as_secs() }
                } else {
                    RegistryError::Download { registry, digest, got, declared, source }
                }
            })?;
            writer.write(&chunk).map_err(blob_err)?;
            got += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        writer.commit(&store.layout, &blob.media_type).map_err(blob_err)?;
        bar.finish();
        Ok(())
    }

    async fn fetch_all(&self, store: &Store, blobs: &[BlobRef], limit: u64, progress: &Progress) -> Result<(), RegistryError> {
        futures_util::stream::iter(blobs.iter().map(Ok))
            .try_for_each_concurrent(PARALLEL_DOWNLOADS, |blob| self.fetch(store, blob, limit, progress))
            .await
    }
}

/// Whether a blob stream failed because the registry sent nothing for the read timeout.
fn timed_out(err: &std::io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let timeout = e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || e.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout);
        if timeout {
            return true;
        }
        source = e.source();
    }
    false
}

impl Store {
    /// Pulls `reference`, verifies every blob, converts it to EROFS and records it. Blobs
    /// already stored are not downloaded again. The conversion runs on a blocking thread.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<StoredImage, crate::Error> {
        let parsed = reference::parse(reference)?;
        let normalized = reference::normalized(&parsed);
        let _store = self.lock_shared()?;
        let reach = Reach { insecure_registries: &opts.insecure_registries, timeout: opts.timeout, operation: RegistryOperation::Pull };
        let session = Registry::connect(&parsed, &reach).await?;
        let manifest_err = |source| RegistryError::Manifest { reference: normalized.clone(), source };

        let wanted = parsed.digest().or(parsed.tag()).unwrap_or("latest");
        let (top, top_digest) = session.manifest(wanted).await?;
        let (bytes, index) = match manifest::parse(&top).map_err(manifest_err)? {
            Manifest::Image(_) => (top, None),
            Manifest::Index(entries) => {
                let entry = manifest::select_platform(&entries, &opts.platform).map_err(manifest_err)?;
                let (bytes, _) = session.manifest(&entry.blob.digest.to_string()).await?;
                let stored = blobs::put_bytes(&self.layout, &top, manifest::OCI_INDEX).map_err(StoreError::from)?;
                debug_assert_eq!(stored.digest, top_digest);
                (bytes, Some(top_digest))
            }
        };
        let image = match manifest::parse(&bytes).map_err(manifest_err)? {
            Manifest::Image(image) => image,
            Manifest::Index(_) => return Err(RegistryError::NestedIndex(Digest::of(&bytes)).into()),
        };
        let manifest = blobs::put_bytes(&self.layout, &bytes, manifest::OCI_MANIFEST).map_err(StoreError::from)?;

        let progress = Progress::new(opts.progress);
        session.fetch_all(self, std::slice::from_ref(&image.config), MAX_CONFIG_BYTES, &progress).await?;
        let config_bytes = blobs::read_small(&self.layout, &image.config.digest, MAX_CONFIG_BYTES).map_err(StoreError::from)?;
        let config = manifest::parse_config(&config_bytes, image.layers.len()).map_err(manifest_err)?;
        manifest::check_config_platform(&config.config, &opts.platform).map_err(manifest_err)?;
        session.fetch_all(self, &image.layers, self.limits.max_layer_bytes, &progress).await?;

        let fetched = Fetched { reference: normalized, manifest: manifest.digest, index, image: *image, config, source: session.registry };
        let store = self.clone();
        let stored = tokio::task::spawn_blocking(move || store.commit(fetched))
            .await
            .map_err(|_| RegistryError::Interrupted)?;
        Ok(stored.map_err(RegistryError::from)?)
    }
}
