//! How a zone reaches the network. The default is user-mode NAT: one virtio-net device per
//! zone, backed by a passt process on the host (see [`crate::passt`]), which makes the zone's
//! connections from ordinary host sockets. It changes nothing in the host's network
//! configuration and needs no privilege beyond what QEMU has.
//!
//! The host's loopback stays out of a zone's reach unless the zone was made with
//! `host_gateway` (Docker's `--add-host NAME:host-gateway`): then the zone's gateway address
//! leads to the host's 127.0.0.1.
//!
//! A zone may instead have a tap device (see [`crate::tap`]): on a moat network's host bridge
//! ([`BridgeAttachment`]), or in a network namespace another tool set up, such as a CNI
//! plugin's, whose veth's traffic is redirected to the tap ([`NamespaceAttachment`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::str::FromStr;

use moat_proto::net::GuestNetwork;
use serde::{Deserialize, Serialize};

/// The zone's side of its NAT, podman's slirp4netns addresses: the zone at `.100`, the gateway
/// at `.2` and the DNS forwarder at `.3`.
pub const NAT_GUEST: GuestNetwork = GuestNetwork { address: Ipv4Addr::new(10, 0, 2, 100), prefix: 24, gateway: Ipv4Addr::new(10, 0, 2, 2), mtu: NAT_MTU };
/// Where DNS queries go in the zone; passt forwards them to the host's resolver.
pub const NAT_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// passt carries frames over a stream socket, so a large MTU costs nothing on the wire and
/// saves the guest's and passt's per-packet work.
const NAT_MTU: u16 = 65520;
/// Most ports a zone may publish: each is a listening socket on the host.
pub const MAX_PUBLISHED_PORTS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ZoneNetwork {
    /// Loopback only (`--network none`).
    #[default]
    None,
    Nat(Nat),
    Bridge(BridgeAttachment),
    Namespace(NamespaceAttachment),
}

/// A zone on a moat network: a tap on the network's host bridge, its address allocated from
/// the network's subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeAttachment {
    /// The network's name (`moat network create NAME`).
    pub network: String,
    /// The host bridge the zone's tap joins.
    pub bridge: String,
    pub guest: GuestNetwork,
    pub mac: Mac,
}

/// A zone that takes over a network namespace another tool set up (a CNI plugin's veth with
/// its address): a tap in that namespace, with the veth's traffic redirected to it and back.
/// The zone has the veth's address, route and MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceAttachment {
    /// The namespace's file, as `/proc/PID/ns/net` or a bind of it (`/var/run/netns/NAME`).
    pub netns: PathBuf,
    /// The veth in it whose traffic is the zone's.
    pub interface: String,
    pub guest: GuestNetwork,
    pub mac: Mac,
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an Ethernet address (six hex bytes joined by ':')")]
pub struct BadMac(pub String);

impl Mac {
    /// A locally administered unicast address made of an IPv4 address, as Docker makes its
    /// containers': unique on a network whose addresses are.
    pub fn from_ipv4(address: Ipv4Addr) -> Self {
        let [a, b, c, d] = address.octets();
        Self([0x02, 0x42, a, b, c, d])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(text: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(text.to_string());
        let bytes: Vec<u8> = text.split(':').map(|b| if b.len() == 2 { u8::from_str_radix(b, 16).map_err(|_| bad()) } else { Err(bad()) }).collect::<Result<_, _>>()?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }
}


moat_proto::serde_as_text!(Mac);

impl ZoneNetwork {
    /// What init configures in the zone, when it has a network.
    pub fn guest(&self) -> Option<GuestNetwork> {
        match self {
            ZoneNetwork::None => None,
            ZoneNetwork::Nat(_) => Some(NAT_GUEST),
            ZoneNetwork::Bridge(bridge) => Some(bridge.guest),
            ZoneNetwork::Namespace(namespace) => Some(namespace.guest),
        }
    }

    /// The zone's Ethernet address, when it is not QEMU's default.
    pub fn mac(&self) -> Option<Mac> {
        match self {
            ZoneNetwork::None | ZoneNetwork::Nat(_) => None,
            ZoneNetwork::Bridge(bridge) => Some(bridge.mac),
            ZoneNetwork::Namespace(namespace) => Some(namespace.mac),
        }
    }

