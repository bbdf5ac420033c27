//! Fuzzes layer application end to end: arbitrary bytes as a (possibly compressed) layer blob
//! are flattened into a scratch rootfs. Nothing may panic, and nothing may appear outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_image::unpack::{flatten, LayerSource};
use moat_image::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(work) = tempfile::tempdir() else { return };
    let blob = work.path().join("blob");
    if std::fs::write(&blob, data).is_err() {
        return;
    }
    let jail = work.path().join("jail");
    if std::fs::create_dir(&jail).is_err() {
        return;
    }
    let layer = LayerSource { blob, digest: Digest::of(data), diff_id: Digest::of(data) };
    let _ = flatten(&jail.join("rootfs"), &[layer], 64 << 20);
    // The rootfs is the only thing that may exist in the jail.
    let entries: Vec<_> = std::fs::read_dir(&jail).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(entries.iter().all(|name| name == "rootfs"), "escaped: {entries:?}");
});
