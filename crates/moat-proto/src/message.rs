//! The messages each side sends. One enum per direction.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; both sides must agree exactly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMessage {
    /// Answer to the guest's hello: the version the host speaks.
    Hello { version: u32 },
    Request { id: u64, request: Request },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ping,
    /// Sync filesystems and power the zone off.
    Shutdown,
    /// Honoured only when the zone was booted with test hooks enabled.
    Debug(DebugRequest),
}

/// Requests that simulate a misbehaving guest, for tests of the host's defences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DebugRequest {
    /// Crash the guest kernel.
    KernelPanic,
    /// Write these bytes to the channel verbatim, outside any frame.
    WriteRaw { bytes: Vec<u8> },
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestMessage {
    /// First message of every session.
    Hello { version: u32, kernel_release: String, init_version: String },
    Response { id: u64, response: Response },
    /// Init hit an error it cannot recover from and is powering the zone off.
    Fatal { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Pong,
    Done,
    Failed { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_stable() {
        let msg = HostMessage::Request { id: 7, request: Request::Ping };
        assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"request":{"id":7,"request":"ping"}}"#);
        let msg = GuestMessage::Response { id: 7, response: Response::Pong };
        assert_eq!(serde_json::to_string(&msg).unwrap(), r#"{"response":{"id":7,"response":"pong"}}"#);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = r#"{"response":{"id":7,"response":"pong","extra":1}}"#;
        assert!(serde_json::from_str::<GuestMessage>(bad).is_err());
    }
}
