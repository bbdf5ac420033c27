//! `moat commit` and `moat export`: a container's changes as a new image (new, changed and
//! deleted files, whiteouts and opaque directories, `--change`), its merged file system as a
//! tar, and what the host refuses of a tar a hostile zone wrote. One pod holds the containers;
//! one more zone shows the error for a container whose zone is gone.

mod common;
#[path = "../../moat-image/tests/common/registry.rs"]
mod registry;

use std::process::Command;

use common::{Moat, BUSYBOX};

/// The names in a tar file, as `tar -t` lists them.
fn listing(tar: &std::path::Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(tar).output().expect("running tar");
    assert!(out.status.success(), "tar -tf: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string()).collect()
}

/// What the store holds besides its blobs: references and temporary files.
fn store_files(moat: &Moat) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["images/refs", "images/tmp"] {
        for entry in std::fs::read_dir(moat.root().join(dir)).into_iter().flatten().flatten() {
            found.push(entry.path().display().to_string());
        }
    }
    found.sort();
    found
}

#[test]
fn commit_and_export_take_a_containers_changes_and_refuse_hostile_ones() {
    let moat = Moat::with_busybox();
    moat.ok(&["pod", "create", "--name", "p"]);
    moat.ok(&["run", "-d", "--pod", "p", "--name", "c", BUSYBOX, "sleep", "600"]);
    // A new file, a changed one, a deleted file and directory of the image, and a directory
    // deleted and made again (opaque).
    let script = "echo new > /new && echo extra >> /etc/passwd && rm /bin/wget && rm -r /home/app && rm -r /tmp && mkdir -m 1777 /tmp && echo t > /tmp/fresh";
    moat.ok(&["exec", "c", "sh", "-c", script]);

    let id = moat.ok(&["commit", "--change", r#"CMD ["cat","/new"]"#, "--change", "ENV A=b", "-m", "first", "c", "committed:1"]);
    assert!(id.trim().starts_with("sha256:") && id.trim().len() == 71, "{id}");
    assert!(moat.ok(&["images"]).contains("committed"), "moat images lists it");
    assert_eq!(moat.ok(&["run", "--rm", "--pod", "p", "committed:1"]), "new\n", "the new CMD runs");
    let check = "echo A=$A; tail -n1 /etc/passwd; ls /bin/wget 2>/dev/null || echo no-wget; ls -d /home/app 2>/dev/null || echo no-app; ls /tmp; ls /bin/sh";
    let shown = moat.ok(&["run", "--rm", "--pod", "p", "committed:1", "sh", "-c", check]);
    assert_eq!(shown, "A=b\nextra\nno-wget\nno-app\nfresh\n/bin/sh\n", "env, the changed file, the whiteouts and the opaque directory hold");
    let inspected: serde_json::Value = serde_json::from_str(&moat.ok(&["image", "inspect", "committed:1"])).unwrap();
    let history = inspected["config"]["history"].to_string();
    assert!(history.contains("first") && history.contains("moat commit c"), "the history entry: {history}");
    // The layer as stored: OCI whiteouts, the image's own owners, no mount points runc made.
    let layer = inspected["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let layer = moat.root().join("images/blobs/sha256").join(layer);
    let names = listing(&layer);
    for present in ["new", "etc/passwd", "bin/.wh.wget", "home/.wh.app", "tmp/.wh..wh..opq", "tmp/fresh"] {
        assert!(names.iter().any(|n| n == present), "{present} missing from the layer: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "etc/hosts"), "{names:?}");

    // The committed image pushes, and pulls back once removed.
    let registry = registry::Registry::start(None);
    let remote = format!("{}/test/c:1", registry.addr);
    moat.ok(&["tag", "committed:1", &remote]);
    moat.ok(&["push", "-q", &remote]);
    moat.ok(&["image", "rm", &remote]);
    moat.ok(&["pull", "-q", &remote]);
    assert_eq!(moat.ok(&["run", "--rm", "--pod", "p", &remote]), "new\n", "the pulled-back image is the committed one");

    // Export: the merged tree, to a file and to stdout.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("c.tar");
    moat.ok(&["export", "-o", file.to_str().unwrap(), "c"]);
    let names = listing(&file);
    let owners = Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(&file).output().unwrap();
    let owners = String::from_utf8_lossy(&owners.stdout).into_owned();
    let owner_of = |name: &str| owners.lines().find(|l| l.ends_with(&format!(" {name}"))).map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string());
    assert_eq!(owner_of("etc/passwd").as_deref(), Some("0/0"), "owners as the container sees them");
    assert_eq!(owner_of("new").as_deref(), Some("0/0"));
    for present in ["new", "etc/passwd", "bin/busybox", "bin/sh", "tmp/fresh", "home"] {
        assert!(names.iter().any(|n| n == present), "{present} missing from the export");
    }
    for absent in ["bin/wget", "home/app", ".wh.wget"] {
        assert!(!names.iter().any(|n| n.ends_with(absent)), "{absent} in the export");
    }
    let piped = moat.cmd(&["export", "c"]).output().unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, std::fs::read(&file).unwrap(), "stdout gets the same tar");

    // A stopped container of a running pod still commits.
    moat.ok(&["kill", "c"]);
    moat.ok(&["wait", "c"]);
    moat.ok(&["commit", "c", "committed:stopped"]);

    // Bad input: one line, nothing stored.
    let before = store_files(&moat);
    assert!(moat.one_error_line(&["commit", "--change", "RUN rm -rf /", "c", "x:1"]).contains("RUN is not an instruction moat commit applies"));
    assert!(moat.one_error_line(&["commit", "nosuch", "x:1"]).contains("no such container"));

    // A privileged container writes what no layer may hold, and more than the cap allows.
    moat.ok(&["run", "-d", "--pod", "p", "--privileged", "--allow-privileged-in-pod", "--name", "evil", BUSYBOX, "sleep", "600"]);
    moat.ok(&["exec", "evil", "sh", "-c", "ln -s ../../../../../../etc /escape"]);
    let err = moat.one_error_line(&["commit", "evil", "evil:1"]);
    assert!(err.contains("escape") && err.contains("points outside the rootfs"), "{err}");
    moat.ok(&["exec", "evil", "sh", "-c", "rm /escape && dd if=/dev/zero of=/big bs=1024 count=2048 2>/dev/null"]);
    let err = moat.one_error_line(&["commit", "--max-layer-size", "1M", "evil", "evil:1"]);
    assert!(err.contains("1048576"), "{err}");
    assert_eq!(store_files(&moat), before, "nothing stored, nothing left over");
    assert!(!moat.ok(&["images"]).contains("evil"));

    moat.ok(&["pod", "rm", "-f", "p"]);

    // A container whose zone is gone.
    moat.ok(&["run", "--name", "gone", BUSYBOX, "true"]);
    // `run` returns with the container's exit; its zone powers off just after.
    moat.wait_state("gone", "stopped", std::time::Duration::from_secs(30));
    let err = moat.one_error_line(&["commit", "gone", "gone:1"]);
    assert!(err.contains("its zone is stopped"), "{err}");
    let err = moat.one_error_line(&["export", "-o", out.path().join("gone.tar").to_str().unwrap(), "gone"]);
    assert!(err.contains("its zone is stopped"), "{err}");
    assert!(!out.path().join("gone.tar").exists());
    moat.ok(&["rm", "gone"]);
    moat.assert_nothing_running();
}
