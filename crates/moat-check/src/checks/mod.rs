//! The checks. Each module gathers its facts from /proc, /sys, /dev and syscalls in a
//! `probe` function and turns them into a verdict in a pure function, so the verdict logic is
//! unit-tested with the inputs a zone, a container or a bare host would produce.

pub mod boundary;
pub mod capabilities;
pub mod devices;
pub mod host_mounts;
pub mod interfaces;
pub mod kernel_log;
pub mod lsm;
pub mod namespaces;
pub mod nnp;
pub mod root;
pub mod rwx;
pub mod seccomp;
pub mod sockets;
pub mod userns;
pub mod vulns;

use crate::mountinfo::{self, Mount};
use crate::read;
use crate::report::{KernelSummary, Mode, Report, Status, Verdict};
use crate::status::{self, ProcStatus};
use crate::sys;

/// Whether a kernel boundary separates this workload from the machine's host kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boundary {
    /// We run on moat zone `zone`'s own kernel, inside a VM.
    Zone { zone: String, release: String },
    /// Not established: for all we can tell, this kernel is the host's.
    None,
}

impl Boundary {
    pub fn zone(&self) -> Option<&str> {
        match self {
            Boundary::Zone { zone, .. } => Some(zone),
            Boundary::None => None,
        }
    }
}

/// Where a namespace sits relative to the kernel's initial one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Initial,
    Child,
    Unknown(String),
}

/// Facts several checks share, gathered once.
#[derive(Debug)]
pub struct Context {
    pub mode: Mode,
    pub release: String,
    pub uname_version: String,
    pub boundary: Boundary,
    pub status: Result<ProcStatus, String>,
    pub user_ns: Position,
    pub mounts: Result<Vec<Mount>, String>,
}

impl Context {
    /// A check about the workload's isolation says nothing bad about a host when run on one:
    /// in host mode a failure is kept, but only as information.
    pub fn workload_only(&self, verdict: Verdict) -> Verdict {
        match (self.mode, verdict.status) {
            (Mode::Host, Status::Fail) => Verdict::warn(format!("host mode, for information: {}", verdict.reason)),
            _ => verdict,
        }
    }

    /// " (on zone z1's kernel, not the host's)" when a boundary is established.
    pub fn zone_note(&self) -> String {
        match &self.boundary {
            Boundary::Zone { zone, release } => format!(" (on moat zone {zone}'s kernel {release}, not the host's)"),
            Boundary::None => String::new(),
        }
    }
}

fn read_status() -> Result<ProcStatus, String> {
    let text = read::text("/proc/self/status", read::MAX_SMALL_FILE).map_err(|e| e.to_string())?;
    status::parse(&text).map_err(|e| e.to_string())
}

fn read_mounts() -> Result<Vec<Mount>, String> {
    let text = read::text("/proc/self/mountinfo", read::MAX_MOUNTINFO).map_err(|e| e.to_string())?;
    mountinfo::parse(&text).map_err(|e| e.to_string())
}

/// Gather every fact and judge every check.
pub fn run(mode: Mode) -> Report {
    let (release, uname_version) = sys::uname();
    let boundary_facts = boundary::probe(&release);
    let (boundary, boundary_verdict) = boundary::assess(&boundary_facts);
    let ns = namespaces::probe(&release);
    let ctx = Context {
        mode,
        user_ns: ns.position_of(namespaces::NsKind::User),
        release,
        uname_version,
        boundary,
        status: read_status(),
        mounts: read_mounts(),
    };
    let checks = vec![
        boundary::check(&ctx, boundary_verdict),
        namespaces::check(&ctx, &ns),
        kernel_log::check(&ctx, &kernel_log::probe()),
        interfaces::check(&ctx, &interfaces::probe(&ctx)),
        devices::check(&ctx, &devices::probe()),
        sockets::check(&ctx, &sockets::probe()),
        host_mounts::check(&ctx),
        vulns::check(&ctx, &vulns::probe()),
        capabilities::check(&ctx),
        userns::check(&ctx, &userns::probe()),
        root::check(&ctx),
        seccomp::check(&ctx),
        nnp::check(&ctx),
        lsm::check(&ctx, &lsm::probe()),
        rwx::check(sys::can_map_rwx()),
    ];
    Report { mode, kernel: KernelSummary { release: ctx.release.clone(), zone: ctx.boundary.zone().map(str::to_string) }, checks }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Contexts for the three places the checker runs, built from literal inputs.
    use super::*;

    pub const PRIVILEGED_STATUS: &str = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n";

    pub const DOCKER_STATUS: &str = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\n\
        CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    pub fn context(mode: Mode, zone: bool, status_text: &str, user_ns: Position) -> Context {
        Context {
            mode,
            release: "6.1.0-18-cloud-amd64".into(),
            uname_version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)".into(),
            boundary: if zone {
                Boundary::Zone { zone: "z1".into(), release: "6.1.0-18-cloud-amd64".into() }
            } else {
                Boundary::None
            },
            status: status::parse(status_text).map_err(|e| e.to_string()),
            user_ns,
            mounts: Ok(Vec::new()),
        }
    }
}
