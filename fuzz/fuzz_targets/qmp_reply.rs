//! What the supervisor does with each line QEMU's monitor sends (event payloads can carry
//! guest-influenced text): bound it, parse it, and sort it into a reply, an error or an event.
//! Must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_zone::qmp::{classify, decode_line};

fuzz_target!(|data: &[u8]| {
    for line in data.split_inclusive(|b| *b == b'\n') {
        if let Ok(msg) = decode_line(line) {
            let _ = classify(&msg);
        }
    }
});
