//! Container runtime sockets: an API socket of docker, containerd, CRI-O, podman or moat
//! inside a workload lets it start a privileged container on the host. Each candidate is
//! connected to and closed at once; nothing is sent.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::Context;
use crate::report::{CheckResult, Priority, Verdict};
use crate::sys;

const EXPLAIN: &str = "Whoever can talk to a container runtime's API can ask it for a privileged container with \
the host's root filesystem mounted: mounting docker.sock into a container hands it the host. moat's zone \
supervisor sockets are likewise host-side only.";

/// Well-known runtime API sockets.
const FIXED: [&str; 10] = [
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/buildkit/buildkitd.sock",
    "/run/k3s/containerd/containerd.sock",
];

/// moat's default state root; each zone directory holds its supervisor's sockets.
const MOAT_ZONES: &str = "/var/lib/moat/zones";
const MOAT_SOCKETS: [&str; 4] = ["api.sock", "ctl.sock", "qmp.sock", "console.sock"];

/// Bound on directories scanned under /run/user and the moat zone root. Threat: a workload
/// that can create directories there must not make the checker walk without end.
pub const MAX_SCANNED_DIRS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFact {
    pub path: String,
    /// `Ok` when something accepted the connection.
    pub connect: Result<(), i32>,
}

fn subdirs(root: &str) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|entries| entries.flatten().take(MAX_SCANNED_DIRS).map(|e| e.path()).collect())
        .unwrap_or_default()
}

pub fn candidates() -> Vec<PathBuf> {
    let rootless = subdirs("/run/user").into_iter().map(|d| d.join("podman/podman.sock"));
    let moat = subdirs(MOAT_ZONES).into_iter().flat_map(|d| MOAT_SOCKETS.map(|s| d.join(s)));
    FIXED.iter().map(PathBuf::from).chain(rootless).chain(moat).collect()
}

fn is_socket(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_socket())
}

pub fn probe() -> Vec<SocketFact> {
    candidates()
        .into_iter()
        .filter(|p| is_socket(p))
        .map(|p| SocketFact { connect: sys::connect_unix(&p), path: p.display().to_string() })
        .collect()
}

pub fn evaluate(ctx: &Context, found: &[SocketFact]) -> Verdict {
    let (live, dead): (Vec<&SocketFact>, Vec<&SocketFact>) = found.iter().partition(|s| s.connect.is_ok());
    let dead_note = if dead.is_empty() {
        String::new()
    } else {
        let listed: Vec<String> =
            dead.iter().map(|s| format!("{} ({})", s.path, sys::errno_name(s.connect.err().unwrap_or(0)))).collect();
        format!("; present but not answering: {}", listed.join(", "))
    };
    if live.is_empty() {
        return Verdict::pass(format!("no runtime API socket answers{dead_note}"));
    }
    let paths = live.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ");
    if ctx.boundary.zone().is_some() {
        Verdict::warn(format!("runtime sockets answer: {paths}{}{dead_note}", ctx.zone_note()))
    } else {
        Verdict::fail(format!("runtime sockets answer: {paths}{dead_note}"))
    }
}

pub fn check(ctx: &Context, found: &[SocketFact]) -> CheckResult {
    let verdict = ctx.workload_only(evaluate(ctx, found));
    CheckResult::new("runtime-sockets", "container runtime sockets", Priority::High, EXPLAIN, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};

    #[test]
    fn live_socket_fails_dead_one_is_noted() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let dead = SocketFact { path: "/run/podman/podman.sock".into(), connect: Err(libc::ECONNREFUSED) };
        let v = evaluate(&ctx, std::slice::from_ref(&dead));
        assert_eq!(v.status, Status::Pass);
        assert_eq!(v.reason, "no runtime API socket answers; present but not answering: /run/podman/podman.sock (ECONNREFUSED)");
        let live = SocketFact { path: "/var/run/docker.sock".into(), connect: Ok(()) };
        assert_eq!(evaluate(&ctx, &[live, dead]).status, Status::Fail);
    }

    #[test]
    fn a_real_listener_is_detected() {
        let dir = std::env::temp_dir().join(format!("moat-check-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert!(is_socket(&path));
        assert_eq!(sys::connect_unix(&path), Ok(()));
        drop(listener);
        assert_eq!(sys::connect_unix(&path), Err(libc::ECONNREFUSED));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
