//! A pull killed (SIGKILL) halfway through a layer leaves nothing that reads as stored, and a
//! prune sweeps what it left. The pull runs in a child process: this test binary re-executed.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use moat_image::{PullOptions, Store};

const CHILD_ROOT: &str = "MOAT_TEST_CHILD_ROOT";
const CHILD_REF: &str = "MOAT_TEST_CHILD_REF";

/// Serves one small image whose single layer stalls after half its bytes.
fn stalling_registry() -> (String, String) {
    let tar = TarBuilder::new().file("big", &noise(2 << 20), 0o644).finish();
    let layer = Compression::Gzip.apply(&tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [sha256(&tar)] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len() }],
    }))
    .unwrap();
    let layer_digest = sha256(&layer);
    let config_digest = sha256(&config);
    let served_layer = layer_digest.clone();
    let addr = fake_server(move |stream, path| {
        let send = |stream: &mut std::net::TcpStream, body: &[u8], len: usize| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        };
        if path.ends_with("/manifests/latest") {
            send(stream, &manifest, manifest.len());
        } else if path.ends_with(&config_digest) {
            send(stream, &config, config.len());
        } else if path.ends_with(&served_layer) {
            send(stream, &layer[..layer.len() / 2], layer.len());
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(60));
        } else {
            send(stream, b"{}", 2);
        }
    });
    (format!("{addr}/stall/image:latest"), layer_digest)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child half: pulls and never returns before being killed.
#[test]
#[ignore = "run by killed_pull_leaves_nothing_that_reads_as_stored in a child process"]
fn child_pull() {
    let (Ok(root), Ok(reference)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_REF)) else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = Store::open(Path::new(&root)).unwrap();
    let _ = runtime.block_on(store.pull(&reference, &PullOptions { timeout: Duration::from_secs(120), ..PullOptions::default() }));
}

#[test]
fn killed_pull_leaves_nothing_that_reads_as_stored() {
    let (reference, layer_digest) = stalling_registry();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_pull", "--ignored", "--nocapture"])
            .env(CHILD_ROOT, &root)
            .env(CHILD_REF, &reference)
            .spawn()
            .unwrap(),
    );

    // Wait until the layer is partly written, then kill the pull mid-blob.
    let tmp = root.join("images/tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = std::fs::read_dir(&tmp).map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0))).unwrap_or(false);
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "the child never started writing the layer");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let store = Store::open(&root).unwrap();
    assert!(store.get(&reference).unwrap().is_none(), "no reference after a killed pull");
    assert!(store.list().unwrap().is_empty());
    assert!(!root.join("images/blobs/sha256").join(&layer_digest[7..]).exists(), "no partial layer under its digest");
    assert_eq!(std::fs::read_dir(root.join("images/erofs")).unwrap().count(), 0);

    let report = store.prune().unwrap();
    assert!(report.temporary >= 1, "prune sweeps the partial download: {report:?}");
    assert_store_clean(&root);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_that_stalls_midway_times_out_naming_the_stall() {
    let (reference, _) = stalling_registry();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let started = Instant::now();
    let err = store.pull(&reference, &PullOptions { timeout: Duration::from_secs(1), ..PullOptions::default() }).await.unwrap_err();
    let line = common::one_line(&err);
    eprintln!("error line: {line}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(line.contains("stalled: no data for 1s after 1106018 of 2212036 bytes"), "{line}");
    assert_store_clean(&root);
}
