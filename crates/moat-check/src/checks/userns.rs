//! User namespace: the uid and gid maps, and whether container root is host root.

use super::{Context, Position};
use crate::idmap::{self, IdMap};
use crate::read;
use crate::report::{CheckResult, Priority, Verdict};

const EXPLAIN: &str = "A user namespace maps container ids onto unprivileged host ids, so container root owns \
nothing on the host and its capabilities stop at the namespace's edge. Without one, uid 0 in the container is \
uid 0 of the kernel. The map shown is relative to the parent user namespace.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNsFacts {
    pub uid_map: Result<IdMap, String>,
    pub gid_map: Result<IdMap, String>,
}

fn read_map(path: &str) -> Result<IdMap, String> {
    let text = read::text(path, read::MAX_SMALL_FILE).map_err(|e| e.to_string())?;
    idmap::parse(&text).map_err(|e| format!("{path}: {e}"))
}

pub fn probe() -> UserNsFacts {
    UserNsFacts { uid_map: read_map("/proc/self/uid_map"), gid_map: read_map("/proc/self/gid_map") }
}

pub fn evaluate(ctx: &Context, f: &UserNsFacts) -> Verdict {
    let uid_map = match &f.uid_map {
        Ok(map) => map,
        Err(e) => return Verdict::warn(format!("cannot read the uid map: {e}")),
    };
    let gid_desc = f.gid_map.as_ref().map(IdMap::describe).unwrap_or_else(|e| e.clone());
    let maps = format!("uid_map {}; gid_map {gid_desc}", uid_map.describe());
    match &ctx.user_ns {
        Position::Initial => {
            Verdict::fail(format!("no user namespace: container root is the kernel's root{} ({maps})", ctx.zone_note()))
        }
        Position::Unknown(why) => Verdict::warn(format!("cannot tell whether this is the initial user namespace: {why} ({maps})")),
        Position::Child => match uid_map.to_outside(0) {
            Some(0) => Verdict::warn(format!("user namespace in place, but its root maps to root of the parent namespace ({maps})")),
            Some(outside) => Verdict::pass(format!("user namespace in place: root maps to uid {outside} outside ({maps})")),
            None => Verdict::pass(format!("user namespace in place: root is not mapped at all ({maps})")),
        },
    }
}

pub fn check(ctx: &Context, f: &UserNsFacts) -> CheckResult {
    CheckResult::new("user-namespace", "user namespace", Priority::Medium, EXPLAIN, ctx.workload_only(evaluate(ctx, f)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::report::{Mode, Status};

    fn facts(uid: &str, gid: &str) -> UserNsFacts {
        UserNsFacts { uid_map: idmap::parse(uid).map_err(|e| e.to_string()), gid_map: idmap::parse(gid).map_err(|e| e.to_string()) }
    }

    #[test]
    fn shifted_root_passes() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let v = evaluate(&ctx, &facts("0 100000 65536\n", "0 100000 65536\n"));
        assert_eq!(v.status, Status::Pass);
        assert_eq!(v.reason, "user namespace in place: root maps to uid 100000 outside (uid_map 0->100000 x65536; gid_map 0->100000 x65536)");
    }

    #[test]
    fn initial_namespace_fails_and_names_the_zone() {
        let full = "0 0 4294967295\n";
        let host = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        assert_eq!(evaluate(&host, &facts(full, full)).status, Status::Fail);
        let zone = context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial);
        assert!(evaluate(&zone, &facts(full, full)).reason.contains("moat zone z1's kernel"));
    }

    #[test]
    fn root_mapped_to_parent_root_warns() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        assert_eq!(evaluate(&ctx, &facts("0 0 1\n1 100000 65535\n", "0 0 1\n")).status, Status::Warn);
    }

    #[test]
    fn malformed_map_is_undecided() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        assert_eq!(evaluate(&ctx, &facts("0 x 1\n", "")).status, Status::Warn);
    }
}
