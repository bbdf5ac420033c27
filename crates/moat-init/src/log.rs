//! Init's messages go to the console (the kernel opens /dev/console as init's stderr), so they
//! land in the zone's console log whatever the kernel's log level, stamped with the uptime.

pub fn info(msg: &str) {
    let uptime = std::fs::read_to_string("/proc/uptime").ok().and_then(|u| u.split_whitespace().next().map(String::from));
    eprintln!("[{:>12}] moat-init: {msg}", uptime.unwrap_or_else(|| "?".into()));
}
