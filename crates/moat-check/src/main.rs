//! `moat-check`: the static isolation checker. It runs as a container's only process (moat
//! mounts it at `/.moat/check`), copied into any other runtime's container, or on a host.

use std::process::ExitCode;

use anyhow::Context as _;
use moat_check::Invocation;

/// Exit status for usage and output errors, distinct from a failed check (1).
const EXIT_USAGE: u8 = 2;

fn run() -> anyhow::Result<u8> {
    match moat_check::parse_args(std::env::args().skip(1))? {
        Invocation::Help => {
            print!("{}", moat_check::usage());
            Ok(0)
        }
        Invocation::Version => {
            println!("moat-check {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Invocation::Check(flags) => moat_check::main(flags, &mut std::io::stdout().lock()).context("writing the report"),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("moat-check: {}", chain.join(": "));
            ExitCode::from(EXIT_USAGE)
        }
    }
}
