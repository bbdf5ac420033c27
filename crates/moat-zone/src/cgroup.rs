//! The zone's cgroups: QEMU's memory (the guest's RAM plus QEMU's own overhead), CPU time and
//! thread count are bounded, so a zone cannot take the host's memory or all its cores. They are
//! made below the supervisor's own cgroup in each cgroup v1 hierarchy (`memory`, `cpu`,
//! `pids`), since that is what hosts like this one (hybrid v1/v2, no controllers on the v2
//! side) offer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::accel::Accel;

/// The v1 hierarchies' mount points.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// What QEMU needs beyond the guest's RAM under any accelerator: its heap, device state and
/// the block layer's buffers.
pub const VMM_OVERHEAD_MIB: u64 = 256;
pub use crate::accel::TCG_CACHE_MIB;
pub const CPU_PERIOD_US: u64 = 100_000;
/// QEMU's threads: one per vCPU, its main loop, RCU, and the block layer's worker pool (up to
/// 64). More means a runaway.
pub const MAX_PIDS: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("the host has no cgroup v1 {0} hierarchy at {CGROUP_ROOT}; the zone runs without a {0} limit")]
    Missing(&'static str),
    #[error("reading /proc/self/cgroup: {0}")]
    Own(std::io::Error),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

/// The limits of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub pids: u32,
}

impl Limits {
    /// A zone's vCPUs, plus half a CPU for QEMU's main loop and I/O; its RAM plus
    /// [`VMM_OVERHEAD_MIB`], plus [`TCG_CACHE_MIB`] under TCG.
    pub fn for_zone(accel: Accel, cpus: u32, memory_mib: u32) -> Self {
        let cache = if accel == Accel::Tcg { TCG_CACHE_MIB } else { 0 };
        Self {
            memory_bytes: (u64::from(memory_mib) + VMM_OVERHEAD_MIB + cache) << 20,
            cpu_quota_us: u64::from(cpus) * CPU_PERIOD_US + CPU_PERIOD_US / 2,
            pids: MAX_PIDS,
        }
    }

    /// Each controller and its files, in the order they are written.
    fn files(&self) -> [(&'static str, Vec<(&'static str, String)>); 3] {
        [
            ("memory", vec![("memory.limit_in_bytes", self.memory_bytes.to_string())]),
            ("cpu", vec![("cpu.cfs_period_us", CPU_PERIOD_US.to_string()), ("cpu.cfs_quota_us", self.cpu_quota_us.to_string())]),
            ("pids", vec![("pids.max", self.pids.to_string())]),
        ]
    }
}

/// How long removal waits for a killed QEMU to leave its cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The zone's cgroup directories, one per controller. They are recorded in the zone's record
/// and removed with [`remove`] once QEMU is gone.
#[derive(Debug)]
pub struct ZoneCgroup {
    dirs: Vec<PathBuf>,
}

/// The supervisor's own path in the v1 hierarchy of `controller`, from /proc/self/cgroup.
fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.trim_start_matches('/').to_string())
    })
}

impl ZoneCgroup {
    /// Make `moat-<name>` below the supervisor's cgroup in each hierarchy and set `limits`.
    pub fn create(name: &str, limits: Limits) -> Result<Self, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::Own)?;
        let mut cgroup = Self { dirs: Vec::new() };
        for (controller, files) in limits.files() {
            let path = own_path(&own, controller).ok_or(CgroupError::Missing(controller))?;
            let hierarchy = Path::new(CGROUP_ROOT).join(controller);
            if !hierarchy.join("cgroup.procs").is_file() {
                return Err(CgroupError::Missing(controller));
            }
            let dir = hierarchy.join(path).join(format!("moat-{name}"));
            match std::fs::create_dir(&dir) {
                Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => return Err(CgroupError::Io { path: dir, err }),
                _ => {}
            }
            cgroup.dirs.push(dir.clone());
            for (file, value) in files {
                let path = dir.join(file);
                std::fs::write(&path, value).map_err(|err| CgroupError::Io { path, err })?;
            }
        }
        Ok(cgroup)
    }

    /// The files QEMU writes itself into before it starts.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Remove a zone's cgroup directories (those already gone are fine), waiting up to
/// [`REMOVE_TIMEOUT`] for a QEMU that was just killed to leave them.
pub fn remove(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    for dir in dirs {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Err(err) => return Err(CgroupError::Io { path: dir.clone(), err }),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_cover_the_guest_and_qemu() {
        let limits = Limits::for_zone(Accel::Kvm, 2, 256);
        assert_eq!(limits.memory_bytes, (256 + 256) << 20);
        assert_eq!(limits.cpu_quota_us, 250_000);
        assert_eq!(limits.pids, MAX_PIDS);
        assert_eq!(Limits::for_zone(Accel::Tcg, 1, 256).memory_bytes, (256 + 256 + 128) << 20, "TCG's translation cache counts");
    }

    #[test]
    fn own_path_is_read_per_controller() {
        let own = "9:name=systemd:/\n4:memory:/process_api/bc78\n2:cpu,cpuacct:/a/b\n0::/\n";
        assert_eq!(own_path(own, "memory").as_deref(), Some("process_api/bc78"));
        assert_eq!(own_path(own, "cpu").as_deref(), Some("a/b"));
        assert_eq!(own_path(own, "pids"), None);
    }
}
