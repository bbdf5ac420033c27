//! Masked and writable kernel interfaces: the files a container escape writes to (sysrq,
//! core_pattern, modprobe, uevent_helper, a cgroup v1 release_agent) or reads kernel memory
//! through (/proc/kcore). Each is opened, for writing or reading as the danger requires, and
//! closed at once: opening changes nothing, only a write would, and none is made.

use std::path::PathBuf;

use super::Context;
use crate::report::{CheckResult, Priority, Verdict};
use crate::sys::{self, Opened};

const EXPLAIN: &str = "Writing /proc/sysrq-trigger reboots or crashes the kernel; core_pattern, modprobe, \
uevent_helper and a cgroup v1 release_agent name programs the kernel runs as root in its initial namespaces; \
/proc/kcore is the kernel's memory. Runtimes mask these (bind /dev/null over them) or mount them read-only. \
Writable ones mean the workload can run code as the kernel's root.";

/// Files that must not be writable (`true`) or readable (`false`) by a workload.
const TARGETS: [(&str, bool); 6] = [
    ("/proc/sysrq-trigger", true),
    ("/proc/sys/kernel/core_pattern", true),
    ("/proc/sys/kernel/modprobe", true),
    ("/proc/kcore", false),
    ("/sys/kernel/uevent_helper", true),
    ("/sys/kernel/profiling", true),
];

/// Bound on cgroup v1 hierarchies probed for release_agent; a kernel has about a dozen.
const MAX_CGROUP_V1_MOUNTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFact {
    pub path: String,
    pub write: bool,
    pub opened: Opened,
}

pub fn probe(ctx: &Context) -> Vec<InterfaceFact> {
    let release_agents = ctx
        .mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| m.fstype == "cgroup")
        .take(MAX_CGROUP_V1_MOUNTS)
        .map(|m| (PathBuf::from(&m.mount_point).join("release_agent"), true));
    TARGETS
        .iter()
        .map(|&(p, write)| (PathBuf::from(p), write))
        .chain(release_agents)
        .map(|(path, write)| InterfaceFact { opened: sys::open_probe(&path, write), path: path.display().to_string(), write })
        .collect()
}

fn state(f: &InterfaceFact) -> String {
    match f.opened {
        o if o.is_dev_null() => "masked".to_string(),
        Opened::File { .. } if f.write => "writable".to_string(),
        Opened::File { .. } => "readable".to_string(),
        Opened::Refused(libc::EROFS) => "read-only".to_string(),
        Opened::Refused(errno) => sys::errno_name(errno),
    }
}

/// "path state" for each fact, with the per-hierarchy release_agent files folded into one entry.
fn describe(facts: &[&InterfaceFact]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut agents: Vec<(String, usize)> = Vec::new();
    for f in facts {
        if f.path.ends_with("/release_agent") {
            match agents.iter_mut().find(|(s, _)| *s == state(f)) {
                Some((_, n)) => *n += 1,
                None => agents.push((state(f), 1)),
            }
        } else {
            parts.push(format!("{} {}", f.path, state(f)));
        }
    }
    parts.extend(agents.into_iter().map(|(s, n)| format!("cgroup v1 release_agent {s} in {n} hierarchies")));
    parts.join(", ")
}

pub fn evaluate(ctx: &Context, facts: &[InterfaceFact]) -> Verdict {
    let absent = Opened::Refused(libc::ENOENT);
    let present: Vec<&InterfaceFact> = facts.iter().filter(|f| f.opened != absent).collect();
    let missing: Vec<&str> = facts.iter().filter(|f| f.opened == absent).map(|f| f.path.as_str()).collect();
    let (exposed, guarded): (Vec<&InterfaceFact>, Vec<&InterfaceFact>) = present.into_iter().partition(|f| f.opened.reached());
    if exposed.is_empty() {
        let absent_note = if missing.is_empty() { String::new() } else { format!("; absent: {}", missing.join(", ")) };
        return Verdict::pass(format!("none writable or readable: {}{absent_note}", describe(&guarded)));
    }
    if ctx.boundary.zone().is_some() {
        return Verdict::warn(format!("exposed{}: {}", ctx.zone_note(), describe(&exposed)));
    }
    Verdict::fail(format!("exposed: {}", describe(&exposed)))
}

pub fn check(ctx: &Context, facts: &[InterfaceFact]) -> CheckResult {
    let verdict = ctx.workload_only(evaluate(ctx, facts));
    CheckResult::new("kernel-interfaces", "masked kernel interfaces", Priority::High, EXPLAIN, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};
    use crate::sys::FileKind;

    fn fact(path: &str, write: bool, opened: Opened) -> InterfaceFact {
        InterfaceFact { path: path.into(), write, opened }
    }

    const REGULAR: Opened = Opened::File { kind: FileKind::Regular, rdev: 0 };
    const DEV_NULL: Opened = Opened::File { kind: FileKind::CharDevice, rdev: 0x103 };

    #[test]
    fn masked_and_read_only_pass() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let facts = [
            fact("/proc/sysrq-trigger", true, Opened::Refused(libc::EROFS)),
            fact("/proc/kcore", false, DEV_NULL),
            fact("/sys/kernel/profiling", true, Opened::Refused(libc::EACCES)),
            fact("/proc/sys/kernel/modprobe", true, Opened::Refused(libc::ENOENT)),
        ];
        let v = evaluate(&ctx, &facts);
        assert_eq!(v.status, Status::Pass);
        assert_eq!(
            v.reason,
            "none writable or readable: /proc/sysrq-trigger read-only, /proc/kcore masked, /sys/kernel/profiling EACCES; \
             absent: /proc/sys/kernel/modprobe"
        );
    }

    #[test]
    fn writable_core_pattern_fails_on_a_host_and_warns_in_a_zone() {
        let facts = [
            fact("/proc/sys/kernel/core_pattern", true, REGULAR),
            fact("/proc/kcore", false, REGULAR),
            fact("/sys/fs/cgroup/cpu/release_agent", true, REGULAR),
            fact("/sys/fs/cgroup/pids/release_agent", true, REGULAR),
        ];
        let host = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        let v = evaluate(&host, &facts);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(
            v.reason,
            "exposed: /proc/sys/kernel/core_pattern writable, /proc/kcore readable, cgroup v1 release_agent writable in 2 hierarchies"
        );
        let zone = context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial);
        let v = evaluate(&zone, &facts);
        assert_eq!(v.status, Status::Warn);
        assert!(v.reason.contains("moat zone z1's kernel"), "{}", v.reason);
    }
}
