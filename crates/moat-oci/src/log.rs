//! runc's `--log` and `--log-format`: errors and notes go to the log file when there is one
//! (as JSON lines with `--log-format json`, which conmon reads); an error also goes to stderr as
//! one line.

use std::io::Write;
use std::path::PathBuf;

use liboci_cli::GlobalOpts;

#[derive(Debug, Clone)]
pub struct Log {
    file: Option<PathBuf>,
    json: bool,
}

impl Log {
    pub fn new(global: &GlobalOpts) -> Self {
        Self { file: global.log.clone(), json: global.log_format.as_deref() == Some("json") }
    }

    /// The flags that hand this log on to a child moat-oci.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(file) = &self.file {
            args.extend(["--log".into(), file.clone().into_os_string()]);
        }
        if self.json {
            args.extend(["--log-format".into(), "json".into()]);
        }
        args
    }

    pub fn error(&self, message: &str) {
        eprintln!("moat-oci: {message}");
        self.append("error", message);
    }

    /// A change made to the spec, or anything else the caller should know: to the log file, or
    /// to stderr without one.
    pub fn note(&self, message: &str) {
        if self.file.is_none() {
            eprintln!("moat-oci: warning: {message}");
        }
        self.append("warning", message);
    }

    fn append(&self, level: &str, message: &str) {
        let Some(path) = &self.file else { return };
        let time = chrono::Utc::now().to_rfc3339();
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": message, "time": time }).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={message:?}")
        };
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}
