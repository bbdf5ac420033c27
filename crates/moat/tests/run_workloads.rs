//! `moat run` end to end: real zones, a real image, the seed's transcripts on real output.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{stderr, stdout, Moat, BUSYBOX};

/// `grep ^Cap /proc/self/status`, as the seed runs it.
fn cap_lines(moat: &Moat, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[BUSYBOX, "grep", "^Cap", "/proc/self/status"]);
    moat.ok(&args)
}

#[test]
fn unprivileged_capabilities_are_dockers_defaults() {
    let moat = Moat::with_busybox();
    assert_eq!(
        cap_lines(&moat, &[]),
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    );
    assert!(moat.zone_files().is_empty(), "--rm removes the zone: {:?}", moat.zone_files());
    moat.assert_nothing_running();
}

/// crun runs containers by default; `MOAT_OCI_RUNTIME=runc` picks runc, to compare the two. The
/// zone's kernel command line names the runtime the host chose, and a missing command reads the
/// same under both: one line, Docker's 127.
#[test]
fn either_oci_runtime_runs_the_container() {
    let moat = Moat::with_busybox();
    for runtime in ["runc", "crun"] {
        let run = |args: &[&str]| moat.cmd(args).env("MOAT_OCI_RUNTIME", runtime).output().expect("running moat");
        let out = run(&["run", "--rm", BUSYBOX, "cat", "/proc/cmdline"]);
        assert!(out.status.success(), "{runtime}: {}", stderr(&out));
        assert!(stdout(&out).split_whitespace().any(|word| word == format!("moat.oci_runtime={runtime}")), "{runtime}: {}", stdout(&out));
        let missing = run(&["run", "--rm", BUSYBOX, "no-such-command"]);
        assert_eq!(missing.status.code(), Some(127), "{runtime}: {}", stderr(&missing));
        let lines: Vec<String> = stderr(&missing).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 1, "{runtime}: {lines:?}");
        assert!(lines[0].contains("no-such-command"), "{runtime}: {lines:?}");
    }
    let unknown = moat.cmd(&["run", "--rm", BUSYBOX, "true"]).env("MOAT_OCI_RUNTIME", "youki").output().expect("running moat");
    assert_eq!(unknown.status.code(), Some(125), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("MOAT_OCI_RUNTIME: OCI runtime \"youki\" is unknown: use runc or crun"), "{}", stderr(&unknown));
    assert!(moat.zone_files().is_empty(), "{:?}", moat.zone_files());
    moat.assert_nothing_running();
}

#[test]
fn privileged_capabilities_are_all_41() {
    let moat = Moat::with_busybox();
    assert_eq!(
        cap_lines(&moat, &["--privileged"]),
        "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n"
    );
}

