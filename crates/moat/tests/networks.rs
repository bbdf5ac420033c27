//! Tap networking, each test in a network namespace of its own (its thread's: the moat
//! processes it starts are born there), so the host's own links are never touched: moat
//! networks (`moat network create`), whose zones reach each other by name and nothing else,
//! and a zone that takes over a network namespace the CNI `bridge` and `host-local` plugins
//! set up (`--network ns:PATH`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, Moat, BUSYBOX};

/// Move this test's thread into a fresh network namespace, with its loopback up.
fn enter_fresh_netns() {
    // SAFETY: unshare(CLONE_NEWNET) changes the calling thread's network namespace only.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
    ip(&["link", "set", "lo", "up"]);
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Links of the kinds the tests make (moat's bridges and taps, the CNI bridge and veths) in the
/// test process's first network namespace (its main thread's, which no test moves). Other
/// links there come and go with other programs' work, so only these are compared.
fn host_links_like_ours() -> Vec<String> {
    let netns = format!("--net=/proc/{}/ns/net", std::process::id());
    let out = Command::new("nsenter").args([netns.as_str(), "ip", "-o", "link", "show"]).output().expect("running nsenter");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = |name: &String| ["moat-", "mt-", "cni-moat"].iter().any(|p| name.starts_with(p));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(':').nth(1)).map(|n| n.trim().to_string()).filter(ours).collect()
}

/// A page a container serves on port 8080 with busybox httpd.
fn serve(text: &str) -> String {
    format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 8080 -h /www")
}

/// Ask, from container `from`, for the page at `target`:8080 (a name or an address) with
/// busybox nc (which resolves names through /etc/hosts), retrying while the server starts;
/// the answer, or what the last try said.
fn fetch_from(moat: &Moat, from: &str, target: &str, tries: u32) -> String {
    let script = format!("for i in $(seq {tries}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 8080 && exit 0; sleep 0.5; done; exit 1");
    let out = moat.run(&["exec", from, "sh", "-c", &script]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether `name` is a name in container `of`'s `/etc/hosts`. A substring test would not do:
/// the container's own name there is its id, twelve hex digits that may hold "c4".
fn hosts_name(moat: &Moat, of: &str, name: &str) -> bool {
    moat.ok(&["exec", of, "cat", "/etc/hosts"]).lines().any(|line| line.split_whitespace().skip(1).any(|n| n == name))
}

/// One line on stderr, containing `expected`, and a failure.
fn refused(moat: &Moat, args: &[&str], expected: &str) {
    let out = moat.run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(expected), "{args:?}: {err}");
}

#[test]
fn containers_on_a_network_reach_each_other_by_name_and_nothing_on_another() {
    let host_links = host_links_like_ours();
    enter_fresh_netns();
    let moat = Moat::with_busybox();
    assert_eq!(moat.ok(&["network", "create", "n1"]).trim(), "n1");
    assert_eq!(moat.ok(&["network", "create", "--subnet", "10.89.7.0/24", "n2"]).trim(), "n2");
    for (args, expected) in [
        (vec!["network", "create", "n1"], "already exists"),
        (vec!["network", "create", "none"], "reserved"),
        (vec!["network", "create", "--subnet", "10.89.7.128/25", "n3"], "overlaps network n2"),
        (vec!["network", "create", "--subnet", "10.89.7.1/24", "n3"], "--subnet"),
        (vec!["network", "rm", "nosuch"], "no such network: nosuch"),
        (vec!["run", "-d", "--network", "nosuch", BUSYBOX, "true"], "no such network: nosuch"),
        (vec!["run", "-d", "--network", "n1", "-p", "8080", BUSYBOX, "true"], "-p publishes ports of the default network only"),
    ] {
        refused(&moat, &args, expected);
    }
    let listed = moat.ok(&["network", "ls", "-q"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(moat.ok(&["ps", "-a"]).lines().count() == 1, "no container was made");

    moat.ok(&["run", "-d", "--name", "c1", "--network", "n1", BUSYBOX, "sh", "-c", &serve("c1-here")]);
    moat.ok(&["run", "-d", "--name", "c2", "--network", "n1", BUSYBOX, "sh", "-c", &serve("c2-here")]);
    moat.ok(&["run", "-d", "--name", "c3", "--network", "n2", BUSYBOX, "sh", "-c", &serve("c3-here")]);

    // By name, both ways: c1 learnt of c2 after it started.
    assert!(fetch_from(&moat, "c2", "c1", 20).contains("c1-here"));
    assert!(fetch_from(&moat, "c1", "c2", 20).contains("c2-here"));
    let inspect: serde_json::Value = serde_json::from_str(&moat.ok(&["network", "inspect", "n1"])).unwrap();
    let zones = inspect[0]["Zones"].as_array().unwrap();
    let c1_address = zones.iter().find(|z| z["Zone"] == "c1").unwrap()["IPv4Address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(c1_address.starts_with("10.89.1."), "{c1_address}");

    // Across networks: no name, and the address leads nowhere, either way.
    assert!(!hosts_name(&moat, "c3", "c1"));
    assert!(!fetch_from(&moat, "c3", &c1_address, 2).contains("c1-here"));
    assert!(fetch_from(&moat, "c3", "127.0.0.1", 10).contains("c3-here"), "c3 serves");
    assert!(!fetch_from(&moat, "c1", "10.89.7.2", 2).contains("c3-here"));
    // Nothing of the host: the bridges have no address of the host's, so no address on them
    // answers but the zones'.
    assert!(!ip(&["-4", "-o", "address", "show"]).lines().any(|l| !l.contains(" lo ")), "{}", ip(&["-4", "-o", "address", "show"]));
    assert!(!fetch_from(&moat, "c1", "10.89.1.1", 2).contains("200 OK"));

    // A pod on the network: its containers are named to the others, and go with the pod.
    moat.ok(&["pod", "create", "--name", "p", "--network", "n1"]);
    moat.ok(&["run", "-d", "--pod", "p", "--name", "c4", BUSYBOX, "sh", "-c", &serve("c4-here")]);
    assert!(fetch_from(&moat, "c1", "c4", 20).contains("c4-here"));
    assert!(fetch_from(&moat, "c4", "c2", 20).contains("c2-here"));
    assert!(hosts_name(&moat, "c1", "c4"));
    moat.ok(&["pod", "rm", "-f", "p"]);
    assert!(!hosts_name(&moat, "c1", "c4"));

    refused(&moat, &["network", "rm", "n1"], "in use by c1, c2");
    // A removed container's name goes from the others' files.
    assert!(hosts_name(&moat, "c1", "c2"));
    moat.ok(&["rm", "-f", "c2"]);
    assert!(!hosts_name(&moat, "c1", "c2"));
    moat.ok(&["rm", "-f", "c1", "c3"]);
    assert_eq!(moat.ok(&["network", "rm", "n1", "n2"]).lines().collect::<Vec<_>>(), ["n1", "n2"]);
    moat.assert_nothing_running();
    assert_eq!(ip(&["-o", "link", "show"]).lines().count(), 1, "the taps and bridges are gone: {}", ip(&["-o", "link", "show"]));
    assert_eq!(host_links_like_ours(), host_links, "no bridge or tap appeared among the host's links");
}

const CNI_PLUGINS: &str = "/usr/lib/cni";

/// The CNI bridge plugin's network for the test: a bridge that is the pods' gateway, and
/// addresses from host-local, whose records stay in the test's directory.
fn cni_config(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "moat-test",
        "type": "bridge",
        "bridge": "cni-moat0",
        "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam_dir},
    })
    .to_string()
}

/// Run the bridge plugin as a CNI runtime would: `command` (ADD or DEL) for the pod in `netns`.
fn cni(command: &str, netns: &Path, config: &str) -> serde_json::Value {
    let mut child = Command::new(Path::new(CNI_PLUGINS).join("bridge"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("moat-test-{}", std::process::id()))
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the CNI bridge plugin (package containernetworking-plugins)");
    child.stdin.take().expect("the plugin's stdin").write_all(config.as_bytes()).expect("writing the plugin's config");
    let out = child.wait_with_output().expect("waiting for the plugin");
    assert!(out.status.success(), "CNI {command}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct PodNetns {
    name: String,
}

impl PodNetns {
    fn new() -> Self {
        let name = format!("moat-test-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Self { name }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// An HTTP GET from this thread's namespace; the answer, once one comes.
fn http_get(address: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = TcpStream::connect_timeout(&address, Duration::from_secs(2)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        });
        match answer {
            Ok(text) => return text,
            Err(err) => assert!(Instant::now() < deadline, "{address}: {err}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_zone_answers_on_the_address_the_cni_bridge_plugin_gave_its_namespace() {
    let host_links = host_links_like_ours();
    enter_fresh_netns();
    let moat = Moat::with_busybox();
    let netns = PodNetns::new();
    let config = cni_config(&moat.root().join("cni-ipam"));

    // Bad input first, while the namespace has no veth: one line, nothing made.
    refused(&moat, &["pod", "create", "--name", "p", "--network", "ns:/nonexistent/netns"], "/nonexistent/netns");
    refused(&moat, &["pod", "create", "--name", "p", "--network", &format!("ns:{}", netns.path().display())], "no interface with an IPv4 address");
    refused(&moat, &["pod", "create", "--name", "p", "--network", "ns:relative"], "absolute path");
    assert_eq!(moat.ok(&["pod", "ls"]).lines().count(), 1, "no pod was made");

    let result = cni("ADD", &netns.path(), &config);
    let assigned = result["ips"][0]["address"].as_str().expect("the plugin's result names an address").split('/').next().unwrap().to_string();
    let veth_mac = result["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap()["mac"].as_str().unwrap().to_string();

    moat.ok(&["pod", "create", "--name", "p", "--network", &format!("ns:{}", netns.path().display())]);
    refused(&moat, &["pod", "create", "--name", "q", "--network", &format!("ns:{}", netns.path().display())], "already the zone p's");
    moat.ok(&["run", "-d", "--pod", "p", "--name", "web", BUSYBOX, "sh", "-c", &serve("cni-here")]);
    let eth0 = moat.ok(&["exec", "web", "ip", "address", "show", "dev", "eth0"]);
    assert!(eth0.contains(&format!("inet {assigned}/24")), "the zone has the pod's address: {eth0}");
    let link = moat.ok(&["exec", "web", "ip", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&veth_mac), "the zone has the veth's MAC {veth_mac}: {link}");

    // From the bridge's side (this test's namespace), the pod's address is the zone.
    let answer = http_get(format!("{assigned}:8080").parse().unwrap());
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("cni-here"), "{answer}");

    // A zone whose supervisor is killed leaves its redirection behind; the next zone on the
    // namespace replaces it and answers on the same address.
    let supervisor = moat.pid("p", "supervisor").expect("the supervisor's pid");
    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    moat.wait_state("p", "failed", Duration::from_secs(30));
    moat.ok(&["pod", "create", "--name", "p2", "--network", &format!("ns:{}", netns.path().display())]);
    moat.ok(&["run", "-d", "--pod", "p2", "--name", "web2", BUSYBOX, "sh", "-c", &serve("second-zone")]);
    let answer = http_get(format!("{assigned}:8080").parse().unwrap());
    assert!(answer.contains("second-zone"), "{answer}");

    moat.ok(&["pod", "rm", "-f", "p", "p2"]);
    moat.assert_nothing_running();
    let qdiscs = Command::new("ip").args(["netns", "exec", &netns.name, "tc", "qdisc", "show", "dev", "eth0", "ingress"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&qdiscs.stdout).trim(), "", "the veth's redirection is gone with the zone");
    cni("DEL", &netns.path(), &config);
    drop(netns);
    assert_eq!(host_links_like_ours(), host_links, "no bridge or tap appeared among the host's links");
}
