//! The host<->guest control protocol of a zone.
//!
//! Both sides speak length-prefixed frames (see [`frame`]) carrying JSON messages (see
//! [`message`]). The host treats every byte from the guest as hostile: the decoder bounds frame
//! sizes before buffering, and [`session::HostSession`] rejects messages that arrive out of order.

pub mod bytes;
pub mod copy;
pub mod frame;
pub mod layout;
pub mod message;
pub mod net;
pub mod oci_runtime;
pub mod processes;
pub mod session;
pub mod stats;

pub use frame::{encode, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use copy::{CopyPath, CopyPathError};
pub use message::{valid_container_id, CopyIn, CopyOut, CopySource, CreateContainer, DebugRequest, ExecRequest, ExitStatus, FailureKind, GuestMessage, HostMessage, NameFiles, Request, Response, Stream, MAX_CONTAINERS, MAX_CONTAINER_ID, MAX_EXEC_PROCESSES, MAX_HOSTS_FILE, MAX_PROBE_READ, PROTOCOL_VERSION};
pub use oci_runtime::OciRuntime;
pub use session::{HostSession, SessionError, SessionEvent};
pub use processes::{ProcessInfo, ProcessList, ProcessListError};
pub use stats::{ContainerStats, StatsError};

/// Serde through a type's text (`Display` and `FromStr`), for a type marked
/// `#[serde(try_from = "String", into = "String")]`: records keep it as people write it.
#[macro_export]
macro_rules! serde_as_text {
    ($type:ty) => {
        impl TryFrom<String> for $type {
            type Error = <$type as std::str::FromStr>::Err;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.to_string()
            }
        }
    };
}
