//! `moat exec` end to end: one long-running container in a real zone, and every exec
//! assertion made in that one container, so the suite pays for one boot.

mod common;

use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Moat, BUSYBOX, COMMAND_TIMEOUT};

/// The container's main process: runs until SIGTERM, then exits 0.
const MAIN: &str = r#"trap "exit 0" TERM; while :; do sleep 1; done"#;

/// The lines of stderr without moat's warnings, insisting there is exactly one.
fn one_error_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got {err:?}");
    lines[0].to_string()
}

/// Kills a moat process this test spawned if it still runs after [`COMMAND_TIMEOUT`], so a
/// hang fails the test (see [`Watchdog::check`]) rather than stalling the suite.
struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn new(child: &Child) -> Self {
        let (done, fired) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let pid = child.id();
        std::thread::spawn({
            let (done, fired) = (done.clone(), fired.clone());
            move || {
                let deadline = Instant::now() + COMMAND_TIMEOUT;
                while Instant::now() < deadline {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                fired.store(true, Ordering::SeqCst);
                // SAFETY: kill(2) on the moat process this test started and has not waited for.
                unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) };
            }
        });
        Self { done, fired }
    }

    /// Call once the process was waited for.
    fn check(self) {
        self.done.store(true, Ordering::SeqCst);
        assert!(!self.fired.load(Ordering::SeqCst), "moat exec still ran after {COMMAND_TIMEOUT:?}");
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

#[test]
fn exec_runs_processes_in_the_running_container() {
    let moat = Moat::with_busybox();
    // The host gateway lets the stats check fetch from the host, for traffic both ways.
    moat.ok(&["run", "-d", "--name", "box", "--hostname", "boxhost", "-e", "FROM_RUN=yes", "--add-host", "host.moat.internal:host-gateway", BUSYBOX, "sh", "-c", MAIN]);

    streams_and_exit_codes(&moat);
    same_container_as_the_main_process(&moat);
    flags_set_env_workdir_and_user(&moat);
    stdin_only_with_interactive(&moat);
    signals_reach_the_exec_process(&moat);
    terminal_has_the_callers_size(&moat);
    detach_returns_while_the_process_runs(&moat);
    errors_are_one_line_and_change_nothing(&moat);
    stats_show_the_containers_use(&moat);
    metrics_serve_the_containers_and_the_zone(&moat);
    top_lists_the_containers_processes(&moat);
    freed_memory_returns_to_the_host(&moat);
    assert_eq!(stdout(&moat.run(&["logs", "box"])), "", "exec output stays out of the container's log");

    // An exec'd process dies with the container, and reports it.
    let mut running = moat.cmd(&["exec", "box", "sleep", "600"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let watchdog = Watchdog::new(&running);
    wait_for_process(&moat, "sleep 600");
    moat.ok(&["stop", "box"]);
    let status = running.wait().unwrap();
    watchdog.check();
    assert_eq!(status.code(), Some(137), "SIGKILL when the container's pid namespace ends");
    assert_eq!(moat.ok(&["wait", "box"]).trim(), "0", "the main process's own exit");

    let out = moat.run(&["exec", "box", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(one_error_line(&out).contains("not running"), "{}", stderr(&out));
    assert!(moat.one_error_line(&["top", "box"]).contains("container box is not running"));

    moat.ok(&["rm", "box"]);
    moat.assert_nothing_running();
    assert!(moat.zone_files().is_empty());
}

fn streams_and_exit_codes(moat: &Moat) {
    let out = moat.run(&["exec", "box", "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 5"]);
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(moat.run(&["exec", "box", "sh", "-c", "kill -USR1 $$"]).status.code(), Some(128 + 10), "128 + N for signal N");
}

fn same_container_as_the_main_process(moat: &Moat) {
    let out = moat.ok(&["exec", "box", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; echo $FROM_RUN; id -u; pwd"]);
    assert_eq!(out, format!("sh -c {MAIN} \nboxhost\nyes\n0\n/\n"), "the main process is PID 1 of the same pid namespace");

    let same = |what: &str| format!("[ \"$(readlink /proc/self/ns/{what})\" = \"$(readlink /proc/1/ns/{what})\" ] && echo {what}");
    let script = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"].map(same).join("; ");
    assert_eq!(moat.ok(&["exec", "box", "sh", "-c", &script]), "cgroup\nipc\nmnt\nnet\npid\nuser\nuts\n", "every namespace is the main process's");
    let cgroups = moat.ok(&["exec", "box", "sh", "-c", "cmp /proc/self/cgroup /proc/1/cgroup && cat /proc/self/uid_map"]);
    assert_eq!(cgroups.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"], "same cgroup, same user namespace");

    let status = moat.ok(&["exec", "box", "grep", "-E", "^(Cap(Prm|Eff|Bnd)|NoNewPrivs|Seccomp):", "/proc/self/status"]);
    assert_eq!(status, "CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t2\n");
    let denied = moat.run(&["exec", "box", "unshare", "-U", "true"]);
    assert!(!denied.status.success() && stderr(&denied).contains("Operation not permitted"), "the container's seccomp filter: {}", stderr(&denied));
}

fn flags_set_env_workdir_and_user(moat: &Moat) {
    let out = moat.ok(&[
        "exec", "-e", "FROM_RUN=over", "-e", "NEW=1", "-w", "/tmp", "-u", "app", "box",
        "sh", "-c", "echo $FROM_RUN $NEW $HOME; pwd; id -u; id -g; grep ^CapEff /proc/self/status",
    ]);
    assert_eq!(out, "over 1 /home/app\n/tmp\n1000\n1000\nCapEff:\t0000000000000000\n", "a non-root user holds no effective capability, as in Docker");
    assert_eq!(moat.ok(&["exec", "-u", "nobody:nogroup", "box", "id"]), "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n");
    assert_eq!(moat.ok(&["exec", "box", "sh", "-c", "echo $FROM_RUN $HOME"]), "yes /root\n", "flags of one exec do not stick");
}

fn stdin_only_with_interactive(moat: &Moat) {
    let feed = |args: &[&str], input: &[u8]| {
        let mut child = moat.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("moat exec");
        let watchdog = Watchdog::new(&child);
        child.stdin.take().expect("stdin").write_all(input).expect("writing stdin");
        let out = child.wait_with_output().expect("waiting for moat");
        watchdog.check();
        out
    };
    let out = feed(&["exec", "-i", "box", "tr", "a-z", "A-Z"], b"hello from stdin\n");
    assert_eq!(stdout(&out), "HELLO FROM STDIN\n");
    assert!(out.status.success());
    let out = feed(&["exec", "box", "cat"], b"ignored\n");
    assert_eq!(stdout(&out), "", "without -i the process reads an empty stdin");
    assert!(out.status.success());
}

fn signals_reach_the_exec_process(moat: &Moat) {
    let mut child = moat
        .cmd(&["exec", "box", "sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.2; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat exec");
    let watchdog = Watchdog::new(&child);
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    lines.read_line(&mut line).expect("reading stdout");
    assert_eq!(line, "ready\n");
    // SAFETY: signalling the moat process this test started.
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGTERM) };
    let mut rest = String::new();
    lines.read_to_string(&mut rest).expect("reading stdout");
    assert_eq!(rest, "got TERM\n");
    let status = child.wait().expect("waiting for moat");
    watchdog.check();
    assert_eq!(status.code(), Some(42));
    assert!(moat.ok(&["ps"]).contains("box"), "the signal went to the exec'd process only");
}

fn terminal_has_the_callers_size(moat: &Moat) {
    let size = nix::pty::Winsize { ws_row: 37, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let mut child = {
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("duplicating the pty"));
        moat.cmd(&["exec", "-t", "box", "sh", "-c", "tty; stty size; echo $TERM"]).stdin(slave(&pty.slave)).stdout(slave(&pty.slave)).stderr(slave(&pty.slave)).spawn().expect("moat exec")
    };
    let watchdog = Watchdog::new(&child);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // The master reads EIO once the last holder of the slave has closed it.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = child.wait().expect("waiting for moat");
    watchdog.check();
    assert!(status.success());
    let seen = reader.join().expect("the pty reader");
    let lines: Vec<&str> = seen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines.len(), 3, "{seen:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "{seen:?}");
    assert_eq!(lines[1..], ["37 101", "xterm"], "the pty has the caller's size from the start");
}

fn detach_returns_while_the_process_runs(moat: &Moat) {
    let out = moat.run(&["exec", "-d", "box", "sh", "-c", "echo $$ > /tmp/detached.pid; exec sleep 601"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    wait_for_process(moat, "sleep 601");
    moat.ok(&["exec", "box", "sh", "-c", "kill $(cat /tmp/detached.pid)"]);
}

fn errors_are_one_line_and_change_nothing(moat: &Moat) {
    let cases: [(&[&str], &str, i32); 5] = [
        (&["exec", "box", "/no/such/command"], "/no/such/command", 127),
        (&["exec", "-u", "nosuchuser", "box", "true"], "nosuchuser", 126),
        (&["exec", "nosuchcontainer", "true"], "no such container", 125),
        (&["exec", "box"], "no command", 125),
        (&["exec", "-w", "relative", "box", "pwd"], "relative", 125),
    ];
    for (args, expected, code) in cases {
        let out = moat.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        let line = one_error_line(&out);
        assert!(line.contains(expected), "{args:?}: {line}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert!(moat.ok(&["ps"]).lines().any(|l| l.contains("box") && l.contains("Up")), "the container still runs");
    assert_eq!(moat.ok(&["exec", "box", "echo", "still fine"]), "still fine\n");
}

/// `moat stats`, here rather than in a zone of its own: the figures come from the container's
/// cgroup in the zone, so a busy loop shows as CPU and a file written as block I/O, and from its
/// network namespace, so a connection tried through the zone's NAT shows as network I/O.
fn stats_show_the_containers_use(moat: &Moat) {
    moat.ok(&["exec", "-d", "box", "sh", "-c", "echo $$ > /tmp/busy.pid; while :; do :; done"]);
    moat.ok(&["exec", "box", "sh", "-c", "dd if=/dev/urandom of=/written bs=64k count=64 2>/dev/null; sync"]);
    let fetched = moat.ok(&["exec", "box", "wget", "-q", "-O", "-", &format!("http://host.moat.internal:{}/", host_server())]);
    assert_eq!(fetched, "from the host");
    let started = Instant::now();
    let table = moat.ok(&["stats", "--no-stream", "box"]);
    println!("moat stats --no-stream box ({:?}):\n{table}", started.elapsed());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"] {
        assert!(lines[0].contains(column), "{column}: {table}");
    }

    let json = moat.ok(&["stats", "--no-stream", "--format", "json", "box"]);
    println!("moat stats --no-stream --format json box:\n{json}");
    let row: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(row["Name"], "box");
    let field = |key: &str| row[key].as_str().unwrap_or_else(|| panic!("no {key}: {json}")).to_string();
    assert!(lines[1].contains(&field("ID")), "{table}");
    let cpu: f64 = field("CPUPerc").trim_end_matches('%').parse().expect("a percentage");
    assert!(cpu > 20.0, "a busy loop keeps a CPU busy: {json}");
    let pids: u64 = field("PIDs").parse().expect("a count");
    assert!(pids >= 3, "sh, sleep and the loop: {json}");
    let mem = field("MemUsage");
    let (usage, limit) = mem.split_once(" / ").expect("usage / limit");
    assert!(usage.ends_with("iB") && limit.ends_with("MiB"), "{json}");
    let block = field("BlockIO");
    let (_, written) = block.split_once(" / ").expect("read / written");
    assert!(written.ends_with("MB"), "4 MiB were written: {json}");
    let net = field("NetIO");
    let (received, sent) = net.split_once(" / ").expect("received / sent");
    for figure in [received, sent] {
        assert!(figure.ends_with('B') && figure != "0B", "traffic went both ways: {json}");
    }
    // The table was sampled a moment before the JSON, and the network's figures may have moved
    // since (late ACKs): the table shows its three "a / b" columns, not necessarily these bytes.
    assert_eq!(lines[1].matches(" / ").count(), 3, "MEM USAGE / LIMIT, NET I/O and BLOCK I/O in the table: {table}");
    moat.ok(&["exec", "box", "sh", "-c", "kill $(cat /tmp/busy.pid)"]);

    // Without --no-stream it refreshes until stopped.
    let mut streaming = moat.cmd(&["stats", "box"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("moat stats");
    let watchdog = Watchdog::new(&streaming);
    let mut headers = 0;
    for line in std::io::BufReader::new(streaming.stdout.take().expect("stdout")).lines() {
        headers += usize::from(line.expect("reading stdout").starts_with("CONTAINER ID"));
        if headers == 2 {
            break;
        }
    }
    // SAFETY: kill(2) on the moat process this test started and has not waited for.
    unsafe { libc::kill(streaming.id().cast_signed(), libc::SIGINT) };
    streaming.wait().expect("waiting for moat");
    watchdog.check();
    assert_eq!(headers, 2, "two refreshes");

    let out = moat.run(&["stats", "--no-stream", "box", "nosuchcontainer"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(one_error_line(&out).contains("no such container: nosuchcontainer"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing printed for the good name either");
}

/// An HTTP server on the host's 127.0.0.1 that answers one request; its port.
fn host_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener on 127.0.0.1");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the container's connection");
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = "from the host";
        let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    });
    port
}

/// `moat metrics`: Prometheus text on GET /metrics, with this container's and zone's figures.
fn metrics_serve_the_containers_and_the_zone(moat: &Moat) {
    let mut server = moat.cmd(&["metrics", "--listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("moat metrics");
    let watchdog = Watchdog::new(&server);
    let mut stderr_lines = std::io::BufReader::new(server.stderr.take().expect("stderr")).lines();
    let first = stderr_lines.next().expect("a line on stderr").expect("reading stderr");
    let address: std::net::SocketAddr = first.strip_prefix("listening on ").and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("not the bound address: {first:?}"));
    assert_ne!(address.port(), 0, "the port bound, not the one asked for");

    let page = http_get(address, "/metrics");
    let (head, body) = page.split_once("\r\n\r\n").expect("a head and a body");
    println!("GET /metrics:\n{page}");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let id = moat.ok(&["ps", "-q"]).trim().to_string();
    let value = |family: &str, labels: &str| -> f64 {
        let prefix = format!("{family}{{{labels}");
        let line = body.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix}: {body}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no number: {line}"))
    };
    let container = format!("container=\"box\",id=\"{id}");
    assert!(value("moat_container_memory_usage_bytes", &container) > 0.0, "{body}");
    assert!(value("moat_container_pids", &container) >= 1.0, "{body}");
    assert!(value("moat_container_cpu_usage_seconds_total", &container) > 0.0, "{body}");
    assert!(value("moat_container_network_transmit_bytes_total", &container) > 0.0, "{body}");
    assert!(value("moat_container_network_receive_bytes_total", &container) > 0.0, "{body}");
    assert!(value("moat_zone_memory_bytes", "zone=") > 0.0, "{body}");
    assert!(value("moat_zone_cpu_seconds_total", "zone=") > 0.0, "{body}");
    assert!(body.lines().any(|l| l == "moat_containers 1") && body.lines().any(|l| l == "moat_zones 1"), "{body}");
    assert_eq!(body.lines().filter(|l| *l == "# TYPE moat_container_pids gauge").count(), 1, "{body}");
    assert!(http_get(address, "/nope").starts_with("HTTP/1.1 404 "));

    server.kill().expect("stopping moat metrics");
    server.wait().expect("waiting for moat metrics");
    watchdog.check();

    let out = moat.run(&["metrics", "--listen", "localhost"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(one_error_line(&out).contains("--listen \"localhost\" is not an address and port"), "{}", stderr(&out));
}

/// The whole answer to a GET of `path`.
fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connecting to moat metrics");
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).expect("a read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("sending the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reading the answer");
    answer
}

/// `moat top`: the processes of the container's cgroup as the zone lists them, with their
/// parents, whichever way they were started (the container's own, exec'd ones).
fn top_lists_the_containers_processes(moat: &Moat) {
    let script = "sleep 1001 & echo $! > /tmp/top.pids; sleep 2002 & echo $! >> /tmp/top.pids; wait";
    moat.ok(&["exec", "-d", "box", "sh", "-c", script]);
    wait_for_process(moat, "sleep 1001");
    wait_for_process(moat, "sleep 2002");
    let table = moat.ok(&["top", "box"]);
    println!("moat top box:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    // (PID, PPID, UID) of the process whose command line is `command`.
    let find = |command: &str| {
        let row = lines[1..].iter().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.len() > 7 && f[7..].join(" ") == command);
        let row = row.unwrap_or_else(|| panic!("no {command:?} in\n{table}"));
        assert!(row[6].len() == 8 && row[6].matches(':').count() == 2, "TIME as HH:MM:SS: {row:?}");
        let number = |n: usize| row[n].parse::<u32>().unwrap_or_else(|_| panic!("column {n} of {row:?}"));
        (number(1), number(2), number(0))
    };
    let (sh, _, uid) = find(&format!("sh -c {script}"));
    let (first, first_parent, _) = find("sleep 1001");
    let (second, second_parent, _) = find("sleep 2002");
    assert_ne!(first, second);
    assert_eq!((first_parent, second_parent), (sh, sh), "both sleeps are the shell's children:\n{table}");
    // The container's root, as the zone numbers it (the container runs in a user namespace).
    assert_eq!(find(&format!("sh -c {MAIN}")).2, uid, "exec'd processes run as the container's own");

    let json = moat.ok(&["top", "--format", "json", "box"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(parsed["Titles"].as_array().map(Vec::len), Some(8), "{json}");
    let rows = parsed["Processes"].as_array().expect("Processes");
    assert!(rows.iter().any(|r| r[1].as_str().and_then(|pid| pid.parse().ok()) == Some(first) && r[7] == "sleep 1001"), "{json}");

    assert!(moat.one_error_line(&["top", "nosuchcontainer"]).contains("no such container: nosuchcontainer"));
    moat.ok(&["exec", "box", "sh", "-c", "kill $(cat /tmp/top.pids)"]);
}

/// Free page reporting, through the zone's balloon: memory the container frees goes back to the
/// host. dd holds a 256 MiB buffer filled from /dev/zero until its reader quits; QEMU's resident
/// memory grows by at least half of it, then, within 15 s of the free, comes back to within a
/// quarter of it of where it started.
fn freed_memory_returns_to_the_host(moat: &Moat) {
    const BUFFER_MIB: u64 = 256;
    let qemu = moat.pid("box", "qemu").and_then(|pid| u32::try_from(pid).ok()).expect("QEMU's pid");
    let qemu = moat_zone::state::ProcessId::of(qemu).expect("QEMU runs");
    let resident_mib = || qemu.usage().expect("QEMU's usage").rss_bytes >> 20;
    let before = resident_mib();
    let hold = format!("dd if=/dev/zero bs={BUFFER_MIB}M count=1 2>/dev/null | while [ ! -e /tmp/free ]; do sleep 0.2; done");
    moat.ok(&["exec", "-d", "box", "sh", "-c", &hold]);
    // Half the buffer is enough to see it held (pages the zone touched before may be reused),
    // and a return to within a quarter of it is what only the balloon gives (without it QEMU
    // stayed at its peak for 30 s: 324, then 732, then 731 MiB).
    let peak = wait_for_resident(&resident_mib, |mib| mib >= before + BUFFER_MIB / 2, Duration::from_secs(60));
    moat.ok(&["exec", "box", "touch", "/tmp/free"]);
    let after = wait_for_resident(&resident_mib, |mib| mib <= before + BUFFER_MIB / 4, Duration::from_secs(15));
    println!("QEMU resident memory: {before} MiB before, {peak} MiB holding {BUFFER_MIB} MiB, {after} MiB after the free");
}

/// Poll QEMU's resident memory until `reached`, which must happen within `timeout`; the last reading.
fn wait_for_resident(resident_mib: &dyn Fn() -> u64, reached: impl Fn(u64) -> bool, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let mib = resident_mib();
        if reached(mib) {
            return mib;
        }
        assert!(Instant::now() < deadline, "QEMU's resident memory stayed at {mib} MiB for {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until `ps` in the container shows a process whose command line is `args`.
fn wait_for_process(moat: &Moat, args: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !moat.ok(&["exec", "box", "ps", "-o", "args"]).lines().any(|l| l.trim() == args) {
        assert!(Instant::now() < deadline, "no process {args:?} appeared in the container");
        std::thread::sleep(Duration::from_millis(200));
    }
}
