//! Bounds on everything an image, an archive or a registry can make us read, write or hold.

use std::time::Duration;

/// Largest manifest or index accepted. Threat: a registry or archive streaming an endless JSON
/// document to exhaust host memory. Real manifests are a few KiB; registries cap them at 4 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Largest image configuration accepted. Threat: memory exhaustion through the config blob,
/// which is parsed in memory. Real configs with long histories stay well below 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Most layers one image may have. Threat: a manifest listing millions of tiny layers to make
/// us open that many files and connections. overlayfs itself stops at 500 lower layers.
pub const MAX_LAYERS: usize = 500;

/// Most entries an image index may list. Threat: memory and time spent scanning a huge index.
pub const MAX_INDEX_ENTRIES: usize = 1024;

/// Most small metadata files (`manifest.json`, `index.json`, `oci-layout`, `repositories`) an
/// archive may hold in memory at once, each at most [`MAX_MANIFEST_BYTES`].
pub const MAX_ARCHIVE_METADATA_FILES: usize = 64;

/// Default cap on one layer's size, compressed or decompressed. Threat: a decompression bomb,
/// a few KiB of gzip that inflate to fill the host's disk. Overridable per store.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 16 << 30;

/// Most tar entries one layer may hold. Threat: an inode bomb, millions of empty files that
/// exhaust the host filesystem's inodes and our time without tripping the byte limit.
pub const MAX_LAYER_ENTRIES: u64 = 2_000_000;

/// Most extended attributes on one entry, and the largest value (the kernel's own maximum).
/// Threat: PAX headers carrying huge attribute sets held in memory per entry.
pub const MAX_XATTRS_PER_ENTRY: usize = 128;
pub const MAX_XATTR_VALUE_BYTES: usize = 64 << 10;

/// Default wait for a registry to answer a request or send the next bytes of a body. Threat:
/// a registry that accepts the connection and then stalls, hanging the pull forever.
pub const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Blobs downloaded at once during a pull.
pub const PARALLEL_DOWNLOADS: usize = 4;

/// What a store will accept; the defaults suit real images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cap on each layer's size, both as a blob and once decompressed.
    pub max_layer_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_layer_bytes: DEFAULT_MAX_LAYER_BYTES }
    }
}
