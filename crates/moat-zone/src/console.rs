//! The zone's serial console: copied to `console.log` with a size cap, and its tail kept in
//! memory so a kernel panic can be named in the zone's failure reason.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Most console output kept on disk per zone.
///
/// Threat: the guest writes the console; without a cap it could fill the host's disk.
pub const MAX_CONSOLE_LOG: u64 = 16 * 1024 * 1024;

/// Bytes of recent console output kept for diagnosing a failure.
const TAIL_LEN: usize = 16 * 1024;

/// What the kernel prints first when it panics.
const PANIC_MARKER: &[u8] = b"Kernel panic - not syncing";

#[derive(Clone, Default)]
pub struct ConsoleTail {
    tail: Arc<Mutex<Vec<u8>>>,
    /// Signalled once, when the console first shows a panic.
    panic: Arc<tokio::sync::Notify>,
}

impl ConsoleTail {
    fn push(&self, data: &[u8]) {
        let Ok(mut tail) = self.tail.lock() else { return };
        let already = contains(&tail, PANIC_MARKER);
        tail.extend_from_slice(data);
        // Only the new bytes (and a marker's length before them) can hold a new marker.
        let from = tail.len().saturating_sub(data.len() + PANIC_MARKER.len());
        let panicked = !already && contains(&tail[from..], PANIC_MARKER);
        let excess = tail.len().saturating_sub(TAIL_LEN);
        tail.drain(..excess);
        if panicked {
            self.panic.notify_one();
        }
    }

    /// Wait until the console shows a kernel panic (once).
    pub async fn panicked(&self) {
        self.panic.notified().await;
    }

    /// The kernel's panic line, if the console shows one.
    pub fn panic_line(&self) -> Option<String> {
        let tail = self.tail.lock().ok()?;
        let text = String::from_utf8_lossy(&tail);
        let line = text.lines().find(|l| l.contains("Kernel panic - not syncing"))?;
        let start = line.find("Kernel panic").unwrap_or(0);
        Some(moat_proto::session::clip(line[start..].trim().to_string()))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Copy the console until QEMU closes it.
pub async fn copy_console(mut stream: UnixStream, log: PathBuf, tail: ConsoleTail) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&log).await?;
    let mut written = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return file.flush().await;
        }
        tail.push(&buf[..n]);
        if written >= MAX_CONSOLE_LOG {
            continue;
        }
        let room = usize::try_from(MAX_CONSOLE_LOG - written).unwrap_or(usize::MAX).min(n);
        file.write_all(&buf[..room]).await?;
        written += room as u64;
        if written >= MAX_CONSOLE_LOG {
            file.write_all(b"\n[moat: console log reached its size limit; further output dropped]\n").await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_line_is_found_and_tail_is_bounded() {
        let tail = ConsoleTail::default();
        tail.push(&vec![b'x'; TAIL_LEN * 2]);
        tail.push(b"\n[    2.1] Kernel panic - not syncing: sysrq triggered crash\n");
        assert_eq!(tail.panic_line().unwrap(), "Kernel panic - not syncing: sysrq triggered crash");
        assert!(tail.tail.lock().unwrap().len() <= TAIL_LEN);
    }

    #[tokio::test]
    async fn a_panic_split_across_reads_is_signalled_once() {
        let tail = ConsoleTail::default();
        tail.push(b"boot\n[    2.1] Kernel pan");
        tail.push(b"ic - not syncing: sysrq triggered crash\n");
        tokio::time::timeout(std::time::Duration::from_secs(1), tail.panicked()).await.expect("signalled");
        tail.push(b"Kernel panic - not syncing: again\n");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), tail.panicked()).await.is_err(), "only once");
    }
}
