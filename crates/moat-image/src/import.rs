//! Importing images from files: `docker save` tarballs, `oci-archive` tarballs (either may be
//! gzip- or zstd-compressed) and OCI layout directories. Every blob is verified on the way in.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::limits::{MAX_ARCHIVE_METADATA_FILES, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::manifest::{self, BlobRef, IndexEntry, Manifest, ManifestError};
use crate::reference::{self, Platform};
use crate::store::blobs::{self, BlobError};
use crate::store::{Fetched, Store, StoreError, StoredImage};
use crate::unpack::decompressed;
use crate::unpack::entry::RelPath;
use crate::unpack::members::{self, MemberError};

/// Files kept in memory while scanning an archive; everything else is streamed into the store.
const METADATA_FILES: [&str; 4] = ["index.json", "oci-layout", "manifest.json", "repositories"];
const BLOB_DIR: &str = "blobs/sha256/";
/// Most symlinks followed to find a file inside an archive (docker save links repeated layers).
const MAX_ARCHIVE_LINK_HOPS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("{0} holds neither an OCI layout (index.json) nor a docker save manifest (manifest.json)")]
    Unrecognized(PathBuf),
    #[error("archive member `{name}` is larger than the {limit}-byte limit for metadata")]
    MetadataTooLarge { name: String, limit: u64 },
    #[error("archive holds more than {MAX_ARCHIVE_METADATA_FILES} metadata files")]
    TooManyMetadataFiles,
    #[error("archive member `{name}`")]
    Member { name: String, source: BlobError },
    #[error("the archive holds {count} images ({names}); choose one with --name")]
    Ambiguous { count: usize, names: String },
    #[error("blob {0} is missing from the archive")]
    MissingBlob(Digest),
    #[error("docker save manifest names `{0}`, which is not in the archive")]
    MissingFile(String),
    #[error("{what}")]
    Manifest { what: &'static str, source: ManifestError },
    #[error("docker save manifest.json is invalid: {0}")]
    DockerManifest(serde_json::Error),
    #[error("cannot name the imported image `{value}`; pass --name")]
    Name { value: String, source: reference::ReferenceError },
    #[error("blob {digest}")]
    Blob { digest: Digest, source: BlobError },
    #[error("reading archive")]
    Tar(#[from] MemberError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io { op, path: path.to_owned(), source }
}

fn manifest_err(what: &'static str) -> impl FnOnce(ManifestError) -> ImportError {
    move |source| ImportError::Manifest { what, source }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The reference to store the image under; also picks among several images in one file.
    pub name: Option<String>,
    /// The platform chosen from a multi-platform index (default linux/amd64).
    pub platform: Platform,
}

/// Where the blobs an index or manifest names come from.
enum Source<'a> {
    /// An OCI layout directory: blobs are copied in (and verified) as they are needed.
    LayoutDir(&'a Path),
    /// A scanned archive: every blob it held is already stored.
    Stored,
}

impl Source<'_> {
    fn ensure(&self, store: &Store, blob: &BlobRef, limit: u64) -> Result<(), ImportError> {
        if blobs::has(&store.layout, blob) {
            return Ok(());
        }
        let Source::LayoutDir(dir) = self else {
            return Err(ImportError::MissingBlob(blob.digest.clone()));
        };
        let path = dir.join(BLOB_DIR).join(blob.digest.hex());
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ImportError::MissingBlob(blob.digest.clone())),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        blobs::put_reader(&store.layout, &mut file, Some(blob), limit, &blob.media_type)
            .map_err(|source| ImportError::Blob { digest: blob.digest.clone(), source })?;
        Ok(())
    }
}

/// Which images of a file to take.
#[derive(Clone, Copy)]
enum Selection<'a> {
    /// One image, chosen and named by the options (`moat image import`).
    One(&'a ImportOptions),
    /// Every image the file names, under each of its names (`moat image load`); an unnamed
    /// file gives its one image, as import would.
    All(&'a Platform),
}

impl Selection<'_> {
    fn platform(&self) -> &Platform {
        match self {
            Selection::One(opts) => &opts.platform,
            Selection::All(platform) => platform,
        }
    }
}

