//! The zone's network as the host configures it and init applies it: one virtio-net device,
//! named on the kernel command line (`moat.net=ADDRESS/PREFIX,GATEWAY,MTU`), which only the
//! host controls. A zone without the argument has no network device, only loopback.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kernel command line's key for [`GuestNetwork`].
pub const KERNEL_ARG: &str = "moat.net";

/// The name the zone's one network device has in the pod (the kernel's first name for it).
pub const INTERFACE: &str = "eth0";

/// The zone's address on its network, its default route and the device's MTU; kept in the
/// zone's record as its kernel argument's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GuestNetwork {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{KERNEL_ARG}={0:?} is not ADDRESS/PREFIX,GATEWAY,MTU")]
pub struct BadGuestNetwork(pub String);

impl GuestNetwork {
    /// The `moat.net=…` word of the kernel command line.
    pub fn kernel_arg(&self) -> String {
        format!("{KERNEL_ARG}={self}")
    }

    /// The network the kernel command line names, if any.
    pub fn from_cmdline(cmdline: &str) -> Result<Option<Self>, BadGuestNetwork> {
        let prefix = format!("{KERNEL_ARG}=");
        cmdline.split_whitespace().find_map(|word| word.strip_prefix(prefix.as_str())).map(str::parse).transpose()
    }
}

impl fmt::Display for GuestNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{},{},{}", self.address, self.prefix, self.gateway, self.mtu)
    }
}


impl FromStr for GuestNetwork {
    type Err = BadGuestNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadGuestNetwork(text.to_string());
        let mut fields = text.split(',');
        let (Some(cidr), Some(gateway), Some(mtu), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else { return Err(bad()) };
        let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let network = Self {
            address: address.parse().map_err(|_| bad())?,
            prefix: prefix.parse().ok().filter(|p| (1..=30).contains(p)).ok_or_else(bad)?,
            gateway: gateway.parse().map_err(|_| bad())?,
            mtu: mtu.parse().ok().filter(|m| *m >= 576).ok_or_else(bad)?,
        };
        Ok(network)
    }
}

crate::serde_as_text!(GuestNetwork);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_argument_round_trips() {
        let net = GuestNetwork { address: Ipv4Addr::new(10, 0, 2, 100), prefix: 24, gateway: Ipv4Addr::new(10, 0, 2, 2), mtu: 65520 };
        assert_eq!(net.kernel_arg(), "moat.net=10.0.2.100/24,10.0.2.2,65520");
        let cmdline = format!("console=ttyS0 {} moat.zone=x", net.kernel_arg());
        assert_eq!(GuestNetwork::from_cmdline(&cmdline), Ok(Some(net)));
        assert_eq!(GuestNetwork::from_cmdline("console=ttyS0"), Ok(None));
    }

    #[test]
    fn malformed_arguments_are_refused() {
        for bad in ["", "10.0.2.100,10.0.2.2,1500", "10.0.2.100/33,10.0.2.2,1500", "10.0.2.100/24,10.0.2.2", "10.0.2.100/24,x,1500", "10.0.2.100/24,10.0.2.2,100", "10.0.2.100/24,10.0.2.2,1500,1"] {
            assert!(bad.parse::<GuestNetwork>().is_err(), "{bad:?}");
        }
    }
}
