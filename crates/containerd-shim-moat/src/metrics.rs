//! A container's figures as containerd's cgroup v2 `Metrics` (what runc's shim gives for
//! `ctr task metrics` and the CRI's container stats), packed as containerd's `Any`.

use containerd_shim::protos::cgroups_v2::metrics::{CPUStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, NetworkStat, PidsStat};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use moat_proto::ContainerStats;

/// The type URL containerd's typeurl registry knows cgroup v2 metrics by: the bare message
/// name, without protobuf's `type.googleapis.com/` prefix.
const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// The name of the one network entry, which stands for the zone's interfaces summed.
const ALL_INTERFACES: &str = "all";

/// containerd's word for no limit (`max` in a cgroup file).
const NO_LIMIT: u64 = u64::MAX;

pub fn metrics(stats: &ContainerStats) -> Metrics {
    let (c, m, p, io, net) = (&stats.cpu, &stats.memory, &stats.pids, &stats.io, &stats.net);
    let cpu = CPUStat { usage_usec: c.usage_usec, user_usec: c.user_usec, system_usec: c.system_usec, nr_periods: c.nr_periods, nr_throttled: c.nr_throttled, throttled_usec: c.throttled_usec, ..Default::default() };
    let memory = MemoryStat {
        anon: m.anon,
        file: m.file,
        kernel_stack: m.kernel_stack,
        slab: m.slab,
        sock: m.sock,
        shmem: m.shmem,
        file_mapped: m.file_mapped,
        file_dirty: m.file_dirty,
        file_writeback: m.file_writeback,
        inactive_anon: m.inactive_anon,
        active_anon: m.active_anon,
        inactive_file: m.inactive_file,
        active_file: m.active_file,
        unevictable: m.unevictable,
        pgfault: m.pgfault,
        pgmajfault: m.pgmajfault,
        usage: m.current,
        usage_limit: m.max.unwrap_or(NO_LIMIT),
        ..Default::default()
    };
    let events = MemoryEvents { max: m.events_max, oom: m.events_oom, oom_kill: m.events_oom_kill, ..Default::default() };
    // The zone sums its devices: one entry stands for them all.
    let io = IOStat { usage: vec![IOEntry { rbytes: io.read_bytes, wbytes: io.write_bytes, rios: io.read_ios, wios: io.write_ios, ..Default::default() }], ..Default::default() };
    let network = NetworkStat {
        name: ALL_INTERFACES.to_string(),
        rx_bytes: net.rx_bytes,
        rx_packets: net.rx_packets,
        rx_errors: net.rx_errors,
        rx_dropped: net.rx_dropped,
        tx_bytes: net.tx_bytes,
        tx_packets: net.tx_packets,
        tx_errors: net.tx_errors,
        tx_dropped: net.tx_dropped,
        ..Default::default()
    };
    Metrics {
        network: vec![network],
        pids: MessageField::some(PidsStat { current: p.current, limit: p.max.unwrap_or(NO_LIMIT), ..Default::default() }),
        cpu: MessageField::some(cpu),
        memory: MessageField::some(memory),
        io: MessageField::some(io),
        memory_events: MessageField::some(events),
        ..Default::default()
    }
}

/// `metrics` as the task API's `StatsResponse.stats` carries it.
pub fn pack(metrics: &Metrics) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any { type_url: METRICS_TYPE_URL.to_string(), value: metrics.write_to_bytes()?, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_land_in_containerds_fields_and_round_trip() {
        let mut stats = ContainerStats::default();
        stats.cpu.usage_usec = 52_000;
        stats.memory.current = 3 << 20;
        stats.pids.current = 2;
        stats.io.write_bytes = 4096;
        stats.net.rx_bytes = 1200;
        let packed = pack(&metrics(&stats)).unwrap();
        assert_eq!(packed.type_url, "io.containerd.cgroups.v2.Metrics");
        let back = Metrics::parse_from_bytes(&packed.value).unwrap();
        assert_eq!(back.cpu.usage_usec, 52_000);
        assert_eq!((back.memory.usage, back.memory.usage_limit), (3 << 20, u64::MAX), "no limit is containerd's max");
        assert_eq!((back.pids.current, back.pids.limit), (2, u64::MAX));
        assert_eq!(back.io.usage[0].wbytes, 4096);
        assert_eq!((back.network[0].name.as_str(), back.network[0].rx_bytes), ("all", 1200));
    }
}
