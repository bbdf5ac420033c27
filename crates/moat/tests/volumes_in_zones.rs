//! Host directories in containers (`-v`, `--mount`), through the zone's share: read-only is the
//! host's, a symlink in the directory never leads out of it, and bad input changes nothing.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{stderr, stdout, Moat, BUSYBOX};

#[test]
fn a_read_only_bind_stays_read_only_even_for_a_privileged_container() {
    let moat = Moat::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep"), "original\n").unwrap();
    let bind = format!("{}:/data:ro", dir.path().display());
    // Root with every capability tries to write, then to remount the bind read-write.
    let script = "cat /data/keep; echo x > /data/keep || echo write-refused; mount -o remount,rw /data 2>/dev/null; echo y > /data/new || echo still-refused";
    let out = moat.run(&["run", "--rm", "--privileged", "-v", &bind, BUSYBOX, "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("original") && shown.contains("write-refused") && shown.contains("still-refused"), "{shown}");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("keep")).unwrap(), "original\n");
    assert!(!dir.path().join("new").exists());
    moat.assert_nothing_running();
}

#[test]
fn a_writable_bind_shows_writes_on_the_host_and_symlinks_stay_inside() {
    let moat = Moat::with_busybox();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Writable by the container's root, which is zone uid 100000 (see the README).
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../..".to_string() + &outside.path().join("secret").display().to_string(), dir.path().join("rel")).unwrap();
    let mount = format!("type=bind,source={},target=/data", dir.path().display());
    let script = "echo written > /data/out; cat /data/abs 2>&1 || echo abs-blocked; cat /data/rel 2>&1 || echo rel-blocked";
    let out = moat.run(&["run", "--rm", "--mount", &mount, BUSYBOX, "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(!shown.contains("host secret"), "a symlink led out of the share: {shown}");
    assert!(shown.contains("abs-blocked") && shown.contains("rel-blocked"), "{shown}");
    let written = dir.path().join("out");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), 100_000, "container root is zone uid 100000");
    moat.assert_nothing_running();
}

#[test]
fn bad_mounts_are_one_line_and_change_nothing() {
    let moat = Moat::with_busybox();
    let missing = moat.root().join("no-such-dir");
    let missing_mount = format!("type=bind,source={},target=/data", missing.display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-v", "/tmp:data"], "data"),
        (vec!["-v", "/tmp:/data/../etc"], ".."),
        (vec!["--mount", &missing_mount], "does not exist"),
        (vec!["-v", "/tmp:/data", "--tmpfs", "/data"], "duplicate mount point"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter());
        args.extend([BUSYBOX, "true"]);
        let out = moat.run(&args);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert!(moat.zone_files().is_empty(), "{flags:?} left a zone");
    }
    assert!(!missing.exists(), "a missing --mount source is not created");
}
