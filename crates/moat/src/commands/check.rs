//! `moat check`: the isolation checker (crate `moat-check`) run from the CLI. The same checks
//! run inside a workload as `moat run IMAGE --check`, from the static `moat-check` binary.

use std::process::ExitCode;

use anyhow::Context as _;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, help = moat_check::FLAG_HOST)]
    pub host: bool,
    #[arg(long, help = moat_check::FLAG_JSON)]
    pub json: bool,
    #[arg(long, help = moat_check::FLAG_ONLY_FAILED)]
    pub only_failed: bool,
    #[arg(long, help = moat_check::FLAG_EXPLAIN)]
    pub explain: bool,
}

/// Without `--host` the checks judge this very process as a workload, which on a host fails
/// by design; the report's first line says which mode ran.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let flags = moat_check::Flags { json: args.json, only_failed: args.only_failed, explain: args.explain, host: args.host };
    let code = moat_check::main(flags, &mut std::io::stdout().lock()).context("writing the check report")?;
    Ok(ExitCode::from(code))
}
