//! Tag, save and load: archives moat writes are read back by moat, by skopeo and by podman
//! (which runs the image), and archives podman writes load into moat.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use moat_image::{ArchiveFormat, Error, ImportOptions, Platform, Store, StoreError, StoredImage};

fn layout(dir: &Path) -> BuiltImage {
    let second = TarBuilder::new().dir("etc/", 0o755).file("etc/release", b"v2\n", 0o644).finish();
    layout_with(dir, &[(busybox_layer(), Compression::Gzip), (second, Compression::None)])
}

fn check_runnable(store: &Store, image: &StoredImage) {
    let view = ErofsView::open(&store.erofs(image).unwrap());
    assert_eq!(std::fs::read(view.path("etc/release")).unwrap(), b"v2\n");
    assert!(view.path("bin/busybox").is_file());
}

/// A store holding the test image as `app:1` and, by tag, `example.com/team/app:2`.
fn stored(work: &Path) -> (Store, StoredImage, BuiltImage) {
    let built = layout(&work.join("layout"));
    let store = Store::open(&work.join("root")).unwrap();
    let opts = ImportOptions { name: Some("app:1".into()), ..ImportOptions::default() };
    let image = store.import(&work.join("layout"), &opts).unwrap();
    store.tag("app:1", "example.com/team/app:2").unwrap();
    (store, image, built)
}

fn tar_members(archive: &Path) -> Vec<String> {
    run(Command::new("tar").arg("tf").arg(archive)).lines().map(str::to_owned).collect()
}

#[test]
fn tag_names_the_same_image_and_refuses_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let (store, image, _) = stored(work.path());
    let tagged = store.get("example.com/team/app:2").unwrap().unwrap();
    assert_eq!((tagged.config_digest, tagged.manifest_digest), (image.config_digest.clone(), image.manifest_digest.clone()));

    let missing = store.tag("nothing:here", "x:1").unwrap_err();
    assert!(matches!(missing, Error::Store(StoreError::NotStored(_))), "{}", one_line(&missing));
    let digest = format!("x@{}", image.config_digest);
    let with_digest = store.tag("app:1", &digest).unwrap_err();
    assert!(one_line(&with_digest).contains("holds a digest"), "{}", one_line(&with_digest));
    assert!(store.tag("app:1", "Not/Valid").is_err());
    assert_eq!(store.list().unwrap().len(), 2, "failed tags add nothing");
}

#[test]
fn saved_archives_load_back_into_a_fresh_store() {
    let work = tempfile::tempdir().unwrap();
    let (store, image, built) = stored(work.path());
    let both = [store.find("app:1").unwrap(), store.find("example.com/team/app:2").unwrap()];

    let docker = work.path().join("docker.tar");
    store.save_file(&both, ArchiveFormat::DockerArchive, &docker).unwrap();
    // As docker save writes it: uncompressed layers named by their diff IDs, the config by its digest.
    let members = tar_members(&docker);
    for diff_id in &image.diff_ids {
        assert!(members.contains(&format!("{}/layer.tar", diff_id.hex())), "{members:?}");
        let bytes = run(Command::new("sh").arg("-c").arg(format!("tar xOf {} {}/layer.tar | sha256sum", docker.display(), diff_id.hex())));
        assert!(bytes.starts_with(diff_id.hex()), "layer file does not hash to its diff ID");
    }
    assert!(members.contains(&format!("{}.json", image.config_digest.hex())));

    let oci = work.path().join("oci.tar");
    store.save_file(&both, ArchiveFormat::OciArchive, &oci).unwrap();

    for archive in [&docker, &oci] {
        let fresh = Store::open(&work.path().join(format!("fresh-{}", archive.file_name().unwrap().to_string_lossy()))).unwrap();
        let loaded = fresh.load(archive, &Platform::default()).unwrap();
        let names: Vec<&str> = loaded.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(names, ["docker.io/library/app:1", "example.com/team/app:2"], "{}", archive.display());
        assert!(loaded.iter().all(|i| i.config_digest == image.config_digest));
        check_runnable(&fresh, &loaded[0]);
    }
    // The OCI archive keeps the manifest exactly: skopeo sees the digest the store has.
    let fresh = Store::open(&work.path().join("fresh-oci.tar")).unwrap();
    assert_eq!(fresh.find("app:1").unwrap().manifest_digest.to_string(), built.manifest_digest);
    let inspected = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci-archive:{}:docker.io/library/app:1", oci.display())));
    assert_eq!(sha256(inspected.as_bytes()), built.manifest_digest);
    // skopeo reads the docker archive too, and finds the same config.
    let config = run(Command::new("skopeo").args(["inspect", "--config", "--raw"]).arg(format!("docker-archive:{}", docker.display())));
    assert_eq!(sha256(config.as_bytes()), image.config_digest.to_string());
}

