//! Importing the three file formats: `docker save` tarballs (written by skopeo's
//! docker-archive transport), `oci-archive` tarballs, and OCI layout directories.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use moat_image::{ImportOptions, Store};

fn layout(dir: &Path) -> BuiltImage {
    let second = TarBuilder::new().dir("etc/", 0o755).file("etc/release", b"v2\n", 0o644).finish();
    layout_with(dir, &[(busybox_layer(), Compression::Gzip), (second, Compression::None)])
}

fn check_runnable(store: &Store, image: &moat_image::StoredImage) {
    let view = ErofsView::open(&store.erofs(image).unwrap());
    assert_eq!(std::fs::read(view.path("etc/release")).unwrap(), b"v2\n");
    let busybox = std::fs::metadata(view.path("bin/busybox")).unwrap();
    assert_eq!(busybox.len(), std::fs::metadata("/bin/busybox").unwrap().len());
}

#[test]
fn imports_an_oci_layout_directory() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    let built = layout(&dir);
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(image.reference, "localhost/app:latest");
    assert_eq!(image.config_digest.to_string(), built.config_digest);
    assert_eq!(image.manifest_digest.to_string(), built.manifest_digest);
    check_runnable(&store, &image);

    let named = ImportOptions { name: Some("example.com/team/app:1.0".into()), ..ImportOptions::default() };
    let again = store.import(&dir, &named).unwrap();
    assert_eq!(again.reference, "example.com/team/app:1.0");
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn imports_an_oci_archive() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let built = layout(&dir);
    let archive = work.path().join("app.tar");
    skopeo_copy(&format!("oci:{}:latest", dir.display()), &format!("oci-archive:{}:v1", archive.display()), &[]);
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&archive, &ImportOptions::default()).unwrap();
    assert_eq!(image.reference, "localhost/app:v1");
    assert_eq!(image.config_digest.to_string(), built.config_digest);
    check_runnable(&store, &image);
}

#[test]
fn imports_a_docker_save_tarball_plain_and_gzipped() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    layout(&dir);
    let archive = work.path().join("saved.tar");
    skopeo_copy(
        &format!("oci:{}:latest", dir.display()),
        &format!("docker-archive:{}:registry.example/tools/app:2.1", archive.display()),
        &[],
    );
    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.import(&archive, &ImportOptions::default()).unwrap();
    assert_eq!(image.reference, "registry.example/tools/app:2.1");
    assert_eq!(image.layers.len(), 2);
    check_runnable(&store, &image);

    let gz = work.path().join("saved.tar.gz");
    run(std::process::Command::new("sh").arg("-c").arg(format!("gzip -c {} > {}", archive.display(), gz.display())));
    let named = ImportOptions { name: Some("zipped:1".into()), ..ImportOptions::default() };
    let zipped = store.import(&gz, &named).unwrap();
    assert_eq!(zipped.reference, "docker.io/library/zipped:1");
    assert_eq!(zipped.config_digest, image.config_digest);
}

#[test]
fn rejects_files_that_are_not_images() {
    let work = tempfile::tempdir().unwrap();
    let not_image = work.path().join("random.tar");
    std::fs::write(&not_image, TarBuilder::new().file("hello", b"world", 0o644).finish()).unwrap();
    let store = Store::open(&work.path().join("root")).unwrap();
    let err = store.import(&not_image, &ImportOptions::default()).unwrap_err();
    assert!(one_line(&err).contains("neither an OCI layout"), "{}", one_line(&err));
    assert_store_clean(&work.path().join("root"));
}
