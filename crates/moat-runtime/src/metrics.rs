//! The host's zones and containers as Prometheus text (exposition format 0.0.4): a
//! [`Scrape`] gathers their figures at one moment, [`render`] writes them out.

use std::fmt::Write;

use moat_zone::state::ProcessUsage;

use crate::containers::is_running;
use crate::error::Result;
use crate::stats::Stats;
use crate::Runtime;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running zone, with its QEMU's use of the host.
#[derive(Debug, Clone)]
pub struct ZoneSample {
    pub id: String,
    pub name: String,
    /// `None` when its QEMU could not be read (it ended meanwhile).
    pub usage: Option<ProcessUsage>,
}

/// A container that was running when listed.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub id: String,
    pub name: String,
    /// Its zone's name.
    pub zone: String,
    /// `None` when it stopped, or its zone went, between listing and sampling: it is left out.
    pub stats: Option<Stats>,
}

/// Every running zone and container at one moment.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub zones: Vec<ZoneSample>,
    pub containers: Vec<ContainerSample>,
}

impl Runtime {
    /// Sample every running zone and container.
    pub fn scrape(&self) -> Result<Scrape> {
        let zones = self
            .store()
            .list()?
            .into_iter()
            .filter(|zone| !zone.effective_state().is_terminal())
            .map(|zone| ZoneSample { usage: zone.qemu.and_then(|qemu| qemu.usage()), id: zone.id, name: zone.name })
            .collect();
        let containers = self
            .containers()
            .list()?
            .into_iter()
            .filter(is_running)
            .map(|found| ContainerSample {
                stats: self.containers().stats(&found).ok(),
                id: found.container.id,
                name: found.container.name,
                zone: found.zone.name,
            })
            .collect();
        Ok(Scrape { zones, containers })
    }
}

/// What a metric family's samples mean to Prometheus.
#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its `# HELP` and `# TYPE` lines, then a line per labelled sample.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(String, f64)>,
}

const MICROS_PER_SECOND: f64 = 1e6;

/// The figure of one container that each container family shows.
type ContainerFigure = fn(&Stats) -> f64;

const CONTAINER_FAMILIES: [(&str, &str, Kind, ContainerFigure); 8] = [
    ("moat_container_cpu_usage_seconds_total", "CPU time the container's cgroup used, by the zone's clock.", Kind::Counter, |s| s.container.cpu.usage_usec as f64 / MICROS_PER_SECOND),
    ("moat_container_memory_usage_bytes", "Memory the container's cgroup is charged for, page cache included.", Kind::Gauge, |s| s.container.memory.current as f64),
    ("moat_container_memory_limit_bytes", "Memory the container may use: its cgroup's limit, or else its zone's memory.", Kind::Gauge, |s| s.memory_limit as f64),
    ("moat_container_pids", "Processes in the container's cgroup.", Kind::Gauge, |s| s.container.pids.current as f64),
    ("moat_container_block_read_bytes_total", "Bytes the container's cgroup read from block devices.", Kind::Counter, |s| s.container.io.read_bytes as f64),
    ("moat_container_block_write_bytes_total", "Bytes the container's cgroup wrote to block devices.", Kind::Counter, |s| s.container.io.write_bytes as f64),
    ("moat_container_network_receive_bytes_total", "Bytes received on the container's network interfaces, loopback left out.", Kind::Counter, |s| s.container.net.rx_bytes as f64),
    ("moat_container_network_transmit_bytes_total", "Bytes sent on the container's network interfaces, loopback left out.", Kind::Counter, |s| s.container.net.tx_bytes as f64),
];

/// The scrape as Prometheus text: each family's `# HELP` and `# TYPE` once, then its samples.
/// Containers without figures are left out, of the counts too.
pub fn render(scrape: &Scrape) -> String {
    let sampled: Vec<(String, &Stats)> = scrape
        .containers
        .iter()
        .filter_map(|c| Some((labels(&[("container", &c.name), ("id", &c.id), ("zone", &c.zone)]), c.stats.as_ref()?)))
        .collect();
    let zones: Vec<(String, ProcessUsage)> = scrape.zones.iter().filter_map(|z| Some((labels(&[("zone", &z.name), ("id", &z.id)]), z.usage?))).collect();
    let mut families = vec![
        Family { name: "moat_zones", help: "Running zones.", kind: Kind::Gauge, samples: vec![(String::new(), scrape.zones.len() as f64)] },
        Family { name: "moat_containers", help: "Running containers.", kind: Kind::Gauge, samples: vec![(String::new(), sampled.len() as f64)] },
        Family {
            name: "moat_zone_memory_bytes",
            help: "Resident memory of the zone's QEMU on the host: the whole zone's cost.",
            kind: Kind::Gauge,
            samples: zones.iter().map(|(l, u)| (l.clone(), u.rss_bytes as f64)).collect(),
        },
        Family {
            name: "moat_zone_cpu_seconds_total",
            help: "User and system CPU time of the zone's QEMU on the host.",
            kind: Kind::Counter,
            samples: zones.iter().map(|(l, u)| (l.clone(), u.cpu_usec as f64 / MICROS_PER_SECOND)).collect(),
        },
    ];
    families.extend(CONTAINER_FAMILIES.iter().map(|(name, help, kind, figure)| Family { name, help, kind: *kind, samples: sampled.iter().map(|(l, s)| (l.clone(), figure(s))).collect() }));
    let mut text = String::new();
    for family in &families {
        let kind = match family.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(text, "# HELP {} {}\n# TYPE {} {kind}", family.name, family.help, family.name);
        for (labels, value) in &family.samples {
            let _ = writeln!(text, "{}{labels} {value}", family.name);
        }
    }
    text
}

