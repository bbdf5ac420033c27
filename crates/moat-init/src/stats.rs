//! A container's figures from its cgroup v2 files and its process's network namespace. A file
//! the zone lacks (a controller not enabled) reads as nothing, so its figures are 0.

use std::io::Read;
use std::path::Path;

use moat_proto::stats::{ContainerStats, CpuStats, IoStats, MemoryStats, NetStats, PidsStats};
use nix::unistd::Pid;

/// Most bytes read of one cgroup file: `memory.stat` is about 1.5 KiB, `io.stat` a line per
/// device.
const MAX_CGROUP_FILE: u64 = 64 * 1024;

/// The figures of the cgroup `dir`, with the network of process `pid`'s namespace (zeros
/// without a live process: its number may be another's by now); `None` once the cgroup is gone
/// (runc deleted it).
pub fn read(dir: &Path, pid: Option<Pid>) -> Option<ContainerStats> {
    let cpu_stat = read_file(&dir.join("cpu.stat"))?;
    let file = |name: &str| read_file(&dir.join(name)).unwrap_or_default();
    let cpu = parse_cpu(&cpu_stat);
    let memory = parse_memory(&file("memory.current"), &file("memory.max"), &file("memory.stat"), &file("memory.events"));
    let pids = PidsStats { current: single(&file("pids.current")).unwrap_or(0), max: single(&file("pids.max")) };
    let io = parse_io(&file("io.stat"));
    // The process's own view: `/proc/<pid>/net` is the network namespace that process is in.
    let net = pid.and_then(|pid| read_file(&Path::new("/proc").join(pid.to_string()).join("net/dev"))).map_or_else(NetStats::default, |text| parse_net_dev(&text));
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let read_at_usec = u64::try_from(std::time::Duration::from(now).as_micros()).unwrap_or(u64::MAX);
    Some(ContainerStats { read_at_usec, cpu, memory, pids, io, net })
}

fn read_file(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_CGROUP_FILE).read_to_string(&mut text)).ok()?;
    Some(text)
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines); 0 when absent or not
/// a number.
pub fn keyed(text: &str, key: &str) -> u64 {
    text.lines().filter_map(|line| line.split_once(' ')).find(|(k, _)| *k == key).and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(0)
}

/// A single-value file: a number, or `None` for `max` (or nothing).
fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn parse_cpu(text: &str) -> CpuStats {
    CpuStats {
        usage_usec: keyed(text, "usage_usec"),
        user_usec: keyed(text, "user_usec"),
        system_usec: keyed(text, "system_usec"),
        nr_periods: keyed(text, "nr_periods"),
        nr_throttled: keyed(text, "nr_throttled"),
        throttled_usec: keyed(text, "throttled_usec"),
    }
}

fn parse_memory(current: &str, max: &str, stat: &str, events: &str) -> MemoryStats {
    MemoryStats {
        current: single(current).unwrap_or(0),
        max: single(max),
        anon: keyed(stat, "anon"),
        file: keyed(stat, "file"),
        kernel_stack: keyed(stat, "kernel_stack"),
        slab: keyed(stat, "slab"),
        sock: keyed(stat, "sock"),
        shmem: keyed(stat, "shmem"),
        file_mapped: keyed(stat, "file_mapped"),
        file_dirty: keyed(stat, "file_dirty"),
        file_writeback: keyed(stat, "file_writeback"),
        inactive_anon: keyed(stat, "inactive_anon"),
        active_anon: keyed(stat, "active_anon"),
        inactive_file: keyed(stat, "inactive_file"),
        active_file: keyed(stat, "active_file"),
        unevictable: keyed(stat, "unevictable"),
        pgfault: keyed(stat, "pgfault"),
        pgmajfault: keyed(stat, "pgmajfault"),
        events_max: keyed(events, "max"),
        events_oom: keyed(events, "oom"),
        events_oom_kill: keyed(events, "oom_kill"),
    }
}

/// `io.stat`: a line per device, `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
fn parse_io(text: &str) -> IoStats {
    let mut io = IoStats::default();
    for (key, value) in text.lines().flat_map(|line| line.split_whitespace().skip(1)).filter_map(|field| field.split_once('=')) {
        let Ok(value) = value.parse::<u64>() else { continue };
        let sum = match key {
            "rbytes" => &mut io.read_bytes,
            "wbytes" => &mut io.write_bytes,
            "rios" => &mut io.read_ios,
            "wios" => &mut io.write_ios,
            _ => continue,
        };
        *sum = sum.saturating_add(value);
    }
    io
}

