//! A container's log (`containers/<id>/container.log` in its zone's directory): one JSON object
//! per output chunk, like Docker's json-file driver, capped.

use std::io::Write;
use std::path::Path;

use moat_proto::Stream;
use serde::{Deserialize, Serialize};

/// Most output of one container kept in its log.
///
/// Threat: the workload writes as much as it likes; the host's disk must not pay for it.
pub const MAX_WORKLOAD_LOG: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    pub stream: Stream,
    #[serde(with = "moat_proto::bytes")]
    pub data: Vec<u8>,
}

/// The supervisor's writer of a container's log. It stops writing once [`MAX_WORKLOAD_LOG`] bytes
/// went in; output past the cap is still relayed to attached clients, just not kept.
pub struct WorkloadLog {
    file: std::fs::File,
    written: u64,
    limit: u64,
}

impl WorkloadLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::with_limit(path, MAX_WORKLOAD_LOG)
    }

    fn with_limit(path: &Path, limit: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file, written: 0, limit })
    }

    pub fn append(&mut self, stream: Stream, data: &[u8]) {
        if self.written >= self.limit {
            return;
        }
        let line = LogLine { stream, data: data.to_vec() };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            self.written += json.len() as u64;
            let _ = self.file.write_all(&json);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_and_the_log_stops_at_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workload.log");
        let mut log = WorkloadLog::with_limit(&path, 100).unwrap();
        log.append(Stream::Stdout, b"hello\n");
        log.append(Stream::Stderr, &[0xff, 0]);
        for _ in 0..10 {
            log.append(Stream::Stdout, &[b'x'; 40]);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<LogLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0], LogLine { stream: Stream::Stdout, data: b"hello\n".to_vec() });
        assert_eq!(lines[1], LogLine { stream: Stream::Stderr, data: vec![0xff, 0] }, "bytes survive as they were");
        assert!(text.len() < 100 + 100, "writing stops once the cap is passed: {} bytes", text.len());
        assert!(lines.len() < 12);
    }
}
