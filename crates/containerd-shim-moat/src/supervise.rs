//! The shim binary as a zone's supervisor: moat-runtime starts one per zone, as the CLI's
//! hidden `supervise` command does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use moat_zone::assets::Assets;
use moat_zone::ops::SupervisorCommand;
use moat_zone::state::ZoneStore;

/// The first argument that makes this binary a supervisor instead of a shim.
pub const COMMAND: &str = "supervise";

/// The command moat-runtime runs (with the zone's id appended) to supervise a zone of `root`.
pub fn command(root: &Path) -> std::io::Result<SupervisorCommand> {
    Ok(SupervisorCommand { program: std::env::current_exe()?, args: vec![COMMAND.into(), root.as_os_str().to_owned()] })
}

/// `supervise ROOT ZONE_ID`: run the zone until it ends.
pub fn run(args: &[OsString]) -> ExitCode {
    let [root, zone] = args else {
        eprintln!("usage: containerd-shim-moat-v2 {COMMAND} ROOT ZONE_ID");
        return ExitCode::from(2);
    };
    let result = ZoneStore::open(&PathBuf::from(root)).map_err(anyhow::Error::from).and_then(|store| {
        let dir = store.dir(&zone.to_string_lossy());
        moat_zone::supervisor::supervise(dir, &Assets::default_dir()).map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("containerd-shim-moat-v2: supervising zone {}: {err:#}", zone.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
