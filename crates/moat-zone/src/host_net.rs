//! The host's side of tap networking, through iproute2 (`ip`, `tc`) with argument lists, never
//! a shell: a moat network's bridge, a tap joining it, and, in a namespace another tool set
//! up, the redirection between its veth and the zone's tap (tc `mirred`, as Kata Containers'
//! "tcfilter" model does). A command may run in another network namespace: it enters it
//! before it executes.

use std::ffi::OsString;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use moat_proto::net::GuestNetwork;
use serde::Deserialize;

use crate::network::Mac;

const IP: &str = "ip";
const TC: &str = "tc";
/// Most of a command's output that is read.
const MAX_OUTPUT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("running {program} (package iproute2): {err}")]
    Spawn { program: &'static str, err: std::io::Error },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("the network namespace {path}: {err}")]
    Netns { path: PathBuf, err: std::io::Error },
    #[error("reading the network namespace {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the network namespace {0} has no interface with an IPv4 address (a veth as a CNI plugin leaves it)")]
    NoInterface(PathBuf),
    #[error("the network namespace {0} has several interfaces with IPv4 addresses ({1}); moat takes over exactly one")]
    SeveralInterfaces(PathBuf, String),
    #[error("the network namespace {0} has no IPv4 default route via {1}")]
    NoDefaultRoute(PathBuf, String),
}

