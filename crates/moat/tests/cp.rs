//! `moat cp`, both ways, as `docker cp`: Docker's destination rules, contents and modes kept,
//! container root owning what comes in, symlinks copied as links and never followed on the
//! host, container paths that stay inside the container's root, and bad input that changes
//! nothing. One pod boot holds every assertion.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{stderr, Moat, BUSYBOX};

/// Mounts on the host that belong to this test's state root.
fn mounts_under(moat: &Moat) -> Vec<String> {
    let root = moat.root().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().filter(|l| l.contains(&root)).map(str::to_string).collect()
}

/// Every path below `dir` with its type, mode and size: what "nothing changed" compares.
fn snapshot(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let meta = entry.path().symlink_metadata().expect("lstat");
            found.push(format!("{} {:o} {}", entry.path().display(), meta.mode(), meta.len()));
            if meta.is_dir() {
                walk(&entry.path(), found);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, &mut found);
    found.sort();
    found
}

fn arg(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn cp_copies_both_ways_as_docker_does_and_stays_inside() {
    let moat = Moat::with_busybox();
    moat.ok(&["pod", "create", "--name", "p"]);
    moat.ok(&["run", "-d", "--pod", "p", "--name", "c", BUSYBOX, "sleep", "600"]);

    // A host tree: a private file, an executable, a subdirectory and an absolute symlink.
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "hello\n").unwrap();
    std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(src.join("sub/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(src.join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("pw")).unwrap();

    // In: a file into a directory, a directory into a directory, a file and a directory as new
    // names, a directory's contents (`/.`), and through a `..` that Docker cleans away.
    moat.ok(&["cp", &arg(&src.join("a")), "c:/tmp/"]);
    moat.ok(&["cp", &arg(&src), "c:/tmp"]);
    moat.ok(&["cp", &arg(&src.join("a")), "c:/tmp/renamed"]);
    moat.ok(&["cp", &arg(&src), "c:/newdir"]);
    moat.ok(&["cp", &format!("{}/.", arg(&src)), "c:/home/"]);
    moat.ok(&["cp", &arg(&src.join("a")), "c:/etc/../tmp/cleaned"]);
    let script = "cat /tmp/a /tmp/renamed /tmp/cleaned; /tmp/src/sub/run.sh; stat -c '%n %a %u %g' /tmp/a /tmp/src /tmp/src/sub/run.sh /newdir/a /home/a; readlink /tmp/src/pw; touch /tmp/src/sub/by-container-root && echo writable";
    let shown = moat.ok(&["exec", "c", "sh", "-c", script]);
    let expected = [
        "hello",
        "hello",
        "hello",
        "ran",
        // Modes survive, and container root (uid 0 inside its user namespace) owns it all.
        "/tmp/a 640 0 0",
        "/tmp/src 755 0 0",
        "/tmp/src/sub/run.sh 750 0 0",
        "/newdir/a 640 0 0",
        "/home/a 640 0 0",
        // The link is a link, as it was on the host.
        "/etc/passwd",
        "writable",
    ];
    assert_eq!(shown.lines().collect::<Vec<_>>(), expected, "{shown}");

    // Out. The container makes files, a set-user-id one, links to absolute paths, a link whose
    // `..` would climb out of its root, and a named pipe.
    let make = "mkdir -p /data/d/e && echo inner > /data/d/e/f && chmod 4750 /data/d/e/f && echo top > /data/file && chmod 600 /data/file \
        && ln -s /etc/passwd /data/d/pw && ln -s /etc /data/etclink && ln -s ../../../../../../.. /data/up && mkfifo /data/fifo \
        && echo container-account >> /etc/passwd";
    moat.ok(&["exec", "c", "sh", "-c", make]);
    let out = host.path().join("out");
    std::fs::create_dir(&out).unwrap();
    moat.ok(&["cp", "c:/data/file", &format!("{}/", arg(&out))]);
    moat.ok(&["cp", "c:/data/d", &arg(&out)]);
    moat.ok(&["cp", "c:/data/d", &arg(&out.join("renamed"))]);
    moat.ok(&["cp", "c:/data/d/.", &arg(&out.join("renamed"))]);
    moat.ok(&["cp", "c:/data/etclink", &arg(&out.join("etclink"))]);
    // A trailing `/` follows the link, inside the container's root: its /etc, not the host's.
    moat.ok(&["cp", "c:/data/etclink/", &arg(&out.join("etc"))]);
    assert_eq!(std::fs::read_to_string(out.join("file")).unwrap(), "top\n");
    assert_eq!(std::fs::metadata(out.join("file")).unwrap().mode() & 0o7777, 0o600);
    let inner = std::fs::metadata(out.join("d/e/f")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("d/e/f")).unwrap(), "inner\n");
    assert_eq!(inner.mode() & 0o7777, 0o750, "set-user-id is dropped on the host");
    assert_eq!((inner.uid(), inner.gid()), (0, 0), "owned by the user running moat");
    assert_eq!(std::fs::read_link(out.join("d/pw")).unwrap(), Path::new("/etc/passwd"), "copied as the link");
    assert_eq!(std::fs::read_link(out.join("etclink")).unwrap(), Path::new("/etc"), "copied as the link, never followed on the host");
    assert!(out.join("renamed/e/f").is_file() && out.join("renamed/pw").is_symlink());
    assert!(std::fs::read_to_string(out.join("etc/passwd")).unwrap().contains("container-account"));
    assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains("container-account"));

    // A stopped container of the pod still gives its files.
    moat.ok(&["run", "--pod", "p", "--name", "done", BUSYBOX, "sh", "-c", "echo finished > /result"]);
    moat.ok(&["cp", "done:/result", &arg(&out.join("result"))]);
    assert_eq!(std::fs::read_to_string(out.join("result")).unwrap(), "finished\n");
    // A privileged container (no user namespace) gets the zone's root as owner.
    moat.ok(&["run", "-d", "--pod", "p", "--privileged", "--allow-privileged-in-pod", "--name", "priv", BUSYBOX, "sleep", "600"]);
    moat.ok(&["cp", &arg(&src.join("a")), "priv:/a"]);
    assert_eq!(moat.ok(&["exec", "priv", "stat", "-c", "%a %u", "/a"]).trim(), "640 0");

    moat.ok(&["run", "-d", "--pod", "p", "--read-only", "--name", "ro", BUSYBOX, "sleep", "600"]);

    // `..` through a symlink stops at the container's root: the zone's own /run/moat (its
    // share, the containers' roots) is out of reach both ways, and a write lands inside.
    let escape = moat.run(&["cp", "c:/data/up/run/moat", &arg(&out.join("zone"))]);
    assert!(stderr(&escape).contains("/data/up/run/moat does not exist in the container"), "{}", stderr(&escape));
    moat.ok(&["cp", &arg(&src.join("a")), "c:/data/up/tmp/via-up"]);
    assert_eq!(moat.ok(&["exec", "c", "cat", "/tmp/via-up"]).trim(), "hello");
    let escape = moat.run(&["cp", &arg(&src.join("a")), "c:/data/up/run/moat/share/planted"]);
    assert!(stderr(&escape).contains("does not exist in the container"), "{}", stderr(&escape));

    // Bad input: one line, exit 1, nothing changed on either side.
    let missing = host.path().join("missing");
    let file_dest = format!("{}/", arg(&out.join("file")));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![arg(&src.join("a")), "nosuch:/tmp".into()], "no such container: nosuch"),
        (vec!["nosuch:/etc/passwd".into(), arg(&out)], "no such container: nosuch"),
        (vec![arg(&src.join("a")), "c:tmp/x".into()], "not absolute"),
        (vec!["c:etc/passwd".into(), arg(&out)], "not absolute"),
        (vec![arg(&src.join("a")), "c:/tmp/../../etc/x".into()], "climbs above the container's root"),
        (vec!["c:/../../etc/passwd".into(), arg(&out)], "climbs above the container's root"),
        (vec![arg(&missing), "c:/tmp/".into()], "no such file or directory on the host"),
        (vec!["c:/no/such/file".into(), arg(&out)], "/no/such/file does not exist in the container"),
        (vec![arg(&src.join("a")), "c:/no/such/dir/x".into()], "destination directory /no/such/dir does not exist"),
        (vec![arg(&src.join("a")), "c:/no-such-dir/".into()], "destination directory /no-such-dir does not exist"),
        (vec!["c:/data/file".into(), arg(&missing.join("x"))], "does not exist; create it first"),
        (vec![arg(&src), "c:/data/file".into()], "cannot copy a directory to a file"),
        (vec!["c:/data/d".into(), arg(&out.join("file"))], "cannot copy a directory to a file"),
        (vec!["c:/data/file".into(), file_dest], "is not a directory"),
        (vec!["c:/data/fifo".into(), arg(&out)], "is a named pipe"),
        (vec![arg(&src.join("a")), "c:/proc/x".into()], "a mount in the container"),
        (vec![arg(&src.join("a")), "ro:/tmp/".into()], "root filesystem is read-only"),
        (vec![arg(&src), arg(&out)], "name the container's side as CONTAINER:PATH"),
        (vec!["c:/data/file".into(), "done:/x".into()], "between two containers"),
    ];
    let listing = "ls -lanR /tmp /data /home /newdir";
    let before = (snapshot(host.path()), moat.ok(&["exec", "c", "sh", "-c", listing]));
    for (args, expected) in cases {
        let mut full = vec!["cp"];
        full.extend(args.iter().map(String::as_str));
        let out = moat.run(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!((snapshot(host.path()), moat.ok(&["exec", "c", "sh", "-c", listing])), before, "bad input changed something");
    assert_eq!(mounts_under(&moat).iter().filter(|l| l.contains("/copies/") || l.contains("/share/cp-")).count(), 0, "every copy's mounts are gone");

    moat.ok(&["pod", "rm", "-f", "p"]);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty(), "{:?}", moat.zone_files());
    assert_eq!(mounts_under(&moat), Vec::<String>::new(), "no mount is left behind");
}