impl Store {
    /// Imports the image in `path` (a tarball or an OCI layout directory), verifies it,
    /// converts it to EROFS and records it.
    pub fn import(&self, path: &Path, opts: &ImportOptions) -> Result<StoredImage, crate::Error> {
        let mut stored = self.read_file(path, Selection::One(opts))?;
        stored.pop().ok_or_else(|| ImportError::Unrecognized(path.to_owned()).into())
    }

    /// Imports every image `path` names (as `docker load` does), each as [`Store::import`]
    /// would; an image under several names is stored once and recorded under each.
    pub fn load(&self, path: &Path, platform: &Platform) -> Result<Vec<StoredImage>, crate::Error> {
        self.read_file(path, Selection::All(platform))
    }

    fn read_file(&self, path: &Path, selection: Selection<'_>) -> Result<Vec<StoredImage>, crate::Error> {
        let _store = self.lock_shared()?;
        let meta = fs::metadata(path).map_err(io_err("open", path))?;
        let fetched = if meta.is_dir() { self.import_layout(path, selection)? } else { self.import_archive(path, selection)? };
        Ok(fetched.into_iter().map(|f| self.commit(f)).collect::<Result<Vec<_>, _>>()?)
    }

    fn import_layout(&self, dir: &Path, selection: Selection<'_>) -> Result<Vec<Fetched>, ImportError> {
        let index_path = dir.join("index.json");
        if !dir.join("oci-layout").is_file() || !index_path.is_file() {
            return Err(ImportError::Unrecognized(dir.to_owned()));
        }
        let mut file = File::open(&index_path).map_err(io_err("open", &index_path))?;
        let index = read_metadata("index.json", &mut file, MAX_MANIFEST_BYTES)?;
        self.resolve_oci(&index, &Source::LayoutDir(dir), selection, dir)
    }

