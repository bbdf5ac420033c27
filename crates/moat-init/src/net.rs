//! The zone's network device, moved into the pod's network namespace and configured there
//! before any container starts: its address, MTU and default route, as the host named them on
//! the kernel command line (see [`moat_proto::net`]). A few rtnetlink requests do it; the zone
//! has no `ip` of its own.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use moat_proto::net::{GuestNetwork, INTERFACE};
use nix::sys::socket::{bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

/// How long the device may take to appear once its driver is loaded.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(5);

const NLMSG_HEADER: usize = 16;
const IFLA_MTU: u16 = 4;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the zone's network device {INTERFACE} did not appear within {DEVICE_TIMEOUT:?}")]
    NoDevice,
    #[error("{what}: {err}")]
    Sys { what: &'static str, err: nix::Error },
    #[error("{what}: the kernel answered {err}")]
    Refused { what: &'static str, err: nix::Error },
    #[error("{what}: the kernel's answer was malformed")]
    Malformed { what: &'static str },
}

/// The device's index in the current network namespace, once it exists.
fn wait_for_device() -> Result<u32, NetError> {
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    loop {
        if let Ok(index) = nix::net::if_::if_nametoindex(INTERFACE) {
            return Ok(index);
        }
        if Instant::now() > deadline {
            return Err(NetError::NoDevice);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Move the zone's device (in init's network namespace) into `netns`.
pub fn move_device(netns: RawFd) -> Result<(), NetError> {
    let index = wait_for_device()?;
    let fd = u32::try_from(netns).map_err(|_| NetError::Sys { what: "moving the network device", err: nix::Error::EBADF })?;
    let mut message = link_message(index, 0);
    attribute(&mut message, IFLA_NET_NS_FD, &fd.to_ne_bytes());
    request(libc::RTM_NEWLINK, 0, message, "moving the network device into the pod")
}

/// Configure the device in the current network namespace (the pod's).
pub fn configure(network: &GuestNetwork) -> Result<(), NetError> {
    let index = wait_for_device()?;
    let mut link = link_message(index, libc::IFF_UP as u32);
    attribute(&mut link, IFLA_MTU, &u32::from(network.mtu).to_ne_bytes());
    request(libc::RTM_NEWLINK, 0, link, "bringing the network device up")?;

    let mut address = vec![libc::AF_INET as u8, network.prefix, 0, 0];
    address.extend_from_slice(&index.to_ne_bytes());
    attribute(&mut address, IFA_LOCAL, &network.address.octets());
    attribute(&mut address, IFA_ADDRESS, &network.address.octets());
    let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    request(libc::RTM_NEWADDR, create, address, "setting the zone's address")?;

    let mut route = vec![libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0, 0, 0, 0];
    attribute(&mut route, RTA_GATEWAY, &network.gateway.octets());
    attribute(&mut route, RTA_OIF, &index.to_ne_bytes());
    request(libc::RTM_NEWROUTE, create, route, "adding the default route")
}

/// An `ifinfomsg` for device `index`, setting `flags` (and changing only those).
fn link_message(index: u32, flags: u32) -> Vec<u8> {
    let mut message = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    message.extend_from_slice(&index.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message
}

/// Append an rtattr, padded to four bytes.
fn attribute(message: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(data);
    message.resize(message.len().next_multiple_of(4), 0);
}

/// Send one rtnetlink request and wait for its acknowledgement.
fn request(kind: u16, flags: u16, body: Vec<u8>, what: &'static str) -> Result<(), NetError> {
    let sys = |err| NetError::Sys { what, err };
    let sock: OwnedFd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute).map_err(sys)?;
    bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(sys)?;
    let len = NLMSG_HEADER + body.len();
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&(flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&body);
    send(sock.as_raw_fd(), &message, MsgFlags::empty()).map_err(sys)?;
    let mut answer = [0u8; 1024];
    let got = recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(sys)?;
    acknowledged(&answer[..got]).map_err(|err| match err {
        Some(err) => NetError::Refused { what, err },
        None => NetError::Malformed { what },
    })
}

/// Whether the answer is a success ack: `Err(Some(errno))` for a refusal, `Err(None)` for
/// anything else.
fn acknowledged(answer: &[u8]) -> Result<(), Option<nix::Error>> {
    let field = |at: usize, n: usize| answer.get(at..at + n).ok_or(None);
    let kind = u16::from_ne_bytes(field(4, 2)?.try_into().map_err(|_| None)?);
    if kind != libc::NLMSG_ERROR as u16 {
        return Err(None);
    }
    let code = i32::from_ne_bytes(field(NLMSG_HEADER, 4)?.try_into().map_err(|_| None)?);
    match code {
        0 => Ok(()),
        negative => Err(Some(nix::Error::from_raw(-negative))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut message = Vec::new();
        attribute(&mut message, 3, b"eth0\0");
        assert_eq!(message.len(), 12);
        assert_eq!(&message[..4], &[9, 0, 3, 0]);
    }

    #[test]
    fn acks_and_refusals_are_told_apart() {
        let ack = |code: i32| {
            let mut answer = vec![0u8; NLMSG_HEADER];
            answer[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            answer.extend_from_slice(&code.to_ne_bytes());
            answer
        };
        assert_eq!(acknowledged(&ack(0)), Ok(()));
        assert_eq!(acknowledged(&ack(-libc::EEXIST)), Err(Some(nix::Error::EEXIST)));
        assert_eq!(acknowledged(&[1, 2, 3]), Err(None));
    }
}
