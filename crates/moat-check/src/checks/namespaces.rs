//! Host namespaces: compare each of this process's namespaces with the kernel's initial one.
//!
//! Six initial namespaces have fixed inode numbers (include/linux/proc_ns.h). The initial
//! network and mount namespaces got fixed numbers only recently (seen on 6.18; 6.1 allocates
//! them dynamically), so on older kernels they are decided by other sound means: a namespace
//! owned by a non-initial user namespace cannot be the initial one, and when we share the
//! initial PID namespace, PID 1 is the real init and its namespaces are the initial ones.

use std::path::Path;

use super::{Boundary, Context, Position};
use crate::kversion;
use crate::report::{CheckResult, Priority, Verdict};
use crate::sys;

const EXPLAIN: &str = "Sharing a namespace with the host kernel's init (its user, PID, network, mount, IPC, UTS or \
cgroup namespace) exposes host resources directly: host processes, interfaces, mounts. Sharing the user \
namespace also makes capabilities count against the host. Inside a moat zone the initial namespaces are the \
zone kernel's, which the hypervisor separates from the host.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Pid,
    Net,
    Ipc,
    Uts,
    Mnt,
    Cgroup,
    User,
    Time,
}

impl NsKind {
    pub const ALL: [NsKind; 8] =
        [NsKind::Pid, NsKind::Net, NsKind::Ipc, NsKind::Uts, NsKind::Mnt, NsKind::Cgroup, NsKind::User, NsKind::Time];

    pub fn name(self) -> &'static str {
        match self {
            NsKind::Pid => "pid",
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Mnt => "mnt",
            NsKind::Cgroup => "cgroup",
            NsKind::User => "user",
            NsKind::Time => "time",
        }
    }

    /// The initial namespace's inode number (PROC_*_INIT_INO / *_NS_INIT_INO). The net and
    /// mnt numbers are only ever given to the initial namespaces, but older kernels give
    /// those namespaces dynamic numbers instead.
    pub fn init_inode(self) -> u64 {
        match self {
            NsKind::Ipc => 0xEFFF_FFFF,
            NsKind::Uts => 0xEFFF_FFFE,
            NsKind::User => 0xEFFF_FFFD,
            NsKind::Pid => 0xEFFF_FFFC,
            NsKind::Cgroup => 0xEFFF_FFFB,
            NsKind::Time => 0xEFFF_FFFA,
            NsKind::Net => 0xEFFF_FFF9,
            NsKind::Mnt => 0xEFFF_FFF8,
        }
    }

    fn has_dynamic_init(self) -> bool {
        matches!(self, NsKind::Net | NsKind::Mnt)
    }
}

