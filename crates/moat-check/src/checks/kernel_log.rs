//! Kernel log: can this process read it, and whose kernel wrote it?
//!
//! Reading uses `klogctl(SYSLOG_ACTION_READ_ALL)`, which does not consume the log, and
//! `/dev/kmsg`, which is read from its oldest record. Both stop at a bound.

use super::{Boundary, Context};
use crate::read;
use crate::report::{CheckResult, Mode, Priority, Verdict};
use crate::sys;

const EXPLAIN: &str = "The kernel log holds addresses, device and driver details and other tenants' messages, and \
reading it needs CAP_SYSLOG in the *initial* user namespace when kernel.dmesg_restrict=1 (capable() checks \
init_user_ns, so CAP_SYSLOG inside a user namespace is useless). A workload that reads the host kernel's log is \
not isolated from it; in a moat zone the log it can read is the zone kernel's own.";

/// Most bytes taken through klogctl. Threat: the kernel reports its buffer size, which a
/// boot parameter can make tens of MiB; the checker never allocates more than this.
pub const MAX_KLOG_BYTES: usize = 1024 * 1024;

/// Most bytes read from the head of /dev/kmsg: enough for the boot banner.
pub const MAX_KMSG_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLogFacts {
    /// The log via klogctl, or its errno.
    pub syslog: Result<String, i32>,
    /// The oldest records of /dev/kmsg, or the errno of opening it.
    pub kmsg: Result<String, i32>,
    /// kernel.dmesg_restrict as read from /proc/sys.
    pub dmesg_restrict: Option<String>,
}

pub fn probe() -> KernelLogFacts {
    KernelLogFacts {
        syslog: sys::klog_read_all(MAX_KLOG_BYTES),
        kmsg: sys::kmsg_head(MAX_KMSG_BYTES),
        dmesg_restrict: read::line("/proc/sys/kernel/dmesg_restrict"),
    }
}

fn source_state(name: &str, r: &Result<String, i32>) -> String {
    match r {
        Ok(_) => format!("{name} readable"),
        Err(errno) => format!("{name} {}", sys::errno_name(*errno)),
    }
}

pub fn evaluate(ctx: &Context, f: &KernelLogFacts) -> Verdict {
    if ctx.mode == Mode::Host {
        return match f.dmesg_restrict.as_deref() {
            Some("1") => Verdict::pass("kernel.dmesg_restrict=1: only CAP_SYSLOG in the initial user namespace reads the log"),
            Some(v) => Verdict::fail(format!("kernel.dmesg_restrict={v}: every local user can read this kernel's log")),
            None => Verdict::warn("kernel.dmesg_restrict could not be read"),
        };
    }
    let how = format!("{}, {}", source_state("klogctl", &f.syslog), source_state("/dev/kmsg", &f.kmsg));
    if f.syslog.is_err() && f.kmsg.is_err() {
        return Verdict::pass(format!("kernel log not readable ({how})"));
    }
    let logged = [&f.kmsg, &f.syslog].into_iter().find_map(|r| r.as_ref().ok().and_then(|t| sys::log_kernel_release(t)));
    let whose = match &logged {
        Some(r) if *r == ctx.release => format!("its banner says Linux version {r}, the running kernel"),
        Some(r) => format!("its banner says Linux version {r}, yet the running kernel is {}", ctx.release),
        None => "its Linux version banner has rotated out".to_string(),
    };
    match &ctx.boundary {
        Boundary::Zone { zone, release } if logged.as_deref().is_none_or(|r| r == release) => Verdict::pass(format!(
            "kernel log readable ({how}), but it is moat zone {zone}'s kernel's: {whose}; the host's log is out of reach"
        )),
        Boundary::Zone { zone, .. } => Verdict::fail(format!(
            "kernel log readable ({how}) and {whose}: not moat zone {zone}'s kernel"
        )),
        Boundary::None => Verdict::fail(format!("host kernel log readable ({how}): {whose}")),
    }
}

pub fn check(ctx: &Context, f: &KernelLogFacts) -> CheckResult {
    CheckResult::new("kernel-log", "kernel log", Priority::High, EXPLAIN, evaluate(ctx, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::checks::Position;
    use crate::report::Status;

    const BANNER: &str = "6,0,0,-;Linux version 6.1.0-18-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12)\n";

    fn readable(text: &str) -> KernelLogFacts {
        KernelLogFacts { syslog: Ok(text.into()), kmsg: Ok(text.into()), dmesg_restrict: Some("1".into()) }
    }

    #[test]
    fn unreadable_log_passes() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let f = KernelLogFacts { syslog: Err(libc::EPERM), kmsg: Err(libc::ENOENT), dmesg_restrict: Some("1".into()) };
        let v = evaluate(&ctx, &f);
        assert_eq!(v.status, Status::Pass);
        assert_eq!(v.reason, "kernel log not readable (klogctl EPERM, /dev/kmsg ENOENT)");
    }

    #[test]
    fn readable_log_without_boundary_is_the_hosts() {
        let ctx = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        let v = evaluate(&ctx, &readable(BANNER));
        assert_eq!(v.status, Status::Fail);
        assert!(v.reason.starts_with("host kernel log readable"), "{}", v.reason);
        assert!(v.reason.contains("the running kernel"), "{}", v.reason);
    }

    #[test]
    fn readable_log_in_a_zone_is_the_zones() {
        let ctx = context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial);
        let v = evaluate(&ctx, &readable(BANNER));
        assert_eq!(v.status, Status::Pass);
        assert!(v.reason.contains("moat zone z1's kernel's"), "{}", v.reason);
        let other = readable("6,0,0,-;Linux version 6.18.44 (builder)\n");
        assert_eq!(evaluate(&ctx, &other).status, Status::Fail);
    }

    #[test]
    fn host_mode_judges_dmesg_restrict() {
        let ctx = context(Mode::Host, false, PRIVILEGED_STATUS, Position::Initial);
        assert_eq!(evaluate(&ctx, &readable(BANNER)).status, Status::Pass);
        let open = KernelLogFacts { dmesg_restrict: Some("0".into()), ..readable(BANNER) };
        assert_eq!(evaluate(&ctx, &open).status, Status::Fail);
    }
}
