//! The runtime's failures, each with a kind a front-end acts on (an exit code, a CRI status)
//! without reading its text.

use moat_proto::FailureKind;
use moat_zone::api::ApiError;
use moat_zone::ops::OpsError;
use moat_zone::state::StateError;

use crate::resources::ResourcesError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such pod: {0}")]
    NoSuchPod(String),
    #[error("{0} is a container's zone, not a pod")]
    NotAPod(String),
    #[error("the name {0:?} is already in use")]
    NameInUse(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first, or use --force")]
    Running(String),
    #[error("pod {pod} is not running ({state})")]
    PodNotRunning { pod: String, state: String },
    #[error("pod {0} still has containers: remove them first, or use --force")]
    PodNotEmpty(String),
    #[error("a privileged container gets a zone of its own: every other container of pod {0} would be within its reach; add --allow-privileged-in-pod to place it there anyway")]
    PrivilegedInPod(String),
    #[error("{0} is set on the pod, not on its containers (moat pod create {0})")]
    PodSetting(&'static str),
    #[error("pod {pod} already holds {max} containers; remove one first")]
    PodFull { pod: String, max: usize },
    #[error("--size {size}: a pool holds at most {max} zones")]
    PoolTooLarge { size: u32, max: u32 },
    /// The zone refused or failed a request; its kind says why.
    #[error("{message}")]
    Zone { kind: FailureKind, message: String },
    #[error(transparent)]
    Resources(#[from] ResourcesError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Networks(#[from] crate::networks::NetworksError),
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    #[error(transparent)]
    Spec(#[from] moat_spec::SpecError),
    #[error(transparent)]
    Resource(#[from] moat_spec::resources::ResourceError),
    #[error(transparent)]
    Accel(#[from] moat_zone::accel::AccelError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// The zone ended while a request to it was under way; why, as its supervisor said.
    #[error("the zone ended: {0}")]
    ZoneEnded(String),
}

impl RuntimeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            RuntimeError::NoSuchContainer(_) => FailureKind::NoSuchContainer,
            RuntimeError::NoSuchPod(_) | RuntimeError::NotAPod(_) => FailureKind::NoSuchContainer,
            RuntimeError::NameInUse(_) => FailureKind::AlreadyExists,
            RuntimeError::NotRunning(_) | RuntimeError::Running(_) | RuntimeError::PodNotRunning { .. } | RuntimeError::PodNotEmpty(_) => FailureKind::WrongState,
            RuntimeError::PrivilegedInPod(_) | RuntimeError::PodSetting(_) | RuntimeError::Resources(_) | RuntimeError::Volume(_) | RuntimeError::Network(_) | RuntimeError::Networks(_) | RuntimeError::Resource(_) | RuntimeError::Spec(_) | RuntimeError::PoolTooLarge { .. } => FailureKind::BadRequest,
            RuntimeError::PodFull { .. } => FailureKind::Limit,
            RuntimeError::Zone { kind, .. } => *kind,
            RuntimeError::Copy(err) => err.kind(),
            RuntimeError::Api(_) | RuntimeError::ZoneEnded(_) => FailureKind::ZoneGone,
            RuntimeError::Accel(_) | RuntimeError::Ops(_) | RuntimeError::State(_) | RuntimeError::Io { .. } => FailureKind::Internal,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
