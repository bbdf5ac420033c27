//! `ctr run` with moat's shim against a real containerd: the container runs in a zone, its
//! exit status reaches ctr, and nothing is left afterwards.

mod common;

use common::{host_kernel, stdout, Containerd};

/// What the container shows of itself: its capabilities, its user namespace's map, the owner
/// of an image file as it sees it, and whether its root may write where the image's root owns.
const SELF_REPORT: &str = "grep CapEff /proc/self/status; cat /proc/self/uid_map; stat -c %u /etc/passwd; touch /etc/new && echo wrote";

/// Each whitespace-separated line of `text`, as words.
fn words(text: &str) -> Vec<Vec<&str>> {
    text.lines().map(|l| l.split_whitespace().collect()).collect()
}

#[test]
fn ctr_run_runs_the_container_in_a_zone_and_passes_its_exit_status() {
    let containerd = Containerd::start();
    let out = containerd.run(&["--rm"], "t1", &["sh", "-c", &format!("echo hello; uname -r; {SELF_REPORT}; exit 7")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "ctr's status is the task's; stdout {text:?}, stderr {}", String::from_utf8_lossy(&out.stderr));
    let lines = words(&text);
    assert_eq!(lines.first(), Some(&vec!["hello"]), "{text:?}");
    let kernel = lines.get(1).and_then(|l| l.first()).copied().unwrap_or_default();
    assert!(!kernel.is_empty() && kernel != host_kernel(), "the zone's kernel, not the host's {}: {kernel:?}", host_kernel());
    // The seed's default: containerd's capabilities, in a user namespace of the container's own
    // whose root owns the image's files.
    assert_eq!(lines[2..], [vec!["CapEff:", "00000000a80425fb"], vec!["0", "100000", "65536"], vec!["0"], vec!["wrote"]], "{text:?}");
    let images = std::fs::read_dir(containerd.dir().join("moat/containerd-rootfs")).expect("the rootfs image cache").flatten().filter(|e| e.path().extension().is_some_and(|x| x == "erofs")).count();
    assert_eq!(images, 1, "the snapshot's image, kept for the next container");

    // The runtime handler's option turns the user namespace off: the spec runs as given.
    let options = containerd.dir().join("moat-options.json");
    std::fs::write(&options, r#"{"user_namespace": false}"#).unwrap();
    let out = containerd.run(&["--rm", "--runtime-config-path", options.to_str().unwrap()], "t2", &["sh", "-c", SELF_REPORT]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text:?} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(words(&text), [vec!["CapEff:", "00000000a80425fb"], vec!["0", "0", "4294967295"], vec!["0"], vec!["wrote"]], "{text:?}");
    let out = containerd.run(&["--rm", "--runtime-config-path", "/no/such/options.json"], "t3", &["true"]);
    assert!(!out.status.success(), "a missing options file fails the task");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/options.json"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = containerd.ctr(&["containers", "rm", "t3"]);
    containerd.assert_clean();
}

#[test]
fn privileged_sees_the_zone_kernel_exec_joins_a_task_and_kill_stops_it() {
    let containerd = Containerd::start();
    let out = containerd.run(&["--rm", "--privileged"], "p1", &["sh", "-c", "grep CapEff /proc/self/status; dmesg | grep -m1 'Linux version'"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text:?} {}", String::from_utf8_lossy(&out.stderr));
    let caps = text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|hex| u64::from_str_radix(hex, 16).ok()).expect("CapEff");
    // Every capability containerd holds, CAP_SYS_ADMIN and CAP_SYS_MODULE among them.
    assert_eq!(caps & (1 << 21 | 1 << 16), 1 << 21 | 1 << 16, "{text:?}");
    assert!(text.contains("Linux version") && !text.contains(&host_kernel()), "dmesg is the zone's: {text:?}");

    containerd.ok(&["run", "-d", "--runtime", common::shim(), common::BUSYBOX, "k1", "sleep", "600"]);
    assert!(containerd.ok(&["task", "ls"]).contains("RUNNING"));
    let exec = containerd.ctr(&["task", "exec", "--exec-id", "e1", "k1", "sh", "-c", "echo in-exec; pidof sleep; exit 4"]);
    let text = stdout(&exec);
    assert_eq!(exec.status.code(), Some(4), "the exec'd process's status: {text:?} {}", String::from_utf8_lossy(&exec.stderr));
    assert!(text.starts_with("in-exec\n") && text.lines().nth(1).is_some_and(|pid| pid.trim() == "1"), "it runs beside the task's own process (pid 1): {text:?}");
    task_metrics_come_from_the_containers_cgroup(&containerd);
    containerd.ok(&["task", "kill", "-s", "SIGKILL", "k1"]);
    // Generous: under a loaded TCG host the zone's report of the kill has taken over 30 s once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !containerd.ok(&["task", "ls"]).contains("STOPPED") {
        assert!(std::time::Instant::now() < deadline, "the task did not stop: {}\n{}", containerd.ok(&["task", "ls"]), zone_logs(&containerd));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    containerd.ok(&["task", "rm", "k1"]);
    containerd.ok(&["containers", "rm", "k1"]);
    an_oom_kill_is_a_task_oom_event_before_the_exit(&containerd);
    containerd.assert_clean();
}

/// `ctr task metrics` shows containerd's cgroup v2 metrics of the running task `k1`.
fn task_metrics_come_from_the_containers_cgroup(containerd: &Containerd) {
    let table = containerd.ok(&["task", "metrics", "k1"]);
    println!("ctr task metrics k1:\n{table}");
    let value = |name: &str| table.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or_else(|| panic!("no {name}: {table}"));
    assert!(value("pids.current") >= 1, "{table}");
    assert!(value("memory.usage") > 0, "{table}");
    let json = containerd.ok(&["task", "metrics", "--format", "json", "k1"]);
    let metrics: serde_json::Value = serde_json::from_str(&json).expect("JSON metrics");
    assert!(metrics["cpu"]["usage_usec"].as_u64().is_some_and(|usec| usec > 0), "{json}");
}

/// A container that outgrows its cgroup limit (its zone's 512 MiB less the zone's reserve:
/// `--memory-limit` does not size a shim's zone): containerd hears `/tasks/oom` for it, then its
/// exit with SIGKILL's status.
fn an_oom_kill_is_a_task_oom_event_before_the_exit(containerd: &Containerd) {
    let mut events = containerd.spawn_ctr(&["events"]);
    let out = containerd.run(&["--rm"], "o1", &["dd", "if=/dev/zero", "of=/dev/null", "bs=450M", "count=1"]);
    let _ = events.kill();
    let seen = String::from_utf8_lossy(&events.wait_with_output().expect("ctr events' output").stdout).into_owned();
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    let topics: Vec<&str> = seen.lines().filter(|l| l.contains("\"o1\"")).filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/"))).collect();
    let (oom, exit) = (topics.iter().position(|t| *t == "/tasks/oom"), topics.iter().position(|t| *t == "/tasks/exit"));
    assert!(oom.is_some() && oom < exit, "an OOM event, then the exit: {seen}");
}

/// The last lines of every zone's supervisor and console logs, for a failure's message.
fn zone_logs(containerd: &Containerd) -> String {
    let mut shown = String::new();
    for zone in std::fs::read_dir(containerd.dir().join("moat/zones")).into_iter().flatten().flatten() {
        for log in ["supervisor.log", "console.log"] {
            let text = std::fs::read_to_string(zone.path().join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            shown += &format!("--- {}\n{}\n", zone.path().join(log).display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
    shown
}
