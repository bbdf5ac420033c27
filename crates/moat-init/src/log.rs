//! Init's messages go to the console (the kernel opens /dev/console as init's stderr), so they
//! land in the zone's console log whatever the kernel's log level, stamped with the time since
//! boot (read from the clock, since /proc may not be mounted yet).

use nix::time::{clock_gettime, ClockId};

pub fn info(msg: &str) {
    let uptime = clock_gettime(ClockId::CLOCK_BOOTTIME).map_or_else(|_| "?".to_string(), |t| format!("{}.{:03}", t.tv_sec(), t.tv_nsec() / 1_000_000));
    eprintln!("[{uptime:>12}] moat-init: {msg}");
}
