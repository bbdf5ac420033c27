//! How many zones of one state root start at once. A zone's boot and its first container's
//! `runc create` are CPU-bound, and under TCG each zone emulates its guest on the host's cores:
//! fifty zones starting together get a fiftieth of a core each, and the guest's timeouts (runc's
//! 60 s) fire in healthy zones. A start past the slots waits for one to free; zones that already
//! run do not hold one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use crate::state::{StateError, ZoneStore};

/// Starts per host CPU: one emulates while the other waits on its disks and helpers.
pub const STARTS_PER_CPU: usize = 2;
/// How often a waiting start tries the slots again.
const RETRY: Duration = Duration::from_millis(50);

/// One start slot, an exclusive `flock` on one of the root's slot files, released on drop (the
/// descriptor is close-on-exec, so a supervisor spawned meanwhile does not keep it).
pub struct StartSlot {
    _file: File,
}

impl StartSlot {
    /// Wait for a free slot of the root.
    pub fn acquire(store: &ZoneStore) -> Result<Self, StateError> {
        let dir = store.root().join("start-slots");
        std::fs::create_dir_all(&dir).map_err(|err| StateError::Io { path: dir.clone(), err })?;
        let count = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) * STARTS_PER_CPU;
        let mut files = (0..count).map(|n| open(&dir.join(n.to_string()))).collect::<Result<Vec<_>, _>>()?;
        loop {
            if let Some(free) = files.iter().position(try_lock) {
                return Ok(Self { _file: files.swap_remove(free) });
            }
            std::thread::sleep(RETRY);
        }
    }
}

fn open(path: &Path) -> Result<File, StateError> {
    File::options().create(true).truncate(false).write(true).open(path).map_err(|err| StateError::Io { path: path.to_path_buf(), err })
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own; it has no memory effects.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_free_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let store = ZoneStore::open(root.path()).unwrap();
        let count = std::thread::available_parallelism().unwrap().get() * STARTS_PER_CPU;
        let held: Vec<StartSlot> = (0..count).map(|_| StartSlot::acquire(&store).unwrap()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let store = ZoneStore::open(root.path()).unwrap();
            std::thread::spawn(move || {
                let slot = StartSlot::acquire(&store).unwrap();
                tx.send(()).unwrap();
                drop(slot);
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a start past the slots waits");
        drop(held);
        rx.recv_timeout(Duration::from_secs(5)).expect("a freed slot is taken");
        waiting.join().unwrap();
    }
}
