//! `moat cp`: files and directories between the host and a container, as `docker cp` copies
//! them. The rules and the safety live in the runtime (`moat_runtime::copy`).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use moat_runtime::{CopyArg, Runtime};

#[derive(Args)]
pub struct CpArgs {
    /// What to copy: HOSTPATH or CONTAINER:PATH. `DIR/.` copies a directory's contents.
    pub source: String,
    /// Where to: CONTAINER:PATH or HOSTPATH. An existing directory receives the source inside.
    pub dest: String,
}

/// Docker's `cp` exits 1 on any failure, after one line saying why.
pub fn cp(root: &Path, args: CpArgs) -> anyhow::Result<ExitCode> {
    let copied = Runtime::open(root, moat_runtime::pods::default_supervisor(root)?)
        .and_then(|runtime| runtime.containers().copy(&CopyArg::parse(&args.source), &CopyArg::parse(&args.dest)));
    match copied {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("moat: {}", super::one_line(&err.into()));
            Ok(ExitCode::from(1))
        }
    }
}
