//! The zone's network as its supervisor sets it up before QEMU starts: passt for NAT, or a tap
//! (on a moat network's bridge, or in a namespace another tool set up), and what QEMU gets of
//! it. Undone with the zone.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use super::{io, SupervisorError};
use crate::helper::{Helper, HelperError};
use crate::network::ZoneNetwork;
use crate::qemu::{NetBackend, VmNetwork};
use crate::state::{ZoneDir, ZoneRecord};
use crate::{host_net, passt, tap};

pub(super) struct ZoneNet {
    pub passt: Option<Helper>,
    /// QEMU's end (passt's socket, or the tap) and how QEMU uses it (naming that descriptor);
    /// taken when QEMU starts.
    pub qemu: Option<(OwnedFd, VmNetwork)>,
    /// The namespace and veth whose redirection to the tap is undone at the end.
    redirected: Option<(PathBuf, String)>,
}

impl ZoneNet {
    pub async fn start(dir: &ZoneDir, record: &ZoneRecord) -> Result<Self, SupervisorError> {
        let mac = record.config.network.mac();
        let end = |fd: OwnedFd, backend| {
            let vm = VmNetwork { backend, mac, fd: fd.as_raw_fd() };
            Some((fd, vm))
        };
        let tap_end = |fd| end(fd, NetBackend::Tap);
        let name = tap::tap_name(&record.id);
        match &record.config.network {
            ZoneNetwork::None => Ok(Self { passt: None, qemu: None, redirected: None }),
            ZoneNetwork::Nat(nat) => {
                let (passt_end, qemu_end) = std::os::unix::net::UnixStream::pair().map(|(a, b)| (OwnedFd::from(a), OwnedFd::from(b))).map_err(io("making the zone's network socket pair"))?;
                let runas = crate::jail::passt_uid(std::process::id());
                let passt = passt::start(&passt::Config { nat, runas }, passt_end, &dir.passt_log()).await?;
                Ok(Self { passt: Some(passt), qemu: end(qemu_end, NetBackend::Stream), redirected: None })
            }
            ZoneNetwork::Bridge(bridge) => {
                let fd = tap::open(&name, None)?;
                host_net::join_bridge(&name, &bridge.bridge)?;
                Ok(Self { passt: None, qemu: tap_end(fd), redirected: None })
            }
            ZoneNetwork::Namespace(namespace) => {
                let fd = tap::open(&name, Some(&namespace.netns))?;
                if let Err(err) = host_net::redirect(&namespace.netns, &namespace.interface, &name, namespace.guest.mtu) {
                    let _ = host_net::remove_redirect(&namespace.netns, &namespace.interface);
                    return Err(err.into());
                }
                Ok(Self { passt: None, qemu: tap_end(fd), redirected: Some((namespace.netns.clone(), namespace.interface.clone())) })
            }
        }
    }

    /// How the network's helper ended; never, when there is none.
    pub async fn exited(&mut self) -> HelperError {
        match self.passt.as_mut() {
            Some(helper) => helper.exited().await,
            None => std::future::pending().await,
        }
    }

    /// After QEMU: end passt, and give the veth its own traffic back.
    pub async fn stop(self) {
        if let Some(passt) = self.passt {
            passt.stop().await;
        }
        if let Some((netns, veth)) = self.redirected {
            if let Err(err) = host_net::remove_redirect(&netns, &veth) {
                tracing::warn!(%err, "removing the redirection of the namespace's veth");
            }
        }
    }
}
