//! No-new-privs: whether execve can still raise privileges (setuid binaries, file caps).

use super::Context;
use crate::caps;
use crate::report::{CheckResult, Priority, Verdict};

const EXPLAIN: &str = "With no_new_privs set, execve never grants privileges: setuid-root binaries and file \
capabilities in the image stay inert. Without it a non-root process can regain whatever the bounding set \
allows by running such a binary.";

pub fn evaluate(ctx: &Context) -> Verdict {
    let s = match &ctx.status {
        Ok(s) => s,
        Err(e) => return Verdict::warn(format!("cannot read NoNewPrivs: {e}")),
    };
    let raisable: Vec<caps::Cap> = caps::decode(s.cap_bnd).0.into_iter().filter(|c| c.dangerous).collect();
    match s.no_new_privs {
        Some(true) => Verdict::pass("no_new_privs set: execve cannot raise privileges"),
        None => Verdict::warn("this kernel reports no NoNewPrivs field"),
        Some(false) if raisable.is_empty() => {
            Verdict::warn("no_new_privs not set; the bounding set holds no dangerous capability to raise")
        }
        Some(false) => Verdict::warn(format!(
            "no_new_privs not set: a setuid binary can raise privileges up to the bounding set, which includes {}",
            caps::names(&raisable)
        )),
    }
}

pub fn check(ctx: &Context) -> CheckResult {
    CheckResult::new("no-new-privs", "no-new-privs", Priority::Low, EXPLAIN, ctx.workload_only(evaluate(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};

    #[test]
    fn unset_is_a_warning_set_passes() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        assert_eq!(evaluate(&ctx).status, Status::Warn);
        let set = DOCKER_STATUS.replace("NoNewPrivs:\t0", "NoNewPrivs:\t1");
        assert_eq!(evaluate(&context(Mode::Workload, false, &set, Position::Child)).status, Status::Pass);
    }
}
