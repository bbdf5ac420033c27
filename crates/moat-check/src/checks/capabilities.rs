//! Capabilities: decode CapEff, CapBnd and CapAmb, flag the dangerous ones, and say which are
//! ineffective because a user namespace is in place.

use super::{Context, Position};
use crate::caps::{self, Cap};
use crate::report::{CheckResult, Priority, Verdict};
use crate::status::ProcStatus;

const EXPLAIN: &str = "Capabilities such as SYS_ADMIN, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, NET_ADMIN, \
DAC_READ_SEARCH, BPF and PERFMON let a process change the kernel it runs on. Inside a user namespace the kernel \
honours them only over that namespace's own resources, and those it checks with capable() (SYSLOG, SYS_MODULE, \
SYS_RAWIO, BPF, PERFMON, ...) not at all. The bounding set is what setuid or file capabilities can still raise \
a process to.";

fn dangerous(mask: u64) -> Vec<Cap> {
    caps::decode(mask).0.into_iter().filter(|c| c.dangerous).collect()
}

fn summary(s: &ProcStatus) -> String {
    let count = |mask: u64| caps::decode(mask).0.len();
    let amb = if s.cap_amb == 0 { "none".to_string() } else { caps::names(&caps::decode(s.cap_amb).0) };
    format!("CapEff {:016x} ({} of 41), CapBnd {:016x}, CapAmb {amb}", s.cap_eff, count(s.cap_eff), s.cap_bnd)
}

pub fn evaluate(ctx: &Context) -> Verdict {
    let s = match &ctx.status {
        Ok(s) => s,
        Err(e) => return Verdict::warn(format!("cannot read capabilities: {e}")),
    };
    let summary = summary(s);
    let effective = dangerous(s.cap_eff);
    let bounding_only: Vec<Cap> = dangerous(s.cap_bnd).into_iter().filter(|c| !effective.contains(c)).collect();
    let bnd_note = if bounding_only.is_empty() || s.no_new_privs == Some(true) {
        String::new()
    } else {
        format!("; the bounding set still allows {} through setuid or file capabilities", caps::names(&bounding_only))
    };
    if effective.is_empty() {
        return if bnd_note.is_empty() {
            Verdict::pass(format!("no dangerous capability: {summary}"))
        } else {
            Verdict::warn(format!("no dangerous capability effective: {summary}{bnd_note}"))
        };
    }
    match &ctx.user_ns {
        Position::Child => {
            let (dead, scoped): (Vec<Cap>, Vec<Cap>) = effective.iter().partition(|c| c.init_userns_only);
            let dead_note = if dead.is_empty() {
                String::new()
            } else {
                format!("; ineffective in a user namespace (the kernel checks the initial one): {}", caps::names(&dead))
            };
            if scoped.is_empty() {
                Verdict::pass(format!("{summary}{dead_note}{bnd_note}"))
            } else {
                Verdict::warn(format!(
                    "{summary}: {} act only over this user namespace's own resources{dead_note}{bnd_note}",
                    caps::names(&scoped)
                ))
            }
        }
        position => {
            let undecided = match position {
                Position::Unknown(why) => format!(" (user namespace undecided: {why})"),
                _ => String::new(),
            };
            Verdict::fail(format!(
                "dangerous capabilities effective in the initial user namespace{}{undecided}: {}; {summary}",
                ctx.zone_note(),
                caps::names(&effective)
            ))
        }
    }
}

pub fn check(ctx: &Context) -> CheckResult {
    CheckResult::new("capabilities", "capabilities", Priority::Medium, EXPLAIN, ctx.workload_only(evaluate(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::report::{Mode, Status};

    #[test]
    fn docker_defaults_pass() {
        let v = evaluate(&context(Mode::Workload, false, DOCKER_STATUS, Position::Child));
        assert_eq!(v.status, Status::Pass);
        assert_eq!(v.reason, "no dangerous capability: CapEff 00000000a80425fb (14 of 41), CapBnd 00000000a80425fb, CapAmb none");
    }

    #[test]
    fn privileged_in_a_zone_is_flagged_with_the_zone_named() {
        let v = evaluate(&context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial));
        assert_eq!(v.status, Status::Fail);
        assert!(v.reason.contains("SYS_ADMIN") && v.reason.contains("CHECKPOINT_RESTORE"), "{}", v.reason);
        assert!(v.reason.contains("moat zone z1's kernel"), "{}", v.reason);
        assert!(v.reason.contains("(41 of 41)"), "{}", v.reason);
    }

    #[test]
    fn syslog_in_a_user_namespace_is_ineffective() {
        let with_syslog = DOCKER_STATUS.replace("00000000a80425fb", "00000004a80425fb");
        let v = evaluate(&context(Mode::Workload, false, &with_syslog, Position::Child));
        assert_eq!(v.status, Status::Pass);
        assert!(v.reason.ends_with("ineffective in a user namespace (the kernel checks the initial one): SYSLOG"), "{}", v.reason);
        let v = evaluate(&context(Mode::Workload, false, &with_syslog, Position::Initial));
        assert_eq!(v.status, Status::Fail, "without a user namespace SYSLOG reads the host log");
    }

    #[test]
    fn sys_admin_in_a_user_namespace_is_scoped() {
        let with_admin = DOCKER_STATUS.replace("CapEff:\t00000000a80425fb", "CapEff:\t00000000a82425fb");
        let v = evaluate(&context(Mode::Workload, false, &with_admin, Position::Child));
        assert_eq!(v.status, Status::Warn);
        assert!(v.reason.contains("SYS_ADMIN act only over this user namespace"), "{}", v.reason);
    }

    #[test]
    fn dangerous_bounding_set_without_no_new_privs_warns() {
        let text = PRIVILEGED_STATUS.replace("CapEff:\t000001ffffffffff", "CapEff:\t0000000000000000");
        let v = evaluate(&context(Mode::Workload, false, &text, Position::Initial));
        assert_eq!(v.status, Status::Warn);
        assert!(v.reason.contains("bounding set still allows"), "{}", v.reason);
        let nnp = text.replace("NoNewPrivs:\t0", "NoNewPrivs:\t1");
        assert_eq!(evaluate(&context(Mode::Workload, false, &nnp, Position::Initial)).status, Status::Pass);
    }
}
