//! How many zones of one state root start at once. A zone's boot and its first container's
//! `runc create` are CPU-bound, and under TCG each zone emulates its guest on the host's cores:
//! fifty zones starting together get a fiftieth of a core each, and the guest's timeouts (runc's
//! 60 s) fire in healthy zones. A start past the slots waits for one to free; zones that already
//! run do not hold one.

use std::time::Duration;

use crate::state::{FileLock, StateError, ZoneStore};

/// Starts per host CPU: one emulates while the other waits on its disks and helpers.
pub const STARTS_PER_CPU: usize = 2;
/// How often a waiting start tries the slots again.
const RETRY: Duration = Duration::from_millis(50);

/// One start slot: the lock on one of the root's slot files, released on drop (its descriptor
/// is close-on-exec, so a supervisor spawned meanwhile does not keep it).
pub struct StartSlot {
    _lock: FileLock,
}

impl StartSlot {
    /// Wait for a free slot of the root.
    pub fn acquire(store: &ZoneStore) -> Result<Self, StateError> {
        let dir = store.root().join("start-slots");
        std::fs::create_dir_all(&dir).map_err(|err| StateError::Io { path: dir.clone(), err })?;
        let count = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) * STARTS_PER_CPU;
        loop {
            for n in 0..count {
                if let Some(lock) = FileLock::try_acquire(&dir.join(n.to_string()))? {
                    return Ok(Self { _lock: lock });
                }
            }
            std::thread::sleep(RETRY);
        }
    }
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
