//! Seccomp: mode and number of filters from /proc/self/status.

use super::Context;
use crate::report::{CheckResult, Priority, Verdict};

const EXPLAIN: &str = "A seccomp filter (mode 2) shrinks the kernel's attack surface: the default Docker/Moby \
profile blocks keyctl, bpf, mount, unshare of user namespaces without privilege, syslog without CAP_SYSLOG and \
other syscalls behind many kernel exploits. Mode 0 means every syscall reaches the kernel.";

pub fn evaluate(ctx: &Context) -> Verdict {
    let s = match &ctx.status {
        Ok(s) => s,
        Err(e) => return Verdict::warn(format!("cannot read the seccomp mode: {e}")),
    };
    let filters = s.seccomp_filters.map(|n| format!(", {n} filters")).unwrap_or_default();
    match s.seccomp {
        None => Verdict::warn("this kernel reports no Seccomp field (built without CONFIG_SECCOMP?)"),
        Some(0) => Verdict::fail(format!("seccomp disabled (mode 0): every syscall reaches the kernel{}", ctx.zone_note())),
        Some(1) => Verdict::pass("seccomp strict mode (read, write, exit and sigreturn only)"),
        Some(2) if s.seccomp_filters == Some(0) => Verdict::warn("seccomp mode 2 reported with 0 filters"),
        Some(2) => Verdict::pass(format!("seccomp filter mode (mode 2{filters})")),
        Some(mode) => Verdict::warn(format!("unknown seccomp mode {mode}")),
    }
}

pub fn check(ctx: &Context) -> CheckResult {
    CheckResult::new("seccomp", "seccomp", Priority::Medium, EXPLAIN, ctx.workload_only(evaluate(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};

    #[test]
    fn modes() {
        let v = evaluate(&context(Mode::Workload, false, DOCKER_STATUS, Position::Child));
        assert_eq!((v.status, v.reason.as_str()), (Status::Pass, "seccomp filter mode (mode 2, 1 filters)"));
        assert_eq!(evaluate(&context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial)).status, Status::Fail);
        let none = DOCKER_STATUS.replace("Seccomp:\t2\nSeccomp_filters:\t1\n", "");
        assert_eq!(evaluate(&context(Mode::Workload, false, &none, Position::Child)).status, Status::Warn);
    }
}