    fn import_archive(&self, path: &Path, selection: Selection<'_>) -> Result<Vec<Fetched>, ImportError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let scan = self.scan(file).map_err(|e| match e {
            ImportError::Io { op, source, .. } => ImportError::Io { op, path: path.to_owned(), source },
            other => other,
        })?;
        if let Some(index) = scan.metadata.get("index.json") {
            return self.resolve_oci(index, &Source::Stored, selection, path);
        }
        if let Some(manifest) = scan.metadata.get("manifest.json") {
            return self.resolve_docker_save(manifest, &scan, selection, path);
        }
        Err(ImportError::Unrecognized(path.to_owned()))
    }

    /// Streams every member of the archive once: metadata into memory, files into the store.
    fn scan(&self, file: File) -> Result<Scan, ImportError> {
        let reading = |source| ImportError::Io { op: "read archive", path: PathBuf::new(), source };
        let mut archive = tar::Archive::new(decompressed(file).map_err(reading)?);
        let mut scan = Scan::default();
        members::walk(&mut archive, |member, entry| {
            let Ok(name) = RelPath::parse(&member.path).map(|p| p.display()) else { return Ok(()) };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink => {
                    if let Some(target) = &member.link {
                        scan.links.insert(name.clone(), archive_link_target(&name, target));
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            }
            if METADATA_FILES.contains(&name.as_str()) {
                if scan.metadata.len() == MAX_ARCHIVE_METADATA_FILES {
                    return Err(ImportError::TooManyMetadataFiles);
                }
                let bytes = read_metadata(&name, entry, MAX_MANIFEST_BYTES)?;
                scan.metadata.insert(name, bytes);
                return Ok(());
            }
            let expected = name.strip_prefix(BLOB_DIR).and_then(|hex| Digest::from_hex(hex).ok()).map(|digest| BlobRef {
                digest,
                size: entry.size(),
                media_type: String::new(),
            });
            let blob = blobs::put_reader(&self.layout, entry, expected.as_ref(), self.limits.max_layer_bytes, "")
                .map_err(|source| ImportError::Member { name: name.clone(), source })?;
            scan.files.insert(name, blob);
            Ok(())
        })?;
        Ok(scan)
    }

    fn resolve_oci(&self, index: &[u8], source: &Source<'_>, selection: Selection<'_>, origin: &Path) -> Result<Vec<Fetched>, ImportError> {
        let Manifest::Index(entries) = manifest::parse(index).map_err(manifest_err("index.json"))? else {
            return Err(ImportError::Unrecognized(origin.to_owned()));
        };
        let chosen = match selection {
            Selection::One(opts) => {
                let entry = choose_entry(&entries, opts)?;
                vec![(entry.clone(), opts.name.clone().unwrap_or_else(|| default_name(entry, origin)))]
            }
            Selection::All(platform) => named_entries(&entries, platform, origin)?,
        };
        chosen
            .into_iter()
            .map(|(entry, name)| self.resolve_oci_entry(&entry, source, selection.platform(), &name, origin))
            .collect()
    }

    fn resolve_oci_entry(&self, entry: &IndexEntry, source: &Source<'_>, platform: &Platform, name: &str, origin: &Path) -> Result<Fetched, ImportError> {
        let (image, manifest, index) = match self.manifest_from(source, &entry.blob)? {
            (Manifest::Image(image), digest) => (image, digest, None),
            (Manifest::Index(inner), index_digest) => {
                let chosen = manifest::select_platform(&inner, platform).map_err(manifest_err("image index"))?;
                match self.manifest_from(source, &chosen.blob)? {
                    (Manifest::Image(image), digest) => (image, digest, Some(index_digest)),
                    (Manifest::Index(_), digest) => {
                        return Err(ImportError::Manifest { what: "image index", source: nested(digest) })
                    }
                }
            }
        };
        self.finish_import(source, *image, manifest, index, name, origin)
    }

    fn manifest_from(&self, source: &Source<'_>, blob: &BlobRef) -> Result<(Manifest, Digest), ImportError> {
        source.ensure(self, blob, MAX_MANIFEST_BYTES)?;
        let bytes = blobs::read_small(&self.layout, &blob.digest, MAX_MANIFEST_BYTES)
            .map_err(|source| ImportError::Blob { digest: blob.digest.clone(), source })?;
        Ok((manifest::parse(&bytes).map_err(manifest_err("manifest"))?, blob.digest.clone()))
    }

    /// Fetches config and layers from `source`, checks them, and names the image.
    fn finish_import(
        &self,
        source: &Source<'_>,
        image: manifest::Image,
        manifest: Digest,
        index: Option<Digest>,
        name: &str,
        origin: &Path,
    ) -> Result<Fetched, ImportError> {
        source.ensure(self, &image.config, MAX_CONFIG_BYTES)?;
        let config_bytes = blobs::read_small(&self.layout, &image.config.digest, MAX_CONFIG_BYTES)
            .map_err(|source| ImportError::Blob { digest: image.config.digest.clone(), source })?;
        let config = manifest::parse_config(&config_bytes, image.layers.len()).map_err(manifest_err("image config"))?;
        for layer in &image.layers {
            source.ensure(self, layer, self.limits.max_layer_bytes)?;
        }
        let reference = reference::parse(name)
            .map(|r| reference::normalized(&r))
            .map_err(|source| ImportError::Name { value: name.to_owned(), source })?;
        Ok(Fetched { reference, manifest, index, image, config, source: origin.display().to_string() })
    }

    /// A legacy `docker save` archive: synthesize the OCI manifest it does not carry.
    fn resolve_docker_save(&self, manifest_json: &[u8], scan: &Scan, selection: Selection<'_>, origin: &Path) -> Result<Vec<Fetched>, ImportError> {
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(manifest_json).map_err(ImportError::DockerManifest)?;
        let unnamed = || format!("localhost/{}:latest", name_stem(origin));
        let chosen: Vec<(&DockerSaveEntry, Vec<String>)> = match selection {
            Selection::One(opts) => {
                let entry = match (entries.as_slice(), &opts.name) {
                    ([only], _) => only,
                    (_, Some(name)) => {
                        let wanted = reference::parse(name).map(|r| reference::normalized(&r)).ok();
                        entries
                            .iter()
                            .find(|e| e.repo_tags.iter().any(|t| reference::parse(t).ok().map(|r| reference::normalized(&r)) == wanted))
                            .ok_or_else(|| ambiguous(entries.iter().flat_map(|e| e.repo_tags.clone()).collect()))?
                    }
                    _ => return Err(ambiguous(entries.iter().flat_map(|e| e.repo_tags.clone()).collect())),
                };
                let name = opts.name.clone().or_else(|| entry.repo_tags.first().cloned()).unwrap_or_else(unnamed);
                vec![(entry, vec![name])]
            }
            Selection::All(_) => entries
                .iter()
                .map(|e| (e, if e.repo_tags.is_empty() { vec![unnamed()] } else { e.repo_tags.clone() }))
                .collect(),
        };
        let mut fetched = Vec::new();
        for (entry, names) in chosen {
            let (image, manifest) = self.synthesize_docker_manifest(entry, scan, origin)?;
            for name in names {
                fetched.push(self.finish_import(&Source::Stored, image.clone(), manifest.clone(), None, &name, origin)?);
            }
        }
        Ok(fetched)
    }

    /// Stores the OCI manifest a `docker save` entry stands for.
    fn synthesize_docker_manifest(&self, entry: &DockerSaveEntry, scan: &Scan, origin: &Path) -> Result<(manifest::Image, Digest), ImportError> {
        let file = |name: &str, media_type: &str| {
            let blob = scan.file(name).cloned().ok_or_else(|| ImportError::MissingFile(name.to_owned()))?;
            Ok::<_, ImportError>(BlobRef { media_type: media_type.to_owned(), ..blob })
        };
        let layers = entry.layers.iter().map(|l| file(l, manifest::OCI_LAYER_TAR)).collect::<Result<Vec<_>, ImportError>>()?;
        let bytes = manifest::image_manifest(&file(&entry.config, manifest::OCI_CONFIG)?, &layers);
        let stored = blobs::put_bytes(&self.layout, &bytes, manifest::OCI_MANIFEST).map_err(StoreError::from)?;
        let Manifest::Image(image) = manifest::parse(&bytes).map_err(manifest_err("docker save manifest"))? else {
            return Err(ImportError::Unrecognized(origin.to_owned()));
        };
        Ok((*image, stored.digest))
    }
}

