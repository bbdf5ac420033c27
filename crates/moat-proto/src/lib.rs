//! The host<->guest control protocol of a zone.
//!
//! Both sides speak length-prefixed frames (see [`frame`]) carrying JSON messages (see
//! [`message`]). The host treats every byte from the guest as hostile: the decoder bounds frame
//! sizes before buffering, and [`session::HostSession`] rejects messages that arrive out of order.

pub mod bytes;
pub mod frame;
pub mod layout;
pub mod message;
pub mod session;

pub use frame::{encode, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use message::{DebugRequest, ExecRequest, ExitStatus, GuestMessage, HostMessage, Request, Response, RunRequest, Stream, MAX_EXEC_PROCESSES, MAX_PROBE_READ, PROTOCOL_VERSION, WORKLOAD};
pub use session::{HostSession, SessionError, SessionEvent};
