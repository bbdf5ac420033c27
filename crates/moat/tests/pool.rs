//! The warm pool: `moat pool set` keeps zones booted ahead, a `moat run` of their shape takes
//! one (which then is that container's own zone, never pooled again), the keeper refills the
//! pool, and `--size 0` empties it and ends the keeper.

mod common;

use std::time::{Duration, Instant};

use common::{Moat, BUSYBOX};

/// `moat pool ls --format json`.
fn pool(moat: &Moat) -> serde_json::Value {
    serde_json::from_str(&moat.ok(&["pool", "ls", "--format", "json"])).expect("pool ls prints JSON")
}

/// The ids of the pool's running zones.
fn ready(moat: &Moat) -> Vec<String> {
    pool(moat)["zones"].as_array().expect("zones").iter().filter(|z| z["state"] == "running").map(|z| z["id"].as_str().expect("an id").to_string()).collect()
}

/// Wait until `check` holds of the pool, or panic after two minutes.
fn wait_for(moat: &Moat, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown = pool(moat);
        if check(&shown) {
            return shown;
        }
        assert!(Instant::now() < deadline, "{what}: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_run_takes_a_pooled_zone_the_keeper_refills_it_and_size_0_ends_it() {
    let moat = Moat::with_busybox();
    assert!(moat.ok(&["pool", "set", "--size", "1", "--memory", "256m"]).contains("1 zone(s) of 256m"));
    let booted = wait_for(&moat, "a pooled zone boots", |p| p["zones"].as_array().is_some_and(|z| z.len() == 1 && ["preparing", "running"].contains(&z[0]["state"].as_str().unwrap_or(""))));
    let pooled = booted["zones"][0]["id"].as_str().expect("an id").to_string();
    assert!(!moat.ok(&["pod", "ls"]).contains(&pooled), "a pooled zone is no pod");
    // Once booted, the keeper has it prepare for a plain run (the runtime compiles the default
    // seccomp filter through a throwaway container), and only then is it shown as running.
    wait_for(&moat, "the pooled zone is prepared", |p| p["zones"][0]["state"] == "running");
    assert!(moat.ok(&["zone", "logs", &pooled]).contains("zone prepared for its first container"), "{}", moat.ok(&["zone", "logs", &pooled]));

    moat.ok(&["run", "-d", "--name", "w", "--memory", "256m", BUSYBOX, "sleep", "600"]);
    let container = &serde_json::from_str::<serde_json::Value>(&moat.ok(&["inspect", "w"])).expect("inspect")[0];
    assert_eq!(container["Moat"]["Zone"], pooled.as_str(), "the run took the pooled zone: {container}");
    assert_eq!(container["Id"], pooled.as_str(), "and its id, as a zone booted for it would have");
    let events = moat.ok(&["events", "--since", "1h", "--until", "now", "--format", "json", "--filter", "container=w"]);
    assert!(events.lines().any(|l| l.contains("\"action\":\"create\"")), "a claimed zone's container is created like any other: {events}");
    // The filter the run's container got (from the runtime's cache) is in force.
    let status = moat.ok(&["exec", "w", "grep", "^Seccomp", "/proc/1/status"]);
    assert!(status.contains("Seccomp:\t2") && status.contains("Seccomp_filters:\t1"), "{status}");
    let denied = moat.run(&["exec", "w", "unshare", "-U", "true"]);
    assert!(!denied.status.success() && common::stderr(&denied).contains("Operation not permitted"), "unshare(2) is refused: {}", common::stderr(&denied));
    let uptime = moat.ok(&["exec", "w", "cat", "/proc/uptime"]);
    println!("the claimed zone's uptime at exec: {uptime}");

    let refilled = wait_for(&moat, "the keeper refills the pool", |p| p["zones"].as_array().is_some_and(|z| z.len() == 1 && z[0]["state"] == "running" && z[0]["id"] != pooled.as_str()));
    let fresh = refilled["zones"][0]["id"].as_str().expect("an id").to_string();

    // Another shape boots cold and leaves the pool alone.
    let other = moat.ok(&["run", "--rm", "--memory", "384m", BUSYBOX, "sh", "-c", "grep MemTotal /proc/meminfo"]);
    assert!(other.contains("MemTotal"), "{other}");
    assert_eq!(ready(&moat), std::slice::from_ref(&fresh));
    // So does the pool's shape on the other kernel: the pooled zone booted moat's.
    let out = moat.run_with_env(("MOAT_KERNEL", "debian"), &["run", "--rm", "--memory", "256m", BUSYBOX, "uname", "-r"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).trim().ends_with("-cloud-amd64"), "a cold zone on Debian's kernel: {}", common::stdout(&out));
    assert_eq!(ready(&moat), [fresh]);

    // The claimed zone is the container's own: it goes with it.
    moat.ok(&["rm", "-f", "w"]);
    assert!(!moat.ok(&["zone", "ls"]).contains(&pooled), "the claimed zone went with its container");

    // Bad settings: one line each, and the pool stays as it was.
    for bad in [&["--size", "65"][..], &["--size", "1", "--memory", "12x"], &["--size", "1", "--cpus", "0"]] {
        let out = moat.run(&[&["pool", "set"][..], bad].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.trim().lines().count() == 1, "{bad:?}: {stderr}");
    }
    assert_eq!(pool(&moat)["settings"]["memory"], "256m");

    moat.ok(&["pool", "set", "--size", "0"]);
    wait_for(&moat, "--size 0 empties the pool and ends the keeper", |p| p["zones"].as_array().is_some_and(Vec::is_empty) && p["keeper"] == false);
    moat.assert_nothing_running();
    assert_eq!(moat.zone_files(), Vec::<std::path::PathBuf>::new(), "no zone is left");
}