/// First kernel release seen to give the initial net and mnt namespaces fixed inode numbers.
const FIXED_NET_MNT_SINCE: kversion::Version = kversion::Version::new(6, 18, 0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsFact {
    pub kind: NsKind,
    /// Inode of /proc/self/ns/<kind>, or the errno that prevented reading it.
    pub own: Result<u64, i32>,
    /// Inode of /proc/1/ns/<kind>.
    pub pid1: Result<u64, i32>,
    /// Inode of the user namespace owning ours (NS_GET_USERNS).
    pub owner: Result<u64, i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsFacts {
    pub facts: Vec<NsFact>,
    /// The running kernel numbers the initial net and mnt namespaces too.
    pub fixed_net_mnt: bool,
}

fn inode(path: &Path) -> Result<u64, i32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn probe(release: &str) -> NsFacts {
    let facts = NsKind::ALL
        .iter()
        .map(|&kind| {
            let own_path = Path::new("/proc/self/ns").join(kind.name());
            NsFact {
                kind,
                own: inode(&own_path),
                pid1: inode(&Path::new("/proc/1/ns").join(kind.name())),
                owner: sys::ns_owner_inode(&own_path),
            }
        })
        .collect();
    let fixed_net_mnt = kversion::leading(release).is_some_and(|v| v >= FIXED_NET_MNT_SINCE);
    NsFacts { facts, fixed_net_mnt }
}

impl NsFacts {
    fn get(&self, kind: NsKind) -> Option<&NsFact> {
        self.facts.iter().find(|f| f.kind == kind)
    }

    /// Is PID 1 as seen in our /proc the initial PID namespace's init?
    fn pid1_is_init(&self) -> bool {
        let init = NsKind::Pid.init_inode();
        self.get(NsKind::Pid).is_some_and(|f| f.own == Ok(init) && f.pid1 == Ok(init))
    }

    pub fn position_of(&self, kind: NsKind) -> Position {
        let Some(fact) = self.get(kind) else {
            return Position::Unknown(format!("{} not probed", kind.name()));
        };
        let own = match fact.own {
            Ok(ino) => ino,
            Err(errno) => {
                return Position::Unknown(format!("cannot stat /proc/self/ns/{}: {}", kind.name(), sys::errno_name(errno)))
            }
        };
        if own == kind.init_inode() {
            return Position::Initial;
        }
        if !kind.has_dynamic_init() || self.fixed_net_mnt {
            return Position::Child;
        }
        let init_user = NsKind::User.init_inode();
        if fact.owner.is_ok_and(|o| o != init_user) {
            return Position::Child;
        }
        if self.pid1_is_init() {
            if let Ok(pid1) = fact.pid1 {
                return if pid1 == own { Position::Initial } else { Position::Child };
            }
        }
        Position::Unknown(format!(
            "{}: this kernel numbers it dynamically, it is owned by the initial user namespace, and the initial init's is not visible",
            kind.name()
        ))
    }
}

pub fn evaluate(ctx: &Context, ns: &NsFacts) -> Verdict {
    let mut initial = Vec::new();
    let mut unknown = Vec::new();
    for kind in NsKind::ALL {
        match ns.position_of(kind) {
            Position::Initial => initial.push(kind),
            Position::Child => {}
            Position::Unknown(why) => unknown.push(why),
        }
    }
    let names = |kinds: &[NsKind]| kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    // A shared time namespace only shares clock offsets; no runtime unshares it by default.
    let isolating: Vec<NsKind> = initial.iter().copied().filter(|k| *k != NsKind::Time).collect();
    let time_note = if initial.contains(&NsKind::Time) { "; the time namespace is shared (clock offsets only)" } else { "" };
    if let Boundary::Zone { zone, release } = &ctx.boundary {
        return if initial.is_empty() {
            Verdict::pass(format!("no namespace is an initial one; the initial ones belong to moat zone {zone}'s kernel anyway"))
        } else {
            Verdict::pass(format!(
                "initial namespaces in use: {}; they are moat zone {zone}'s kernel {release}'s, not the host's, \
                 and the VM boundary separates them from the host",
                names(&initial)
            ))
        };
    }
    if !isolating.is_empty() {
        return Verdict::fail(format!("found host namespaces: {}{time_note}", names(&isolating)));
    }
    if !unknown.is_empty() {
        return Verdict::warn(format!("no host namespace found, but cannot decide {}{time_note}", unknown.join("; ")));
    }
    Verdict::pass(format!("host namespaces not passed through: pid, net, ipc, uts, mnt, cgroup and user are all new{time_note}"))
}

pub fn check(ctx: &Context, ns: &NsFacts) -> CheckResult {
    CheckResult::new("host-namespaces", "host namespaces", Priority::High, EXPLAIN, ctx.workload_only(evaluate(ctx, ns)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::report::{Mode, Status};

    const DYN: u64 = 0xF000_0100;

    fn facts(initial: &[NsKind], fixed_net_mnt: bool, owner: Result<u64, i32>, pid1_visible: bool) -> NsFacts {
        let facts = NsKind::ALL
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let own = if initial.contains(&kind) && (fixed_net_mnt || !kind.has_dynamic_init()) {
                    kind.init_inode()
                } else {
                    DYN + u64::try_from(i).expect("small")
                };
                let pid1 = if !pid1_visible {
                    Err(libc::EACCES)
                } else if kind == NsKind::Pid {
                    Ok(kind.init_inode())
                } else if initial.contains(&kind) {
                    Ok(own)
                } else {
                    Ok(DYN + 100)
                };
                NsFact { kind, own: Ok(own), pid1, owner }
            })
            .collect();
        NsFacts { facts, fixed_net_mnt }
    }

    #[test]
    fn privileged_container_on_a_host_is_flagged() {
        let ctx = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        let ns = facts(&[NsKind::User, NsKind::Time, NsKind::Cgroup], true, Ok(NsKind::User.init_inode()), false);
        let verdict = evaluate(&ctx, &ns);
        assert_eq!(verdict.status, Status::Fail);
        assert_eq!(verdict.reason, "found host namespaces: cgroup, user; the time namespace is shared (clock offsets only)");
    }

    #[test]
    fn user_namespaced_container_passes() {
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let ns = facts(&[NsKind::Time], false, Ok(DYN), false);
        let verdict = evaluate(&ctx, &ns);
        assert_eq!(verdict.status, Status::Pass, "{}", verdict.reason);
    }

    #[test]
    fn zone_initial_namespaces_pass_because_of_the_boundary() {
        let ctx = context(Mode::Workload, true, PRIVILEGED_STATUS, Position::Initial);
        let ns = facts(&[NsKind::User, NsKind::Time], false, Ok(NsKind::User.init_inode()), true);
        let verdict = evaluate(&ctx, &ns);
        assert_eq!(verdict.status, Status::Pass);
        assert!(verdict.reason.contains("in use: user, time;"), "{}", verdict.reason);
        assert!(verdict.reason.contains("zone z1"), "{}", verdict.reason);
    }

    #[test]
    fn dynamic_net_is_decided_through_pid1_or_left_undecided() {
        // Host pid namespace, old kernel: /proc/1 is the real init, so net is comparable.
        let ns = facts(&[NsKind::Pid, NsKind::Net, NsKind::User], false, Ok(NsKind::User.init_inode()), true);
        assert_eq!(ns.position_of(NsKind::Net), Position::Initial);
        assert_eq!(ns.position_of(NsKind::Mnt), Position::Child);
        // Own pid namespace and no fixed numbers: net owned by the initial user ns is undecidable.
        let ns = facts(&[NsKind::User], false, Ok(NsKind::User.init_inode()), false);
        assert!(matches!(ns.position_of(NsKind::Net), Position::Unknown(_)));
        let ctx = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        assert_eq!(evaluate(&ctx, &ns).status, Status::Fail, "user is still decided");
    }

    #[test]
    fn unreadable_namespaces_are_undecided_not_passed() {
        let mut ns = facts(&[], true, Ok(DYN), false);
        for f in &mut ns.facts {
            f.own = Err(libc::EACCES);
        }
        let ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        let verdict = evaluate(&ctx, &ns);
        assert_eq!(verdict.status, Status::Warn);
        assert!(verdict.reason.contains("EACCES"), "{}", verdict.reason);
    }

    #[test]
    fn host_mode_reports_for_information() {
        let ctx = context(Mode::Host, false, PRIVILEGED_STATUS, Position::Initial);
        let ns = facts(&NsKind::ALL, true, Ok(DYN), true);
        assert_eq!(check(&ctx, &ns).status, Status::Warn);
    }
}
