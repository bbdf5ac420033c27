//! `moat network create|ls|inspect|rm`: moat networks, whose zones reach each other by name
//! and nothing else.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use moat_runtime::networks::{NetworkRecord, NetworkStore, Subnet};
use moat_zone::state::ZoneStore;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network: a host bridge the host has no address on, and a subnet for its zones.
    Create {
        /// The network's IPv4 subnet (ADDRESS/PREFIX); a free 10.89.N.0/24 when not given.
        #[arg(long)]
        subnet: Option<String>,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON, with the zones on them.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks; one that a zone is on is kept.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(root: &Path, command: NetworkCommand) -> anyhow::Result<ExitCode> {
    let store = NetworkStore::open(root).with_context(|| format!("cannot open the network store under {}", root.display()))?;
    match command {
        NetworkCommand::Create { subnet, name } => {
            let subnet = subnet.map(|s| s.parse::<Subnet>()).transpose()?;
            let record = store.create(&name, subnet)?;
            println!("{}", record.name);
        }
        NetworkCommand::Ls { quiet } => {
            let networks = store.list()?;
            if !quiet {
                println!("{:<14} {:<24} {:<18} BRIDGE", "NETWORK ID", "NAME", "SUBNET");
            }
            for network in networks {
                match quiet {
                    true => println!("{}", network.name),
                    false => println!("{:<14} {:<24} {:<18} {}", network.id, network.name, network.subnet.to_string(), network.bridge),
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let zones = ZoneStore::open(root)?.list()?;
            let shown = names.iter().map(|name| store.get(name).map(|record| inspect_json(&record, &zones))).collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        NetworkCommand::Rm { names } => {
            let zones = ZoneStore::open(root)?.list()?;
            return Ok(super::for_each_name(&names, |name| store.remove(name, &zones).map(|record| record.name)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect_json(network: &NetworkRecord, zones: &[moat_zone::state::ZoneRecord]) -> serde_json::Value {
    let members: Vec<serde_json::Value> = zones
        .iter()
        .filter_map(|zone| match &zone.config.network {
            moat_zone::network::ZoneNetwork::Bridge(b) if b.network == network.name => Some(serde_json::json!({
                "Zone": zone.name,
                "Containers": zone.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                "IPv4Address": format!("{}/{}", b.guest.address, b.guest.prefix),
                "MacAddress": b.mac.to_string(),
            })),
            _ => None,
        })
        .collect();
    serde_json::json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created_unix,
        "Driver": "bridge",
        "Bridge": network.bridge,
        "Subnet": network.subnet.to_string(),
        "Internal": true,
        "Zones": members,
    })
}
