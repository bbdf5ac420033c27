//! moat-init: PID 1 inside a zone.
//!
//! Boot is a short list of named steps; any error powers the zone off after reporting it over
//! the channel when the channel is open. PID 1 never exits, since that would panic the kernel.
//! The zone is a pod: containers arrive after boot, each created and started by the OCI runtime (runc or crun) on request
//! (see [`runner`] and [`containers`]), all in the pod's shared namespaces (see [`pod`]).
//! Called as `modprobe`, the same binary is the zone kernel's module loader (see [`modprobe`]).

mod archive;
mod bundle;
mod cgroups;
mod channel;
mod containers;
mod copy;
mod disks;
mod idmap;
mod image_volumes;
mod log;
mod loopdev;
mod modprobe;
mod modules;
mod mounts;
mod name_files;
mod net;
mod newroot;
mod oci_runtime;
mod pod;
mod power;
mod processes;
mod runner;
mod serve;
mod stats;
mod sysctl;
mod terminal;
mod workload;

fn main() {
    if modprobe::called_as_modprobe() {
        std::process::exit(modprobe::main(std::env::args_os().skip(1)));
    }
    power::install_panic_hook();
    let mut channel = None;
    let err = match boot(&mut channel) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    power::fatal(channel.as_mut(), &err.to_string());
}

fn boot(channel: &mut Option<channel::Channel>) -> Result<std::convert::Infallible, Error> {
    newroot::leave_initramfs()?;
    mounts::mount_early()?;
    sysctl::harden()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| Error::Io("/proc/cmdline", e))?;
    modules::load_modules(moat_proto::layout::BOOT_MODULES_FILE)?;
    let opened = channel.insert(channel::Channel::open()?);
    log::info(&format!("channel open at {}", opened.path().display()));
    mounts::mount_share()?;
    serve::serve(opened, serve::Options::from_cmdline(&cmdline)?)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{what} {path}: {err}")]
    Path { what: &'static str, path: std::path::PathBuf, err: std::io::Error },
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
    #[error("mounting {target}: {err}")]
    Mount { target: &'static str, err: nix::Error },
    #[error(transparent)]
    Module(#[from] modules::ModuleError),
    #[error("no virtio port named {0} appeared")]
    NoChannel(&'static str),
    #[error("channel: {0}")]
    Frame(#[from] moat_proto::FrameError),
    #[error("host closed the channel")]
    HostGone,
    #[error("host protocol: {0}")]
    Protocol(String),
}
