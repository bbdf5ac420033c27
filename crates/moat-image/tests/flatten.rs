//! What survives flattening into the EROFS image, read back by mounting it: whiteouts and
//! opaque directories, hardlinks, symlinks, ownership, modes, file capabilities and other
//! xattrs, device nodes and FIFOs. Also: conversion is cached and reproducible.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use moat_image::{ImportOptions, Store};

/// `security.capability` v2 for cap_net_raw (bit 13) in permitted, with the effective flag.
const CAP_NET_RAW_EP: [u8; 20] = [0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn layers() -> Vec<(Vec<u8>, Compression)> {
    let base = TarBuilder::new()
        .dir("etc/", 0o755)
        .file("etc/gone", b"deleted by layer 2", 0o644)
        .dir("etc/old/", 0o755)
        .file("etc/old/a", b"a", 0o644)
        .dir("var/", 0o755)
        .dir("var/opaque/", 0o755)
        .file("var/opaque/lower", b"hidden", 0o644)
        .dir("var/opaque/sub/", 0o755)
        .file("var/opaque/sub/deep", b"hidden too", 0o644)
        .file("usr-file", b"shared", 0o644)
        .hardlink("usr-link", "usr-file")
        .finish();
    let top = TarBuilder::new()
        .file("etc/.wh.gone", b"", 0o644)
        .file("etc/.wh.old", b"", 0o644)
        .dir("var/opaque/", 0o750)
        .file("var/opaque/.wh..wh..opq", b"", 0o644)
        .file("var/opaque/upper", b"kept", 0o644)
        .dir("bin/", 0o755)
        .file_xattrs("bin/ping", b"#!/bin/sh\n", 0o755, &[("security.capability", &CAP_NET_RAW_EP), ("user.origin", b"moat-test")])
        .file_owned("bin/suid", b"x", 0o4755, 0, 0)
        .file_owned("home-file", b"owned", 0o640, 1000, 1001)
        .symlink("abs-link", "/etc/hostname")
        .symlink("rel-link", "bin/ping")
        .hardlink("bin/ping-hard", "bin/ping")
        .dir("dev/", 0o755)
        .char_device("dev/null", 1, 3)
        .fifo("run-fifo")
        .finish();
    vec![(base, Compression::Gzip), (top, Compression::Zstd)]
}

#[test]
fn everything_survives_into_the_erofs_image() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    layout_with(&dir, &layers());
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&dir, &ImportOptions::default()).unwrap();
    let view = ErofsView::open(&store.erofs(&image).unwrap());
    let p = |rel: &str| view.path(rel);

    // Whiteouts and opaque directories.
    assert!(!p("etc/gone").exists(), "whiteout of a file");
    assert!(!p("etc/old").exists(), "whiteout of a directory");
    assert!(!p("var/opaque/lower").exists() && !p("var/opaque/sub").exists(), "opaque dir hides lower content");
    assert_eq!(std::fs::read(p("var/opaque/upper")).unwrap(), b"kept");
    assert_eq!(std::fs::metadata(p("var/opaque")).unwrap().mode() & 0o7777, 0o750);
    for marker in ["etc/.wh.gone", "var/opaque/.wh..wh..opq"] {
        assert!(std::fs::symlink_metadata(p(marker)).is_err(), "{marker} must not appear");
    }

    // Hardlinks, within and across layers.
    let (ping, hard) = (std::fs::metadata(p("bin/ping")).unwrap(), std::fs::metadata(p("bin/ping-hard")).unwrap());
    assert_eq!(ping.ino(), hard.ino());
    assert_eq!(ping.nlink(), 2);
    assert_eq!(std::fs::metadata(p("usr-file")).unwrap().ino(), std::fs::metadata(p("usr-link")).unwrap().ino());

    // Symlinks are kept as written.
    assert_eq!(std::fs::read_link(p("abs-link")).unwrap().to_str(), Some("/etc/hostname"));
    assert_eq!(std::fs::read_link(p("rel-link")).unwrap().to_str(), Some("bin/ping"));

    // Ownership, modes, capabilities and xattrs.
    let home = std::fs::metadata(p("home-file")).unwrap();
    assert_eq!((home.uid(), home.gid(), home.mode() & 0o7777), (1000, 1001, 0o640));
    assert_eq!(std::fs::metadata(p("bin/suid")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(xattr(&p("bin/ping"), "security.capability").as_deref(), Some(&CAP_NET_RAW_EP[..]));
    assert_eq!(xattr(&p("bin/ping"), "user.origin").as_deref(), Some(&b"moat-test"[..]));

    // Device nodes and FIFOs.
    let null = std::fs::metadata(p("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(std::fs::metadata(p("run-fifo")).unwrap().file_type().is_fifo());
}

#[test]
fn conversion_is_cached_and_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    layout_with(&dir, &layers());
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&dir, &ImportOptions::default()).unwrap();
    let erofs = store.erofs(&image).unwrap();
    let first = std::fs::read(&erofs).unwrap();
    let modified = std::fs::metadata(&erofs).unwrap().modified().unwrap();

    let hit = store.erofs(&image).unwrap();
    assert_eq!(hit, erofs);
    assert_eq!(std::fs::metadata(&hit).unwrap().modified().unwrap(), modified, "a cache hit does not rebuild");

    std::fs::remove_file(&erofs).unwrap();
    let rebuilt = store.erofs(&image).unwrap();
    assert_eq!(std::fs::read(rebuilt).unwrap(), first, "same image, same bytes");

    let other_store = Store::open(&work.path().join("root2")).unwrap();
    let elsewhere = other_store.import(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(std::fs::read(other_store.erofs(&elsewhere).unwrap()).unwrap(), first, "same bytes in another store");
}

#[test]
fn remove_and_prune_reclaim_space() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    layout_with(&dir, &layers());
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let image = store.import(&dir, &ImportOptions::default()).unwrap();
    let named = ImportOptions { name: Some("second:1".into()), ..ImportOptions::default() };
    store.import(&dir, &named).unwrap();
    std::fs::write(root.join("images/tmp/stale-from-a-killed-pull"), b"partial").unwrap();

    assert!(store.remove(&image.reference).unwrap());
    assert!(!store.remove(&image.reference).unwrap(), "already gone");
    let report = store.prune().unwrap();
    assert_eq!((report.blobs, report.erofs_images, report.temporary), (0, 0, 1), "second:1 still needs everything");

    assert!(store.remove("second:1").unwrap());
    let report = store.prune().unwrap();
    assert_eq!((report.blobs, report.erofs_images), (4, 1));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(root.join("images/blobs/sha256")).unwrap().count(), 0);
}

#[test]
fn layer_without_end_of_archive_blocks_is_accepted() {
    // `umoci insert` writes layers that stop right after the last file's data.
    let work = tempfile::tempdir().unwrap();
    let full = TarBuilder::new().file("bin/tool", &[7u8; 1000], 0o755).finish();
    let cut = full[..512 + 1000].to_vec();
    layout_with(&work.path().join("layout"), &[(cut, Compression::Gzip)]);
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&work.path().join("layout"), &ImportOptions::default()).unwrap();
    let view = ErofsView::open(&store.erofs(&image).unwrap());
    assert_eq!(std::fs::read(view.path("bin/tool")).unwrap(), vec![7u8; 1000]);
}
