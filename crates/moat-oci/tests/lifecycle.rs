//! runc-style direct calls: the OCI lifecycle of one container in one zone, the keeper's exit
//! status, and bad input that changes nothing.

mod common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::{stderr, Oci};

/// The keeper's exit code, once it ends: this test process adopted it (see the subreaper below).
fn wait_exit_code(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a pid this process reaps as subreaper; status is a valid out-pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "the keeper ended by a signal: {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn create_start_exec_kill_delete_in_one_zone() {
    // conmon is a subreaper and waits on the keeper; so does this test.
    // SAFETY: prctl with plain integer arguments.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    let oci = Oci::new();
    let bundle = oci.bundle("life", &["sh", "-c", "echo hello from the zone; grep ^CapEff /proc/self/status; exec sleep 1000"]);
    let (out_path, pid_path) = (oci.root().join("out"), oci.root().join("pid"));
    let status = oci
        .cmd(&["create", "--bundle", bundle.to_str().unwrap(), "--pid-file", pid_path.to_str().unwrap(), "c1"])
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(oci.root().join("err")).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "create: {}", std::fs::read_to_string(oci.root().join("err")).unwrap());
    let keeper: i32 = std::fs::read_to_string(&pid_path).unwrap().parse().unwrap();
    let state = oci.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], keeper, "state names the keeper");
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    assert_eq!(state["ociVersion"], "1.0.2");

    oci.ok(&["start", "c1"]);
    assert_eq!(oci.status("c1"), "running");
    let again = oci.run(&["start", "c1"]);
    assert!(!again.status.success());
    assert_eq!(stderr(&again).lines().count(), 1, "one error line: {}", stderr(&again));
    assert!(stderr(&again).contains("running"), "{}", stderr(&again));
    let refused = oci.run(&["delete", "c1"]);
    assert!(!refused.status.success() && stderr(&refused).lines().count() == 1, "{}", stderr(&refused));
    assert_eq!(oci.status("c1"), "running", "refused commands change nothing");

    assert_eq!(oci.ok(&["exec", "c1", "sh", "-c", "echo exec-ok"]).trim(), "exec-ok");
    assert_eq!(oci.run(&["exec", "c1", "sh", "-c", "exit 5"]).status.code(), Some(5));
    let ps: Vec<i32> = serde_json::from_str(&oci.ok(&["ps", "--format", "json", "c1"])).unwrap();
    assert_eq!(ps, [keeper]);

    oci.ok(&["kill", "c1", "KILL"]);
    assert_eq!(wait_exit_code(keeper), 137, "the keeper ends with the container's status");
    let deadline = Instant::now() + Duration::from_secs(30);
    while oci.status("c1") != "stopped" {
        assert!(Instant::now() < deadline, "never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(oci.state("c1")["pid"], 0);
    let output = std::fs::read_to_string(&out_path).unwrap();
    assert!(output.contains("hello from the zone"), "{output}");
    // umoci's spec: AUDIT_WRITE, KILL and NET_BIND_SERVICE, as given.
    assert!(output.contains("CapEff:\t0000000020000420"), "{output}");
    let no_process = oci.run(&["kill", "c1", "TERM"]);
    assert!(!no_process.status.success() && stderr(&no_process).contains("stopped"), "{}", stderr(&no_process));
    oci.ok(&["delete", "c1"]);
    let gone = oci.run(&["state", "c1"]);
    assert!(!gone.status.success() && stderr(&gone).contains("does not exist"), "{}", stderr(&gone));
    oci.assert_no_zone_left();
}

#[test]
fn a_container_killed_before_start_stops_and_deletes() {
    // SAFETY: prctl with plain integer arguments.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    let oci = Oci::new();
    let bundle = oci.bundle("early", &["true"]);
    let pid_path = oci.root().join("pid");
    let status = oci.cmd(&["create", "-b", bundle.to_str().unwrap(), "--pid-file", pid_path.to_str().unwrap(), "c2"]).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success());
    let keeper: i32 = std::fs::read_to_string(&pid_path).unwrap().parse().unwrap();
    let refused = oci.run(&["delete", "c2"]);
    assert!(!refused.status.success() && stderr(&refused).contains("created"), "only a stopped container is deleted without --force: {}", stderr(&refused));
    oci.ok(&["kill", "c2", "TERM"]);
    assert_eq!(wait_exit_code(keeper), 128 + libc::SIGTERM);
    assert_eq!(oci.status("c2"), "stopped");
    let start = oci.run(&["start", "c2"]);
    assert!(!start.status.success() && stderr(&start).contains("stopped"), "{}", stderr(&start));
    oci.ok(&["delete", "c2"]);
    oci.assert_no_zone_left();
}

#[test]
fn bad_input_gets_one_line_and_changes_nothing() {
    let oci = Oci::new();
    for args in [&["state", "nope"][..], &["start", "nope"], &["kill", "nope", "KILL"], &["delete", "nope"], &["exec", "nope", "true"], &["state", "../x"]] {
        let out = oci.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("does not exist"), "{args:?}: {}", stderr(&out));
    }
    let missing = oci.run(&["create", "--bundle", "/nonexistent/bundle", "c"]);
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing).lines().count(), 1, "{}", stderr(&missing));
    assert!(stderr(&missing).contains("/nonexistent/bundle"), "{}", stderr(&missing));

    let malformed = oci.root().join("bundle-bad");
    std::fs::create_dir_all(&malformed).unwrap();
    std::fs::write(malformed.join("config.json"), "{ \"ociVersion\": ").unwrap();
    let out = oci.run(&["create", "--bundle", malformed.to_str().unwrap(), "c"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));

    let bundle = oci.bundle("ok", &["true"]);
    let bad_id = oci.run(&["create", "--bundle", bundle.to_str().unwrap(), "../escape"]);
    assert!(!bad_id.status.success() && stderr(&bad_id).contains("invalid"), "{}", stderr(&bad_id));
    let bad_signal = oci.run(&["kill", "nope", "SIGNOPE"]);
    assert!(!bad_signal.status.success() && stderr(&bad_signal).contains("unknown signal"), "{}", stderr(&bad_signal));

    // conmon's --log and --log-format json: the error is a JSON line there too.
    let log = oci.root().join("log.json");
    let logged = oci.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "--systemd-cgroup", "state", "nope"]);
    assert!(!logged.status.success());
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("nope does not exist"), "{line}");

    let records: Vec<_> = std::fs::read_dir(oci.root().join("oci")).unwrap().flatten().collect();
    assert!(records.is_empty(), "nothing was created: {records:?}");
    oci.assert_no_zone_left();
}

#[test]
fn version_features_and_spec() {
    let oci = Oci::new();
    assert!(oci.ok(&["--version"]).contains("spec: 1.0.2"));
    let features: serde_json::Value = serde_json::from_str(&oci.ok(&["features"])).unwrap();
    assert_eq!(features["linux"]["capabilities"].as_array().unwrap().len(), 41);
    let dir = oci.root().join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    oci.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    let again = oci.run(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!again.status.success() && stderr(&again).contains("already exists"));
}