    /// The moat network the zone is on, if any.
    pub fn network_name(&self) -> Option<&str> {
        match self {
            ZoneNetwork::Bridge(bridge) => Some(&bridge.network),
            _ => None,
        }
    }

    pub fn published(&self) -> &[PublishedPort] {
        match self {
            ZoneNetwork::Nat(nat) => &nat.ports,
            _ => &[],
        }
    }

    /// The DNS server the zone's containers should ask, when the zone has one of its own.
    pub fn dns(&self) -> Option<Ipv4Addr> {
        matches!(self, ZoneNetwork::Nat(_)).then_some(NAT_DNS)
    }

    /// The address that leads to the host's loopback, when the zone was made with that way open.
    pub fn host_gateway(&self) -> Option<Ipv4Addr> {
        match self {
            ZoneNetwork::Nat(nat) if nat.host_gateway => Some(NAT_GUEST.gateway),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nat {
    /// Host ports forwarded to the zone (`-p`).
    pub ports: Vec<PublishedPort>,
    /// The zone's gateway leads to the host's loopback (`--add-host NAME:host-gateway`).
    pub host_gateway: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port: `host_ip:host_port` on the host leads to `container_port` in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedPort {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PublishedPort {
    /// As `docker port` prints it: `80/tcp -> 127.0.0.1:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} -> {}:{}", self.container_port, self.protocol, self.host_ip, self.host_port)
    }
}

/// A `-p` value as the user wrote it: `[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`. Without a
/// host port, one is chosen when the zone is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Ipv4Addr,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("-p {0:?}: expected [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], with ports from 1 to 65535 and an IPv4 address")]
    Malformed(String),
    #[error("{0} is published twice")]
    Twice(String),
    #[error("at most {MAX_PUBLISHED_PORTS} ports may be published")]
    TooMany,
    #[error("no free host port for {0}: {1}")]
    NoFreePort(String, String),
    #[error("host port {0} cannot be published: {1}")]
    Unavailable(String, String),
}

impl FromStr for PortRequest {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, PortError> {
        let bad = || PortError::Malformed(text.to_string());
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (text, Protocol::Tcp),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
        let fields: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match fields[..] {
            [container] => (None, None, container),
            [host, container] => (None, Some(host), container),
            [ip, host, container] => (Some(ip), Some(host).filter(|h| !h.is_empty()), container),
            _ => return Err(bad()),
        };
        Ok(Self {
            host_ip: host_ip.map_or(Ok(Ipv4Addr::LOCALHOST), |ip| ip.parse().map_err(|_| bad()))?,
            host_port: host_port.map(port).transpose()?,
            container_port: port(container_port)?,
            protocol,
        })
    }
}

impl fmt::Display for PortRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_port {
            Some(host) => write!(f, "{}:{host}/{}", self.host_ip, self.protocol),
            None => write!(f, "{}:(any)->{}/{}", self.host_ip, self.container_port, self.protocol),
        }
    }
}

/// Turn requests into published ports: each host address, port and protocol at most once, and
/// a free host port chosen where none was given. The zone's forwarder binds them; a port taken
/// by then fails the zone's start with one line.
pub fn publish(requests: &[PortRequest]) -> Result<Vec<PublishedPort>, PortError> {
    if requests.len() > MAX_PUBLISHED_PORTS {
        return Err(PortError::TooMany);
    }
    let mut ports: Vec<PublishedPort> = Vec::new();
    for request in requests {
        let host_port = match request.host_port {
            Some(port) => check_free(request, port)?,
            None => free_port(request)?,
        };
        let port = PublishedPort { host_ip: request.host_ip, host_port, container_port: request.container_port, protocol: request.protocol };
        if ports.iter().any(|p| (p.host_ip, p.host_port, p.protocol) == (port.host_ip, port.host_port, port.protocol)) {
            return Err(PortError::Twice(format!("{}:{}/{}", port.host_ip, port.host_port, port.protocol)));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// A port the kernel says is free now on the request's address.
fn free_port(request: &PortRequest) -> Result<u16, PortError> {
    bind_probe(request.host_ip, 0, request.protocol).map_err(|err| PortError::NoFreePort(request.to_string(), err.to_string()))
}

/// `port` if it can be bound now, so a taken port fails before a zone boots.
fn check_free(request: &PortRequest, port: u16) -> Result<u16, PortError> {
    bind_probe(request.host_ip, port, request.protocol).map_err(|err| PortError::Unavailable(format!("{}:{port}/{}", request.host_ip, request.protocol), err.to_string()))
}

/// Bind and release a socket; the port it got.
fn bind_probe(ip: Ipv4Addr, port: u16, protocol: Protocol) -> std::io::Result<u16> {
    let addr = SocketAddrV4::new(ip, port);
    let local = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    };
    local.map(|a| a.port())
}

/// Docker's name for the address that leads to the host.
pub const HOST_GATEWAY: &str = "host-gateway";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--add-host {0:?}: expected NAME:IP or NAME:host-gateway")]
pub struct ExtraHostError(pub String);

/// `--add-host NAME:IP`, or `NAME:host-gateway` for an address that leads to the host's
/// loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHost {
    pub name: String,
    pub target: HostTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostTarget {
    Address(IpAddr),
    HostGateway,
}

impl FromStr for ExtraHost {
    type Err = ExtraHostError;

    fn from_str(text: &str) -> Result<Self, ExtraHostError> {
        let bad = || ExtraHostError(text.to_string());
        let (name, target) = text.split_once(':').or_else(|| text.split_once('=')).ok_or_else(bad)?;
        if !is_host_name(name) {
            return Err(bad());
        }
        let target = match target {
            HOST_GATEWAY => HostTarget::HostGateway,
            address => HostTarget::Address(address.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?),
        };
        Ok(Self { name: name.to_string(), target })
    }
}

/// A host name as `/etc/hosts` can carry it: dot-separated labels of letters, digits, `-`, `_`.
pub fn is_host_name(name: &str) -> bool {
    let label = |l: &str| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    name.len() <= 253 && name.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> PortRequest {
        text.parse().unwrap()
    }

    #[test]
    fn macs_round_trip_and_follow_the_address() {
        let mac = Mac::from_ipv4(Ipv4Addr::new(10, 89, 1, 2));
        assert_eq!(mac.to_string(), "02:42:0a:59:01:02");
        assert_eq!("02:42:0a:59:01:02".parse::<Mac>(), Ok(mac));
        for bad in ["", "02:42:0a:59:01", "02:42:0a:59:01:02:03", "2:42:0a:59:01:02", "02:42:0a:59:01:zz", "02-42-0a-59-01-02"] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_requests_parse_as_docker_writes_them() {
        let local = Ipv4Addr::LOCALHOST;
        assert_eq!(req("8080"), PortRequest { host_ip: local, host_port: None, container_port: 8080, protocol: Protocol::Tcp });
        assert_eq!(req("18080:80"), PortRequest { host_ip: local, host_port: Some(18080), container_port: 80, protocol: Protocol::Tcp });
        assert_eq!(req("0.0.0.0:53:53/udp"), PortRequest { host_ip: Ipv4Addr::UNSPECIFIED, host_port: Some(53), container_port: 53, protocol: Protocol::Udp });
        assert_eq!(req("127.0.0.2::80"), PortRequest { host_ip: Ipv4Addr::new(127, 0, 0, 2), host_port: None, container_port: 80, protocol: Protocol::Tcp });
    }

    #[test]
    fn malformed_port_requests_are_refused() {
        for bad in ["", "x", "0", "65536", "80/sctp", "1:2:3:4", "::80", "host:80:80", "80:", "-1:80", "8080:80/"] {
            assert!(matches!(bad.parse::<PortRequest>(), Err(PortError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_host_port_is_published_once_per_protocol() {
        let free = publish(&[req("80")]).unwrap()[0].host_port;
        assert!(matches!(publish(&[req(&format!("{free}:80")), req(&format!("{free}:81"))]), Err(PortError::Twice(_))));
        assert_eq!(publish(&[req(&format!("{free}:80")), req(&format!("{free}:80/udp"))]).unwrap().len(), 2);
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(matches!(publish(&[req(&format!("{port}:80"))]), Err(PortError::Unavailable(..))));
        let chosen = publish(&[req("80")]).unwrap();
        assert_ne!(chosen[0].host_port, 0);
        assert_eq!(chosen[0].to_string(), format!("80/tcp -> 127.0.0.1:{}", chosen[0].host_port));
        assert!(matches!(publish(&vec![req("80"); MAX_PUBLISHED_PORTS + 1]), Err(PortError::TooMany)));
    }
}
