//! containerd-shim-moat-v2: containerd's task API v2 over moat zones. One shim serves one pod
//! sandbox: the sandbox container boots the pod's zone and the pod's other containers run in
//! it; a container without a pod (`ctr run`) gets a zone of its own.
//!
//! The same binary is the zones' supervisor (`containerd-shim-moat-v2 supervise ROOT ZONE`),
//! so the shim needs no `moat` CLI beside it.

mod bundle;
mod errors;
mod metrics;
mod options;
mod rootfs;
mod rootfs_image;
mod service;
mod stdio;
mod supervise;
mod tasks;

use std::process::ExitCode;

/// The runtime's name as containerd knows it (`runtime_type = "io.containerd.moat.v2"`).
const RUNTIME_ID: &str = "io.containerd.moat.v2";

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == supervise::COMMAND) {
        return supervise::run(&args[2..]);
    }
    let config = containerd_shim::Config {
        // The zones' supervisors are children the shim waits for itself; a reaper
        // taking every child would steal their exit statuses.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<service::MoatShim>(RUNTIME_ID, Some(config));
    ExitCode::SUCCESS
}
