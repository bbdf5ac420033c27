//! `moat image …`: pull, import, list, inspect, remove and prune images in the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use moat_image::limits::{DEFAULT_MAX_LAYER_BYTES, DEFAULT_REGISTRY_TIMEOUT};
use moat_image::{ImportOptions, Limits, Platform, PullOptions, Store, StoredImage};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry, verify it and convert it to EROFS.
    Pull(PullArgs),
    /// Import a `docker save` or `oci-archive` tarball, or an OCI layout directory.
    Import(ImportArgs),
    /// List stored images.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct LimitArgs {
    /// Largest layer accepted, compressed or decompressed (bytes; K, M, G suffixes allowed).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_MAX_LAYER_BYTES)]
    max_layer_size: u64,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// Image reference: `busybox`, `registry:5000/app:1`, `repo@sha256:…`.
    reference: String,
    /// Platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    platform: Platform,
    /// Registry (host[:port]) to reach over plain HTTP; loopback always is. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Seconds to wait for the registry to answer or send more data.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_REGISTRY_TIMEOUT.as_secs())]
    timeout: u64,
    /// Draw no progress bars.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
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
        ImageCommand::Import(args) => {
            let store = store.with_limits(Limits { max_layer_bytes: args.limits.max_layer_size });
            let opts = ImportOptions { name: args.name, platform: args.platform };
            let image = store.import(&args.path, &opts).with_context(|| format!("cannot import {}", args.path.display()))?;
            report_stored(&image)
        }
        ImageCommand::Ls { format } => list(&store, format),
        ImageCommand::Inspect { reference } => inspect(&store, &reference),
        ImageCommand::Rm { references } => remove(&store, &references),
        ImageCommand::Prune => prune(&store),
    }
}

fn pull(store: Store, args: PullArgs) -> anyhow::Result<ExitCode> {
    let store = store.with_limits(Limits { max_layer_bytes: args.limits.max_layer_size });
    let opts = PullOptions {
        platform: args.platform,
        insecure_registries: args.insecure_registries,
        timeout: Duration::from_secs(args.timeout),
        progress: !args.quiet,
    };
    let image = super::images::pull(&store, &args.reference, &opts).with_context(|| format!("cannot pull {}", args.reference))?;
    report_stored(&image)
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
    store
        .get(reference)
        .with_context(|| format!("cannot read image {reference}"))?
        .with_context(|| format!("image {reference} is not in the store (pull or import it first)"))
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

fn human_size(bytes: u64) -> String {
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
}
