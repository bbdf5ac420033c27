//! Linux security modules: is this process confined by AppArmor or SELinux, and what does
//! Yama allow for ptrace?

use super::Context;
use crate::read;
use crate::report::{CheckResult, Mode, Priority, Verdict};

const EXPLAIN: &str = "AppArmor and SELinux confine a process independently of capabilities: the docker-default \
profile or container_t type deny mounts, writes under /proc and /sys and raw devices even to root. Yama's \
ptrace_scope limits ptrace between processes. They are a second layer; their absence is not an escape by itself.";

/// SELinux types that mean "not confined".
const UNCONFINED_TYPES: [&str; 5] = ["unconfined_t", "spc_t", "kernel_t", "initrc_t", "unconfined_service_t"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LsmFacts {
    /// /sys/kernel/security/lsm (needs securityfs, often absent in containers).
    pub active: Option<String>,
    pub apparmor_enabled: Option<String>,
    /// The process's label: /proc/self/attr/apparmor/current, else /proc/self/attr/current.
    pub label: Option<String>,
    pub selinux_enforce: Option<String>,
    pub yama_ptrace_scope: Option<String>,
}

pub fn probe() -> LsmFacts {
    LsmFacts {
        active: read::line("/sys/kernel/security/lsm"),
        apparmor_enabled: read::line("/sys/module/apparmor/parameters/enabled"),
        label: read::line("/proc/self/attr/apparmor/current").or_else(|| read::line("/proc/self/attr/current")),
        selinux_enforce: read::line("/sys/fs/selinux/enforce"),
        yama_ptrace_scope: read::line("/proc/sys/kernel/yama/ptrace_scope"),
    }
}

/// The confinement the label gives, if any.
fn confinement(f: &LsmFacts) -> Option<String> {
    let label = f.label.as_deref()?.trim_end_matches('\0');
    if label.contains(':') {
        let kind = label.split(':').nth(2).unwrap_or_default();
        let enforcing = f.selinux_enforce.as_deref() == Some("1");
        return (enforcing && !UNCONFINED_TYPES.contains(&kind)).then(|| format!("SELinux type {kind} (enforcing)"));
    }
    (label != "unconfined" && label.ends_with("(enforce)")).then(|| format!("AppArmor profile {label}"))
}

fn inventory(f: &LsmFacts) -> String {
    let or_absent = |v: &Option<String>| v.clone().unwrap_or_else(|| "absent".to_string());
    format!(
        "LSMs {}; AppArmor enabled {}; label {}; SELinux enforce {}; Yama ptrace_scope {}",
        or_absent(&f.active),
        or_absent(&f.apparmor_enabled),
        or_absent(&f.label),
        or_absent(&f.selinux_enforce),
        or_absent(&f.yama_ptrace_scope)
    )
}

pub fn evaluate(ctx: &Context, f: &LsmFacts) -> Verdict {
    if ctx.mode == Mode::Host {
        let mac = f.apparmor_enabled.as_deref() == Some("Y") || f.selinux_enforce.as_deref() == Some("1");
        return if mac {
            Verdict::pass(format!("a mandatory access control LSM is available: {}", inventory(f)))
        } else {
            Verdict::warn(format!("neither AppArmor nor enforcing SELinux is available: {}", inventory(f)))
        };
    }
    match confinement(f) {
        Some(by) => Verdict::pass(format!("confined by {by}; Yama ptrace_scope {}", f.yama_ptrace_scope.as_deref().unwrap_or("absent"))),
        None => Verdict::warn(format!("not confined by AppArmor or SELinux: {}", inventory(f))),
    }
}

pub fn check(ctx: &Context, f: &LsmFacts) -> CheckResult {
    CheckResult::new("lsm", "security modules", Priority::Medium, EXPLAIN, evaluate(ctx, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS};
    use crate::checks::Position;
    use crate::report::Status;

    fn ctx() -> Context {
        context(Mode::Workload, false, DOCKER_STATUS, Position::Child)
    }

    #[test]
    fn apparmor_enforce_profile_confines() {
        let f = LsmFacts { label: Some("docker-default (enforce)".into()), ..LsmFacts::default() };
        assert_eq!(evaluate(&ctx(), &f).reason, "confined by AppArmor profile docker-default (enforce); Yama ptrace_scope absent");
        let complain = LsmFacts { label: Some("docker-default (complain)".into()), ..LsmFacts::default() };
        assert_eq!(evaluate(&ctx(), &complain).status, Status::Warn);
    }

    #[test]
    fn selinux_needs_a_confined_type_and_enforcing() {
        let confined = LsmFacts {
            label: Some("system_u:system_r:container_t:s0:c1,c2".into()),
            selinux_enforce: Some("1".into()),
            ..LsmFacts::default()
        };
        assert_eq!(evaluate(&ctx(), &confined).status, Status::Pass);
        let spc = LsmFacts { label: Some("system_u:system_r:spc_t:s0".into()), ..confined.clone() };
        assert_eq!(evaluate(&ctx(), &spc).status, Status::Warn);
        let permissive = LsmFacts { selinux_enforce: Some("0".into()), ..confined };
        assert_eq!(evaluate(&ctx(), &permissive).status, Status::Warn);
    }

    #[test]
    fn nothing_is_a_warning_listing_what_was_seen() {
        let v = evaluate(&ctx(), &LsmFacts::default());
        assert_eq!(v.status, Status::Warn);
        assert!(v.reason.contains("AppArmor enabled absent"), "{}", v.reason);
    }
}