/// `/proc/net/dev`: two header lines, then a line per interface, `name: ` and 16 counters, the
/// receive side's bytes, packets, errs and drop first and the transmit side's from the ninth.
/// Loopback traffic never leaves the container, so `lo` is left out.
fn parse_net_dev(text: &str) -> NetStats {
    let mut net = NetStats::default();
    for (name, counters) in text.lines().filter_map(|line| line.split_once(':')) {
        if name.trim() == "lo" {
            continue;
        }
        let counters: Vec<u64> = counters.split_whitespace().map_while(|c| c.parse().ok()).collect();
        if counters.len() < 12 {
            continue;
        }
        let sums = [
            (&mut net.rx_bytes, counters[0]),
            (&mut net.rx_packets, counters[1]),
            (&mut net.rx_errors, counters[2]),
            (&mut net.rx_dropped, counters[3]),
            (&mut net.tx_bytes, counters[8]),
            (&mut net.tx_packets, counters[9]),
            (&mut net.tx_errors, counters[10]),
            (&mut net.tx_dropped, counters[11]),
        ];
        for (sum, value) in sums {
            *sum = sum.saturating_add(value);
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat() {
        let text = "usage_usec 52143\nuser_usec 30100\nsystem_usec 22043\nnr_periods 4\nnr_throttled 1\nthrottled_usec 900\n";
        let cpu = parse_cpu(text);
        assert_eq!((cpu.usage_usec, cpu.user_usec, cpu.system_usec), (52143, 30100, 22043));
        assert_eq!((cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec), (4, 1, 900));
        assert_eq!(parse_cpu("usage_usec 5\n").nr_periods, 0, "without the cpu controller only usage, user and system");
    }

    #[test]
    fn memory_files() {
        let stat = "anon 1232896\nfile 524288\nkernel_stack 16384\ninactive_file 262144\npgfault 1200\n";
        let m = parse_memory("2097152\n", "max\n", stat, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
        assert_eq!((m.current, m.max), (2_097_152, None));
        assert_eq!((m.anon, m.file, m.kernel_stack, m.inactive_file, m.pgfault), (1_232_896, 524_288, 16384, 262_144, 1200));
        assert_eq!((m.events_max, m.events_oom, m.events_oom_kill), (4, 1, 1));
        assert_eq!(parse_memory("1\n", "67108864\n", "", "").max, Some(64 << 20));
        assert_eq!(parse_memory("", "", "", ""), MemoryStats::default(), "no memory controller");
    }

    #[test]
    fn io_stat_sums_devices_and_skips_what_it_cannot_read() {
        let text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n254:16 rbytes=100 wbytes=0 rios=3 wios=0 dbytes=0 dios=0\n7:0 rbytes=junk wbytes=18446744073709551615\n";
        let io = parse_io(text);
        assert_eq!((io.read_bytes, io.read_ios, io.write_ios), (4196, 4, 2));
        assert_eq!(io.write_bytes, u64::MAX, "saturates; the host refuses it");
    }

    #[test]
    fn net_dev_sums_interfaces_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:  999999     100    0    0    0     0          0         0   999999     100    0    0    0     0       0          0\n  \
             eth0:    1200      10    1    2    0     0          0         0      648       8    3    4    0     0       0          0\n  \
             eth1:     100       1    0    0    0     0          0         0       52       1    0    0    0     0       0          0\n  \
             junk: 5 6\n";
        let net = parse_net_dev(text);
        assert_eq!(net, NetStats { rx_bytes: 1300, rx_packets: 11, rx_errors: 1, rx_dropped: 2, tx_bytes: 700, tx_packets: 9, tx_errors: 3, tx_dropped: 4 });
        let only_loopback = "Inter-|\n face |\n    lo:  999999     100    0    0    0     0          0         0   999999     100    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(only_loopback), NetStats::default(), "no network: zeros");
        assert_eq!(parse_net_dev(""), NetStats::default());
    }

    #[test]
    fn pids_limits() {
        assert_eq!(single("max\n"), None);
        assert_eq!(single("42\n"), Some(42));
    }

    #[test]
    fn a_gone_cgroup_has_no_figures() {
        assert_eq!(read(Path::new("/nonexistent/cgroup"), Some(Pid::this())), None);
    }
}
