//! Host filesystems mounted into the workload, read from /proc/self/mountinfo: a disk
//! filesystem mounted whole (its root "/"), or a sensitive host directory bound in.

use super::Context;
use crate::mountinfo::Mount;
use crate::report::{CheckResult, Priority, Verdict};

const EXPLAIN: &str = "A bind of the host's / or /var/lib gives the workload the host's files: its credentials, \
other containers' layers and volumes, the runtime's state. mountinfo shows, for each mount, which directory of \
which filesystem is mounted; a whole disk filesystem or a system directory of one is the host's, unless the \
kernel itself is a moat zone's.";

/// Filesystems that live on a block device (as opposed to overlay, tmpfs, proc, erofs images).
const DISK_FS: [&str; 8] = ["ext4", "ext3", "ext2", "xfs", "btrfs", "f2fs", "zfs", "vfat"];

/// Host directories whose bind into a workload exposes the host.
const SENSITIVE: [&str; 14] = [
    "/", "/etc", "/root", "/home", "/boot", "/usr", "/var", "/var/lib", "/var/lib/docker", "/var/lib/containers",
    "/var/lib/containerd", "/var/lib/kubelet", "/var/lib/moat", "/var/run",
];

fn is_host_fs(m: &Mount) -> bool {
    let root = match m.root.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    DISK_FS.contains(&m.fstype.as_str()) && SENSITIVE.contains(&root)
}

pub fn evaluate(ctx: &Context) -> Verdict {
    let mounts = match &ctx.mounts {
        Ok(mounts) => mounts,
        Err(e) => return Verdict::warn(format!("cannot tell: {e}")),
    };
    let found: Vec<String> = mounts
        .iter()
        .filter(|m| is_host_fs(m))
        .map(|m| format!("{} of {} ({}) at {}{}", m.root, m.source, m.fstype, m.mount_point, if m.read_only { " ro" } else { "" }))
        .collect();
    if found.is_empty() {
        return Verdict::pass(format!("no disk filesystem root or system directory among {} mounts", mounts.len()));
    }
    let listed = found.join(", ");
    if ctx.boundary.zone().is_some() {
        Verdict::warn(format!("mounted: {listed}{}", ctx.zone_note()))
    } else {
        Verdict::fail(format!("host filesystems mounted: {listed}"))
    }
}

pub fn check(ctx: &Context) -> CheckResult {
    let verdict = ctx.workload_only(evaluate(ctx));
    CheckResult::new("host-mounts", "host filesystems", Priority::High, EXPLAIN, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS, PRIVILEGED_STATUS};
    use crate::checks::Position;
    use crate::mountinfo;
    use crate::report::{Mode, Status};

    const CONTAINER: &str = "\
1 0 0:95 / / rw - overlay overlay rw
2 1 254:1 /var/lib/containers/storage/overlay-containers/abc/userdata/hosts /etc/hosts rw - ext4 /dev/vda rw
3 1 0:50 / /dev rw - tmpfs tmpfs rw
";

    #[test]
    fn container_binds_of_files_are_fine() {
        let mut ctx = context(Mode::Workload, false, DOCKER_STATUS, Position::Child);
        ctx.mounts = mountinfo::parse(CONTAINER).map_err(|e| e.to_string());
        let v = evaluate(&ctx);
        assert_eq!((v.status, v.reason.as_str()), (Status::Pass, "no disk filesystem root or system directory among 3 mounts"));
    }

    #[test]
    fn host_root_and_var_lib_are_flagged() {
        let text = format!("{CONTAINER}4 1 254:1 / /host ro - ext4 /dev/vda rw\n5 1 254:1 /var/lib/ /data rw - xfs /dev/sdb rw\n");
        let mut ctx = context(Mode::Workload, false, PRIVILEGED_STATUS, Position::Initial);
        ctx.mounts = mountinfo::parse(&text).map_err(|e| e.to_string());
        let v = evaluate(&ctx);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.reason, "host filesystems mounted: / of /dev/vda (ext4) at /host ro, /var/lib/ of /dev/sdb (xfs) at /data");
    }
}