#[test]
fn a_save_that_fails_leaves_no_file() {
    let work = tempfile::tempdir().unwrap();
    let (store, image, _) = stored(work.path());
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();

    let nowhere = work.path().join("missing-dir/x.tar");
    assert!(store.save_file(std::slice::from_ref(&image), ArchiveFormat::DockerArchive, &nowhere).is_err());
    assert!(!nowhere.exists());

    // A stored layer that no longer matches its digest fails the save, in both formats.
    let layer = work.path().join("root/images/blobs/sha256").join(image.layers[1].digest.hex());
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciArchive] {
        let dest = out_dir.join("broken.tar");
        let err = store.save_file(std::slice::from_ref(&image), format, &dest).unwrap_err();
        let line = one_line(&err);
        assert!(line.contains(image.layers[1].digest.hex()), "{line}");
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a partial archive was left behind");
    }
}

#[test]
fn load_refuses_what_is_no_image_and_stores_nothing() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let not_tar = work.path().join("passwd");
    std::fs::write(&not_tar, "root:x:0:0:root:/root:/bin/sh\n".repeat(40)).unwrap();
    let not_image = work.path().join("random.tar");
    std::fs::write(&not_image, TarBuilder::new().file("hello", b"world", 0o644).finish()).unwrap();
    for file in [&not_tar, &not_image] {
        assert!(store.load(file, &Platform::default()).is_err(), "{}", file.display());
        assert_store_clean(&root);
    }
}

/// podman with a storage of its own, so tests never see (or touch) the host's images.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(self.dir.path().join("root")).arg("--runroot").arg(self.dir.path().join("run"));
        cmd.args(["--storage-driver", "vfs"]);
        cmd
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn podman_runs_what_moat_saves_and_moat_loads_what_podman_saves() {
    let work = tempfile::tempdir().unwrap();
    let (store, image, _) = stored(work.path());
    let podman = Podman::new();

    let docker = work.path().join("docker.tar");
    store.save_file(std::slice::from_ref(&image), ArchiveFormat::DockerArchive, &docker).unwrap();
    let loaded = run(podman.cmd().args(["load", "-q", "-i"]).arg(&docker));
    assert!(loaded.contains("docker.io/library/app:1"), "{loaded}");
    let out = run(podman.cmd().args(["run", "--rm", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", "none"]).args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "docker.io/library/app:1",
        "/bin/busybox",
        "cat",
        "/etc/release",
    ]));
    assert_eq!(out, "v2\n");

    // podman 4.3 loads an oci-archive of one image; its image ID is the config digest.
    let oci = work.path().join("oci.tar");
    let tagged = store.find("example.com/team/app:2").unwrap();
    store.save_file(&[tagged], ArchiveFormat::OciArchive, &oci).unwrap();
    run(podman.cmd().args(["load", "-q", "-i"]).arg(&oci));
    let id = run(podman.cmd().args(["image", "inspect", "--format", "{{.Id}}", "example.com/team/app:2"]));
    assert_eq!(id.trim(), image.config_digest.hex());

    // And back: podman's own archives, in both formats, load into moat as the same image.
    for (format, name) in [("docker-archive", "podman-docker.tar"), ("oci-archive", "podman-oci.tar")] {
        let archive = podman.file(name);
        run(podman.cmd().args(["save", "-q", "--format", format, "-o"]).arg(&archive).arg("example.com/team/app:2"));
        let fresh = Store::open(&work.path().join(format!("from-{format}"))).unwrap();
        let loaded = fresh.load(&archive, &Platform::default()).unwrap();
        assert_eq!(loaded.len(), 1, "{format}");
        assert_eq!(loaded[0].reference, "example.com/team/app:2", "{format}");
        assert_eq!(loaded[0].config_digest, image.config_digest, "{format}");
        check_runnable(&fresh, &loaded[0]);
    }
}