#[test]
fn cap_syslog_is_ineffective_in_a_user_namespace() {
    let moat = Moat::with_busybox();
    let out = moat.run(&["run", "--rm", "--cap-add", "SYSLOG", BUSYBOX, "sh", "-c", "grep ^CapEff /proc/self/status; dmesg"]);
    assert_eq!(stdout(&out), "CapEff:\t00000004a80425fb\n", "SYSLOG (bit 34) is in CapEff");
    assert_eq!(stderr(&out), "dmesg: klogctl: Operation not permitted\n");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn privileged_dmesg_reads_the_zone_kernel() {
    let moat = Moat::with_busybox();
    let log = moat.ok(&["run", "--rm", "--privileged", BUSYBOX, "dmesg"]);
    let zone_kernel = moat_zone::assets::kernel_release(&moat_zone::assets::Assets::default_dir()).unwrap();
    let host_kernel = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    assert!(log.contains(&format!("Linux version {zone_kernel}")), "dmesg shows the zone kernel {zone_kernel}");
    assert_ne!(zone_kernel, host_kernel);
    assert!(!log.contains(&format!("Linux version {host_kernel}")), "never the host's kernel");
}

#[test]
fn exit_codes_and_signals_propagate() {
    let moat = Moat::with_busybox();
    assert_eq!(moat.run(&["run", "--rm", BUSYBOX, "sh", "-c", "exit 7"]).status.code(), Some(7));

    // SIGTERM to `moat run` reaches the workload, whose handler decides the exit code.
    let mut child = moat
        .cmd(&["run", "--rm", BUSYBOX, "sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.2; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout_pipe = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout_pipe, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: signalling the moat process this test started.
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout_pipe, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn streams_stay_separate_and_stdin_works() {
    let moat = Moat::with_busybox();
    let out = moat.run(&["run", "--rm", BUSYBOX, "sh", "-c", "echo out1; echo err1 >&2; echo out2"]);
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");

    let mut child = moat.cmd(&["run", "--rm", "-i", BUSYBOX, "sh", "-c", "tr a-z A-Z"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "HELLO FROM STDIN\n");
    assert!(out.status.success());
}

#[test]
fn process_flags_env_workdir_user() {
    let moat = Moat::with_busybox();
    let env_file = moat.root().join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = moat.ok(&[
        "run", "--rm", "-e", "GREETING=hi", "--env-file", &env_file.to_string_lossy(), "-w", "/tmp", "-u", "app", "--hostname", "box",
        BUSYBOX, "sh", "-c", "echo $GREETING $FROM_FILE; pwd; id -u; id -g; hostname",
    ]);
    assert_eq!(out, "hi yes\n/tmp\n1000\n1000\nbox\n");
}

#[test]
fn seccomp_default_denies_unshare_and_unconfined_allows_it() {
    let moat = Moat::with_busybox();
    let denied = moat.run(&["run", "--rm", BUSYBOX, "unshare", "-U", "true"]);
    assert!(!denied.status.success());
    assert!(stderr(&denied).contains("Operation not permitted"), "{}", stderr(&denied));
    let allowed = moat.run(&["run", "--rm", "--security-opt", "seccomp=unconfined", BUSYBOX, "unshare", "-U", "true"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
}

#[test]
fn read_only_root() {
    let moat = Moat::with_busybox();
    let out = moat.run(&["run", "--rm", "--read-only", BUSYBOX, "touch", "/newfile"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // Without it, the writable layer takes the write.
    moat.ok(&["run", "--rm", BUSYBOX, "touch", "/tmp/newfile"]);
}

#[test]
fn detached_logs_wait_and_rm() {
    let moat = Moat::with_busybox();
    let name = moat.ok(&["run", "-d", "--name", "bg", BUSYBOX, "sh", "-c", "echo started $(hostname) $HOSTNAME; sleep 1; echo done >&2; exit 3"]);
    assert_eq!(name.trim(), "bg");
    assert_eq!(moat.ok(&["wait", "bg"]).trim(), "3");
    // Without --hostname, the hostname is the container's short id, as in Docker.
    let id = moat.ok(&["ps", "-a"]).lines().find(|l| l.contains("bg")).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    assert_eq!(id.len(), 12, "{id}");
    let logs = moat.run(&["logs", "bg"]);
    assert_eq!(stdout(&logs), format!("started {id} {id}\n"));
    assert_eq!(stderr(&logs), "done\n");
    assert!(moat.ok(&["ps", "-a"]).lines().any(|l| l.contains("bg") && l.contains("Exited (3)")));
    assert!(!moat.ok(&["ps"]).contains("bg"), "ps without -a hides exited containers");
    moat.ok(&["rm", "bg"]);
    let destroyed = moat.ok(&["events", "--since", "0", "--until", "now", "--filter", "event=destroy"]);
    assert!(destroyed.lines().count() == 1 && destroyed.contains(&format!(" container destroy {id} (")), "removing the zone journals its container's removal: {destroyed}");
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty());
}

#[test]
fn kill_and_stop_reach_the_workload() {
    let moat = Moat::with_busybox();
    // A handled signal decides the exit code.
    // `run -d` returns once the process runs; its trap exists only after it prints "ready".
    moat.ok(&["run", "-d", "--name", "k", BUSYBOX, "sh", "-c", "trap 'exit 42' USR1; echo ready; while :; do sleep 0.2; done"]);
    moat.wait_for_log("k", "ready");
    moat.ok(&["kill", "-s", "USR1", "k"]);
    assert_eq!(moat.ok(&["wait", "k"]).trim(), "42");
    // The kill and the exit it caused are journaled, in that order.
    let journal = moat.ok(&["events", "--since", "0", "--until", "now", "--filter", "container=k", "--filter", "event=kill", "--filter", "event=die", "--format", "json"]);
    let events: Vec<serde_json::Value> = journal.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let seen: Vec<_> = events.iter().map(|e| (e["action"].as_str(), e["attributes"]["signal"].as_str(), e["attributes"]["exitCode"].as_str())).collect();
    assert_eq!(seen, [(Some("kill"), Some("10"), None), (Some("die"), None, Some("42"))], "{journal}");

    // The default, SIGKILL, ends any process: death by signal 9 is 128 + 9.
    moat.ok(&["run", "-d", "--name", "s", BUSYBOX, "sleep", "600"]);
    moat.ok(&["kill", "s"]);
    assert_eq!(moat.ok(&["wait", "s"]).trim(), "137");

    // `stop`: PID 1 without a TERM handler ignores SIGTERM (as in Docker), so SIGKILL follows.
    moat.ok(&["run", "-d", "--name", "t", BUSYBOX, "sleep", "600"]);
    let started = std::time::Instant::now();
    moat.ok(&["stop", "-t", "1", "t"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(moat.ok(&["ps", "-a"]).lines().any(|l| l.contains(" t") && l.contains("Exited (137)")));

    // A timeout too long to reach (u64::MAX seconds) waits for the process, without overflow.
    moat.ok(&["run", "-d", "--name", "u", BUSYBOX, "sh", "-c", "trap 'exit 3' TERM; echo armed; while :; do sleep 1; done"]);
    moat.wait_for_log("u", "armed");
    moat.ok(&["stop", "-t", "18446744073709551615", "u"]);
    assert_eq!(moat.ok(&["wait", "u"]).trim(), "3");
    moat.ok(&["rm", "k", "s", "t", "u"]);
    moat.assert_nothing_running();
}

#[test]
fn bad_input_is_one_clear_error_and_leaves_no_zone() {
    let moat = Moat::with_busybox();
    let bad_profile = moat.root().join("bad.json");
    std::fs::write(&bad_profile, "{ not json").unwrap();
    let profile_opt = format!("seccomp={}", bad_profile.display());
    let too_many_cpus = (std::thread::available_parallelism().unwrap().get() + 1).to_string();
    let cases: Vec<(Vec<&str>, &str, i32)> = vec![
        (vec!["--cap-add", "NOT_A_CAP", BUSYBOX, "true"], "NOT_A_CAP", 125),
        (vec!["--security-opt", &profile_opt, BUSYBOX, "true"], "seccomp", 125),
        (vec!["--memory", "64m", BUSYBOX, "true"], "below the zone minimum", 125),
        (vec!["nosuchimage:latest", "true"], "nosuchimage", 125),
        (vec![BUSYBOX, "/no/such/command"], "/no/such/command", 127),
        (vec!["-u", "nosuchuser", BUSYBOX, "true"], "nosuchuser", 125),
        (vec!["--cpus", "0", BUSYBOX, "true"], "--cpus 0: must be between 0.01 and", 125),
        (vec!["--cpus", "-1", BUSYBOX, "true"], "--cpus -1: must be between 0.01 and", 125),
        (vec!["--cpus", "lots", BUSYBOX, "true"], "--cpus lots: expected a number of CPUs", 125),
        (vec!["--cpus", &too_many_cpus, BUSYBOX, "true"], "the CPUs this host has", 125),
    ];
    for (args, expected, code) in cases {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter());
        let out = moat.run(&full);
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("moat: warning:")).collect();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {err}");
        assert!(lines[0].contains(expected), "{args:?}: {err}");
        assert!(moat.zone_files().is_empty(), "{args:?} left a zone behind");
    }
    // A zone that never boots goes too: the checker as its init exits at once, and the guest
    // kernel panics.
    let info: serde_json::Value = serde_json::from_str(&moat.ok(&["info", "--format", "json"])).expect("info prints JSON");
    let checker = info["assets"]["checker"].as_str().expect("the checker is built (scripts/setup.sh)");
    let out = moat.run_with_env(("MOAT_INIT", checker), &["run", "--rm", BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("kernel panic"), "{}", stderr(&out));
    assert!(moat.zone_files().is_empty(), "a zone that never booted was left behind");
    moat.assert_nothing_running();
}

#[test]
fn cpus_and_memory_limit_the_containers_cgroup() {
    let moat = Moat::with_busybox();
    // 1.5 CPUs: a zone of 2 vCPUs and a quota of 1.5 CPUs; the default 512m zone leaves the
    // container the limit moat-spec computes for it. Every zone that runs a container loads the
    // loop driver (images arrive through the share as EROFS files; moat's kernel has it built in,
    // Debian's loads it), but an unprivileged container has no loop device (those are for
    // privileged containers).
    let script = "nproc; cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max /proc/self/oom_score_adj; \
                  echo loop: $(ls /dev | grep -c loop) $(ls -d /sys/module/loop)";
    let out = moat.ok(&["run", "--rm", "--cpus", "1.5", BUSYBOX, "sh", "-c", script]);
    let limit = moat_spec::resources::container_memory_limit(512).unwrap();
    assert_eq!(out, format!("2\n150000 100000\n{limit}\n0\nloop: 0 /sys/module/loop\n"));
    assert_eq!(limit, 384 << 20);
    assert!(moat.zone_files().is_empty());
}

#[test]
fn oom_kill_is_reported_and_the_zone_goes() {
    let moat = Moat::with_busybox();
    // A 256 MiB zone has about 160 MiB free with the container started, and the container's
    // limit is 144 MiB; dd's 200 MiB buffer is more than either. (One allocation larger than the
    // zone's whole memory would fail in malloc, under the kernel's overcommit heuristic.)
    let out = moat.run(&["run", "--rm", "--memory", "256m", BUSYBOX, "sh", "-c", "echo allocating; dd if=/dev/zero of=/dev/null bs=200M count=1"]);
    assert_eq!(stdout(&out), "allocating\n");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(stderr(&out), "moat: the container was OOM-killed: it reached its memory limit of 144 MiB (the zone has 256 MiB)\n");
    assert!(moat.zone_files().is_empty(), "--rm removes the zone: {:?}", moat.zone_files());
    moat.assert_nothing_running();
}

/// What a reader thread collected from a pty master so far.
#[derive(Clone, Default)]
struct Collected(std::sync::Arc<std::sync::Mutex<String>>);

impl Collected {
    fn read_from(master: std::fs::File) -> Self {
        let collected = Self::default();
        let sink = collected.clone();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            // EIO once the last slave descriptor is closed.
            while let Ok(n @ 1..) = std::io::Read::read(&mut master, &mut buf) {
                sink.0.lock().expect("screen lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        collected
    }

    fn text(&self) -> String {
        self.0.lock().expect("screen lock").clone()
    }

    fn wait_for(&self, needle: &str, deadline: std::time::Instant) {
        while !self.text().contains(needle) {
            assert!(std::time::Instant::now() < deadline, "never saw {needle:?}; the terminal shows:\n{}", self.text());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn set_window_size(fd: &impl std::os::fd::AsRawFd, rows: u16, cols: u16) {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size as *const libc::winsize) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

#[test]
fn tty_has_the_callers_size_follows_resizes_and_passes_ctrl_c() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::time::{Duration, Instant};

    let moat = Moat::with_busybox();
    let pty = nix::pty::openpty(None, None).unwrap();
    set_window_size(&pty.slave, 37, 101);
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG));

    // The trap is set before "ready", so the resize sent after it is caught; the shell is the
    // container's PID 1 and ignores SIGINT, so Ctrl-C ends its child, and the script with it.
    let script = "tty; stty size; trap 'stty size; resized=1' WINCH; echo ready; \
                  while [ -z \"$resized\" ]; do sleep 0.1; done; echo sleeping; sleep 1000";
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = moat.cmd(&["run", "--rm", "-t", "-i", BUSYBOX, "sh", "-c", script]).stdin(slave()).stdout(slave()).stderr(slave()).spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let screen = Collected::read_from(master.try_clone().unwrap());
    let deadline = Instant::now() + common::COMMAND_TIMEOUT;

    screen.wait_for("ready\r\n", deadline);
    let shown = screen.text();
    let lines: Vec<&str> = shown.lines().map(str::trim_end).filter(|l| !l.starts_with("moat: warning:")).collect();
    assert!(lines[0].strip_prefix("/dev/pts/").is_some_and(|n| n.parse::<u32>().is_ok()), "tty: {shown:?}");
    assert_eq!(lines[1], "37 101", "stty size shows the caller's size from the start: {shown:?}");
    let during = tcgetattr(&pty.slave).unwrap();
    assert!(!during.local_flags.intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG), "moat puts the local terminal in raw mode");

    set_window_size(&pty.slave, 50, 132);
    // SAFETY: signalling the moat process this test started.
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGWINCH) };
    screen.wait_for("sleeping\r\n", deadline);
    assert!(screen.text().contains("\r\n50 132\r\n"), "the resize reached the workload: {:?}", screen.text());

    // A key press before `sleep` runs goes to the shell, which ignores it: press until it ends.
    let (mut pressed, mut presses): (Option<Instant>, u32) = (None, 0);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "Ctrl-C never ended the workload: {:?}", screen.text());
        if pressed.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
            std::io::Write::write_all(&mut master, b"\x03").unwrap();
            pressed = Some(Instant::now());
            presses += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    eprintln!("Ctrl-C presses until the workload ended: {presses}");
    assert_eq!(status.code(), Some(130), "{:?}", screen.text());
    assert_eq!(tcgetattr(&pty.slave).unwrap(), before, "moat restores the local terminal");
    assert!(moat.zone_files().is_empty(), "--rm removes the zone");
    moat.assert_nothing_running();
}

#[test]
fn tty_without_stdin_keeps_the_terminal_cooked_and_forwards_ctrl_c_as_sigint() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    let moat = Moat::with_busybox();
    let pty = nix::pty::openpty(None, None).unwrap();
    set_window_size(&pty.slave, 24, 80);
    let before = tcgetattr(&pty.slave).unwrap();
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut command = moat.cmd(&["run", "--rm", "-t", BUSYBOX, "sh", "-c", "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.2; done"]);
    command.stdin(slave()).stdout(slave()).stderr(slave());
    // SAFETY: setsid and ioctl are async-signal-safe; they make the pty moat's controlling
    // terminal, as a shell's terminal is, so Ctrl-C on it signals moat.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let screen = Collected::read_from(master.try_clone().unwrap());
    let deadline = Instant::now() + common::COMMAND_TIMEOUT;

    // The local terminal is cooked, so it turns the workload's "\r\n" into "\r\r\n".
    screen.wait_for("ready\r", deadline);
    assert_eq!(tcgetattr(&pty.slave).unwrap(), before, "without -i the local terminal stays as it was");
    assert!(before.local_flags.contains(LocalFlags::ISIG));
    std::io::Write::write_all(&mut master, b"\x03").unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "Ctrl-C never reached the workload: {:?}", screen.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    assert!(screen.text().contains("got INT\r"), "{:?}", screen.text());
    assert_eq!(status.code(), Some(5), "{:?}", screen.text());
    assert!(moat.zone_files().is_empty(), "--rm removes the zone");
    moat.assert_nothing_running();
}

#[test]
fn entrypoint_cap_drop_no_new_privileges_and_a_seccomp_profile_file() {
    let moat = Moat::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let seccomp = format!("seccomp={}", profile.display());
    let script = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/d 2>/dev/null || echo mkdir denied; touch /tmp/f && echo touch allowed";
    let out = moat.ok(&[
        "run", "--rm", "--entrypoint", "/bin/sh", "--cap-drop", "ALL", "--cap-add", "cap_chown", "--security-opt", "no-new-privileges", "--security-opt", &seccomp,
        BUSYBOX, "-c", script,
    ]);
    assert_eq!(out, "CapEff:\t0000000000000001\nNoNewPrivs:\t1\nSeccomp:\t2\nmkdir denied\ntouch allowed\n");

    // Dropping one capability from the default set clears just its bit (NET_RAW is bit 13).
    let caps = moat.ok(&["run", "--rm", "--cap-drop", "NET_RAW", BUSYBOX, "grep", "^CapEff", "/proc/self/status"]);
    assert_eq!(caps, "CapEff:\t00000000a80405fb\n");
}

#[test]
fn logs_follow_until_exit_and_rm_force_of_a_running_container() {
    let moat = Moat::with_busybox();
    moat.ok(&["run", "-d", "--name", "f", BUSYBOX, "sh", "-c", "echo one; sleep 2; echo two >&2; sleep 1; echo three"]);
    let followed = moat.run(&["logs", "-f", "f"]);
    assert!(followed.status.success());
    assert_eq!(stdout(&followed), "one\nthree\n", "logs -f returns once the container exits, with all of stdout");
    assert_eq!(stderr(&followed), "two\n");

    moat.ok(&["run", "-d", "--name", "r", BUSYBOX, "sleep", "600"]);
    let refused = moat.run(&["rm", "r"]);
    assert!(!refused.status.success(), "rm without -f refuses a running container");
    assert!(moat.ok(&["ps"]).contains(" r"), "and leaves it running");
    moat.ok(&["rm", "-f", "r"]);
    moat.ok(&["rm", "f"]);
    assert!(!moat.ok(&["ps", "-a"]).lines().any(|l| l.ends_with(" r") || l.ends_with(" f")));
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty(), "{:?}", moat.zone_files());
}

#[test]
fn create_then_start_follows_the_oci_lifecycle() {
    let moat = Moat::with_busybox();
    assert_eq!(moat.ok(&["create", "--name", "cs", BUSYBOX, "sh", "-c", "echo hi; exit 4"]).trim(), "cs");
    assert!(moat.ok(&["ps", "-a"]).lines().any(|l| l.ends_with(" cs") && l.contains("Created")), "created, not running");
    assert!(!moat.ok(&["ps"]).contains(" cs"), "ps without -a shows running containers only");
    let out = moat.run(&["start", "-a", "cs"]);
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(out.status.code(), Some(4));
    assert!(moat.ok(&["ps", "-a"]).lines().any(|l| l.ends_with(" cs") && l.contains("Exited (4)")));
    let again = moat.run(&["start", "cs"]);
    assert!(!again.status.success());
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));
    moat.ok(&["rm", "cs"]);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty());
}
