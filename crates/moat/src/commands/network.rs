//! Network flags (`-p`, `-P`, `--network`, `--add-host`, `--dns…`) and `moat port`. The flags
//! are parsed here once into the runtime's types; what they mean is the runtime's business.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use moat_runtime::network::{ExtraHost, NameConfig, NetworkMode, NetworkRequest};
use moat_runtime::Runtime;
use moat_zone::network::PortRequest;

/// What a zone's network is: `moat run` (its own zone) and `moat pod create`.
#[derive(Args, Default)]
pub struct ZoneNetworkFlags {
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]. The host side binds to
    /// 127.0.0.1 unless IP is given; without HOST_PORT a free one is chosen.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// `default` (NAT to the host's network; Docker's `bridge`), `none` (loopback only), a
    /// network's name (`moat network create`), or `ns:PATH`: a network namespace a CNI plugin
    /// set up, whose veth's address the zone takes over.
    #[arg(long)]
    pub network: Option<String>,
    /// Add NAME:IP to /etc/hosts; NAME:host-gateway leads to the host's loopback.
    #[arg(long)]
    pub add_host: Vec<String>,
}

/// A container's resolver settings.
#[derive(Args, Default)]
pub struct NameFlags {
    /// A DNS server for the container's /etc/resolv.conf.
    #[arg(long)]
    pub dns: Vec<String>,
    #[arg(long)]
    pub dns_search: Vec<String>,
    #[arg(long = "dns-option")]
    pub dns_options: Vec<String>,
}

impl ZoneNetworkFlags {
    /// Whether any flag that belongs to a zone (not to a container in a pod) was given.
    pub fn zone_setting(&self) -> Option<&'static str> {
        if !self.publish.is_empty() {
            Some("--publish")
        } else if self.network.is_some() {
            Some("--network")
        } else {
            None
        }
    }

    /// The zone's network request, without names (`extra_hosts`); `exposed` are the image's
    /// ports that `-P` publishes.
    pub fn request(&self, exposed: &[String]) -> anyhow::Result<NetworkRequest> {
        let mode = self.network.as_deref().map_or(Ok(NetworkMode::Nat), str::parse::<NetworkMode>)?;
        let mut ports = self.publish.iter().map(|p| p.parse::<PortRequest>()).collect::<Result<Vec<_>, _>>()?;
        for port in exposed {
            ports.push(port.parse::<PortRequest>().with_context(|| format!("the image's exposed port {port:?}"))?);
        }
        Ok(NetworkRequest { mode, ports, extra_hosts: Vec::new() })
    }

    /// The request of a zone that is not one container's own (a pod, a bare zone): the names
    /// are the zone's, for every container in it.
    pub fn shared_zone_request(&self) -> anyhow::Result<NetworkRequest> {
        Ok(NetworkRequest { extra_hosts: self.extra_hosts()?, ..self.request(&[])? })
    }

    pub fn extra_hosts(&self) -> anyhow::Result<Vec<ExtraHost>> {
        Ok(self.add_host.iter().map(|h| h.parse::<ExtraHost>()).collect::<Result<_, _>>()?)
    }
}

impl NameFlags {
    pub fn config(&self, extra_hosts: Vec<ExtraHost>) -> anyhow::Result<NameConfig> {
        let dns = self.dns.iter().map(|d| d.parse().with_context(|| format!("--dns {d:?} is not an IP address"))).collect::<anyhow::Result<_>>()?;
        let names = NameConfig { dns, dns_search: self.dns_search.clone(), dns_options: self.dns_options.clone(), extra_hosts };
        names.validate()?;
        Ok(names)
    }
}

/// `moat port CONTAINER [PORT[/PROTO]]`: the container's published ports, as Docker prints them.
pub fn port(root: &Path, key: &str, filter: Option<&str>) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)?;
    let found = runtime.containers().find(key)?;
    let wanted = filter.map(|f| f.parse::<PortRequest>().with_context(|| format!("port {f:?}"))).transpose()?;
    let ports = found.zone.config.network.published().iter().filter(|p| wanted.is_none_or(|w| (w.container_port, w.protocol) == (p.container_port, p.protocol)));
    for port in ports {
        match filter {
            Some(_) => println!("{}:{}", port.host_ip, port.host_port),
            None => println!("{port}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
