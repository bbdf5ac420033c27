//! moat-runtime: the one place that knows "containers in a zone". A zone is a pod sandbox; the
//! front-ends (the `moat` CLI, the containerd shim, `moat-oci`) translate their own inputs
//! into the typed requests here and act on the typed results.

pub mod attach;
pub mod containers;
pub mod copy;
pub mod error;
pub mod metrics;
pub mod mounts;
pub mod network;
pub mod network_names;
pub mod networks;
pub mod pods;
pub mod pool;
pub mod resources;
pub mod size;
pub mod stats;
pub mod top;
pub mod volumes;

use std::path::{Path, PathBuf};

use moat_zone::ops::SupervisorCommand;
use moat_zone::state::ZoneStore;

pub use copy::{CopyArg, CopyError, StagedTar, TarTree};
pub use containers::{exit_report, is_running, start_failure_code, ContainerConfig, Containers, ExitReport, Found, Placement, ProcessEnd};
pub use error::{Result, RuntimeError};
pub use pods::{pod_name, Pods, SandboxConfig};
pub use resources::Resources;
pub use stats::Stats;

/// The runtime over one state root.
pub struct Runtime {
    root: PathBuf,
    store: ZoneStore,
    supervisor: SupervisorCommand,
}

impl Runtime {
    /// The runtime for the state root `root`, whose zones are supervised by `supervisor`.
    pub fn open(root: &Path, supervisor: SupervisorCommand) -> Result<Self> {
        Ok(Self { root: root.to_path_buf(), store: ZoneStore::open(root)?, supervisor })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &ZoneStore {
        &self.store
    }

    pub fn pods(&self) -> Pods<'_> {
        Pods { store: &self.store, supervisor: &self.supervisor }
    }

    pub fn pool(&self) -> pool::Pool<'_> {
        pool::Pool { store: &self.store, pods: self.pods() }
    }

    pub fn containers(&self) -> Containers<'_> {
        Containers { store: &self.store, supervisor: &self.supervisor }
    }
}
