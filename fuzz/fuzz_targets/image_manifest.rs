//! Fuzzes the host-side decoders for untrusted image metadata: manifests and indexes, image
//! configurations, platform selection, and the checks on tar entry names, link targets and
//! whiteout markers. None may panic; accepted entry paths must never climb out of the rootfs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_image::manifest::{self, Manifest};
use moat_image::unpack::entry::{self, Change, RelPath};
use moat_image::Platform;

fuzz_target!(|data: &[u8]| {
    match manifest::parse(data) {
        Ok(Manifest::Index(entries)) => {
            let _ = manifest::select_platform(&entries, &Platform::linux_amd64());
        }
        Ok(Manifest::Image(image)) => {
            let _ = manifest::parse_config(data, image.layers.len());
        }
        Err(_) => {}
    }
    let _ = manifest::parse_config(data, 1);

    // Split the input into an entry name and a link target at the first NUL.
    let (name, target) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(path) = RelPath::parse(name) {
        for component in path.components() {
            let c = component.as_encoded_bytes();
            assert!(!c.is_empty() && c != b"." && c != b".." && !c.contains(&b'/'));
        }
        assert!(!path.to_path().is_absolute());
        if let Ok(Change::Whiteout { name, .. }) = entry::classify(path.clone()) {
            assert!(!name.is_empty() && name != ".." && name != ".");
        }
        let _ = entry::check_symlink_target(&path, target);
    }
});
