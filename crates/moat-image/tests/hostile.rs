//! Hostile input: every case fails with one clear error line, writes nothing outside the store,
//! and leaves no reference, EROFS image or temporary file behind.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use moat_image::{ImportOptions, Limits, PullOptions, Store};

/// Imports a one-image layout made of `layers` and returns the error line.
fn import_error(work: &Path, layers: &[(Vec<u8>, Compression)], store: &Store) -> String {
    let dir = work.join("layout");
    layout_with(&dir, layers);
    let err = store.import(&dir, &ImportOptions::default()).expect_err("hostile image must be refused");
    let line = one_line(&err);
    eprintln!("error line: {line}");
    line
}

fn up(levels: usize) -> String {
    "../".repeat(levels)
}

struct Case {
    work: tempfile::TempDir,
    store: Store,
}

impl Case {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let store = Store::open(&work.path().join("root")).unwrap();
        Self { work, store }
    }

    fn refuse(&self, layers: &[(Vec<u8>, Compression)]) -> String {
        let line = import_error(self.work.path(), layers, &self.store);
        assert!(!line.contains('\n'), "one line: {line}");
        assert_store_clean(&self.work.path().join("root"));
        line
    }
}

#[test]
fn entry_climbing_out_with_dotdot() {
    let (case, outside) = (Case::new(), Outside::new());
    let name = format!("{}{}/pwned", up(12), outside.rel());
    let line = case.refuse(&[(TarBuilder::new().raw_file(name.as_bytes(), b"x").finish(), Compression::Gzip)]);
    assert!(line.contains("climbs out of the rootfs with `..`"), "{line}");
    outside.assert_untouched();
}

#[test]
fn entry_with_absolute_path() {
    let (case, outside) = (Case::new(), Outside::new());
    let name = format!("/{}/pwned", outside.rel());
    let line = case.refuse(&[(TarBuilder::new().raw_file(name.as_bytes(), b"x").finish(), Compression::None)]);
    assert!(line.contains("is an absolute path"), "{line}");
    outside.assert_untouched();
}

#[test]
fn symlink_out_of_the_tree_then_a_write_through_it() {
    let (case, outside) = (Case::new(), Outside::new());
    let target = format!("{}{}", up(12), outside.rel());
    let layer = TarBuilder::new().symlink("escape", &target).file("escape/pwned", b"x", 0o644).finish();
    let line = case.refuse(&[(layer, Compression::Gzip)]);
    assert!(line.contains("symlink `escape`") && line.contains("points outside the rootfs"), "{line}");
    outside.assert_untouched();
}

#[test]
fn absolute_symlink_then_writes_through_it_stay_inside_the_image() {
    // An absolute target is read inside the rootfs, as the zone's kernel will read it, so
    // writing through it is legitimate: the file must land in the image, not on the host.
    let (case, outside) = (Case::new(), Outside::new());
    let inside = outside.rel();
    let (parent, _) = inside.rsplit_once('/').unwrap();
    let lower = TarBuilder::new()
        .dir(&format!("{parent}/"), 0o755)
        .dir(&format!("{inside}/"), 0o755)
        .symlink("abs", &format!("/{inside}"))
        .finish();
    let upper = TarBuilder::new().file("abs/pwned", b"inside", 0o644).finish();
    let dir = case.work.path().join("layout");
    layout_with(&dir, &[(lower, Compression::Gzip), (upper, Compression::Gzip)]);
    let image = case.store.import(&dir, &ImportOptions::default()).unwrap();
    outside.assert_untouched();
    let view = ErofsView::open(&case.store.erofs(&image).unwrap());
    assert_eq!(std::fs::read(view.path(&format!("{inside}/pwned"))).unwrap(), b"inside");
}

#[test]
fn write_through_a_symlink_to_a_missing_directory() {
    let (case, outside) = (Case::new(), Outside::new());
    let layer = TarBuilder::new().symlink("abs", &format!("/{}", outside.rel())).file("abs/pwned", b"x", 0o644).finish();
    let line = case.refuse(&[(layer, Compression::Gzip)]);
    assert!(line.contains("`abs` is a symlink to a directory missing from the rootfs"), "{line}");
    outside.assert_untouched();
}

#[test]
fn hardlink_to_a_host_file() {
    let case = Case::new();
    let host = tempfile::Builder::new().prefix("moat-sentinel-").tempdir_in("/tmp").unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, b"host data").unwrap();
    let rel = secret.display().to_string().trim_start_matches('/').to_owned();
    for target in [format!("{}{rel}", up(12)), format!("/{rel}")] {
        let layer = TarBuilder::new().hardlink("stolen", &target).finish();
        let line = case.refuse(&[(layer, Compression::Gzip)]);
        assert!(line.contains("hardlink target"), "{line}");
        assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1, "no new link to the host file");
    }
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    let case = Case::new();
    let store = case.store.clone().with_limits(Limits { max_layer_bytes: 1 << 20 });
    let bomb = TarBuilder::new().file("zeros", &vec![0u8; 32 << 20], 0o644).finish();
    let compressed = Compression::Gzip.apply(&bomb);
    assert!(compressed.len() < 1 << 20, "the blob itself is under the limit");
    let line = import_error(case.work.path(), &[(bomb, Compression::Gzip)], &store);
    assert!(line.contains("decompresses to more than 1048576 bytes"), "{line}");
    assert_store_clean(&case.work.path().join("root"));
}

