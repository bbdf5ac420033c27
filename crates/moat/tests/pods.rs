//! Pods: one zone, several containers created after its boot, sharing the pod's network and
//! each with its own PID 1; the seed's placement rule for privileged containers.

mod common;

use common::{stderr, stderr_raw, stdout, Moat, BUSYBOX};

/// Mounts on the host that belong to this test's state root.
fn mounts_under(moat: &Moat) -> Vec<String> {
    let root = moat.root().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().filter(|l| l.contains(&root)).map(str::to_string).collect()
}

#[test]
fn a_pod_holds_containers_that_share_its_loopback_and_keep_their_own_pid_1() {
    let moat = Moat::with_busybox();
    assert_eq!(moat.ok(&["pod", "create", "--name", "p", "--memory", "384m"]).trim(), "p");
    let booted = std::time::Instant::now();
    // Bad input: one line, nothing changed.
    for (args, expected) in [
        (vec!["pod", "create", "--name", "p"], "already in use"),
        (vec!["run", "-d", "--pod", "nosuchpod", BUSYBOX, "true"], "no such pod: nosuchpod"),
        (vec!["run", "-d", "--pod", "p", "--memory", "256m", BUSYBOX, "true"], "--memory is set on the pod"),
        (vec!["run", "-d", "--pod", "p", "--privileged", BUSYBOX, "true"], "--allow-privileged-in-pod"),
    ] {
        let out = moat.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert!(!moat.ok(&["ps", "-a"]).contains("nosuchpod"));

    // A writes into a named volume and serves on the pod's loopback; B reads the file and
    // reaches A over 127.0.0.1.
    let serve = "echo from-a > /data/note && mkdir -p /www && echo served-by-a > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www";
    moat.ok(&["run", "-d", "--pod", "p", "--name", "a", "-v", "shared:/data", BUSYBOX, "sh", "-c", serve]);
    moat.ok(&["run", "-d", "--pod", "p", "--name", "b", "-v", "shared:/data", BUSYBOX, "sleep", "600"]);
    assert_eq!(moat.ok(&["exec", "b", "cat", "/data/note"]).trim(), "from-a");
    let in_use = moat.run(&["volume", "rm", "shared"]);
    assert!(stderr(&in_use).contains("in use"), "{}", stderr(&in_use));
    let fetched = moat.ok(&["exec", "b", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.5; done; exit 1"]);
    assert_eq!(fetched.trim(), "served-by-a");

    // Each container has its own PID 1, and exec reaches each.
    let pid1_a = moat.ok(&["exec", "a", "cat", "/proc/1/comm"]);
    let pid1_b = moat.ok(&["exec", "b", "cat", "/proc/1/comm"]);
    assert_eq!((pid1_a.trim(), pid1_b.trim()), ("httpd", "sleep"));
    // One hostname for the pod.
    assert_eq!(moat.ok(&["exec", "a", "hostname"]).trim(), "p");
    // The pod's network, IPC and UTS namespaces are shared; PID and mount namespaces are not.
    let namespaces = "for ns in net ipc uts pid mnt; do readlink /proc/self/ns/$ns; done";
    let (ns_a, ns_b) = (moat.ok(&["exec", "a", "sh", "-c", namespaces]), moat.ok(&["exec", "b", "sh", "-c", namespaces]));
    let (ns_a, ns_b): (Vec<&str>, Vec<&str>) = (ns_a.lines().collect(), ns_b.lines().collect());
    assert_eq!(ns_a.len(), 5, "{ns_a:?}");
    assert_eq!(ns_a[..3], ns_b[..3], "net, ipc, uts shared");
    assert!(ns_a[3] != ns_b[3] && ns_a[4] != ns_b[4], "pid and mnt their own: {ns_a:?} {ns_b:?}");

    // ps shows the pod of each container.
    let ps = moat.ok(&["ps"]);
    for name in ["a", "b"] {
        assert!(ps.lines().any(|l| l.ends_with(&format!(" {name}")) && l.contains(" p ")), "{ps}");
    }

    // Killing one leaves the other running.
    moat.ok(&["kill", "a"]);
    assert_eq!(moat.ok(&["wait", "a"]).trim(), "137");
    assert_eq!(moat.ok(&["exec", "b", "echo", "still here"]).trim(), "still here");
    let ls = moat.ok(&["pod", "ls"]);
    assert!(ls.lines().any(|l| l.contains(" p ") && l.contains("running")), "{ls}");

    // An image imported after the pod booted runs in it, in a container created 30 s after the
    // boot.
    let layout = tempfile::tempdir().unwrap();
    let built = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/busybox-image.sh")).arg(layout.path().join("img")).status().unwrap();
    assert!(built.success());
    moat.ok(&["image", "import", layout.path().join("img").to_str().unwrap(), "--name", "late:1"]);
    std::thread::sleep(std::time::Duration::from_secs(30).saturating_sub(booted.elapsed()));
    assert_eq!(moat.ok(&["run", "--rm", "--pod", "p", "late:1", "echo", "late image"]).trim(), "late image");
    assert!(!moat.ok(&["ps", "-a"]).contains("late:1"), "--rm removed it from the pod");

    // A privileged container enters a shared pod only when asked, with a warning.
    let out = moat.run(&["run", "--rm", "--pod", "p", "--privileged", "--allow-privileged-in-pod", BUSYBOX, "sh", "-c", "grep ^CapEff /proc/self/status"]);
    assert!(out.status.success(), "{}: {}{}", out.status, stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("000001ffffffffff"), "{}", stdout(&out));
    let warnings: Vec<String> = stderr_raw(&out).lines().map(str::to_string).collect();
    assert_eq!(warnings.iter().filter(|l| l.contains("within its reach")).count(), 1, "one warning line: {warnings:?}");
    assert!(warnings.iter().all(|l| l.starts_with("moat: warning:")), "{warnings:?}");

    // A removed container is gone from the zone and the record; the pod goes with rm -f.
    moat.ok(&["rm", "a"]);
    assert!(!moat.ok(&["ps", "-a"]).lines().any(|l| l.ends_with(" a")));
    // The pod's supervisor journals the removals it makes: the two --rm containers', then a's.
    let destroyed = moat.ok(&["events", "--since", "0", "--until", "now", "--filter", "event=destroy"]);
    assert_eq!(destroyed.lines().count(), 3, "{destroyed}");
    assert!(destroyed.lines().nth(2).is_some_and(|l| l.ends_with(", name=a)")), "{destroyed}");
    let inspect: serde_json::Value = serde_json::from_str(&moat.ok(&["pod", "inspect", "p"])).unwrap();
    assert_eq!(inspect[0]["Containers"].as_array().map(Vec::len), Some(1), "{inspect}");
    let refused = moat.run(&["pod", "rm", "p"]);
    assert!(stderr(&refused).contains("still has containers"), "{}", stderr(&refused));
    moat.ok(&["pod", "rm", "-f", "p"]);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty(), "{:?}", moat.zone_files());
    assert_eq!(mounts_under(&moat), Vec::<String>::new(), "no mount is left behind");
    // The volume outlives the pod, with what A wrote; no container uses it any more.
    let data = moat.root().join("volumes/shared/_data/note");
    assert_eq!(std::fs::read_to_string(&data).unwrap().trim(), "from-a");
    moat.ok(&["volume", "rm", "shared"]);
}

#[test]
fn a_pod_refuses_containers_past_its_bound() {
    let moat = Moat::with_busybox();
    moat.ok(&["pod", "create", "--name", "full"]);
    for n in 0..moat_proto::MAX_CONTAINERS {
        // Created and stopped containers count until removed; `true` exits at once.
        moat.ok(&["run", "--pod", "full", "--name", &format!("c{n}"), BUSYBOX, "true"]);
    }
    let out = moat.run(&["run", "--pod", "full", "--name", "one-too-many", BUSYBOX, "true"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("already holds {}", moat_proto::MAX_CONTAINERS)), "{}", stderr(&out));
    moat.ok(&["rm", "c0"]);
    moat.ok(&["run", "--rm", "--pod", "full", BUSYBOX, "true"]);
    moat.ok(&["pod", "rm", "-f", "full"]);
    moat.assert_nothing_running();
}

#[test]
fn an_oom_kill_in_a_pod_is_that_containers_alone() {
    let moat = Moat::with_busybox();
    moat.ok(&["pod", "create", "--name", "oom", "--memory", "256m"]);
    moat.ok(&["run", "-d", "--pod", "oom", "--name", "calm", BUSYBOX, "sleep", "600"]);
    // The pod's containers each get a cgroup limit of 144 MiB in a 256 MiB zone.
    let out = moat.run(&["run", "--rm", "--pod", "oom", BUSYBOX, "dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("OOM-killed"), "{}", stderr(&out));
    assert_eq!(moat.ok(&["exec", "calm", "echo", "alive"]).trim(), "alive", "the other container runs on");
    assert!(moat.ok(&["ps"]).lines().any(|l| l.ends_with(" calm") && l.contains("Up")));
    moat.ok(&["pod", "rm", "-f", "oom"]);
    moat.assert_nothing_running();
}
