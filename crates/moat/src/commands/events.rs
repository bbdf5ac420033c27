//! `moat events`: Docker's `docker events`, from the state root's event journal.

mod time;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use moat_zone::events::{Action, Event, EventType};
use moat_zone::state::ZoneStore;

use self::time::{now_nanos, parse_time};

/// How often a follower looks for new events.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Docker's line: time, type, action, id, then the attributes in parentheses.
    Text,
    /// One JSON object an event a line.
    Json,
}

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Show events from this time on: `now`, a unix time (1700000000.5), an RFC 3339 time
    /// (2026-11-29T06:00:00Z) or a duration ago (10m, 1h30m). Default: now, or the oldest kept
    /// event with --until.
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms) instead of following new events until interrupted.
    #[arg(long)]
    until: Option<String>,
    /// container=NAME|ID, event=ACTION or type=container|zone; several values of one key match
    /// any of them, different keys must all match.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// How each event is printed.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(root: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let now = now_nanos();
    let until = args.until.as_deref().map(|t| parse_time(t, now).with_context(|| format!("--until {t}"))).transpose()?;
    let since = match args.since.as_deref() {
        Some(t) => parse_time(t, now).with_context(|| format!("--since {t}"))?,
        None if until.is_some() => 0,
        None => now,
    };
    let filters = Filters::parse(&args.filters)?;
    let store = ZoneStore::open(root).with_context(|| format!("opening the state root {}", root.display()))?;
    let mut reader = store.journal().reader();
    let mut out = std::io::stdout().lock();
    loop {
        // Taken before reading, so the last read covers every event up to `until`.
        let past_until = until.is_some_and(|u| now_nanos() > u);
        let mut printed = Ok(());
        reader
            .read_new(|event| {
                let wanted = event.time_nano >= since && until.is_none_or(|u| event.time_nano <= u) && filters.matches(&event);
                if wanted && printed.is_ok() {
                    printed = print(&mut out, &event, args.format);
                }
            })
            .context("reading the event journal")?;
        match printed {
            // A closed pipe (`moat events | head`) is the reader's way of saying it has enough.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            other => other.context("writing events")?,
        }
        if past_until {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn print(out: &mut impl Write, event: &Event, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(event).map_err(std::io::Error::other)?),
        Format::Text => writeln!(out, "{}", text_line(event)),
    }
}

/// `2026-11-29T06:00:00.123456789Z container die ID (exitCode=3, image=busybox, name=web)`.
fn text_line(event: &Event) -> String {
    let secs = i64::try_from(event.time_nano / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = u32::try_from(event.time_nano % 1_000_000_000).unwrap_or(0);
    let time = chrono::DateTime::from_timestamp(secs, nanos).map_or_else(|| event.time.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let mut attributes = event.attributes.clone();
    attributes.insert("name".into(), event.name.clone());
    let attributes: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let line = format!("{time} {} {} {} ({})", event.kind.as_str(), event.action.as_str(), event.id, attributes.join(", "));
    // Names and reasons come from records on disk: keep the line one line.
    line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `--filter` as Docker reads it: one key's values are alternatives, the keys all apply.
#[derive(Default)]
struct Filters {
    containers: Vec<String>,
    actions: Vec<Action>,
    types: Vec<EventType>,
}

impl Filters {
    fn parse(filters: &[String]) -> anyhow::Result<Self> {
        let mut parsed = Self::default();
        for filter in filters {
            let Some((key, value)) = filter.split_once('=') else { bail!("--filter {filter}: expected KEY=VALUE") };
            match key {
                "container" => parsed.containers.push(value.to_string()),
                "event" => parsed.actions.push(one_of(filter, value, &Action::ALL, |a| a.as_str())?),
                "type" => parsed.types.push(one_of(filter, value, &EventType::ALL, |t| t.as_str())?),
                _ => bail!("--filter {filter}: unknown filter {key:?}; use container, event or type"),
            }
        }
        Ok(parsed)
    }

    fn matches(&self, event: &Event) -> bool {
        let container = |key: &String| event.name == *key || (!key.is_empty() && event.id.starts_with(key.as_str()));
        (self.containers.is_empty() || self.containers.iter().any(container))
            && (self.actions.is_empty() || self.actions.contains(&event.action))
            && (self.types.is_empty() || self.types.contains(&event.kind))
    }
}

fn one_of<T: Copy>(filter: &str, value: &str, all: &[T], name: impl Fn(T) -> &'static str) -> anyhow::Result<T> {
    match all.iter().copied().find(|v| name(*v) == value) {
        Some(found) => Ok(found),
        None => bail!("--filter {filter}: expected one of {}", all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventType, action: Action, id: &str, name: &str) -> Event {
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("image".to_string(), "busybox".to_string());
        Event { time: 1_700_000_000, time_nano: 1_700_000_000_123_456_789, kind, action, id: id.into(), name: name.into(), attributes }
    }

    #[test]
    fn the_text_line_is_dockers() {
        let line = text_line(&event(EventType::Container, Action::Start, "0123456789ab", "web"));
        assert_eq!(line, "2023-11-14T22:13:20.123456789Z container start 0123456789ab (image=busybox, name=web)");
    }

    #[test]
    fn filters_of_one_key_are_alternatives_and_keys_all_apply() {
        let filters = Filters::parse(&["container=web".into(), "container=fedcba".into(), "event=die".into(), "event=start".into()]).unwrap();
        assert!(filters.matches(&event(EventType::Container, Action::Die, "0123456789ab", "web")));
        assert!(filters.matches(&event(EventType::Container, Action::Start, "fedcba987654", "db")), "an id prefix");
        assert!(!filters.matches(&event(EventType::Container, Action::Create, "0123456789ab", "web")));
        assert!(!filters.matches(&event(EventType::Container, Action::Die, "999999999999", "cache")));
        let zones = Filters::parse(&["type=zone".into()]).unwrap();
        assert!(zones.matches(&event(EventType::Zone, Action::ZoneFailed, "0123456789ab", "web")));
        assert!(!zones.matches(&event(EventType::Container, Action::Die, "0123456789ab", "web")));
        assert!(Filters::parse(&[]).unwrap().matches(&event(EventType::Zone, Action::ZoneStopped, "a", "b")));
    }

    #[test]
    fn bad_filters_say_what_is_expected() {
        for (bad, says) in [("container", "KEY=VALUE"), ("image=busybox", "unknown filter"), ("event=explode", "create, start"), ("type=volume", "container, zone")] {
            let err = Filters::parse(&[bad.to_string()]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(says) && err.starts_with(&format!("--filter {bad}")), "{bad}: {err}");
        }
    }
}
