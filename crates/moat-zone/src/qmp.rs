//! A small typed QMP client: capabilities handshake, commands, and the events moat cares about.

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Longest QMP line accepted. QEMU is a host process, but event payloads can carry
/// guest-influenced text, so lines are bounded like everything else.
pub const MAX_QMP_LINE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP closed")]
    Closed,
    #[error("QMP sent an unexpected reply: {0}")]
    Unexpected(String),
    #[error("QMP command {command} failed: {message}")]
    Command { command: &'static str, message: String },
}

/// The typed commands moat sends.
#[derive(Debug, Clone, Copy)]
pub enum QmpCommand {
    Capabilities,
    QueryStatus,
    Quit,
}

impl QmpCommand {
    fn name(self) -> &'static str {
        match self {
            QmpCommand::Capabilities => "qmp_capabilities",
            QmpCommand::QueryStatus => "query-status",
            QmpCommand::Quit => "quit",
        }
    }
}

/// Events that change what the supervisor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEvent {
    /// `reason` is QEMU's: guest-shutdown, guest-reset, host-qmp-quit, host-signal, ...
    Shutdown { reason: String },
    GuestPanicked,
}

#[derive(Deserialize)]
struct ShutdownData {
    reason: String,
}

pub struct Qmp {
    writer: OwnedWriteHalf,
    replies: mpsc::Receiver<Result<Value, String>>,
}

impl Qmp {
    /// Read the greeting, negotiate capabilities, and start routing events to `events`.
    pub async fn connect(stream: UnixStream, events: mpsc::Sender<QmpEvent>) -> Result<Self, QmpError> {
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let greeting = read_line(&mut reader).await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Unexpected(greeting.to_string()));
        }
        let (reply_tx, replies) = mpsc::channel(4);
        tokio::spawn(route(reader, reply_tx, events));
        let mut qmp = Self { writer, replies };
        qmp.execute(QmpCommand::Capabilities).await?;
        Ok(qmp)
    }

    pub async fn execute(&mut self, command: QmpCommand) -> Result<Value, QmpError> {
        let line = format!("{}\n", json!({ "execute": command.name() }));
        self.writer.write_all(line.as_bytes()).await?;
        match self.replies.recv().await {
            Some(Ok(value)) => Ok(value),
            Some(Err(message)) => Err(QmpError::Command { command: command.name(), message }),
            None => Err(QmpError::Closed),
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Result<Value, QmpError> {
    let mut line = Vec::new();
    let n = reader.take(MAX_QMP_LINE).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(QmpError::Closed);
    }
    decode_line(&line)
}

/// One line as QEMU sends it (newline included), bounded and parsed.
pub fn decode_line(line: &[u8]) -> Result<Value, QmpError> {
    if !line.ends_with(b"\n") || line.len() as u64 > MAX_QMP_LINE {
        return Err(QmpError::Unexpected(format!("line longer than {MAX_QMP_LINE} bytes")));
    }
    serde_json::from_slice(line).map_err(|e| QmpError::Unexpected(e.to_string()))
}

/// What one QMP message is to moat.
#[derive(Debug, PartialEq)]
pub enum QmpMessage {
    Return(Value),
    Error(String),
    Event(QmpEvent),
    /// An event moat does not act on, or something else.
    Ignored,
}

/// Sort a decoded message into a command's reply, an event, or nothing moat needs.
pub fn classify(msg: &Value) -> QmpMessage {
    if let Some(value) = msg.get("return") {
        QmpMessage::Return(value.clone())
    } else if let Some(error) = msg.get("error") {
        QmpMessage::Error(error.get("desc").and_then(Value::as_str).unwrap_or("unknown error").to_string())
    } else {
        parse_event(msg).map_or(QmpMessage::Ignored, QmpMessage::Event)
    }
}

async fn route<R: tokio::io::AsyncBufRead + Unpin>(mut reader: R, replies: mpsc::Sender<Result<Value, String>>, events: mpsc::Sender<QmpEvent>) {
    while let Ok(msg) = read_line(&mut reader).await {
        match classify(&msg) {
            QmpMessage::Return(value) => {
                let _ = replies.send(Ok(value)).await;
            }
            QmpMessage::Error(message) => {
                let _ = replies.send(Err(message)).await;
            }
            QmpMessage::Event(event) => {
                let _ = events.send(event).await;
            }
            QmpMessage::Ignored => {}
        }
    }
}

fn parse_event(msg: &Value) -> Option<QmpEvent> {
    match msg.get("event")?.as_str()? {
        "SHUTDOWN" => {
            let data: ShutdownData = serde_json::from_value(msg.get("data")?.clone()).ok()?;
            Some(QmpEvent::Shutdown { reason: data.reason })
        }
        "GUEST_PANICKED" => Some(QmpEvent::GuestPanicked),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        let shutdown = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}});
        assert_eq!(parse_event(&shutdown), Some(QmpEvent::Shutdown { reason: "guest-reset".into() }));
        assert_eq!(parse_event(&json!({"event": "RESUME"})), None);
        assert_eq!(parse_event(&json!({"event": "SHUTDOWN"})), None);
    }

    #[test]
    fn replies_errors_and_events_are_told_apart() {
        assert_eq!(classify(&json!({"return": {"status": "running"}})), QmpMessage::Return(json!({"status": "running"})));
        assert_eq!(classify(&json!({"error": {"class": "GenericError", "desc": "no"}})), QmpMessage::Error("no".into()));
        assert_eq!(classify(&json!({"error": 7})), QmpMessage::Error("unknown error".into()));
        assert_eq!(classify(&json!({"event": "GUEST_PANICKED", "data": {}})), QmpMessage::Event(QmpEvent::GuestPanicked));
        assert_eq!(classify(&json!([1, 2])), QmpMessage::Ignored);
        assert!(decode_line(b"{\"return\": {}}").is_err(), "a line without its newline is cut short");
    }

    #[tokio::test]
    async fn overlong_lines_are_refused() {
        let long = vec![b'x'; usize::try_from(MAX_QMP_LINE).unwrap() + 10];
        let mut reader = BufReader::new(&long[..]);
        assert!(matches!(read_line(&mut reader).await, Err(QmpError::Unexpected(_))));
    }
}
