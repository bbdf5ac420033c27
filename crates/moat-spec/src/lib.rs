//! moat-spec: turns an image config, `moat run` flags and a privilege profile into an OCI
//! runtime spec, with Docker's semantics plus a user namespace for unprivileged containers.
//!
//! Host side: [`build_spec`] and [`to_json`], and [`exec::exec_process`] for `moat exec`.
//! Guest side, after the rootfs is mounted:
//! [`user::apply_user`] and, for privileged containers ([`is_privileged`]),
//! [`devices::mask_host_links`].

mod builder;
pub mod caps;
pub mod devices;
pub mod env;
pub mod exec;
pub mod foreign;
pub mod mounts;
pub mod process;
pub mod profile;
pub mod resources;
pub mod seccomp;
pub mod security_opt;
pub mod user;

pub use builder::{build_spec, build_spec_for, default_seccomp, give_user_namespace};

use oci_spec::runtime::Spec;

/// Largest runtime spec, as JSON, that moat builds or accepts. The spec crosses from host to
/// zone in a bounded frame; the default one is about 20 KiB.
pub const MAX_SPEC_JSON_BYTES: usize = 256 * 1024;

/// Annotation set to "true" on a `--privileged` container's spec.
pub const PRIVILEGED_ANNOTATION: &str = "moat.privileged";

/// The `moat run` flags that shape the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `-e KEY=VALUE` or `-e KEY` (taken from the caller's environment).
    pub env: Vec<String>,
    /// The contents of each `--env-file`, in order.
    pub env_files: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`; resolved in the zone against the image's /etc/passwd.
    pub user: Option<String>,
    /// `--entrypoint`; `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// The command after the image name.
    pub command: Vec<String>,
    /// `--hostname`; the CLI passes the container's short id when not given, as Docker does.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt`, with a seccomp profile's text in place of its path.
    pub security_opt: Vec<String>,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// With `tty`: the caller's terminal size (rows, columns), so the process starts with it.
    pub console_size: Option<(u16, u16)>,
    /// The zone's memory in MiB: the container's cgroup gets a limit a little under it (see
    /// [`resources::container_memory_limit`]). `None` sets no limit.
    pub zone_memory_mib: Option<u32>,
    /// `--cpus`: a CPU quota when it is not a whole number.
    pub cpus: Option<resources::Cpus>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(transparent)]
    Cap(#[from] caps::CapError),
    #[error(transparent)]
    Env(#[from] env::EnvError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    SecurityOpt(#[from] security_opt::SecurityOptError),
    #[error(transparent)]
    Resource(#[from] resources::ResourceError),
    #[error("the runtime spec is {size} bytes as JSON, more than the {max} allowed; use fewer or shorter environment variables or arguments")]
    TooLarge { size: usize, max: usize },
    #[error("runtime spec JSON: {0}")]
    Json(String),
    #[error("building the runtime spec: {0}")]
    Oci(String),
}

/// The spec as JSON, refused when larger than [`MAX_SPEC_JSON_BYTES`].
pub fn to_json(spec: &Spec) -> Result<String, SpecError> {
    let json = serde_json::to_string(spec).map_err(|e| SpecError::Json(e.to_string()))?;
    check_size(json.len())?;
    Ok(json)
}

/// Parses a spec received as JSON, refusing oversized input before parsing it.
pub fn from_json(json: &str) -> Result<Spec, SpecError> {
    check_size(json.len())?;
    serde_json::from_str(json).map_err(|e| SpecError::Json(e.to_string()))
}

/// Whether the spec was built for a `--privileged` container.
pub fn is_privileged(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(PRIVILEGED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Longest piece of user or image input quoted in an error message; the rest is cut, so an
/// error line stays one readable line whatever the input.
const MAX_ECHOED: usize = 80;

/// `text` cut to [`MAX_ECHOED`] characters, for quoting in an error.
fn echo(text: &str) -> String {
    text.chars().take(MAX_ECHOED).collect()
}

fn check_size(size: usize) -> Result<(), SpecError> {
    if size > MAX_SPEC_JSON_BYTES {
        return Err(SpecError::TooLarge {
            size,
            max: MAX_SPEC_JSON_BYTES,
        });
    }
    Ok(())
}
