//! The shim's failures, and the one place that turns them into ttrpc status codes: by kind,
//! never by text.

use containerd_shim::protos::ttrpc::{self, Code};
use moat_proto::FailureKind;
use moat_runtime::RuntimeError;

use crate::bundle::BundleError;
use crate::options::OptionsError;
use crate::rootfs::RootfsError;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("no task {0} in this shim")]
    NoSuchTask(String),
    #[error("task {0} already exists")]
    TaskExists(String),
    #[error("task {id} is {state}")]
    WrongState { id: String, state: &'static str },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("{0} is not supported by moat's shim yet")]
    Unsupported(&'static str),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("choosing the zone's accelerator: {0}")]
    Accel(#[from] moat_zone::accel::AccelError),
    #[error("{what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
    #[error("encoding the container's metrics: {0}")]
    Encode(String),
    #[error(transparent)]
    Options(#[from] OptionsError),
}

impl ShimError {
    pub fn code(&self) -> Code {
        match self {
            ShimError::NoSuchTask(_) => Code::NOT_FOUND,
            ShimError::TaskExists(_) => Code::ALREADY_EXISTS,
            ShimError::WrongState { .. } => Code::FAILED_PRECONDITION,
            ShimError::Unsupported(_) => Code::UNIMPLEMENTED,
            ShimError::BadRequest(_) => Code::INVALID_ARGUMENT,
            ShimError::Runtime(err) => code_of(err.kind()),
            ShimError::Bundle(_) | ShimError::Options(_) => Code::INVALID_ARGUMENT,
            ShimError::Rootfs(_) | ShimError::Accel(_) | ShimError::Io { .. } | ShimError::Encode(_) => Code::INTERNAL,
        }
    }
}

/// The status code containerd acts on for each kind of runtime failure.
fn code_of(kind: FailureKind) -> Code {
    match kind {
        FailureKind::NotFound | FailureKind::NoSuchContainer => Code::NOT_FOUND,
        FailureKind::PermissionDenied => Code::PERMISSION_DENIED,
        FailureKind::BadRequest => Code::INVALID_ARGUMENT,
        FailureKind::AlreadyExists => Code::ALREADY_EXISTS,
        FailureKind::Limit => Code::RESOURCE_EXHAUSTED,
        FailureKind::WrongState => Code::FAILED_PRECONDITION,
        FailureKind::ZoneGone => Code::UNAVAILABLE,
        FailureKind::Internal => Code::INTERNAL,
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(err: ShimError) -> Self {
        log::warn!("{err}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_failures_keep_their_kind() {
        let gone = ShimError::Runtime(RuntimeError::NoSuchContainer("c".into()));
        assert_eq!(gone.code(), Code::NOT_FOUND);
        let busy = ShimError::Runtime(RuntimeError::Running("c".into()));
        assert_eq!(busy.code(), Code::FAILED_PRECONDITION);
        let zone = ShimError::Runtime(RuntimeError::Zone { kind: FailureKind::ZoneGone, message: "x".into() });
        assert_eq!(zone.code(), Code::UNAVAILABLE);
        match ttrpc::Error::from(ShimError::Unsupported("checkpoints")) {
            ttrpc::Error::RpcStatus(status) => assert_eq!(status.code(), Code::UNIMPLEMENTED),
            other => panic!("{other:?}"),
        }
    }
}
