//! Pulls that go wrong, through the CLI: a registry that stalls mid-blob times out naming the
//! stall, and a pull killed (SIGKILL) mid-blob lists nothing; a later pull works either way.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Moat;

/// Serves the busybox fixture's OCI layout as a registry, a thread per connection. While
/// `stall` is set, a layer is sent half-way and its connection then held open, silent.
struct SlowRegistry {
    reference: String,
    stall: Arc<AtomicBool>,
}

impl SlowRegistry {
    fn start(layout: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let reference = format!("{}/slow/busybox:latest", listener.local_addr().expect("local address"));
        let stall = Arc::new(AtomicBool::new(true));
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("index is JSON");
        let manifest = index["manifests"][0]["digest"].as_str().expect("a manifest in the index").to_string();
        let (layout, stalls) = (layout.to_path_buf(), stall.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (layout, manifest, stalls) = (layout.clone(), manifest.clone(), stalls.clone());
                std::thread::spawn(move || serve(stream, &layout, &manifest, &stalls));
            }
        });
        Self { reference, stall }
    }
}

fn serve(mut stream: TcpStream, layout: &Path, manifest: &str, stall: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("cloning the stream"));
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        let digest = if path.ends_with("/manifests/latest") { Some(manifest) } else { path.rsplit_once("/blobs/").map(|(_, d)| d) };
        let Some(body) = digest.and_then(|d| std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).ok()) else {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}");
            continue;
        };
        let kind = if digest == Some(manifest) { "application/vnd.oci.image.manifest.v1+json" } else { "application/octet-stream" };
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: {kind}\r\n\r\n", body.len());
        // The layer is the only blob bigger than a few KiB.
        if body.len() > 64 << 10 && stall.load(Ordering::SeqCst) {
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let _ = stream.write_all(&body);
    }
}

/// The store's temporary files holding some bytes: a download under way.
fn partial_downloads(moat: &Moat) -> usize {
    std::fs::read_dir(moat.root().join("images/tmp")).into_iter().flatten().flatten().filter(|e| e.metadata().is_ok_and(|m| m.len() > 0)).count()
}

#[test]
fn a_stalled_or_killed_pull_lists_nothing_and_a_later_pull_works() {
    let moat = Moat::new();
    let registry = SlowRegistry::start(common::busybox_layout());
    let listed = || moat.ok(&["image", "ls", "--format", "json"]);

    let line = moat.one_error_line(&["image", "pull", "-q", "--timeout", "1", &registry.reference]);
    assert!(line.contains("stalled: no data for 1s after"), "{line}");
    assert_eq!(listed().trim(), "[]");
    assert_eq!(partial_downloads(&moat), 0, "a failed pull removes its partial blob");

    // SIGKILL halfway through the layer: no cleanup runs, and still nothing reads as stored.
    let mut pull = moat.cmd(&["image", "pull", "-q", "--timeout", "60", &registry.reference]).stderr(std::process::Stdio::null()).spawn().expect("running moat");
    let deadline = Instant::now() + Duration::from_secs(30);
    while partial_downloads(&moat) == 0 {
        assert!(Instant::now() < deadline, "the pull never started writing the layer");
        std::thread::sleep(Duration::from_millis(50));
    }
    pull.kill().expect("killing the pull");
    pull.wait().expect("reaping the pull");
    assert_eq!(listed().trim(), "[]");

    registry.stall.store(false, Ordering::SeqCst);
    moat.ok(&["image", "pull", "-q", &registry.reference]);
    assert!(listed().contains("slow/busybox:latest"), "{}", listed());
    moat.ok(&["image", "prune"]);
    assert_eq!(partial_downloads(&moat), 0, "prune sweeps what the killed pull left");
    assert_eq!(moat.ok(&["run", "--rm", &registry.reference, "echo", "pulled"]), "pulled\n");
    moat.assert_nothing_running();
}