/// The entries of an index that carry a name, each under its name; entries sharing a name are
/// one image's platforms, and `platform` picks among them. An index without names gives the
/// one entry import would choose.
fn named_entries(entries: &[IndexEntry], platform: &Platform, origin: &Path) -> Result<Vec<(IndexEntry, String)>, ImportError> {
    let mut groups: Vec<(String, Vec<IndexEntry>)> = Vec::new();
    for entry in entries.iter().filter(|e| e.ref_name.is_some() || e.image_name.is_some()) {
        let name = default_name(entry, origin);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, group)) => group.push(entry.clone()),
            None => groups.push((name, vec![entry.clone()])),
        }
    }
    if groups.is_empty() {
        let opts = ImportOptions { name: None, platform: platform.clone() };
        let entry = choose_entry(entries, &opts)?;
        return Ok(vec![(entry.clone(), default_name(entry, origin))]);
    }
    groups
        .into_iter()
        .map(|(name, group)| {
            let chosen = match group.as_slice() {
                [only] => only.clone(),
                _ => manifest::select_platform(&group, platform).map_err(manifest_err("index.json"))?.clone(),
            };
            Ok((chosen, name))
        })
        .collect()
}

fn nested(digest: Digest) -> ManifestError {
    ManifestError::MediaType(format!("nested index {digest}"))
}

fn ambiguous(names: Vec<String>) -> ImportError {
    ImportError::Ambiguous { count: names.len(), names: names.join(", ") }
}

/// One image in a `docker save` manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

#[derive(Default)]
struct Scan {
    metadata: HashMap<String, Vec<u8>>,
    files: HashMap<String, BlobRef>,
    links: HashMap<String, String>,
}

