//! Zones on a network: user-mode NAT through passt, published ports (TCP and UDP) on the host's
//! loopback, Docker's name files, DNS through the host's resolver, the host's loopback reached
//! only through `host-gateway`, and `--network none`. Traffic stays on the host's loopback.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Moat, BUSYBOX};

/// A port the kernel says is free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// GET `path` from 127.0.0.1:`port`, retrying while the server in the zone starts.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match answer {
            Ok(body) if body.contains("200 OK") => return body,
            _ if Instant::now() > deadline => panic!("no answer on port {port}: {answer:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// An HTTP server on the host's 127.0.0.1 that answers every request with `body`.
fn host_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener on 127.0.0.1");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

fn zone_count(moat: &Moat) -> usize {
    moat.ok(&["zone", "ls"]).lines().count()
}

#[test]
fn published_ports_reach_the_zone_and_its_containers_get_dockers_name_files() {
    let moat = Moat::with_busybox();
    let (tcp, udp) = (free_port(), free_port());
    let tcp_publish = format!("127.0.0.1:{tcp}:8080");
    let udp_publish = format!("{udp}:9000/udp");
    // The image's busybox has no UDP server; a static echo server comes in through a volume.
    let tools = tempfile::tempdir().unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/udp-echo.c");
    let built = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(tools.path().join("udp-echo")).arg(source).status().unwrap();
    assert!(built.success(), "building the UDP echo server");
    let tools_volume = format!("{}:/tools:ro", tools.path().display());
    // A read-only root still gets the name files, writable.
    let serve = "echo in-zone > /www/i.txt; /tools/udp-echo 9000 & exec httpd -f -p 8080 -h /www";
    // UDP replies reach a client on the host only with the gateway mapped (see the README).
    let refused = moat.run(&["run", "--rm", "-p", &udp_publish, BUSYBOX, "true"]);
    assert!(stderr(&refused).contains("needs --add-host NAME:host-gateway"), "{}", stderr(&refused));
    let gateway = "host.moat.internal:host-gateway";
    moat.ok(&["run", "-d", "--name", "web", "--hostname", "web1", "--read-only", "--tmpfs", "/www", "-v", &tools_volume, "-p", &tcp_publish, "-p", &udp_publish, "--add-host", gateway, "--dns-search", "corp.example", BUSYBOX, "sh", "-c", serve]);

    assert!(http_get(tcp, "/i.txt").ends_with("in-zone\n"));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = [0u8; 64];
    let got = loop {
        client.send_to(b"udp-hello", ("127.0.0.1", udp)).unwrap();
        if let Ok(got) = client.recv(&mut answer) {
            break got;
        }
        assert!(Instant::now() < deadline, "no UDP answer through the published port");
    };
    assert_eq!(&answer[..got], b"echo:udp-hello");
    assert_eq!(moat.ok(&["port", "web"]), format!("8080/tcp -> 127.0.0.1:{tcp}\n9000/udp -> 127.0.0.1:{udp}\n"));
    assert_eq!(moat.ok(&["port", "web", "8080"]), format!("127.0.0.1:{tcp}\n"));

    // The zone's eth0 and route, and the files Docker writes.
    let ip = moat.ok(&["exec", "web", "sh", "-c", "ip -4 -o addr show eth0; ip route"]);
    assert!(ip.contains("inet 10.0.2.100/24") && ip.contains("default via 10.0.2.2 dev eth0"), "{ip}");
    let hosts = moat.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n") && hosts.ends_with("10.0.2.2\thost.moat.internal\n10.0.2.100\tweb1\n"), "{hosts}");
    assert_eq!(moat.ok(&["exec", "web", "cat", "/etc/hostname"]), "web1\n");
    let resolv = moat.ok(&["exec", "web", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("search corp.example\n") && resolv.contains("nameserver 10.0.2.3\n"), "{resolv}");
    moat.ok(&["exec", "web", "sh", "-c", "echo 10.9.9.9 extra >> /etc/hosts"]);
    assert!(!moat.run(&["exec", "web", "touch", "/new"]).status.success(), "the root stays read-only");

    // A taken port: one line, and no zone left behind.
    let zones = zone_count(&moat);
    let out = moat.run(&["run", "--rm", "-p", &tcp_publish, BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{tcp}/tcp cannot be published")), "{err}");
    assert_eq!(zone_count(&moat), zones);
    // Bad flags: one line each, nothing made.
    for (args, expected) in [
        (vec!["run", "--rm", "-p", "80:80:80:80", BUSYBOX, "true"], "expected [IP:][HOST_PORT:]CONTAINER_PORT"),
        (vec!["run", "--rm", "--network", "nosuchnet", BUSYBOX, "true"], "no such network: nosuchnet"),
        (vec!["run", "--rm", "--network", "none", "-p", "80", BUSYBOX, "true"], "--network none has no ports"),
        (vec!["run", "--rm", "--add-host", "bad name:1.2.3.4", BUSYBOX, "true"], "expected NAME:IP"),
        (vec!["run", "--rm", "--dns", "not-an-ip", BUSYBOX, "true"], "not an IP address"),
    ] {
        let out = moat.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(zone_count(&moat), zones);
    moat.ok(&["rm", "-f", "web"]);

    // -P publishes what the image exposes, each on a free host port.
    let layout = tempfile::tempdir().unwrap();
    let copied = Command::new("cp").arg("-a").arg(format!("{}/.", common::busybox_layout().display())).arg(layout.path()).status().unwrap();
    assert!(copied.success());
    let exposed = Command::new("umoci").args(["config", "--image"]).arg(format!("{}:latest", layout.path().display())).args(["--config.exposedports", "8080/tcp"]).status().unwrap();
    assert!(exposed.success(), "umoci config");
    moat.ok(&["image", "import", &layout.path().to_string_lossy(), "--name", "exposed:test"]);
    moat.ok(&["run", "-d", "--name", "all", "-P", "exposed:test", "sh", "-c", "mkdir /w && echo all > /w/i.txt && exec httpd -f -p 8080 -h /w"]);
    let published: u16 = moat.ok(&["port", "all", "8080/tcp"]).trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(http_get(published, "/i.txt").ends_with("all\n"));
    moat.ok(&["rm", "-f", "all"]);
    // The forwarder went with the zone: the port is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListener::bind(("127.0.0.1", tcp)).is_err() {
        assert!(Instant::now() < deadline, "port {tcp} still bound after rm");
        std::thread::sleep(Duration::from_millis(100));
    }
    moat.assert_nothing_running();
}

#[test]
fn the_hosts_loopback_is_reached_only_through_host_gateway_and_none_is_loopback_only() {
    let moat = Moat::with_busybox();
    let port = host_server("hello-from-host");
    // (busybox's `wget -T` crashes in this image; `timeout` bounds the attempt instead.)
    let fetch = |host: &str| format!("timeout 10 wget -qO- http://{host}:{port}/ 2>&1; true");

    // A pod made with the way open: its containers reach the host's 127.0.0.1 by that name.
    moat.ok(&["pod", "create", "--name", "gw", "--memory", "256m", "--add-host", "host.moat.internal:host-gateway", "-p", "8080"]);
    let out = moat.ok(&["run", "--rm", "--pod", "gw", BUSYBOX, "sh", "-c", &format!("grep host.moat.internal /etc/hosts; {}", fetch("host.moat.internal"))]);
    assert!(out.contains("10.0.2.2\thost.moat.internal") && out.contains("hello-from-host"), "{out}");
    // Ports and the network belong to the pod.
    let out = moat.run(&["run", "--rm", "--pod", "gw", "-p", "80", BUSYBOX, "true"]);
    assert!(stderr(&out).contains("--publish is set on the pod"), "{}", stderr(&out));
    let inspect: serde_json::Value = serde_json::from_str(&moat.ok(&["pod", "inspect", "gw"])).unwrap();
    assert_eq!(inspect[0]["Network"]["ports"][0]["container_port"], 8080, "{inspect}");

    // Without it, the same server is out of reach through the gateway.
    let out = moat.ok(&["run", "--rm", BUSYBOX, "sh", "-c", &fetch("10.0.2.2")]);
    assert!(!out.contains("hello-from-host"), "{out}");
    // Asking for host-gateway in a pod made without it: one line.
    moat.ok(&["pod", "create", "--name", "closed", "--memory", "256m", "--network", "none"]);
    let out = moat.run(&["run", "--rm", "--pod", "closed", "--add-host", "h:host-gateway", BUSYBOX, "true"]);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("needs a network"), "{}", stderr(&out));

    // --network none: loopback only, and the host's nameservers that are not its own loopback.
    let out = moat.ok(&["run", "--rm", "--pod", "closed", BUSYBOX, "ls", "/sys/class/net"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let out = moat.ok(&["run", "--rm", "--pod", "closed", BUSYBOX, "cat", "/etc/resolv.conf"]);
    assert!(!out.contains("10.0.2.3") && !out.contains("127.0.0."), "{out}");
    moat.ok(&["pod", "rm", "-f", "gw", "closed"]);
    moat.assert_nothing_running();
}

#[test]
fn dns_in_the_zone_asks_the_hosts_resolver() {
    // The host's resolver, as the test sets it up: a name server on the host's loopback, named
    // in an /etc/resolv.conf bound over the host's in a mount namespace of moat's own.
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\noptions edns0\n").unwrap();
    let mut dns = Command::new("dnsmasq")
        .args(["--no-daemon", "--port=53", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", "--address=/test.moat.internal/192.0.2.7"])
        .spawn()
        .expect("dnsmasq (package dnsmasq-base)");
    let moat = Moat::with_busybox();
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\""]).arg(&resolv).arg(env!("CARGO_BIN_EXE_moat"));
    command.arg("--root").arg(moat.root()).args(["run", "--rm", BUSYBOX, "sh", "-c", "cat /etc/resolv.conf; nslookup test.moat.internal"]);
    let out = command.output().unwrap();
    let _ = dns.kill();
    let _ = dns.wait();
    let text = stdout(&out);
    assert!(text.contains("nameserver 10.0.2.3\noptions edns0\n"), "{text}");
    assert!(text.contains("Address: 192.0.2.7"), "{text}\n{}", stderr(&out));
    moat.assert_nothing_running();
}
