//! Messages to the kernel log, so they land in the zone's console log with timestamps.

use std::io::Write;

pub fn info(msg: &str) {
    let line = format!("moat-init: {msg}\n");
    match std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(mut kmsg) => {
            let _ = kmsg.write_all(line.as_bytes());
        }
        Err(_) => eprint!("{line}"),
    }
}
