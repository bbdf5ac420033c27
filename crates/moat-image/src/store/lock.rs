//! Advisory locks (flock) that keep garbage collection away from work in progress. The kernel
//! drops them when a process dies, so a killed pull never leaves the store locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
pub struct Lock {
    _held: Flock<File>,
}

fn take(path: &Path, arg: FlockArg) -> io::Result<Lock> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let held = Flock::lock(file, arg).map_err(|(_, errno)| io::Error::from(errno))?;
    Ok(Lock { _held: held })
}

pub fn shared(path: &Path) -> io::Result<Lock> {
    take(path, FlockArg::LockShared)
}

pub fn exclusive(path: &Path) -> io::Result<Lock> {
    take(path, FlockArg::LockExclusive)
}
