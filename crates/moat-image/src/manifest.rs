//! Parsing and validating manifests, indexes and image configurations: untrusted JSON in,
//! typed values with checked digests, sizes and counts out.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest::{Digest, DigestError};
use crate::limits::{MAX_CONFIG_BYTES, MAX_INDEX_ENTRIES, MAX_LAYERS, MAX_MANIFEST_BYTES};
use crate::reference::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Media types we ask a registry for, in order of preference.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("{what} is not valid JSON: {reason}")]
    Json { what: &'static str, reason: serde_json::Error },
    #[error("manifest schema version {0} is not supported (Docker schema 1 images must be converted)")]
    SchemaVersion(u32),
    #[error("media type `{0}` is not an image manifest or index")]
    MediaType(String),
    #[error("layer media type `{0}` is not a filesystem layer")]
    LayerMediaType(String),
    #[error("config media type `{0}` is not an image configuration")]
    ConfigMediaType(String),
    #[error("manifest lists {count} layers, more than the limit of {limit}")]
    TooManyLayers { count: usize, limit: usize },
    #[error("index lists {count} manifests, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("config blob is declared as {size} bytes, more than the {limit}-byte limit")]
    ConfigTooLarge { size: u64, limit: u64 },
    #[error("image config has {diff_ids} diff_ids but the manifest has {layers} layers")]
    LayerCountMismatch { diff_ids: usize, layers: usize },
    #[error("image config is for {found}, not {wanted}")]
    ConfigPlatform { found: String, wanted: String },
    #[error("no manifest for platform {wanted} in the index (it has: {available})")]
    NoPlatform { wanted: Platform, available: String },
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A content reference: what a descriptor says about a blob, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl TryFrom<&Descriptor> for BlobRef {
    type Error = ManifestError;

    fn try_from(d: &Descriptor) -> Result<Self, Self::Error> {
        Ok(Self { digest: d.digest().try_into()?, size: d.size(), media_type: d.media_type().to_string() })
    }
}

/// A single-platform image manifest that passed validation.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: ImageManifest,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
}

/// One entry of an image index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub blob: BlobRef,
    pub platform: Option<Platform>,
    /// The `org.opencontainers.image.ref.name` annotation, as OCI layouts name their images.
    pub ref_name: Option<String>,
    /// The `io.containerd.image.name` annotation: a full reference, when present.
    pub image_name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<Image>),
    Index(Vec<IndexEntry>),
}

/// The fields that tell manifests, indexes and their versions apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: u32,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
}

fn check_size(what: &'static str, bytes: &[u8], limit: u64) -> Result<(), ManifestError> {
    let size = bytes.len() as u64;
    if size > limit {
        return Err(ManifestError::TooLarge { what, size, limit });
    }
    Ok(())
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|reason| ManifestError::Json { what, reason })
}

/// Parses a manifest or an index, whichever `bytes` holds.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    check_size("manifest", bytes, MAX_MANIFEST_BYTES)?;
    let probe: Probe = json("manifest", bytes)?;
    if probe.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(probe.schema_version));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(other) => return Err(ManifestError::MediaType(other.to_owned())),
        None => probe.manifests.is_some(),
    };
    if is_index {
        parse_index(bytes).map(Manifest::Index)
    } else {
        parse_image(bytes).map(|i| Manifest::Image(Box::new(i)))
    }
}

fn parse_image(bytes: &[u8]) -> Result<Image, ManifestError> {
    let manifest: ImageManifest = json("manifest", bytes)?;
    let count = manifest.layers().len();
    if count > MAX_LAYERS {
        return Err(ManifestError::TooManyLayers { count, limit: MAX_LAYERS });
    }
    let config = BlobRef::try_from(manifest.config())?;
    if ![OCI_CONFIG, DOCKER_CONFIG].contains(&config.media_type.as_str()) {
        return Err(ManifestError::ConfigMediaType(config.media_type));
    }
    if config.size > MAX_CONFIG_BYTES {
        return Err(ManifestError::ConfigTooLarge { size: config.size, limit: MAX_CONFIG_BYTES });
    }
    let layers = manifest.layers().iter().map(BlobRef::try_from).collect::<Result<Vec<_>, _>>()?;
    if let Some(odd) = layers.iter().find(|l| !LAYER_TYPES.contains(&l.media_type.as_str())) {
        return Err(ManifestError::LayerMediaType(odd.media_type.clone()));
    }
    Ok(Image { manifest, config, layers })
}

fn parse_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, ManifestError> {
    let index: ImageIndex = json("index", bytes)?;
    let count = index.manifests().len();
    if count > MAX_INDEX_ENTRIES {
        return Err(ManifestError::TooManyEntries { count, limit: MAX_INDEX_ENTRIES });
    }
    index
        .manifests()
        .iter()
        .map(|d| {
            let annotation = |key: &str| d.annotations().as_ref().and_then(|a| a.get(key)).cloned();
            Ok(IndexEntry {
                blob: BlobRef::try_from(d)?,
                platform: d.platform().as_ref().map(|p| Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone(),
                }),
                ref_name: annotation("org.opencontainers.image.ref.name"),
                image_name: annotation("io.containerd.image.name"),
            })
        })
        .collect()
}

