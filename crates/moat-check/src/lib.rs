//! moat-check: an isolation checker that tells a workload, honestly, what separates it from
//! the machine's host kernel. It reads only /proc, /sys, /dev and syscall results, so it runs
//! as a static binary in any image (moat bind-mounts it as `/.moat/check`), in another
//! runtime's container, or on a bare host, and it never writes to what it inspects.
//!
//! [`run`] gathers the facts and judges every check; [`main`] is the whole command line,
//! shared by the `moat-check` binary and `moat check`.

pub mod caps;
pub mod checks;
pub mod idmap;
pub mod kversion;
pub mod mountinfo;
pub mod read;
pub mod report;
pub mod status;
pub mod sys;
pub mod vulns;
pub mod zone;

use std::io::Write;

pub use report::{CheckResult, Mode, Priority, Report, Status, TextOptions};

/// Run every check in `mode` against this process and the kernel it runs on.
pub fn run(mode: Mode) -> Report {
    checks::run(mode)
}

/// The command-line flags, shared by both front ends. Names and help live in [`FLAGS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub json: bool,
    pub only_failed: bool,
    pub explain: bool,
    pub host: bool,
}

pub const FLAG_JSON: &str = "Print machine-readable JSON instead of lines";
pub const FLAG_ONLY_FAILED: &str = "Show only the failed checks";
pub const FLAG_EXPLAIN: &str = "Add what each check means and why it matters";
pub const FLAG_HOST: &str = "Judge the host this runs on rather than a workload";

/// `(long name, help)` of every flag, in the order `--help` lists them.
pub const FLAGS: [(&str, &str); 4] =
    [("json", FLAG_JSON), ("only-failed", FLAG_ONLY_FAILED), ("explain", FLAG_EXPLAIN), ("host", FLAG_HOST)];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("unknown argument {0:?} (try --help)")]
    Unknown(String),
}

/// What the arguments ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    Check(Flags),
    Help,
    Version,
}

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, FlagError> {
    let mut flags = Flags::default();
    for arg in args {
        match arg.as_str() {
            "--json" => flags.json = true,
            "--only-failed" => flags.only_failed = true,
            "--explain" => flags.explain = true,
            "--host" => flags.host = true,
            "-h" | "--help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            _ => return Err(FlagError::Unknown(arg)),
        }
    }
    Ok(Invocation::Check(flags))
}

pub fn usage() -> String {
    let mut text = String::from(
        "Usage: moat-check [--json] [--only-failed] [--explain] [--host]\n\n\
         Checks what isolates this workload from the machine's host kernel.\n\
         Exit status: 0 when no high-priority check failed, 1 when one did, 2 on a usage error.\n\nOptions:\n",
    );
    for (name, help) in FLAGS {
        text.push_str(&format!("  --{name:<13} {help}\n"));
    }
    text
}

/// Exit status when a high-priority check failed.
pub const EXIT_HIGH_FAILED: u8 = 1;

/// Run the checks and print the report as `flags` ask. Returns the process exit status.
pub fn main(flags: Flags, out: &mut dyn Write) -> std::io::Result<u8> {
    let mode = if flags.host { Mode::Host } else { Mode::Workload };
    let report = run(mode);
    if flags.json {
        report.write_json(out, flags.only_failed)?;
    } else {
        report.write_text(out, TextOptions { only_failed: flags.only_failed, explain: flags.explain })?;
    }
    out.flush()?;
    Ok(if report.high_failed() { EXIT_HIGH_FAILED } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flags() {
        let flags = Flags { json: true, only_failed: false, explain: true, host: true };
        assert_eq!(parse_args(args(&["--json", "--explain", "--host"])), Ok(Invocation::Check(flags)));
        assert_eq!(parse_args(args(&[])), Ok(Invocation::Check(Flags::default())));
        assert_eq!(parse_args(args(&["--only-failed", "-h"])), Ok(Invocation::Help));
        assert_eq!(parse_args(args(&["--jsn"])), Err(FlagError::Unknown("--jsn".into())));
    }

    #[test]
    fn usage_lists_every_flag() {
        let text = usage();
        for (name, help) in FLAGS {
            assert!(text.contains(&format!("--{name}")) && text.contains(help), "{text}");
        }
    }
}