impl Scan {
    /// A stored archive member, following the archive's own symlinks.
    fn file(&self, name: &str) -> Option<&BlobRef> {
        let mut name = RelPath::parse(name.as_bytes()).ok()?.display();
        for _ in 0..MAX_ARCHIVE_LINK_HOPS {
            if let Some(blob) = self.files.get(&name) {
                return Some(blob);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }
}

/// Where a symlink inside an archive points, as an archive member name ("" if it leaves).
fn archive_link_target(link: &str, target: &[u8]) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    let target = String::from_utf8_lossy(target);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return String::new();
                }
            }
            other => parts.push(other),
        }
    }
    parts.into_iter().map(str::to_owned).collect::<Vec<_>>().join("/")
}

fn read_metadata(name: &str, reader: &mut dyn Read, limit: u64) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Io { op: "read", path: PathBuf::from(name), source })?;
    if bytes.len() as u64 > limit {
        return Err(ImportError::MetadataTooLarge { name: name.to_owned(), limit });
    }
    Ok(bytes)
}

/// The index entry to import: the only one, the one `--name` names, or the platform's one.
fn choose_entry<'a>(entries: &'a [IndexEntry], opts: &ImportOptions) -> Result<&'a IndexEntry, ImportError> {
    if let [only] = entries {
        return Ok(only);
    }
    if let Some(name) = &opts.name {
        let wanted = reference::parse(name).ok();
        let tag = wanted.as_ref().and_then(|r| r.tag().map(str::to_owned));
        let full = wanted.as_ref().map(reference::normalized);
        let named: Vec<&IndexEntry> = entries
            .iter()
            .filter(|e| {
                e.ref_name.as_deref() == Some(name.as_str())
                    || (e.ref_name.is_some() && e.ref_name == tag)
                    || (e.image_name.is_some() && e.image_name.as_ref().and_then(|n| reference::parse(n).ok()).map(|r| reference::normalized(&r)) == full)
            })
            .collect();
        if let [one] = named.as_slice() {
            return Ok(one);
        }
    }
    manifest::select_platform(entries, &opts.platform).map_err(|_| {
        ambiguous(entries.iter().map(|e| e.ref_name.clone().or(e.image_name.clone()).unwrap_or_else(|| e.blob.digest.to_string())).collect())
    })
}

/// The name an import gets without `--name`: the full name in the layout's annotations, else
/// `localhost/<file name>:<tag annotation or latest>`.
fn default_name(entry: &IndexEntry, origin: &Path) -> String {
    if let Some(full) = &entry.image_name {
        return full.clone();
    }
    match &entry.ref_name {
        Some(r) if r.contains('/') => r.clone(),
        Some(tag) => format!("localhost/{}:{tag}", name_stem(origin)),
        None => format!("localhost/{}:latest", name_stem(origin)),
    }
}

/// A repository name made from a file name: lowercase, extensions dropped, odd bytes as '-'.
fn name_stem(origin: &Path) -> String {
    let file = origin.file_name().map(|f| f.to_string_lossy().to_lowercase()).unwrap_or_default();
    let base = [".tar.gz", ".tar.zst", ".tgz", ".tar", ".oci"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(&file);
    let cleaned: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() { "image".to_owned() } else { trimmed.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_become_valid_repository_names() {
        assert_eq!(name_stem(Path::new("/x/My Image.tar.gz")), "my-image");
        assert_eq!(name_stem(Path::new("busybox.tar")), "busybox");
        assert_eq!(name_stem(Path::new("___")), "image");
        assert!(reference::parse(&format!("localhost/{}:latest", name_stem(Path::new("A_b.C.tar")))).is_ok());
    }

    #[test]
    fn archive_links_resolve_inside_the_archive() {
        assert_eq!(archive_link_target("abc/layer.tar", b"../def/layer.tar"), "def/layer.tar");
        assert_eq!(archive_link_target("abc/layer.tar", b"../../../etc/passwd"), "");
    }
}
