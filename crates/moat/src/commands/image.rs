//! `moat image …`: pull, import, tag, save, load, list, inspect, remove and prune images in
//! the store. The top-level short forms (`moat images`, `moat pull`, …) run these same arms.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use moat_image::limits::{DEFAULT_MAX_LAYER_BYTES, DEFAULT_REGISTRY_TIMEOUT};
use moat_image::{ArchiveFormat, ImportOptions, Limits, Platform, PullOptions, PushOptions, Store, StoredImage};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry, verify it and convert it to EROFS.
    Pull(PullArgs),
    /// Push a stored image to the registry its name gives; prints the manifest digest.
    Push(PushArgs),
    /// Import a `docker save` or `oci-archive` tarball, or an OCI layout directory.
    Import(ImportArgs),
    /// Give a stored image another name.
    Tag(TagArgs),
    /// Write images to a tar archive that `docker load` or `podman load` reads.
    Save(SaveArgs),
    /// Load every image in a `docker save` or `oci-archive` tarball (as import does).
    Load(LoadArgs),
    /// List stored images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show one image's digests, layers, configuration and EROFS path as JSON.
    Inspect { reference: String },
    /// Remove images, then delete what no remaining image needs.
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Delete blobs, EROFS images and temporary files that no image needs.
    Prune,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct TagArgs {
    /// The stored image.
    source: String,
    /// Its new name.
    target: String,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    /// The archive to write; it appears only once complete.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = SaveFormat::DockerArchive)]
    format: SaveFormat,
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SaveFormat {
    /// `docker save`'s format: manifest.json, the config and uncompressed layer tars.
    DockerArchive,
    /// An OCI image layout in a tar; blobs and manifest digests as stored.
    OciArchive,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// A `docker save` or `oci-archive` tarball (optionally gzip/zstd), or an OCI layout directory.
    #[arg(short, long, value_name = "FILE")]
    input: PathBuf,
    /// Platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    platform: Platform,
    /// Print only the references loaded.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct LimitArgs {
    /// Largest layer accepted, compressed or decompressed (bytes; K, M, G suffixes allowed).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_MAX_LAYER_BYTES)]
    pub max_layer_size: u64,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// Image reference: `busybox`, `registry:5000/app:1`, `repo@sha256:…`.
    reference: String,
    /// Platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    platform: Platform,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// The stored image; its name says where it goes (tag it first for another place).
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// How pull and push reach a registry.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Registry (host[:port]) to reach over plain HTTP; loopback always is. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Seconds to wait for the registry to answer or to move more data.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_REGISTRY_TIMEOUT.as_secs())]
    timeout: u64,
    /// Draw no progress bars.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A tarball (`docker save`, `oci-archive`, optionally gzip/zstd) or an OCI layout directory.
    path: PathBuf,
    /// Reference to store the image under (and to choose one image from a multi-image file).
    #[arg(long)]
    name: Option<String>,
    /// Platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    platform: Platform,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(root: &Path, cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(root).with_context(|| format!("cannot open the image store under {}", root.display()))?;
    match cmd {
        ImageCommand::Pull(args) => pull(store, args),
        ImageCommand::Push(args) => push(&store, args),
        ImageCommand::Import(args) => {
            let store = store.with_limits(Limits { max_layer_bytes: args.limits.max_layer_size });
            let opts = ImportOptions { name: args.name, platform: args.platform };
            let image = store.import(&args.path, &opts).with_context(|| format!("cannot import {}", args.path.display()))?;
            report_stored(&image)
        }
        ImageCommand::Tag(args) => {
            store.tag(&args.source, &args.target).with_context(|| format!("cannot tag {} as {}", args.source, args.target))?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Save(args) => save(&store, &args),
        ImageCommand::Load(args) => {
            let store = store.with_limits(Limits { max_layer_bytes: args.limits.max_layer_size });
            let images = store.load(&args.input, &args.platform).with_context(|| format!("cannot load {}", args.input.display()))?;
            for image in images {
                if args.quiet {
                    println!("{}", image.reference);
                } else {
                    println!("Loaded image: {}", image.reference);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Ls(args) => list(&store, args.format),
        ImageCommand::Inspect { reference } => inspect(&store, &reference),
        ImageCommand::Rm { references } => remove(&store, &references),
        ImageCommand::Prune => prune(&store),
    }
}

fn pull(store: Store, args: PullArgs) -> anyhow::Result<ExitCode> {
    let store = store.with_limits(Limits { max_layer_bytes: args.limits.max_layer_size });
    let opts = PullOptions {
        platform: args.platform,
        insecure_registries: args.registry.insecure_registries,
        timeout: Duration::from_secs(args.registry.timeout),
        progress: !args.registry.quiet,
    };
    let image = super::images::pull(&store, &args.reference, &opts).with_context(|| format!("cannot pull {}", args.reference))?;
    report_stored(&image)
}

fn save(store: &Store, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let images = args.references.iter().map(|r| find(store, r)).collect::<anyhow::Result<Vec<_>>>()?;
    let format = match args.format {
        SaveFormat::DockerArchive => ArchiveFormat::DockerArchive,
        SaveFormat::OciArchive => ArchiveFormat::OciArchive,
    };
    store.save_file(&images, format, &args.output).with_context(|| format!("cannot save to {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn push(store: &Store, args: PushArgs) -> anyhow::Result<ExitCode> {
    let opts = PushOptions {
        insecure_registries: args.registry.insecure_registries,
        timeout: Duration::from_secs(args.registry.timeout),
        progress: !args.registry.quiet,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let report = runtime.block_on(store.push(&args.reference, &opts)).with_context(|| format!("cannot push {}", args.reference))?;
    println!(
        "uploaded {} blobs ({}), mounted {}, {} already there",
        report.uploaded,
        human_size(report.uploaded_bytes),
        report.mounted,
        report.present
    );
    println!("{}: digest: {} size: {}", report.reference, report.manifest_digest, report.manifest_size);
    Ok(ExitCode::SUCCESS)
}

fn report_stored(image: &StoredImage) -> anyhow::Result<ExitCode> {
    println!("{} {}", image.reference, image.config_digest);
    Ok(ExitCode::SUCCESS)
}

fn summary(store: &Store, image: &StoredImage) -> serde_json::Value {
    let erofs = store.cached_erofs(image);
    serde_json::json!({
        "reference": image.reference,
        "id": image.config_digest.to_string(),
        "manifest_digest": image.manifest_digest.to_string(),
        "index_digest": image.index_digest.as_ref().map(ToString::to_string),
        "layers_size": image.layers_size(),
        "erofs_size": erofs.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len()),
        "erofs": erofs,
        "source": image.source,
        "stored_at": image.stored_at,
    })
}

fn list(store: &Store, format: Format) -> anyhow::Result<ExitCode> {
    let images = store.list().context("cannot list images")?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let rows: Vec<_> = images.iter().map(|i| summary(store, i)).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        Format::Table => {
            let width = images.iter().map(|i| i.reference.len()).max().unwrap_or(0).max("REFERENCE".len());
            writeln!(out, "{:<width$}  {:<12}  {:>10}  {:>10}", "REFERENCE", "IMAGE ID", "LAYERS", "EROFS")?;
            for image in &images {
                let erofs = store.cached_erofs(image).and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len());
                let erofs = erofs.map_or_else(|| "-".to_owned(), human_size);
                let id = image.config_digest.short();
                writeln!(out, "{:<width$}  {id:<12}  {:>10}  {erofs:>10}", image.reference, human_size(image.layers_size()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find(store: &Store, reference: &str) -> anyhow::Result<StoredImage> {
    Ok(store.find(reference)?)
}

fn inspect(store: &Store, reference: &str) -> anyhow::Result<ExitCode> {
    let image = find(store, reference)?;
    let mut details = summary(store, &image);
    details["layers"] = serde_json::to_value(&image.layers)?;
    details["diff_ids"] = serde_json::to_value(&image.diff_ids)?;
    details["config"] = serde_json::to_value(&image.config)?;
    println!("{}", serde_json::to_string_pretty(&details)?);
    Ok(ExitCode::SUCCESS)
}

/// An image in the shape of `docker image inspect`: every name the image has in the store,
/// its manifest digest per repository, the config, and the layers' diff IDs.
pub fn docker_json(store: &Store, image: &StoredImage) -> anyhow::Result<serde_json::Value> {
    let names: Vec<StoredImage> = store.list()?.into_iter().filter(|i| i.config_digest == image.config_digest).collect();
    let repo_tags: Vec<&str> = names.iter().map(|i| i.reference.as_str()).filter(|r| !r.contains('@')).collect();
    let mut repo_digests: Vec<String> = names
        .iter()
        .map(|i| format!("{}@{}", repository(&i.reference), i.manifest_digest))
        .collect();
    repo_digests.dedup();
    let config = &image.config;
    Ok(serde_json::json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": config.created(),
        "Author": config.author(),
        "Architecture": config.architecture().to_string(),
        "Os": config.os().to_string(),
        "Variant": config.variant(),
        "Config": config.config(),
        "RootFS": { "Type": "layers", "Layers": image.diff_ids },
        "Size": image.layers_size(),
        "Metadata": { "LastTagTime": super::volume::rfc3339_utc(image.stored_at) },
    }))
}

/// `registry/repo` of a normalized reference: without its tag or digest.
fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

fn remove(store: &Store, references: &[String]) -> anyhow::Result<ExitCode> {
    for reference in references {
        let image = find(store, reference)?;
        store.remove(&image.reference).with_context(|| format!("cannot remove {reference}"))?;
        println!("removed {}", image.reference);
    }
    prune(store)
}

fn prune(store: &Store) -> anyhow::Result<ExitCode> {
    let report = store.prune().context("cannot prune the image store")?;
    println!(
        "pruned {} blobs, {} EROFS images, {} temporary entries; freed {}",
        report.blobs,
        report.erofs_images,
        report.temporary,
        human_size(report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Parses `123`, `64K`, `512M`, `16G` (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.trim().char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        _ => (text.trim(), 0),
    };
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size like 4096, 64K, 512M or 16G"))?;
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
        assert_eq!(human_size(1536), "1.5 KiB");
    }

    #[test]
    fn repositories_drop_tags_and_digests_but_keep_ports() {
        assert_eq!(repository("docker.io/library/busybox:latest"), "docker.io/library/busybox");
        assert_eq!(repository("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app");
        assert_eq!(repository("127.0.0.1:5000/app@sha256:abc"), "127.0.0.1:5000/app");
    }
}
