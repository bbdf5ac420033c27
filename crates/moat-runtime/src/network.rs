//! What a zone's network is (`--network`, `-p`, `--add-host NAME:host-gateway`) and what each
//! container finds in `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` (`--hostname`,
//! `--dns`, `--dns-search`, `--dns-option`, `--add-host`), written as Docker writes them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use moat_proto::NameFiles;
use moat_zone::network::{is_host_name, publish, ExtraHostError, HostTarget, Nat, NamespaceAttachment, PortError, PortRequest, Protocol, ZoneNetwork};
use moat_zone::state::{validate_name, FileLock, ZoneConfig, ZoneRecord, ZoneStore};

use crate::networks::{NetworkStore, NetworksError};
pub use moat_zone::network::ExtraHost;

/// Where the host's resolver configuration is read from, for a zone without a DNS of its own.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Most of the host's resolver file that is read.
const MAX_RESOLV_CONF: u64 = 64 * 1024;
/// Most `--dns`, `--dns-search`, `--dns-option` and `--add-host` values a container may have.
const MAX_NAME_ENTRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("network {0:?} not found (the networks are default, bridge, none, ns:PATH and those `moat network ls` lists)")]
    NoSuchNetwork(String),
    #[error("--network none has no ports to publish")]
    PortsWithoutNetwork,
    #[error("-p publishes ports of the default network only; a zone on {0} is reached from its network")]
    PortsOffNat(String),
    #[error("--add-host {0}:host-gateway needs the default network: other networks have no way to the host")]
    HostGatewayOffNat(String),
    #[error("--network ns:{0:?}: give the network namespace's absolute path")]
    RelativeNamespace(String),
    #[error("the network namespace {path} is already the zone {zone}'s")]
    NamespaceInUse { path: PathBuf, zone: String },
    #[error(transparent)]
    Networks(#[from] NetworksError),
    #[error(transparent)]
    HostNet(#[from] moat_zone::host_net::HostNetError),
    #[error("publishing UDP port {0} needs --add-host NAME:host-gateway: this host's passt (Debian 12) returns UDP replies to clients on the host only through the gateway mapping, which also opens the host's loopback to the zone")]
    UdpNeedsHostGateway(u16),
    #[error(transparent)]
    ExtraHost(#[from] ExtraHostError),
    #[error("--add-host {0}:host-gateway needs a network (not --network none)")]
    HostGatewayWithoutNetwork(String),
    #[error("--add-host {0}:host-gateway: the pod's zone was made without a way to the host; create the pod with --add-host NAME:host-gateway")]
    NoHostGateway(String),
    #[error("--dns-search {0:?} is not a domain name")]
    BadSearchDomain(String),
    #[error("--dns-option {0:?} is not a resolver option")]
    BadResolverOption(String),
    #[error("at most {MAX_NAME_ENTRIES} of each of --dns, --dns-search, --dns-option and --add-host")]
    TooManyEntries,
    #[error("{0} belongs to the pod (moat pod create {0})")]
    PodSetting(&'static str),
}

/// `--network`: the zone's NAT (`default`, Docker's `bridge`), none, a moat network by name,
/// or `ns:PATH`, a network namespace another tool (a CNI plugin) set up, whose veth's address
/// the zone takes over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    #[default]
    Nat,
    None,
    Named(String),
    Namespace(PathBuf),
}

impl FromStr for NetworkMode {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, NetworkError> {
        match text {
            "default" | "bridge" | "nat" => Ok(NetworkMode::Nat),
            "none" => Ok(NetworkMode::None),
            other => match other.strip_prefix("ns:") {
                Some(path) if Path::new(path).is_absolute() => Ok(NetworkMode::Namespace(PathBuf::from(path))),
                Some(path) => Err(NetworkError::RelativeNamespace(path.to_string())),
                None if validate_name(other).is_ok() && !crate::networks::is_reserved(other) => Ok(NetworkMode::Named(other.to_string())),
                None => Err(NetworkError::NoSuchNetwork(other.to_string())),
            },
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Nat => f.write_str("default"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Named(name) => f.write_str(name),
            NetworkMode::Namespace(path) => write!(f, "ns:{}", path.display()),
        }
    }
}

/// What the user asked of a zone's network.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    pub mode: NetworkMode,
    pub ports: Vec<PortRequest>,
    /// Names for every container of the zone; a `host-gateway` one opens the way from the
    /// zone's gateway to the host's loopback.
    pub extra_hosts: Vec<ExtraHost>,
}

impl NetworkRequest {
    /// The zone's network (see [`Self::zone_network`]), and the lock of the network store to
    /// hold until the zone's record is written, for a zone on a moat network.
    pub fn resolve(&self, zones: &ZoneStore) -> Result<(ZoneNetwork, Option<FileLock>), NetworkError> {
        let networks = NetworkStore::open(zones.root())?;
        let lock = matches!(self.mode, NetworkMode::Named(_)).then(|| networks.lock()).transpose()?;
        let records = zones.list().map_err(NetworksError::State)?;
        Ok((self.zone_network(&networks, &records)?, lock))
    }

    /// The zone's network, with each published port's host side chosen and checked free, or
    /// its address on a moat network chosen among those `zones` do not have (the caller holds
    /// the network store's lock until the zone's record is written).
    pub fn zone_network(&self, networks: &NetworkStore, zones: &[ZoneRecord]) -> Result<ZoneNetwork, NetworkError> {
        let host_gateway = self.extra_hosts.iter().find(|h| h.target == HostTarget::HostGateway);
        match (&self.mode, host_gateway) {
            (NetworkMode::None, _) if !self.ports.is_empty() => Err(NetworkError::PortsWithoutNetwork),
            (NetworkMode::None, Some(host)) => Err(NetworkError::HostGatewayWithoutNetwork(host.name.clone())),
            (NetworkMode::None, None) => Ok(ZoneNetwork::None),
            (NetworkMode::Nat, None) if let Some(udp) = self.ports.iter().find(|p| p.protocol == Protocol::Udp) => Err(NetworkError::UdpNeedsHostGateway(udp.container_port)),
            (NetworkMode::Nat, _) => Ok(ZoneNetwork::Nat(Nat { ports: publish(&self.ports)?, host_gateway: host_gateway.is_some() })),
            (mode, _) if !self.ports.is_empty() => Err(NetworkError::PortsOffNat(mode.to_string())),
            (_, Some(host)) => Err(NetworkError::HostGatewayOffNat(host.name.clone())),
            (NetworkMode::Named(name), None) => Ok(ZoneNetwork::Bridge(networks.attach(name, zones)?)),
            (NetworkMode::Namespace(netns), None) => {
                let taken = |z: &&ZoneRecord| !z.effective_state().is_terminal() && matches!(&z.config.network, ZoneNetwork::Namespace(n) if n.netns == *netns);
                if let Some(zone) = zones.iter().find(taken) {
                    return Err(NetworkError::NamespaceInUse { path: netns.clone(), zone: zone.name.clone() });
                }
                let (interface, guest, mac) = moat_zone::host_net::interface_facts(netns)?;
                Ok(ZoneNetwork::Namespace(NamespaceAttachment { netns: netns.clone(), interface, guest, mac }))
            }
        }
    }
}

/// A container's own name-resolution settings.
#[derive(Debug, Clone, Default)]
pub struct NameConfig {
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub extra_hosts: Vec<ExtraHost>,
}

impl NameConfig {
    pub fn validate(&self) -> Result<(), NetworkError> {
        if [self.dns.len(), self.dns_search.len(), self.dns_options.len(), self.extra_hosts.len()].iter().any(|n| *n > MAX_NAME_ENTRIES) {
            return Err(NetworkError::TooManyEntries);
        }
        if let Some(bad) = self.dns_search.iter().find(|d| !is_host_name(d.trim_end_matches('.'))) {
            return Err(NetworkError::BadSearchDomain(bad.clone()));
        }
        let option = |o: &String| !o.is_empty() && o.len() <= 64 && o.chars().all(|c| c.is_ascii_alphanumeric() || ":-_.".contains(c));
        if let Some(bad) = self.dns_options.iter().find(|o| !option(o)) {
            return Err(NetworkError::BadResolverOption(bad.clone()));
        }
        Ok(())
    }
}

/// The files of a container named `hostname` in a zone made as `zone` says.
pub fn name_files(zone: &ZoneConfig, hostname: &str, names: &NameConfig) -> Result<NameFiles, NetworkError> {
    let network = &zone.network;
    Ok(NameFiles {
        hosts: hosts_file(network, zone.extra_hosts.iter().chain(&names.extra_hosts), hostname)?,
        resolv_conf: resolv_conf(network, names, &host_resolver(Path::new(HOST_RESOLV_CONF))),
        hostname: format!("{hostname}\n"),
    })
}

fn hosts_file<'a>(network: &ZoneNetwork, extra_hosts: impl Iterator<Item = &'a ExtraHost>, hostname: &str) -> Result<String, NetworkError> {
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    for extra in extra_hosts {
        let address = match extra.target {
            HostTarget::Address(address) => address,
            HostTarget::HostGateway => match network.host_gateway() {
                Some(gateway) => IpAddr::V4(gateway),
                None if matches!(network, ZoneNetwork::None) => return Err(NetworkError::HostGatewayWithoutNetwork(extra.name.clone())),
                None => return Err(NetworkError::NoHostGateway(extra.name.clone())),
            },
        };
        hosts.push_str(&format!("{address}\t{}\n", extra.name));
    }
    if let Some(guest) = network.guest() {
        hosts.push_str(&format!("{}\t{hostname}\n", guest.address));
    }
    Ok(hosts)
}

/// The host's resolver settings: its nameservers, search domains and options.
#[derive(Debug, Default, PartialEq, Eq)]
struct HostResolver {
    nameservers: Vec<String>,
    search: Vec<String>,
    options: Vec<String>,
}

fn host_resolver(path: &Path) -> HostResolver {
    let text = moat_zone::state::read_bounded(path, MAX_RESOLV_CONF).unwrap_or_default();
    let mut resolver = HostResolver::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => resolver.nameservers.extend(words.next().map(String::from)),
            Some("search" | "domain") => resolver.search = words.map(String::from).collect(),
            Some("options") => resolver.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    resolver
}

/// Docker's rules: the user's `--dns` first; else the zone's own forwarder; else (no network)
/// the host's nameservers that are not on its loopback. Search domains and options are the
/// user's, else the host's.
fn resolv_conf(network: &ZoneNetwork, names: &NameConfig, host: &HostResolver) -> String {
    let nameservers: Vec<String> = if !names.dns.is_empty() {
        names.dns.iter().map(IpAddr::to_string).collect()
    } else if let Some(dns) = network.dns() {
        vec![dns.to_string()]
    } else {
        host.nameservers.iter().filter(|n| !n.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())).cloned().collect()
    };
    let search = if names.dns_search.is_empty() { &host.search } else { &names.dns_search };
    let options = if names.dns_options.is_empty() { &host.options } else { &names.dns_options };
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for nameserver in nameservers {
        text.push_str(&format!("nameserver {nameserver}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn nat(host_gateway: bool) -> ZoneNetwork {
        ZoneNetwork::Nat(Nat { ports: vec![], host_gateway })
    }

    #[test]
    fn extra_hosts_parse_as_docker_writes_them() {
        assert_eq!("db:10.1.2.3".parse::<ExtraHost>().unwrap(), ExtraHost { name: "db".into(), target: HostTarget::Address(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))) });
        assert_eq!("h.moat.internal:host-gateway".parse::<ExtraHost>().unwrap().target, HostTarget::HostGateway);
        assert_eq!("v6:[::1]".parse::<ExtraHost>().unwrap().target, HostTarget::Address("::1".parse().unwrap()));
        for bad in ["db", "db:", ":1.2.3.4", "d b:1.2.3.4", "db:gateway", "a..b:1.2.3.4", "x\n1.2.3.4 evil:1.2.3.4"] {
            assert!(bad.parse::<ExtraHost>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_name_the_container_and_the_extra_hosts() {
        let names = NameConfig { extra_hosts: vec!["host.moat.internal:host-gateway".parse().unwrap(), "db:10.1.2.3".parse().unwrap()], ..Default::default() };
        let hosts = hosts_file(&nat(true), names.extra_hosts.iter(), "web").unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(hosts.ends_with("10.0.2.2\thost.moat.internal\n10.1.2.3\tdb\n10.0.2.100\tweb\n"), "{hosts}");
        assert!(matches!(hosts_file(&nat(false), names.extra_hosts.iter(), "web"), Err(NetworkError::NoHostGateway(_))));
        assert!(matches!(hosts_file(&ZoneNetwork::None, names.extra_hosts.iter(), "web"), Err(NetworkError::HostGatewayWithoutNetwork(_))));
        assert!(!hosts_file(&ZoneNetwork::None, [].iter(), "web").unwrap().contains("web"));
    }

    #[test]
    fn resolv_conf_follows_dockers_rules() {
        let host = HostResolver { nameservers: vec!["127.0.0.53".into(), "192.0.2.53".into()], search: vec!["corp.example".into()], options: vec!["edns0".into()] };
        assert_eq!(resolv_conf(&nat(false), &NameConfig::default(), &host), "search corp.example\nnameserver 10.0.2.3\noptions edns0\n");
        assert_eq!(resolv_conf(&ZoneNetwork::None, &NameConfig::default(), &host), "search corp.example\nnameserver 192.0.2.53\noptions edns0\n");
        let own = NameConfig { dns: vec!["9.9.9.9".parse().unwrap()], dns_search: vec!["a.example".into()], dns_options: vec!["ndots:2".into()], ..Default::default() };
        assert_eq!(resolv_conf(&nat(false), &own, &host), "search a.example\nnameserver 9.9.9.9\noptions ndots:2\n");
    }

    #[test]
    fn the_hosts_resolver_file_is_read_by_keyword() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "# comment\ndomain old.example\nsearch a.example b.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions rotate timeout:1\n").unwrap();
        let read = host_resolver(&path);
        assert_eq!(read, HostResolver { nameservers: vec!["192.0.2.1".into(), "192.0.2.2".into()], search: vec!["a.example".into(), "b.example".into()], options: vec!["rotate".into(), "timeout:1".into()] });
        assert_eq!(host_resolver(&dir.path().join("missing")), HostResolver::default());
    }

    #[test]
    fn bad_resolver_settings_are_refused() {
        assert!(NameConfig { dns_search: vec!["a b".into()], ..Default::default() }.validate().is_err());
        assert!(NameConfig { dns_options: vec!["x\nnameserver 1.1.1.1".into()], ..Default::default() }.validate().is_err());
        assert!(NameConfig { dns: vec![IpAddr::V4(Ipv4Addr::LOCALHOST); MAX_NAME_ENTRIES + 1], ..Default::default() }.validate().is_err());
        let root = tempfile::tempdir().unwrap();
        let networks = NetworkStore::open(root.path()).unwrap();
        let zone_network = |mode: NetworkMode, ports: &[&str], extra_hosts: &[&str]| {
            let request = NetworkRequest { mode, ports: ports.iter().map(|p| p.parse().unwrap()).collect(), extra_hosts: extra_hosts.iter().map(|h| h.parse().unwrap()).collect() };
            request.zone_network(&networks, &[])
        };
        assert!(matches!(zone_network(NetworkMode::None, &["80"], &[]), Err(NetworkError::PortsWithoutNetwork)));
        assert!(matches!(zone_network(NetworkMode::None, &[], &["h:host-gateway"]), Err(NetworkError::HostGatewayWithoutNetwork(_))));
        assert!(matches!(zone_network(NetworkMode::Named("n1".into()), &["80"], &[]), Err(NetworkError::PortsOffNat(_))));
        assert!(matches!(zone_network(NetworkMode::Named("n1".into()), &[], &["h:host-gateway"]), Err(NetworkError::HostGatewayOffNat(_))));
        assert!(matches!(zone_network(NetworkMode::Named("n1".into()), &[], &[]), Err(NetworkError::Networks(NetworksError::NotFound(_)))));
        assert!(matches!(zone_network(NetworkMode::Namespace("/nonexistent/netns".into()), &[], &[]), Err(NetworkError::HostNet(_))));
        assert_eq!("n1".parse::<NetworkMode>().unwrap(), NetworkMode::Named("n1".into()));
        assert_eq!("ns:/run/netns/x".parse::<NetworkMode>().unwrap(), NetworkMode::Namespace("/run/netns/x".into()));
        assert!(matches!("ns:x".parse::<NetworkMode>(), Err(NetworkError::RelativeNamespace(_))));
        assert!("a/b".parse::<NetworkMode>().is_err());
        assert!("host".parse::<NetworkMode>().is_err());
        assert!(matches!(zone_network(NetworkMode::Nat, &["53/udp"], &[]), Err(NetworkError::UdpNeedsHostGateway(53))));
        assert!(zone_network(NetworkMode::Nat, &["53/udp"], &["h:host-gateway"]).is_ok());
    }
}
