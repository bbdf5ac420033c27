//! Leaving the zone: report, sync, power off. Init never returns.

use nix::sys::reboot::{reboot, RebootMode};

use crate::channel::Channel;
use crate::log;

/// Report `message` over the channel if there is one, then power off.
pub fn fatal(channel: Option<&mut Channel>, message: &str) -> ! {
    log::info(&format!("fatal: {message}"));
    if let Some(channel) = channel {
        let _ = channel.send(&moat_proto::GuestMessage::Fatal { message: message.to_string() });
    }
    power_off()
}

pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // reboot(2) only returns on error; nothing is left to do but wait for the end.
    loop {
        std::thread::park();
    }
}

/// A panic in init must not leave the zone hanging: log it and power off.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::info(&format!("panic: {info}"));
        power_off();
    }));
}
