//! `moat commit` and `moat export`: a container's writable layer as a new image, and its whole
//! file system as a tar. The zone writes the tar; it is hostile, so every entry is checked and
//! written afresh (`moat_image::unpack::retar`), and nothing of it is resolved on the host.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use moat_image::commit::{CommitOptions, ConfigChange};
use moat_image::{Limits, Store};
use moat_proto::copy::MAX_ARCHIVE_BYTES;
use moat_runtime::{Runtime, TarTree};

use super::image::LimitArgs;

#[derive(clap::Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction to apply to the configuration: CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER or WORKDIR. Repeatable.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// The commit message, kept in the new layer's history entry.
    #[arg(short, long)]
    message: Option<String>,
    /// The author, e.g. "Name <email>".
    #[arg(short, long)]
    author: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    container: String,
    /// The new image's name.
    reference: String,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write to this file (it appears only once complete) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    container: String,
}

/// Every byte of a committed layer or an export: the zone's tar, headers included.
fn tar_limit(requested: u64) -> u64 {
    requested.min(MAX_ARCHIVE_BYTES)
}

pub fn commit(root: &Path, args: CommitArgs) -> anyhow::Result<ExitCode> {
    let changes = args.changes.iter().map(|c| ConfigChange::parse(c)).collect::<Result<Vec<_>, _>>()?;
    let target = moat_image::reference::parse(&args.reference).with_context(|| format!("cannot commit to {}", args.reference))?;
    if target.digest().is_some() {
        bail!("cannot commit to {}: a new image's name cannot hold a digest", args.reference);
    }
    let limit = tar_limit(args.limits.max_layer_size);
    let store = Store::open(root).with_context(|| format!("cannot open the image store under {}", root.display()))?.with_limits(Limits { max_layer_bytes: limit });
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let found = runtime.containers().find(&args.container)?;
    let context = || format!("cannot commit container {}", found.container.name);
    let base = store.find(&found.container.image).with_context(|| format!("cannot commit container {}: its image", found.container.name))?;
    let layer = runtime.containers().tar_out(&found, TarTree::Layer, limit).with_context(context)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let options = CommitOptions {
        reference: args.reference.clone(),
        changes,
        comment: args.message,
        author: args.author,
        created: super::volume::rfc3339_utc(now),
        created_by: format!("moat commit {}", found.container.name),
    };
    let image = store.commit_layer(&base, layer, &options).with_context(context)?;
    println!("{}", image.config_digest);
    Ok(ExitCode::SUCCESS)
}

pub fn export(root: &Path, args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to write a tar to a terminal: give -o FILE or redirect stdout");
    }
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let found = runtime.containers().find(&args.container)?;
    let context = || format!("cannot export container {}", found.container.name);
    let limit = tar_limit(MAX_ARCHIVE_BYTES);
    // The output is checked before the zone writes anything.
    let output = args.output.as_deref().map(Output::beside).transpose().with_context(context)?;
    let tar = runtime.containers().tar_out(&found, TarTree::Root, limit).with_context(context)?;
    match output {
        Some(output) => {
            let mut writer = std::io::BufWriter::new(output.file.as_file());
            moat_image::unpack::retar(tar, &mut writer, limit).with_context(context)?;
            writer.flush().with_context(context)?;
            drop(writer);
            output.file.persist(&output.dest).map_err(|e| e.error).with_context(|| format!("cannot write {}", output.dest.display()))?;
        }
        None => {
            let stdout = std::io::stdout().lock();
            let mut writer = std::io::BufWriter::new(stdout);
            moat_image::unpack::retar(tar, &mut writer, limit).with_context(context)?;
            writer.flush().with_context(context)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A file written under a temporary name beside its destination, renamed there once complete.
struct Output {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl Output {
    fn beside(dest: &Path) -> anyhow::Result<Self> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file = tempfile::NamedTempFile::with_prefix_in(".moat-export-", dir).with_context(|| format!("cannot write to {}", dir.display()))?;
        Ok(Self { file, dest: dest.to_path_buf() })
    }
}
