//! Running as root: the effective uid, and whose root it is.

use super::{Context, Position};
use crate::report::{CheckResult, Priority, Verdict};

const EXPLAIN: &str = "Root owns every root-owned file the workload can see and passes most permission checks. \
Inside a user namespace that maps root elsewhere it is root only over the namespace's own objects.";

pub fn evaluate(ctx: &Context) -> Verdict {
    let s = match &ctx.status {
        Ok(s) => s,
        Err(e) => return Verdict::warn(format!("cannot read the uids: {e}")),
    };
    let [ruid, euid, suid, fsuid] = s.uid;
    let ids = format!("uids {ruid}/{euid}/{suid}/{fsuid}");
    if s.uid.iter().all(|&u| u != 0) {
        return Verdict::pass(format!("not root ({ids})"));
    }
    match &ctx.user_ns {
        Position::Child => Verdict::pass(format!("root only inside a user namespace ({ids})")),
        Position::Initial => Verdict::fail(format!("running as root of the kernel's initial user namespace{} ({ids})", ctx.zone_note())),
        Position::Unknown(why) => Verdict::warn(format!("running as root; user namespace undecided: {why} ({ids})")),
    }
}

pub fn check(ctx: &Context) -> CheckResult {
    CheckResult::new("root", "running as root", Priority::Medium, EXPLAIN, ctx.workload_only(evaluate(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::report::{Mode, Status};

    #[test]
    fn root_depends_on_the_user_namespace() {
        assert_eq!(evaluate(&context(Mode::Workload, false, DOCKER_STATUS, Position::Child)).status, Status::Pass);
        assert_eq!(evaluate(&context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial)).status, Status::Fail);
        let user = DOCKER_STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1000\t1000\t1000");
        let v = evaluate(&context(Mode::Workload, false, &user, Position::Initial));
        assert_eq!((v.status, v.reason.as_str()), (Status::Pass, "not root (uids 1000/1000/1000/1000)"));
    }

    #[test]
    fn a_saved_root_uid_still_counts() {
        let setuid = DOCKER_STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1000\t0\t1000");
        assert_eq!(evaluate(&context(Mode::Workload, false, &setuid, Position::Initial)).status, Status::Fail);
    }
}
