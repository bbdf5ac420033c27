//! Moat networks (`moat network create NAME`): zones that reach each other and nothing else.
//! Each network is a host bridge with no address of the host's, so the host is out of reach,
//! and a subnet from which each zone on it gets an address; each zone is a tap on the bridge.
//! Networks share nothing, so zones on different networks cannot reach each other. There is
//! no way out of a network: no gateway answers at the subnet's first address.
//!
//! Records live in `<root>/networks/NAME.json`. The bridge lives in the network namespace the
//! network was created in; a zone started after the bridge went (a reboot) makes it anew.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use moat_proto::net::GuestNetwork;
use moat_zone::host_net::{self, HostNetError};
use moat_zone::network::{BridgeAttachment, Mac, ZoneNetwork};
use moat_zone::state::{new_zone_id, unix_now, validate_name, write_atomic, FileLock, StateError, ZoneRecord};
use serde::{Deserialize, Serialize};

const NETWORKS_DIR: &str = "networks";
const LOCK_FILE: &str = ".lock";
/// Most of a network record that is read.
const MAX_RECORD: u64 = 64 * 1024;
/// The zones' MTU on a network: the bridge's, Ethernet's.
const NETWORK_MTU: u16 = 1500;
/// Names `--network` gives other meanings.
const RESERVED_NAMES: [&str; 5] = ["default", "bridge", "nat", "none", "host"];
/// Subnets chosen when none is given: 10.89.N.0/24, as podman numbers its networks.
const DEFAULT_PREFIX: u8 = 24;
const BRIDGE_PREFIX: &str = "moat-";

#[derive(Debug, thiserror::Error)]
pub enum NetworksError {
    #[error("network name {0:?} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName(String),
    #[error("network name {0:?} is reserved: --network {0} means something else")]
    Reserved(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("no such network: {0} (`moat network ls` lists them)")]
    NotFound(String),
    #[error("network {name} is in use by {zones}; remove them first")]
    InUse { name: String, zones: String },
    #[error("--subnet {0:?}: expected an IPv4 network as ADDRESS/PREFIX, with a prefix from 16 to 29 and no host bits set")]
    BadSubnet(String),
    #[error("subnet {subnet} overlaps network {network}'s ({other})")]
    SubnetTaken { subnet: Subnet, network: String, other: Subnet },
    #[error("no free 10.89.N.0/24 subnet is left; give one with --subnet")]
    NoFreeSubnet,
    #[error("network {0} has no free address left")]
    Full(String),
    #[error("an interface named {0} already exists on the host")]
    BridgeClash(String),
    #[error(transparent)]
    HostNet(#[from] HostNetError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path} is corrupt: {err}")]
    Corrupt { path: PathBuf, err: serde_json::Error },
}

/// Whether `--network NAME` means something other than a moat network.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.contains(&name)
}

/// An IPv4 network: its first address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(prefix: u8) -> u32 {
        u32::MAX << (32 - u32::from(prefix))
    }

    fn first(&self) -> u32 {
        u32::from(self.address)
    }

    fn last(&self) -> u32 {
        self.first() | !Self::mask(self.prefix)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// The address no zone gets, where a gateway would be.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first() + 1)
    }

    /// The addresses zones get: past the gateway, short of the broadcast address.
    fn zone_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (self.first() + 2..self.last()).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NetworksError;

    fn from_str(text: &str) -> Result<Self, NetworksError> {
        let bad = || NetworksError::BadSubnet(text.to_string());
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (16..=29).contains(p)).ok_or_else(bad)?;
        if u32::from(address) & !Self::mask(prefix) != 0 {
            return Err(bad());
        }
        Ok(Self { address, prefix })
    }
}


moat_proto::serde_as_text!(Subnet);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub subnet: Subnet,
    /// The host bridge: `moat-` and the start of the id.
    pub bridge: String,
    pub created_unix: u64,
}

/// The networks under one state root.
pub struct NetworkStore {
    dir: PathBuf,
}

impl NetworkStore {
    pub fn open(root: &Path) -> Result<Self, NetworksError> {
        let dir = root.join(NETWORKS_DIR);
        std::fs::create_dir_all(&dir).map_err(|err| NetworksError::Io { path: dir.clone(), err })?;
        Ok(Self { dir })
    }