/// Picks the index entry for `wanted`. Without a wanted variant, an entry without one wins.
pub fn select_platform<'a>(entries: &'a [IndexEntry], wanted: &Platform) -> Result<&'a IndexEntry, ManifestError> {
    let matching = |e: &&IndexEntry| {
        e.platform.as_ref().is_some_and(|p| {
            p.os == wanted.os
                && p.architecture == wanted.architecture
                && (wanted.variant.is_none() || p.variant == wanted.variant)
        })
    };
    let mut candidates: Vec<&IndexEntry> = entries.iter().filter(matching).collect();
    candidates.sort_by_key(|e| e.platform.as_ref().is_some_and(|p| p.variant.is_some()));
    candidates.first().copied().ok_or_else(|| ManifestError::NoPlatform {
        wanted: wanted.clone(),
        available: entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// An OCI image manifest for `config` and `layers`, as stored bytes.
pub fn image_manifest(config: &BlobRef, layers: &[BlobRef]) -> Vec<u8> {
    let descriptor = |blob: &BlobRef| serde_json::json!({ "mediaType": blob.media_type, "digest": blob.digest.to_string(), "size": blob.size });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    manifest.to_string().into_bytes()
}

/// A parsed image configuration and its layer diff IDs, checked against the manifest.
#[derive(Debug, Clone)]
pub struct Config {
    pub config: ImageConfiguration,
    pub diff_ids: Vec<Digest>,
}

/// Parses the config blob of an image whose manifest lists `layers` layers.
pub fn parse_config(bytes: &[u8], layers: usize) -> Result<Config, ManifestError> {
    check_size("image config", bytes, MAX_CONFIG_BYTES)?;
    let config: ImageConfiguration = json("image config", bytes)?;
    let diff_ids = config.rootfs().diff_ids().iter().map(|d| d.parse()).collect::<Result<Vec<Digest>, _>>()?;
    if diff_ids.len() != layers {
        return Err(ManifestError::LayerCountMismatch { diff_ids: diff_ids.len(), layers });
    }
    Ok(Config { config, diff_ids })
}

/// Fails unless the config describes an image that runs on `wanted`.
pub fn check_config_platform(config: &ImageConfiguration, wanted: &Platform) -> Result<(), ManifestError> {
    let (os, architecture) = (config.os().to_string(), config.architecture().to_string());
    if os != wanted.os || architecture != wanted.architecture {
        return Err(ManifestError::ConfigPlatform { found: format!("{os}/{architecture}"), wanted: wanted.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest_json(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
                "config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":10}},
                "layers":[{{"mediaType":"{layer_type}","digest":"{}","size":20}}]}}"#,
            digest('a'),
            digest('b')
        )
    }

    #[test]
    fn parses_an_image_manifest() {
        let Manifest::Image(image) = parse(manifest_json(OCI_LAYER_TAR).as_bytes()).expect("valid") else {
            panic!("expected an image manifest");
        };
        assert_eq!(image.config.digest.to_string(), digest('a'));
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].size, 20);
    }

    #[test]
    fn rejects_artifacts_and_old_schemas() {
        let err = parse(manifest_json("application/vnd.wasm.content.layer.v1+wasm").as_bytes());
        assert!(matches!(err, Err(ManifestError::LayerMediaType(_))));
        let err = parse(br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#);
        assert!(matches!(err, Err(ManifestError::SchemaVersion(1))));
        assert!(matches!(parse(b"\x00garbage"), Err(ManifestError::Json { .. })));
        let huge = vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize];
        assert!(matches!(parse(&huge), Err(ManifestError::TooLarge { .. })));
    }

    #[test]
    fn selects_platform_from_index() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            digest('1'),
            digest('2')
        );
        let Manifest::Index(entries) = parse(index.as_bytes()).expect("valid") else {
            panic!("expected an index");
        };
        let amd64 = select_platform(&entries, &Platform::linux_amd64()).expect("present");
        assert_eq!(amd64.blob.digest.to_string(), digest('2'));
        let arm = select_platform(&entries, &"linux/arm64".parse().expect("valid")).expect("present");
        assert_eq!(arm.blob.digest.to_string(), digest('1'));
        let err = select_platform(&entries, &"linux/s390x".parse().expect("valid")).expect_err("absent");
        assert!(err.to_string().contains("linux/arm64/v8, linux/amd64"), "{err}");
    }

    #[test]
    fn config_diff_ids_must_match_layers() {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            digest('c')
        );
        let parsed = parse_config(config.as_bytes(), 1).expect("valid");
        assert_eq!(parsed.diff_ids.len(), 1);
        assert!(matches!(parse_config(config.as_bytes(), 2), Err(ManifestError::LayerCountMismatch { .. })));
        check_config_platform(&parsed.config, &Platform::linux_amd64()).expect("amd64");
    }
}
