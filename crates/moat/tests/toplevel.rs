//! Docker's top-level commands: each short form does what its long form does, bad input is one
//! line that changes nothing, and an image podman saved loads into moat and runs in a zone.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON output")
}

#[test]
fn short_forms_do_what_their_long_forms_do() {
    let moat = Moat::with_busybox();
    assert_eq!(moat.ok(&["images"]), moat.ok(&["image", "ls"]));
    assert_eq!(moat.ok(&["images", "--format", "json"]), moat.ok(&["image", "ls", "--format", "json"]));

    moat.ok(&["tag", BUSYBOX, "example.com/team/bb:2"]);
    moat.ok(&["image", "tag", BUSYBOX, "example.com/team/bb:3"]);
    let listed = moat.ok(&["images"]);
    assert!(listed.contains("example.com/team/bb:2") && listed.contains("example.com/team/bb:3"), "{listed}");

    // The same archive, byte for byte, from either form.
    let short = moat.root().join("short.tar");
    let long = moat.root().join("long.tar");
    moat.ok(&["save", "-o", &short.to_string_lossy(), BUSYBOX, "example.com/team/bb:2"]);
    moat.ok(&["image", "save", "-o", &long.to_string_lossy(), BUSYBOX, "example.com/team/bb:2"]);
    assert_eq!(std::fs::read(&short).unwrap(), std::fs::read(&long).unwrap());

    let fresh = Moat::new();
    let loaded = fresh.ok(&["load", "-i", &short.to_string_lossy()]);
    assert_eq!(loaded, "Loaded image: docker.io/library/busybox:test\nLoaded image: example.com/team/bb:2\n");
    assert_eq!(fresh.ok(&["image", "load", "-i", &long.to_string_lossy()]), loaded);

    // inspect: an image in Docker's shape, with every name it has.
    let id = json(&moat.ok(&["image", "inspect", BUSYBOX]))["id"].as_str().unwrap().to_owned();
    let shown = json(&moat.ok(&["inspect", BUSYBOX]));
    assert_eq!(shown[0]["Id"], id.as_str());
    assert_eq!(shown[0]["RootFS"]["Type"], "layers");
    let tags: Vec<&str> = shown[0]["RepoTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tags, ["docker.io/library/busybox:test", "example.com/team/bb:2", "example.com/team/bb:3"]);
    assert_eq!(shown[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(json(&moat.ok(&["inspect", "--type", "image", "example.com/team/bb:3"]))[0]["Id"], id.as_str());

    let version = moat.ok(&["version"]);
    let labels: Vec<&str> = version.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(labels, ["moat", "guest kernel", "qemu", "zone runtime"], "{version}");
    let runtime = moat_zone::assets::chosen_oci_runtime().unwrap();
    assert!(version.contains(&format!("{runtime} version")), "{version}");
    let versions = json(&moat.ok(&["version", "--format", "json"]));
    assert_eq!(versions["moat"], env!("CARGO_PKG_VERSION"));

    let info = json(&moat.ok(&["info", "--format", "json"]));
    assert_eq!(info["images"], 3);
    assert_eq!((info["containers"].as_u64(), info["zones"].as_u64(), info["volumes"].as_u64()), (Some(0), Some(0), Some(0)));
    assert!(["kvm", "tcg"].contains(&info["accelerator"].as_str().unwrap()));
    assert!(!info["accelerator_reason"].as_str().unwrap().is_empty());
    assert_eq!(info["state_root"], moat.root().to_string_lossy().as_ref());

    let df = moat.ok(&["system", "df"]);
    let images_row: Vec<&str> = df.lines().find(|l| l.starts_with("Images")).unwrap().split_whitespace().collect();
    assert_eq!(&images_row[1..3], ["3", "0"], "{df}");

    // A pull that fails says so in the same line either way.
    let unreachable = "127.0.0.1:9/nothing:1";
    let short_err = moat.one_error_line(&["pull", "--timeout", "5", unreachable]);
    assert_eq!(short_err, moat.one_error_line(&["image", "pull", "--timeout", "5", unreachable]));

    // system prune -a removes every image no container uses, and the data under them.
    let pruned = moat.ok(&["system", "prune", "-a", "-f"]);
    assert!(pruned.contains("Deleted Images:") && pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(moat.ok(&["images", "--format", "json"]).trim(), "[]");
    let blobs = std::fs::read_dir(moat.root().join("images/blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "blobs outlived their images");
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let moat = Moat::with_busybox();
    let before = moat.ok(&["images", "--format", "json"]);
    let out_dir = moat.root().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.tar");
    let out = out.to_string_lossy();

    assert!(moat.one_error_line(&["tag", "nothing:1", "x:1"]).contains("not in the store"));
    assert!(moat.one_error_line(&["push", "nothing:1"]).contains("not in the store"));
    moat.one_error_line(&["tag", BUSYBOX, "Bad/Name"]);
    assert!(moat.one_error_line(&["save", "-o", &out, BUSYBOX, "nothing:1"]).contains("nothing:1"));
    moat.one_error_line(&["save", "-o", "/nonexistent/dir/x.tar", BUSYBOX]);
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "a failed save left a file");

    // A file that is no tar at all: its bytes may end up in the message, on one line still.
    let junk = out_dir.join("junk");
    std::fs::write(&junk, "root:x:0:0:root:/root:/bin/sh\n\x1b[31mred\n".repeat(30)).unwrap();
    let line = moat.one_error_line(&["load", "-i", &junk.to_string_lossy()]);
    assert!(!line.contains('\x1b'), "{line:?}");
    moat.one_error_line(&["load", "-i", "/nonexistent/x.tar"]);
    std::fs::remove_file(&junk).unwrap();

    assert!(moat.one_error_line(&["inspect", "nothing"]).contains("no such container, pod, zone or image: nothing"));
    assert!(moat.one_error_line(&["inspect", "--type", "container", BUSYBOX]).contains("no such container"));
    assert_eq!(moat.ok(&["images", "--format", "json"]), before);

    // Prune asks first; with nobody at the terminal it refuses, and nothing goes.
    for args in [&["container", "prune"][..], &["system", "prune", "-a"][..]] {
        let out = moat.cmd(args).stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("-f (--force)"), "{err}");
    }
    assert_eq!(moat.ok(&["images", "--format", "json"]), before);
}

/// podman with a storage of its own, away from the host's images.
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root").arg(dir.join("root")).arg("--runroot").arg(dir.join("run")).args(["--storage-driver", "vfs"]);
    cmd
}

fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running podman");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_image_podman_saved_runs_in_a_zone_and_container_prune_removes_it() {
    let work = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:latest", busybox_layout().display());
    let image_id = succeed(podman(work.path()).args(["pull", "-q", &layout]));
    succeed(podman(work.path()).args(["tag", image_id.trim(), "localhost/from-podman:1"]));
    let archive = work.path().join("podman.tar");
    succeed(podman(work.path()).args(["save", "-q", "-o"]).arg(&archive).arg("localhost/from-podman:1"));

    let moat = Moat::new();
    assert_eq!(moat.ok(&["load", "-i", &archive.to_string_lossy()]), "Loaded image: localhost/from-podman:1\n");
    let out = moat.run(&["run", "--name", "loaded", "localhost/from-podman:1", "sh", "-c", "echo hi from a loaded image"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi from a loaded image\n");

    let shown = json(&moat.ok(&["inspect", "loaded"]));
    assert_eq!(shown[0]["Name"], "/loaded");
    assert_eq!(shown[0]["State"]["Status"], "exited");
    assert_eq!(shown[0]["State"]["ExitCode"], 0);
    assert_eq!(shown[0]["Config"]["Image"], "localhost/from-podman:1");
    let id = shown[0]["Id"].as_str().unwrap().to_owned();

    let df = moat.ok(&["system", "df"]);
    let containers: Vec<&str> = df.lines().find(|l| l.starts_with("Containers")).unwrap().split_whitespace().collect();
    assert_eq!(&containers[1..3], ["1", "0"], "{df}");
    let pruned = moat.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with(&format!("Deleted Containers:\n{id}\n")), "{pruned}");
    assert_eq!(moat.ok(&["ps", "-a"]).lines().count(), 1, "only the header is left");

    // An image a running container uses survives `system prune -a`, and so does the container.
    moat.ok(&["run", "-d", "--name", "busy", "localhost/from-podman:1", "sleep", "600"]);
    moat.ok(&["system", "prune", "-a", "-f"]);
    assert!(moat.ok(&["images"]).contains("localhost/from-podman:1"));
    assert!(moat.ok(&["ps"]).contains("busy"));
    moat.ok(&["rm", "-f", "busy"]);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty(), "zone files left: {:?}", moat.zone_files());
}