    /// Held while networks are made or removed, and while a zone's address is chosen and its
    /// record written, so two zones never get the same address.
    pub fn lock(&self) -> Result<FileLock, NetworksError> {
        Ok(FileLock::acquire(&self.dir.join(LOCK_FILE))?)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn get(&self, name: &str) -> Result<NetworkRecord, NetworksError> {
        validate_name(name).map_err(|_| NetworksError::NotFound(name.to_string()))?;
        let path = self.path(name);
        let text = moat_zone::state::read_bounded(&path, MAX_RECORD).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => NetworksError::NotFound(name.to_string()),
            _ => NetworksError::Io { path: path.clone(), err },
        })?;
        serde_json::from_str(&text).map_err(|err| NetworksError::Corrupt { path, err })
    }

    pub fn list(&self) -> Result<Vec<NetworkRecord>, NetworksError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| NetworksError::Io { path: self.dir.clone(), err })?;
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(String::from)).collect();
        names.sort();
        names.iter().map(|name| self.get(name)).collect()
    }

    /// Make network `name` with `subnet` (a free 10.89.N.0/24 when none): its record and its
    /// bridge. Nothing is left behind when it fails.
    pub fn create(&self, name: &str, subnet: Option<Subnet>) -> Result<NetworkRecord, NetworksError> {
        validate_name(name).map_err(|_| NetworksError::BadName(name.to_string()))?;
        if is_reserved(name) {
            return Err(NetworksError::Reserved(name.to_string()));
        }
        let _lock = self.lock()?;
        if self.path(name).exists() {
            return Err(NetworksError::Exists(name.to_string()));
        }
        let others = self.list()?;
        let subnet = match subnet {
            Some(subnet) => {
                if let Some(other) = others.iter().find(|o| o.subnet.overlaps(&subnet)) {
                    return Err(NetworksError::SubnetTaken { subnet, network: other.name.clone(), other: other.subnet });
                }
                subnet
            }
            None => (1..=255u8)
                .map(|n| Subnet { address: Ipv4Addr::new(10, 89, n, 0), prefix: DEFAULT_PREFIX })
                .find(|s| !others.iter().any(|o| o.subnet.overlaps(s)))
                .ok_or(NetworksError::NoFreeSubnet)?,
        };
        let id = new_zone_id()?;
        let bridge = format!("{BRIDGE_PREFIX}{}", &id[..10]);
        if host_net::link_exists(&bridge) {
            return Err(NetworksError::BridgeClash(bridge));
        }
        let record = NetworkRecord { name: name.to_string(), id, subnet, bridge, created_unix: unix_now() };
        host_net::create_bridge(&record.bridge)?;
        let json = serde_json::to_vec_pretty(&record).map_err(|err| NetworksError::Corrupt { path: self.path(name), err })?;
        if let Err(err) = write_atomic(&self.path(name), &json) {
            let _ = host_net::delete_link(&record.bridge);
            return Err(err.into());
        }
        Ok(record)
    }

    /// Remove network `name` and its bridge; refused while a zone on it runs (a zone that
    /// ended never starts again).
    pub fn remove(&self, name: &str, zones: &[ZoneRecord]) -> Result<NetworkRecord, NetworksError> {
        let _lock = self.lock()?;
        let record = self.get(name)?;
        let users: Vec<&str> = zones.iter().filter(|z| z.config.network.network_name() == Some(name) && !z.effective_state().is_terminal()).map(|z| z.name.as_str()).collect();
        if !users.is_empty() {
            return Err(NetworksError::InUse { name: name.to_string(), zones: users.join(", ") });
        }
        if host_net::link_exists(&record.bridge) {
            host_net::delete_link(&record.bridge)?;
        }
        std::fs::remove_file(self.path(name)).map_err(|err| NetworksError::Io { path: self.path(name), err })?;
        Ok(record)
    }

    /// A place on network `name` for a new zone: the first address no zone in `zones` has. The
    /// caller holds [`Self::lock`] until the zone's record is written. Makes the bridge anew if
    /// it went.
    pub fn attach(&self, name: &str, zones: &[ZoneRecord]) -> Result<BridgeAttachment, NetworksError> {
        let record = self.get(name)?;
        let taken: Vec<Ipv4Addr> = zones.iter().filter_map(|z| match &z.config.network {
            ZoneNetwork::Bridge(b) if b.network == name => Some(b.guest.address),
            _ => None,
        }).collect();
        let address = record.subnet.zone_addresses().find(|a| !taken.contains(a)).ok_or_else(|| NetworksError::Full(name.to_string()))?;
        if !host_net::link_exists(&record.bridge) {
            host_net::create_bridge(&record.bridge)?;
        }
        let guest = GuestNetwork { address, prefix: record.subnet.prefix, gateway: record.subnet.gateway(), mtu: NETWORK_MTU };
        Ok(BridgeAttachment { network: record.name, bridge: record.bridge, guest, mac: Mac::from_ipv4(address) })
    }
}

/// `/etc/hosts` lines naming the containers of the zones on `network` other than `own_zone`,
/// for as long as their zones run.
pub fn peer_hosts(zones: &[ZoneRecord], network: &str, own_zone: &str) -> String {
    let mut lines = String::new();
    for zone in zones.iter().filter(|z| z.id != own_zone && !z.effective_state().is_terminal()) {
        let ZoneNetwork::Bridge(bridge) = &zone.config.network else { continue };
        if bridge.network != network {
            continue;
        }
        for container in &zone.containers {
            lines.push_str(&format!("{}\t{}\n", bridge.guest.address, container.name));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let s: Subnet = "10.89.1.0/24".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 89, 1, 1));
        assert_eq!(s.zone_addresses().next(), Some(Ipv4Addr::new(10, 89, 1, 2)));
        assert_eq!(s.zone_addresses().last(), Some(Ipv4Addr::new(10, 89, 1, 254)));
        assert!(s.overlaps(&"10.89.0.0/16".parse().unwrap()));
        assert!(!s.overlaps(&"10.89.2.0/24".parse().unwrap()));
        for bad in ["10.89.1.1/24", "10.89.1.0", "10.89.1.0/8", "10.89.1.0/30", "x/24", "10.89.1.0/24/1"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_names_and_missing_networks_change_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = NetworkStore::open(root.path()).unwrap();
        assert!(matches!(store.create("none", None), Err(NetworksError::Reserved(_))));
        assert!(matches!(store.create("a/b", None), Err(NetworksError::BadName(_))));
        assert!(matches!(store.get("n1"), Err(NetworksError::NotFound(_))));
        assert!(matches!(store.get("../x"), Err(NetworksError::NotFound(_))));
        assert!(matches!(store.remove("n1", &[]), Err(NetworksError::NotFound(_))));
        assert!(store.list().unwrap().is_empty());
    }
}