/// `{name="value",…}`, each value escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value))).collect();
    format!("{{{}}}", inner.join(","))
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use moat_proto::ContainerStats;

    use super::*;

    fn stats(memory: u64, pids: u64) -> Stats {
        let mut container = ContainerStats::default();
        container.cpu.usage_usec = 1_500_000;
        container.memory.current = memory;
        container.pids.current = pids;
        container.io.write_bytes = 4096;
        container.net.rx_bytes = 1200;
        container.net.tx_bytes = 648;
        Stats { container, zone: None, memory_limit: 512 << 20 }
    }

    fn scrape() -> Scrape {
        Scrape {
            zones: vec![ZoneSample { id: "z1".into(), name: "web".into(), usage: Some(ProcessUsage { rss_bytes: 300 << 20, cpu_usec: 2_250_000 }) }],
            containers: vec![
                ContainerSample { id: "c1".into(), name: "box".into(), zone: "web".into(), stats: Some(stats(48 << 20, 3)) },
                ContainerSample { id: "c2".into(), name: "gone".into(), zone: "web".into(), stats: None },
                ContainerSample { id: "c3".into(), name: "other".into(), zone: "web".into(), stats: Some(stats(1 << 20, 1)) },
            ],
        }
    }

    fn sample_lines<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.split(['{', ' ']).next() == Some(family)).collect()
    }

    #[test]
    fn figures_land_in_their_families_with_labels() {
        let text = render(&scrape());
        assert_eq!(sample_lines(&text, "moat_zones"), ["moat_zones 1"]);
        assert_eq!(sample_lines(&text, "moat_zone_memory_bytes"), [format!("moat_zone_memory_bytes{{zone=\"web\",id=\"z1\"}} {}", 300u64 << 20)]);
        assert_eq!(sample_lines(&text, "moat_zone_cpu_seconds_total"), ["moat_zone_cpu_seconds_total{zone=\"web\",id=\"z1\"} 2.25"]);
        assert_eq!(
            sample_lines(&text, "moat_container_memory_usage_bytes"),
            [format!("moat_container_memory_usage_bytes{{container=\"box\",id=\"c1\",zone=\"web\"}} {}", 48u64 << 20), format!("moat_container_memory_usage_bytes{{container=\"other\",id=\"c3\",zone=\"web\"}} {}", 1u64 << 20)]
        );
        assert_eq!(sample_lines(&text, "moat_container_cpu_usage_seconds_total")[0], "moat_container_cpu_usage_seconds_total{container=\"box\",id=\"c1\",zone=\"web\"} 1.5");
        assert_eq!(sample_lines(&text, "moat_container_pids")[0], "moat_container_pids{container=\"box\",id=\"c1\",zone=\"web\"} 3");
        assert_eq!(sample_lines(&text, "moat_container_network_transmit_bytes_total")[0], "moat_container_network_transmit_bytes_total{container=\"box\",id=\"c1\",zone=\"web\"} 648");
        assert!(text.contains("# TYPE moat_container_block_write_bytes_total counter\n"), "{text}");
        assert!(text.contains("# TYPE moat_container_memory_limit_bytes gauge\n"), "{text}");
    }

    #[test]
    fn a_container_without_figures_is_left_out() {
        let text = render(&scrape());
        assert!(!text.contains("gone"), "{text}");
        assert_eq!(sample_lines(&text, "moat_containers"), ["moat_containers 2"]);
        assert_eq!(sample_lines(&text, "moat_container_pids").len(), 2);
    }

    #[test]
    fn each_family_has_help_and_type_once_before_its_samples() {
        let text = render(&scrape());
        let families: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
        for family in &families {
            for prefix in ["# HELP", "# TYPE"] {
                let heads: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.starts_with(&format!("{prefix} {family} "))).map(|(i, _)| i).collect();
                assert_eq!(heads.len(), 1, "{prefix} {family}: {text}");
                let first_sample = text.lines().position(|l| l.split(['{', ' ']).next() == Some(*family)).unwrap();
                assert!(heads[0] < first_sample, "{prefix} {family} before its samples: {text}");
            }
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 12);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nnext"), "line\\nnext");
        assert_eq!(escape_label_value("plain-name_1"), "plain-name_1");
        let mut scrape = scrape();
        scrape.containers[0].name = "evil\"} 1\nmoat_zones{x=\"".into();
        let text = render(&scrape);
        assert_eq!(sample_lines(&text, "moat_zones"), ["moat_zones 1"], "no line forged: {text}");
        assert!(text.contains(r#"container="evil\"} 1\nmoat_zones{x=\"",id="c1""#), "{text}");
    }

    #[test]
    fn no_zones_still_names_every_family() {
        let text = render(&Scrape::default());
        assert!(text.contains("moat_zones 0\n") && text.contains("moat_containers 0\n"), "{text}");
        assert!(text.contains("# HELP moat_container_pids "), "{text}");
    }
}
