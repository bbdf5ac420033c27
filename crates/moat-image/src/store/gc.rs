//! Garbage collection: keep what references need, delete the rest. Runs under the exclusive
//! store lock, so no pull or import is midway and every temporary file is stale.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::{io_err, lock, refs, Store, StoreError};

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub blobs: u64,
    pub erofs_images: u64,
    pub temporary: u64,
    pub bytes: u64,
}

/// What the store holds on disk, and how much of it the images in use need.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    pub images: u64,
    pub active_images: u64,
    /// Every blob, EROFS image and temporary file.
    pub bytes: u64,
    /// What would be freed if every image not in use were removed and the store pruned.
    pub reclaimable: u64,
}

pub fn usage(store: &Store, in_use: &dyn Fn(&str) -> bool) -> Result<DiskUsage, StoreError> {
    let layout = &store.layout;
    let _shared = store.lock_shared()?;
    let mut usage = DiskUsage::default();
    let mut needed = HashSet::new();
    for record in refs::list(layout)? {
        usage.images += 1;
        if !in_use(&record.reference) {
            continue;
        }
        usage.active_images += 1;
        let image = store.load_record(record.clone())?;
        needed.extend([layout.blob(&record.manifest), layout.blob(&image.config_digest), layout.erofs(&image.config_digest)]);
        needed.extend(record.index.iter().map(|d| layout.blob(d)));
        needed.extend(image.layers.iter().map(|l| layout.blob(&l.digest)));
    }
    let mut kept = 0;
    for dir in [layout.blobs_dir(), layout.erofs_dir(), layout.tmp_dir()] {
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let size = entry.metadata().map_err(io_err("inspect", &entry.path()))?.len();
            usage.bytes += size;
            if needed.contains(&entry.path()) {
                kept += size;
            }
        }
    }
    usage.reclaimable = usage.bytes - kept;
    Ok(usage)
}

pub fn prune(store: &Store) -> Result<PruneReport, StoreError> {
    let layout = &store.layout;
    let lock_path = layout.store_lock();
    let _exclusive = lock::exclusive(&lock_path).map_err(io_err("lock", &lock_path))?;

    let mut live_blobs = HashSet::new();
    let mut live_erofs = HashSet::new();
    for record in refs::list(layout)? {
        let image = store.load_record(record.clone())?;
        live_blobs.extend([record.manifest.hex().to_owned(), image.config_digest.hex().to_owned()]);
        live_blobs.extend(record.index.iter().map(|d| d.hex().to_owned()));
        live_blobs.extend(image.layers.iter().map(|l| l.digest.hex().to_owned()));
        live_erofs.insert(format!("{}.erofs", image.config_digest.hex()));
    }

    let mut report = PruneReport::default();
    report.blobs = sweep(&layout.blobs_dir(), &live_blobs, &mut report.bytes)?;
    report.erofs_images = sweep(&layout.erofs_dir(), &live_erofs, &mut report.bytes)?;
    report.temporary = sweep(&layout.tmp_dir(), &HashSet::new(), &mut report.bytes)?;
    sweep(&layout.locks_dir(), &HashSet::new(), &mut 0)?;
    Ok(report)
}

/// Removes every entry of `dir` whose name is not in `keep`; returns how many it removed.
fn sweep(dir: &Path, keep: &HashSet<String>, bytes: &mut u64) -> Result<u64, StoreError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if keep.contains(entry.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err("inspect", &path))?;
        if meta.is_dir() {
            fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
        } else {
            *bytes += meta.len();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        removed += 1;
    }
    Ok(removed)
}