#[test]
fn extension_header_claiming_gigabytes() {
    let case = Case::new();
    let layer = TarBuilder::new().bare_header("././@PaxHeader", tar::EntryType::XHeader, 8 << 30).finish();
    let line = case.refuse(&[(layer, Compression::Gzip)]);
    assert!(line.contains("tar extension header of 8589934592 bytes is over the 1048576-byte limit"), "{line}");
}

#[test]
fn diff_id_that_does_not_match_the_layer() {
    let case = Case::new();
    let dir = case.work.path().join("layout");
    let mut layout = OciLayout::new(&dir);
    let layer = TarBuilder::new().file("a", b"a", 0o644).finish();
    let image = layout.image_with_diff_ids("amd64", &[(layer, Compression::Gzip)], vec![sha256(b"something else")]);
    layout.tag(image.descriptor, "latest");
    let line = one_line(&case.store.import(&dir, &ImportOptions::default()).unwrap_err());
    assert!(line.contains("uncompressed layer has digest"), "{line}");
    assert_store_clean(&case.work.path().join("root"));
}

#[test]
fn layout_blob_whose_content_does_not_match_its_digest() {
    let case = Case::new();
    let dir = case.work.path().join("layout");
    let built = layout_with(&dir, &[(TarBuilder::new().file("a", b"a", 0o644).finish(), Compression::None)]);
    let config = dir.join("blobs/sha256").join(&built.config_digest[7..]);
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&config, bytes).unwrap();
    let line = one_line(&case.store.import(&dir, &ImportOptions::default()).unwrap_err());
    assert!(line.contains("blob content has digest") && line.contains(&built.config_digest), "{line}");
    assert_store_clean(&case.work.path().join("root"));
    assert!(!case.store.base().join("blobs/sha256").join(&built.config_digest[7..]).exists());
}

/// Pushes a small image to a real registry, lets `tamper` edit the stored layer, then pulls.
async fn pull_tampered(tamper: impl FnOnce(&Path)) -> String {
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    // Incompressible content, gzip-compressed here so skopeo pushes the blob as it is.
    let layer = TarBuilder::new().file("data", &noise(256 << 10), 0o644).finish();
    layout_with(&dir, &[(layer.clone(), Compression::Gzip)]);
    let target = registry.push(&dir, "latest", "tampered", None);
    let blob = sha256(&Compression::Gzip.apply(&layer));
    tamper(&registry.blob_file(&blob));
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let line = one_line(&store.pull(&target, &PullOptions::default()).await.unwrap_err());
    eprintln!("error line: {line}");
    assert_store_clean(&root);
    assert!(!root.join("images/blobs/sha256").join(&blob[7..]).exists(), "bad blob not stored");
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_serves_a_blob_with_the_wrong_digest() {
    let line = pull_tampered(|blob| {
        let mut bytes = std::fs::read(blob).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(blob, bytes).unwrap();
    })
    .await;
    assert!(line.to_lowercase().contains("digest"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_serves_a_truncated_blob() {
    let line = pull_tampered(|blob| {
        let bytes = std::fs::read(blob).unwrap();
        std::fs::write(blob, &bytes[..bytes.len() / 2]).unwrap();
    })
    .await;
    assert!(line.contains("truncated") || line.contains("failed after"), "{line}");
}

fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) {
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

async fn pull_from(addr: &str, timeout: Duration) -> String {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let opts = PullOptions { timeout, ..PullOptions::default() };
    let line = one_line(&store.pull(&format!("{addr}/x/y:latest"), &opts).await.unwrap_err());
    eprintln!("error line: {line}");
    assert!(!line.contains('\n'), "{line}");
    assert_store_clean(&root);
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_sends_a_manifest_that_is_too_large() {
    let addr = fake_server(|stream, path| {
        if path.contains("/manifests/") {
            let huge = format!("{{\"schemaVersion\":2,\"pad\":\"{}\"}}", "a".repeat(5 << 20));
            respond(stream, "200 OK", huge.as_bytes());
        } else {
            respond(stream, "200 OK", b"{}");
        }
    });
    let line = pull_from(&addr, Duration::from_secs(10)).await;
    assert!(line.contains("larger than the 4194304-byte limit"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_that_never_answers_times_out() {
    let addr = fake_server(|_stream, _path| std::thread::sleep(Duration::from_secs(30)));
    let started = Instant::now();
    let line = pull_from(&addr, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(line.contains("did not answer within 1s") || line.contains("timed out"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_that_answers_garbage() {
    let not_http = fake_server(|stream, _path| {
        let _ = stream.write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n");
    });
    let line = pull_from(&not_http, Duration::from_secs(5)).await;
    assert!(line.contains(&format!("registry {not_http}")), "{line}");

    let bad_json = fake_server(|stream, _path| respond(stream, "200 OK", b"\x7fELF not a manifest"));
    let line = pull_from(&bad_json, Duration::from_secs(5)).await;
    assert!(line.contains("manifest is not valid JSON"), "{line}");
}
