//! The times `moat events --since/--until` take, as nanoseconds since the Unix epoch.

use anyhow::{bail, Context};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// `now`, a Unix time (`1700000000`, `1700000000.5`), an RFC 3339 time (`2026-11-29T06:00:00Z`),
/// or a duration (`10m`, `1h30m`, `1.5s`, `300ms`) meaning that long before `now`.
pub fn parse_time(text: &str, now: u64) -> anyhow::Result<u64> {
    let expected = "expected `now`, a unix time (1700000000.5), an RFC 3339 time (2026-11-29T06:00:00Z) or a duration ago (10m, 1h30m)";
    if text == "now" {
        return Ok(now);
    }
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return parse_unix(text).context(expected);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        let nanos = time.timestamp_nanos_opt().and_then(|n| u64::try_from(n).ok());
        return nanos.with_context(|| format!("outside the years 1970 to 2262; {expected}"));
    }
    match parse_duration_nanos(text) {
        Some(ago) => Ok(now.saturating_sub(ago)),
        None => bail!("{expected}"),
    }
}

fn parse_unix(text: &str) -> anyhow::Result<u64> {
    let (secs, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if secs.is_empty() || fraction.is_empty() || fraction.len() > 9 || fraction.contains('.') {
        bail!("not a unix time");
    }
    let secs: u64 = secs.parse().context("not a unix time")?;
    let nanos: u64 = format!("{fraction:0<9}").parse().context("not a unix time")?;
    secs.checked_mul(NANOS_PER_SEC).and_then(|n| n.checked_add(nanos)).context("too far in the future")
}

/// `1h30m`, `10m`, `1.5s`, `300ms`: numbers, each with its unit (h, m, s, ms).
fn parse_duration_nanos(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3600 * 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        if whole.is_empty() || fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        let fraction_nanos = fraction.parse::<u128>().ok()? * unit_nanos / 10u128.pow(u32::try_from(fraction.len()).ok()?);
        total = total.checked_add(whole.parse::<u128>().ok()?.checked_mul(unit_nanos)?)?.checked_add(fraction_nanos)?;
        rest = after;
    }
    if text.is_empty() {
        return None;
    }
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000 * NANOS_PER_SEC;

    #[test]
    fn unix_times_with_and_without_a_fraction() {
        assert_eq!(parse_time("1700000000", NOW).unwrap(), 1_700_000_000 * NANOS_PER_SEC);
        assert_eq!(parse_time("1700000000.5", NOW).unwrap(), 1_700_000_000 * NANOS_PER_SEC + 500_000_000);
        assert_eq!(parse_time("1700000000.000000001", NOW).unwrap(), 1_700_000_000 * NANOS_PER_SEC + 1);
        assert_eq!(parse_time("now", NOW).unwrap(), NOW);
    }

    #[test]
    fn rfc3339_times_with_any_offset() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z", NOW).unwrap(), 1_700_000_000 * NANOS_PER_SEC);
        assert_eq!(parse_time("2023-11-15T00:13:20.25+02:00", NOW).unwrap(), 1_700_000_000 * NANOS_PER_SEC + 250_000_000);
    }

    #[test]
    fn durations_are_that_long_ago() {
        assert_eq!(parse_time("10m", NOW).unwrap(), NOW - 600 * NANOS_PER_SEC);
        assert_eq!(parse_time("1h30m", NOW).unwrap(), NOW - 5400 * NANOS_PER_SEC);
        assert_eq!(parse_time("30s", NOW).unwrap(), NOW - 30 * NANOS_PER_SEC);
        assert_eq!(parse_time("1.5s", NOW).unwrap(), NOW - 1_500_000_000);
        assert_eq!(parse_time("250ms", NOW).unwrap(), NOW - 250_000_000);
        assert_eq!(parse_time("600000h", NOW).unwrap(), 0, "before the epoch is the epoch");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "garbage", "10x", "m", "1.2.3", "1700000000.", ".5", "1700000000.1234567890", "99999999999999999999", "10m5", "1e9s", "-10m", "2023-11-14", "1.s", "1.2.3s", "1000000000000h"] {
            let parsed = parse_time(bad, NOW);
            assert!(parsed.is_err(), "{bad:?} gave {parsed:?}");
        }
    }
}
