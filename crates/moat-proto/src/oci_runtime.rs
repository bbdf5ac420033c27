//! Which OCI runtime binary runs a zone's containers: chosen on the host when the zone is
//! created, carried on the tools disk, and named to init on the kernel command line.

use std::fmt;
use std::str::FromStr;

/// The kernel command line's word naming the runtime: `moat.oci_runtime=crun`.
pub const KERNEL_ARG: &str = "moat.oci_runtime";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OciRuntime {
    /// Debian's runc (Go).
    Runc,
    /// Debian's crun (C): starts a container in about half runc's time under TCG.
    #[default]
    Crun,
}

#[derive(Debug, thiserror::Error)]
#[error("OCI runtime {0:?} is unknown: use runc or crun")]
pub struct UnknownOciRuntime(pub String);

impl OciRuntime {
    /// The binary, at the same path on the host and in the zone (through the tools disk).
    pub fn path(self) -> &'static str {
        match self {
            OciRuntime::Runc => "/usr/sbin/runc",
            OciRuntime::Crun => "/usr/bin/crun",
        }
    }

    /// Its name, which is also its Debian package's.
    pub fn name(self) -> &'static str {
        match self {
            OciRuntime::Runc => "runc",
            OciRuntime::Crun => "crun",
        }
    }

    /// Whether it keeps the seccomp filters it compiled, for the next container with the same
    /// filter (crun does, in its state directory, keyed by the filter's digest; runc compiles
    /// every time).
    pub fn caches_seccomp(self) -> bool {
        matches!(self, OciRuntime::Crun)
    }

    /// The `moat.oci_runtime=…` word of the kernel command line.
    pub fn kernel_arg(self) -> String {
        format!("{KERNEL_ARG}={self}")
    }

    /// The runtime the kernel command line names; runc when it names none (zones booted before
    /// the choice existed ran runc).
    pub fn from_cmdline(cmdline: &str) -> Result<Self, UnknownOciRuntime> {
        let prefix = format!("{KERNEL_ARG}=");
        cmdline.split_whitespace().find_map(|word| word.strip_prefix(prefix.as_str())).map_or(Ok(OciRuntime::Runc), str::parse)
    }
}

impl fmt::Display for OciRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OciRuntime {
    type Err = UnknownOciRuntime;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "runc" => Ok(OciRuntime::Runc),
            "crun" => Ok(OciRuntime::Crun),
            other => Err(UnknownOciRuntime(other.chars().take(32).collect())),
        }
    }
}

crate::serde_as_text!(OciRuntime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_argument_reads_back() {
        for runtime in [OciRuntime::Runc, OciRuntime::Crun] {
            let cmdline = format!("console=ttyS0 {} moat.debug=1", runtime.kernel_arg());
            assert_eq!(OciRuntime::from_cmdline(&cmdline).unwrap(), runtime);
        }
        assert_eq!(OciRuntime::from_cmdline("console=ttyS0").unwrap(), OciRuntime::Runc, "older hosts name none");
        assert!(OciRuntime::from_cmdline("moat.oci_runtime=youki").is_err());
    }

    #[test]
    fn records_keep_the_name() {
        assert_eq!(serde_json::to_string(&OciRuntime::Crun).unwrap(), r#""crun""#);
        assert_eq!(serde_json::from_str::<OciRuntime>(r#""runc""#).unwrap(), OciRuntime::Runc);
        assert!(serde_json::from_str::<OciRuntime>(r#""kata""#).is_err());
    }
}
