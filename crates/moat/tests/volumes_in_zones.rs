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
    // The last act writes 4 MiB: all of it is on the host when `run --rm` returns, though the
    // zone's QEMU is killed once the guest has synced.
    let script = "echo written > /data/out; cat /data/abs 2>&1 || echo abs-blocked; cat /data/rel 2>&1 || echo rel-blocked; dd if=/dev/zero of=/data/big bs=64k count=64 2>/dev/null";
    let out = moat.run(&["run", "--rm", "--mount", &mount, BUSYBOX, "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(!shown.contains("host secret"), "a symlink led out of the share: {shown}");
    assert!(shown.contains("abs-blocked") && shown.contains("rel-blocked"), "{shown}");
    let written = dir.path().join("out");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written\n");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), 100_000, "container root is zone uid 100000");
    assert_eq!(std::fs::metadata(dir.path().join("big")).unwrap().len(), 4 << 20);
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

/// The reference the image with `VOLUME /data` is imported under.
const VOLUME_IMAGE: &str = "volume:test";

/// Where a container sees its root's files (`stat`), what /data holds and what its mount is.
const LOOK_AT_DATA: &str = "stat -c '%u:%g %a %n' /data /data/seed; cat /data/seed; echo new > /data/new && stat -c '%u:%g %n' /data/new; echo \"fstype: $(awk '$5 == \"/data\" { for (i = 7; i <= NF; i++) if ($i == \"-\") print $(i + 1) }' /proc/self/mountinfo)\"";

/// The scratch disk's container directories that hold an image volume, as a privileged
/// container of the zone counts them: the scratch disk mounted a second time (the same
/// filesystem, so read-write as the zone has it).
const COUNT_IMAGE_VOLUMES: &str = "for d in /sys/block/vd*; do [ \"$(cat $d/serial)\" = moat-scratch ] && dev=/dev/${d##*/}; done; mkdir -p /scratch; mountpoint -q /scratch || mount $dev /scratch; ls -d /scratch/*/volumes/* | wc -l";

#[test]
fn an_images_volumes_are_native_seeded_overridable_and_go_with_their_container() {
    let moat = Moat::new();
    moat.ok(&["image", "import", &common::volume_image_layout().to_string_lossy(), "--name", VOLUME_IMAGE]);
    // One zone: a pod holding a privileged container (which can look at the zone's disk) and
    // the containers under test.
    moat.ok(&["pod", "create", "--name", "iv"]);
    moat.ok(&["run", "-d", "--pod", "iv", "--privileged", "--allow-privileged-in-pod", "--name", "priv", VOLUME_IMAGE, "sleep", "600"]);

    // A privileged container's /data: the scratch disk's ext4, seeded from the image with its
    // owners and modes, writable, and a place for an overlay (as nested storage makes), which
    // the container's own root, an overlay itself, is not.
    let overlay = "cd /data && mkdir l u w m && echo low > l/f && mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m && echo up > m/g && echo \"overlay: $(cat m/f u/g | tr '\\n' ' ')\"
mkdir /tmp/l /tmp/u /tmp/w /tmp/m; mount -t overlay overlay -o lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w /tmp/m 2>/dev/null || echo 'on the root: refused'";
    let privileged = moat.ok(&["exec", "priv", "sh", "-c", &format!("{LOOK_AT_DATA}\n{overlay}")]);
    assert_eq!(
        privileged,
        "1000:1000 750 /data\n1000:1000 640 /data/seed\nfrom the image\n0:0 /data/new\nfstype: ext4\noverlay: low up \non the root: refused\n"
    );

    // In a user namespace the container sees the image's owners, and its root's files as 0.
    let unprivileged = moat.ok(&["run", "--pod", "iv", "--name", "un", VOLUME_IMAGE, "sh", "-c", LOOK_AT_DATA]);
    assert_eq!(unprivileged, "1000:1000 750 /data\n1000:1000 640 /data/seed\nfrom the image\n0:0 /data/new\nfstype: ext4\n");

    // `-v` at the same path wins, as in Docker: the host directory, no image volume.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "from the host\n").unwrap();
    let bind = format!("{}:/data", host.path().display());
    let overridden = moat.ok(&["run", "--rm", "--pod", "iv", "-v", &bind, VOLUME_IMAGE, "sh", "-c", "ls /data; awk '$5 == \"/data\" && / - ext4 /' /proc/self/mountinfo | wc -l"]);
    assert_eq!(overridden, "marker\n0\n", "no ext4 volume at /data");

    // The volumes live in their containers' directories on the scratch disk: priv's and un's;
    // the --rm one went already. `rm -v` (Docker's flag) and `rm` take them with the container.
    assert_eq!(moat.ok(&["exec", "priv", "sh", "-c", COUNT_IMAGE_VOLUMES]).trim(), "2");
    moat.ok(&["rm", "-v", "un"]);
    assert_eq!(moat.ok(&["exec", "priv", "sh", "-c", COUNT_IMAGE_VOLUMES]).trim(), "1");
    moat.ok(&["run", "--rm", "--pod", "iv", VOLUME_IMAGE, "touch", "/data/x"]);
    assert_eq!(moat.ok(&["exec", "priv", "sh", "-c", COUNT_IMAGE_VOLUMES]).trim(), "1", "--rm takes its volume");

    moat.ok(&["pod", "rm", "-f", "iv"]);
    moat.assert_nothing_running();
}
