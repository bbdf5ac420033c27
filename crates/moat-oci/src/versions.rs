//! `--version`, `features` and `spec`: what this runtime is and supports, and runc's default
//! bundle config.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use moat_spec::caps::CapSet;

use crate::record::OCI_VERSION;

pub const VERSION_TEXT: &str = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2\nzones: each container in a zone of its own (a QEMU microvm with its own kernel)");

/// runc's `features`, per the runtime-spec's features document.
pub fn print_features() -> anyhow::Result<ExitCode> {
    let features = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "shared", "rshared", "slave", "rslave"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": CapSet::all().names(),
            "cgroup": { "v1": false, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": {
            "moat.memory": "the zone's memory, e.g. 512m",
            "moat.cpus": "the zone's CPUs, e.g. 1.5"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(ExitCode::SUCCESS)
}

/// Write runc's default config.json into the bundle directory, refusing to overwrite one.
pub fn write_default_spec(args: &liboci_cli::Spec) -> anyhow::Result<ExitCode> {
    if args.rootless {
        bail!("--rootless is not supported: moat-oci runs containers in zones as root");
    }
    let path = args.bundle.clone().unwrap_or_default().join("config.json");
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let json = serde_json::to_string_pretty(&oci_spec::runtime::Spec::default())?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
