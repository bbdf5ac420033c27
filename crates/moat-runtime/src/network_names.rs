//! Names on a moat network: every container finds the containers of the network's other zones
//! in its `/etc/hosts`, by name. A new container gets the names of those already there; those
//! already there get its name when it is created, and lose it when it is removed: the runtime
//! rewrites their files through their zones (`UpdateHosts`). The file each container was
//! created with (its own names, `--add-host`) is kept beside its record, and the network's
//! names follow it.

use std::time::Duration;

use moat_zone::api::{self, ApiRequest, ApiResponse};
use moat_zone::state::{read_bounded, write_atomic, ZoneDir, ZoneStore};

use crate::error::Result;
use crate::networks::peer_hosts;

/// The file, in a container's directory on the host, that holds its own `/etc/hosts`.
const OWN_HOSTS: &str = "hosts";
const MAX_OWN_HOSTS: u64 = moat_proto::MAX_HOSTS_FILE as u64 / 2;
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `/etc/hosts` of a new container `id` of the zone in `dir`, on `network`: `own` and the
/// names of the network's other containers. `own` is kept for later rewrites.
pub fn new_container_hosts(store: &ZoneStore, dir: &ZoneDir, zone_id: &str, id: &str, network: &str, own: &str) -> Result<String> {
    write_atomic(&dir.container_dir(id).join(OWN_HOSTS), own.as_bytes())?;
    Ok(format!("{own}{}", peer_hosts(&store.list()?, network, zone_id)))
}

/// Rewrite the `/etc/hosts` of every container on `network` outside zone `except`, after a
/// container came or went there. A zone that does not answer (it is stopping) is left as it is.
pub fn refresh(store: &ZoneStore, network: &str, except: &str) -> Result<()> {
    let zones = store.list()?;
    let on_network = zones.iter().filter(|z| z.id != except && z.config.network.network_name() == Some(network) && !z.effective_state().is_terminal());
    for zone in on_network {
        let dir = store.dir(&zone.id);
        let peers = peer_hosts(&zones, network, &zone.id);
        for container in &zone.containers {
            let Ok(own) = read_bounded(&dir.container_dir(&container.id).join(OWN_HOSTS), MAX_OWN_HOSTS) else { continue };
            let request = ApiRequest::UpdateHosts { container: container.id.clone(), hosts: format!("{own}{peers}") };
            if let Ok(ApiResponse::Error { message, .. }) = api::call(&dir.api_socket(), &request, UPDATE_TIMEOUT) {
                tracing::debug!(zone = %zone.name, container = %container.name, %message, "updating /etc/hosts");
            }
        }
    }
    Ok(())
}
