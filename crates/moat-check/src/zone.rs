//! The moat zone marker: a zone kernel boots with `moat.zone=<id> moat.kernel=<release>` on
//! its command line. The marker is a claim, not proof; `boundary` weighs it against the
//! running kernel's release and hardware hints.

/// Zone ids and kernel releases longer than this are not ours; the marker is then ignored.
pub const MAX_MARKER_VALUE: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneMarker {
    pub zone: String,
    /// The release the zone's kernel was booted as; `None` when the marker omits it.
    pub kernel: Option<String>,
}

fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    // Parameters after a bare "--" go to init, not the kernel.
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .last()
        .filter(|v| !v.is_empty() && v.len() <= MAX_MARKER_VALUE)
}

pub fn parse(cmdline: &str) -> Option<ZoneMarker> {
    let zone = value(cmdline, "moat.zone")?;
    Some(ZoneMarker { zone: zone.to_string(), kernel: value(cmdline, "moat.kernel").map(str::to_string) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_parameters() {
        let m = parse("console=hvc0 moat.zone=z1 moat.kernel=6.1.0-18-cloud-amd64 quiet").expect("marker");
        assert_eq!(m.zone, "z1");
        assert_eq!(m.kernel.as_deref(), Some("6.1.0-18-cloud-amd64"));
    }

    #[test]
    fn absent_empty_or_oversized_markers_do_not_count() {
        assert_eq!(parse("console=ttyS0 quiet reboot=k"), None);
        assert_eq!(parse("moat.zone= moat.kernel=6.1"), None);
        assert_eq!(parse(&format!("moat.zone={}", "z".repeat(MAX_MARKER_VALUE + 1))), None);
        assert_eq!(parse("moat.zonex=1"), None);
    }

    #[test]
    fn init_arguments_are_not_kernel_parameters() {
        assert_eq!(parse("quiet -- moat.zone=z1 moat.kernel=6.1"), None);
        let m = parse("moat.zone=z1 -- moat.kernel=6.1").expect("marker");
        assert_eq!(m.kernel, None);
    }

    #[test]
    fn last_occurrence_wins_like_the_kernel() {
        assert_eq!(parse("moat.zone=a moat.zone=b").map(|m| m.zone).as_deref(), Some("b"));
    }
}
