//! Verdicts and their two renderings: human lines grouped by priority, and JSON.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// Whether the checker judges a workload (the default) or the host it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Workload,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Medium,
    Low,
}

impl Priority {
    const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    fn heading(self) -> &'static str {
        match self {
            Priority::High => "High priority (isolation from the host kernel)",
            Priority::Medium => "Medium priority (privileges and hardening)",
            Priority::Low => "Low priority (informational)",
        }
    }
}

/// `Warn` covers both "not decidable from here" and "informational": the reason says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Warn,
}

impl Status {
    fn mark(self) -> &'static str {
        match self {
            Status::Pass => "🟢",
            Status::Fail => "🔴",
            Status::Warn => "🟡",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Status::Pass => "passed",
            Status::Fail => "failed",
            Status::Warn => "warning",
        }
    }
}

/// One check's verdict. `id` is stable for scripts; `title` reads as "<title> test passed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub priority: Priority,
    pub status: Status,
    pub reason: String,
    pub explain: String,
}

impl CheckResult {
    pub fn new(id: &str, title: &str, priority: Priority, explain: &str, verdict: Verdict) -> Self {
        Self {
            id: id.to_string(),
            title: title.to_string(),
            priority,
            status: verdict.status,
            reason: verdict.reason,
            explain: explain.to_string(),
        }
    }
}

/// A status with its one-line reason: what every check's pure evaluation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Self {
        Self { status: Status::Pass, reason: reason.into() }
    }
    pub fn fail(reason: impl Into<String>) -> Self {
        Self { status: Status::Fail, reason: reason.into() }
    }
    pub fn warn(reason: impl Into<String>) -> Self {
        Self { status: Status::Warn, reason: reason.into() }
    }
}

/// What the checker saw about the kernel it runs on, printed once at the top.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSummary {
    pub release: String,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub mode: Mode,
    pub kernel: KernelSummary,
    pub checks: Vec<CheckResult>,
}

/// How to render a report for people.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    pub only_failed: bool,
    pub explain: bool,
}

impl Report {
    /// True when a high-priority check failed: the exit status is then non-zero.
    pub fn high_failed(&self) -> bool {
        self.checks.iter().any(|c| c.priority == Priority::High && c.status == Status::Fail)
    }

    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    fn shown(&self, only_failed: bool) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(move |c| !only_failed || c.status == Status::Fail)
    }

    pub fn write_text(&self, out: &mut dyn Write, opts: TextOptions) -> io::Result<()> {
        let mode = match self.mode {
            Mode::Workload => "workload",
            Mode::Host => "host",
        };
        let zone = self.kernel.zone.as_deref().map(|z| format!(", moat zone {z}")).unwrap_or_default();
        writeln!(out, "moat-check {}: {mode} mode, kernel {}{zone}", env!("CARGO_PKG_VERSION"), self.kernel.release)?;
        for priority in Priority::ALL {
            let group: Vec<&CheckResult> = self.shown(opts.only_failed).filter(|c| c.priority == priority).collect();
            if group.is_empty() {
                continue;
            }
            writeln!(out, "\n{}", priority.heading())?;
            for check in group {
                writeln!(out, "  {} {} test {}: {}", check.status.mark(), check.title, check.status.word(), check.reason)?;
                if opts.explain {
                    writeln!(out, "     why: {}", check.explain)?;
                }
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        writeln!(
            out,
            "\n{} passed, {} failed, {} warnings{}",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Warn),
            if self.high_failed() { "; a high-priority check failed" } else { "" }
        )
    }

    pub fn write_json(&self, out: &mut dyn Write, only_failed: bool) -> io::Result<()> {
        let shown = Report { checks: self.shown(only_failed).cloned().collect(), ..self.clone() };
        serde_json::to_writer_pretty(&mut *out, &shown).map_err(io::Error::other)?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, priority: Priority, verdict: Verdict) -> CheckResult {
        CheckResult::new(id, id, priority, "because", verdict)
    }

    fn sample() -> Report {
        Report {
            mode: Mode::Workload,
            kernel: KernelSummary { release: "6.1.0".into(), zone: None },
            checks: vec![
                result("a", Priority::High, Verdict::pass("fine")),
                result("b", Priority::Medium, Verdict::fail("bad")),
                result("c", Priority::Low, Verdict::warn("hmm")),
            ],
        }
    }

    #[test]
    fn only_high_failures_fail_the_run() {
        let mut report = sample();
        assert!(!report.high_failed());
        report.checks[0].status = Status::Fail;
        assert!(report.high_failed());
    }

    #[test]
    fn text_groups_by_priority_and_filters_failures() {
        let mut out = Vec::new();
        sample().write_text(&mut out, TextOptions { only_failed: true, explain: true }).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("🔴 b test failed: bad"), "{text}");
        assert!(text.contains("why: because"), "{text}");
        assert!(!text.contains("🟢"), "{text}");
        assert!(!text.contains("High priority"), "{text}");
    }

    #[test]
    fn json_round_trips() {
        let mut out = Vec::new();
        sample().write_json(&mut out, false).expect("write");
        let back: Report = serde_json::from_slice(&out).expect("parse");
        assert_eq!(back, sample());
    }
}
