//! moat-init: PID 1 inside a zone.
//!
//! Boot is a short list of named steps; any error powers the zone off after reporting it over
//! the channel when the channel is open. PID 1 never exits, since that would panic the kernel.

mod channel;
mod log;
mod modules;
mod mounts;
mod power;
mod serve;

fn main() {
    power::install_panic_hook();
    let mut channel = None;
    let err = match boot(&mut channel) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    power::fatal(channel.as_mut(), &err.to_string());
}

fn boot(channel: &mut Option<channel::Channel>) -> Result<std::convert::Infallible, Error> {
    mounts::mount_early()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| Error::Io("/proc/cmdline", e))?;
    modules::load_modules()?;
    let opened = channel.insert(channel::Channel::open()?);
    log::info(&format!("channel open at {}", opened.path().display()));
    serve::serve(opened, serve::Options::from_cmdline(&cmdline))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{0}: {1}")]
    Sys(&'static str, nix::Error),
    #[error("mounting {target}: {err}")]
    Mount { target: &'static str, err: nix::Error },
    #[error("loading module {path}: {err}")]
    Module { path: String, err: String },
    #[error("no virtio port named {0} appeared")]
    NoChannel(&'static str),
    #[error("channel: {0}")]
    Frame(#[from] moat_proto::FrameError),
    #[error("host closed the channel")]
    HostGone,
    #[error("host protocol: {0}")]
    Protocol(String),
}
