//! The zone's NAT: one passt process per zone, the other end of the zone's virtio-net device
//! (QEMU's `-netdev stream`, over a socket pair the supervisor makes and hands to both: passt
//! drops to the zone's passt uid, which could not reach a socket file in the zone's directory).
//! passt turns the zone's frames into ordinary socket calls on the host and forwards published
//! ports back. It runs as a uid of its own (see [`crate::jail::passt_uid`]), in namespaces of
//! its own, with a seccomp filter (all its defaults), and quits when QEMU hangs up.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::helper::{Helper, HelperCommand, HelperError, INHERITED_FD};
use crate::network::{Nat, Protocol, NAT_DNS, NAT_GUEST};

pub const PASST_BINARY: &str = "passt";

/// passt's command line for one zone.
pub struct Config<'a> {
    pub nat: &'a Nat,
    /// The uid and gid passt drops to.
    pub runas: u32,
}

impl Config<'_> {
    pub fn args(&self) -> Vec<OsString> {
        let guest = NAT_GUEST;
        let mut args: Vec<OsString> = vec!["--foreground".into(), "--quiet".into(), "--ipv4-only".into(), "--fd".into(), INHERITED_FD.to_string().into()];
        args.extend(["--runas".into(), format!("{0}:{0}", self.runas).into()]);
        let pairs = [("--address", guest.address.to_string()), ("--netmask", guest.prefix.to_string()), ("--gateway", guest.gateway.to_string()), ("--dns-forward", NAT_DNS.to_string())];
        for (flag, value) in pairs {
            args.extend([flag.into(), value.into()]);
        }
        // Init configures the zone's address itself; nothing in the zone needs these answered.
        args.extend(["--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra"].map(OsString::from));
        if !self.nat.host_gateway {
            // Otherwise connections to the gateway reach the host's loopback.
            args.push("--no-map-gw".into());
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let flag = match protocol {
                Protocol::Tcp => "--tcp-ports",
                Protocol::Udp => "--udp-ports",
            };
            let specs: Vec<String> = self.nat.ports.iter().filter(|p| p.protocol == protocol).map(|p| format!("{}/{}:{}", p.host_ip, p.host_port, p.container_port)).collect();
            // Explicitly none: passt would otherwise forward UDP on every published TCP port.
            if specs.is_empty() {
                args.extend([flag.into(), "none".into()]);
            }
            for spec in specs {
                args.extend([flag.into(), spec.into()]);
            }
        }
        args
    }
}

/// Start passt for one zone, on its end of the socket pair (it quits when the other end
/// closes); see [`Helper`].
pub async fn start(config: &Config<'_>, socket: OwnedFd, log: &Path) -> Result<Helper, HelperError> {
    let command = HelperCommand { name: "network (passt)", binary: PASST_BINARY, package: "passt", args: config.args(), socket: None, inherit: Some(socket), log };
    Helper::start(command).await
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::network::PublishedPort;

    fn args(nat: &Nat) -> String {
        let config = Config { nat, runas: 1234 };
        config.args().into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_hosts_loopback_is_closed_unless_asked_for() {
        let closed = args(&Nat::default());
        assert!(closed.starts_with("--foreground --quiet --ipv4-only --fd 3 --runas 1234:1234 --address 10.0.2.100 --netmask 24 --gateway 10.0.2.2 --dns-forward 10.0.2.3"), "{closed}");
        assert!(closed.contains("--no-map-gw"));
        assert!(closed.ends_with("--tcp-ports none --udp-ports none"));
        assert!(!args(&Nat { ports: vec![], host_gateway: true }).contains("--no-map-gw"));
    }

    #[test]
    fn published_ports_are_bound_to_their_address() {
        let port = |host_port, container_port, protocol| PublishedPort { host_ip: Ipv4Addr::LOCALHOST, host_port, container_port, protocol };
        let nat = Nat { ports: vec![port(18080, 80, Protocol::Tcp), port(18081, 81, Protocol::Tcp)], host_gateway: false };
        assert!(args(&nat).ends_with("--tcp-ports 127.0.0.1/18080:80 --tcp-ports 127.0.0.1/18081:81 --udp-ports none"));
        let nat = Nat { ports: vec![port(5353, 53, Protocol::Udp)], host_gateway: false };
        assert!(args(&nat).ends_with("--tcp-ports none --udp-ports 127.0.0.1/5353:53"));
    }
}