/// Run `program` with `args` (in the network namespace at `netns`, if given); its stdout.
fn run(netns: Option<&Path>, program: &'static str, args: &[&str]) -> Result<String, HostNetError> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    if let Some(path) = netns {
        let namespace = File::open(path).map_err(|err| HostNetError::Netns { path: path.to_path_buf(), err })?;
        // SAFETY: setns is async-signal-safe; `namespace` lives until spawn returns (and is
        // closed on exec).
        unsafe {
            command.pre_exec(move || if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
    }
    let output = command.output().map_err(|err| HostNetError::Spawn { program, err })?;
    if !output.status.success() {
        let words: Vec<OsString> = std::iter::once(program.into()).chain(args.iter().map(OsString::from)).collect();
        let command = words.iter().map(|w| w.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        return Err(HostNetError::Failed { command, message });
    }
    let mut stdout = output.stdout;
    stdout.truncate(MAX_OUTPUT);
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Whether the current namespace has an interface `name`.
pub fn link_exists(name: &str) -> bool {
    run(None, IP, &["link", "show", "dev", name]).is_ok()
}

/// A bridge `name`, up, with no address: the host is not reachable from it.
pub fn create_bridge(name: &str) -> Result<(), HostNetError> {
    run(None, IP, &["link", "add", "name", name, "type", "bridge"])?;
    let up = run(None, IP, &["link", "set", "dev", name, "up"]);
    if up.is_err() {
        let _ = delete_link(name);
    }
    up.map(drop)
}

pub fn delete_link(name: &str) -> Result<(), HostNetError> {
    run(None, IP, &["link", "del", "dev", name]).map(drop)
}

/// Put the tap on the bridge and bring it up.
pub fn join_bridge(tap: &str, bridge: &str) -> Result<(), HostNetError> {
    run(None, IP, &["link", "set", "dev", tap, "master", bridge])?;
    run(None, IP, &["link", "set", "dev", tap, "up"]).map(drop)
}

/// In the namespace at `netns`: bring the tap up at the veth's MTU, and send every frame that
/// arrives on one of them out of the other.
pub fn redirect(netns: &Path, veth: &str, tap: &str, mtu: u16) -> Result<(), HostNetError> {
    let mtu = mtu.to_string();
    run(Some(netns), IP, &["link", "set", "dev", tap, "mtu", &mtu, "up"])?;
    // A zone whose supervisor was killed left its redirection to a tap that is gone.
    let _ = remove_redirect(netns, veth);
    for (from, to) in [(veth, tap), (tap, veth)] {
        run(Some(netns), TC, &["qdisc", "add", "dev", from, "ingress"])?;
        // u32 matching every packet rather than `matchall`: kernels built with u32 but
        // without matchall exist (this project's CI host is one).
        run(Some(netns), TC, &["filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to])?;
    }
    Ok(())
}

/// Undo [`redirect`] on the veth (the tap's side goes with the tap).
pub fn remove_redirect(netns: &Path, veth: &str) -> Result<(), HostNetError> {
    run(Some(netns), TC, &["qdisc", "del", "dev", veth, "ingress"]).map(drop)
}

/// What the one interface with an IPv4 address in the namespace at `netns` has: its name,
/// address, prefix, MTU and MAC, and the default route's gateway.
pub fn interface_facts(netns: &Path) -> Result<(String, GuestNetwork, Mac), HostNetError> {
    // Without `-4`: that filter drops each link's type and MAC from the answer.
    let links = run(Some(netns), IP, &["-j", "address", "show"])?;
    let routes = run(Some(netns), IP, &["-j", "-4", "route", "show", "default"])?;
    parse_facts(netns, &links, &routes)
}

/// [`interface_facts`] from `ip -j address show` and `ip -j -4 route show default`.
fn parse_facts(netns: &Path, links: &str, routes: &str) -> Result<(String, GuestNetwork, Mac), HostNetError> {
    let read = |message: String| HostNetError::Read { path: netns.to_path_buf(), message };
    let links: Vec<Link> = serde_json::from_str(links).map_err(|e| read(e.to_string()))?;
    let routes: Vec<Route> = serde_json::from_str(routes).map_err(|e| read(e.to_string()))?;
    let ipv4 = |l: &Link| l.addr_info.iter().find(|a| a.family == "inet").and_then(|a| Some((a.local.parse::<Ipv4Addr>().ok()?, a.prefixlen)));
    let mut candidates = links.iter().filter(|l| l.link_type == "ether" && ipv4(l).is_some());
    let link = candidates.next().ok_or_else(|| HostNetError::NoInterface(netns.to_path_buf()))?;
    if let Some(other) = candidates.next() {
        return Err(HostNetError::SeveralInterfaces(netns.to_path_buf(), format!("{}, {}", link.ifname, other.ifname)));
    }
    let gateway = routes.iter().filter(|r| r.dev == link.ifname).find_map(|r| r.gateway).ok_or_else(|| HostNetError::NoDefaultRoute(netns.to_path_buf(), link.ifname.clone()))?;
    let (address, prefix) = ipv4(link).ok_or_else(|| HostNetError::NoInterface(netns.to_path_buf()))?;
    let mac = link.address.parse::<Mac>().map_err(|e| read(e.to_string()))?;
    let mtu = u16::try_from(link.mtu).map_err(|_| read(format!("{}'s MTU {} is over 65535", link.ifname, link.mtu)))?;
    let guest = GuestNetwork { address, prefix, gateway, mtu };
    // The same checks init's parser makes, so a zone is never booted with what it refuses.
    let guest = guest.to_string().parse::<GuestNetwork>().map_err(|e| read(e.to_string()))?;
    Ok((link.ifname.clone(), guest, mac))
}

/// `ip -j address show`, the fields read.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    link_type: String,
    mtu: u32,
    #[serde(default)]
    address: String,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    #[serde(default)]
    family: String,
    #[serde(default)]
    local: String,
    #[serde(default)]
    prefixlen: u8,
}

#[derive(Debug, Deserialize)]
struct Route {
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    dev: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: &str = r#"{"ifname":"lo","mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]}"#;
    const ETH0: &str = r#"{"ifname":"eth0","mtu":1500,"link_type":"ether","address":"76:8a:8c:65:6b:5d","addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64},{"family":"inet","local":"10.99.0.2","prefixlen":24}]}"#;
    const ROUTE: &str = r#"[{"dst":"default","gateway":"10.99.0.1","dev":"eth0","flags":[]}]"#;

    fn facts(links: &str, routes: &str) -> Result<(String, GuestNetwork, Mac), HostNetError> {
        parse_facts(Path::new("/run/netns/x"), links, routes)
    }

    #[test]
    fn the_veths_address_route_mtu_and_mac_are_the_zones() {
        let (name, guest, mac) = facts(&format!("[{LO},{ETH0}]"), ROUTE).unwrap();
        assert_eq!(name, "eth0");
        assert_eq!(guest.to_string(), "10.99.0.2/24,10.99.0.1,1500");
        assert_eq!(mac.to_string(), "76:8a:8c:65:6b:5d");
    }

    #[test]
    fn a_namespace_without_one_clear_veth_is_refused() {
        assert!(matches!(facts(&format!("[{LO}]"), "[]"), Err(HostNetError::NoInterface(_))));
        let eth1 = ETH0.replace("eth0", "eth1").replace("10.99.0.2", "10.98.0.2");
        assert!(matches!(facts(&format!("[{ETH0},{eth1}]"), ROUTE), Err(HostNetError::SeveralInterfaces(..))));
        assert!(matches!(facts(&format!("[{ETH0}]"), "[]"), Err(HostNetError::NoDefaultRoute(..))));
        assert!(matches!(facts(&format!("[{ETH0}]"), &ROUTE.replace("\"eth0\"", "\"eth1\"")), Err(HostNetError::NoDefaultRoute(..))));
        assert!(matches!(facts(&format!("[{}]", ETH0.replace("1500", "100")), ROUTE), Err(HostNetError::Read { .. })), "below init's MTU floor");
        assert!(matches!(facts(&format!("[{}]", ETH0.replace("76:8a", "zz:8a")), ROUTE), Err(HostNetError::Read { .. })));
        assert!(matches!(facts("not json", ROUTE), Err(HostNetError::Read { .. })));
    }
}
