//! A host process that serves one zone beside QEMU (virtiofsd, passt): started before QEMU,
//! ready once its socket exists (or at once, when it is handed a connected one), killed if the
//! supervisor dies, and ended with the zone.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a helper may take to create its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a helper may take to exit on its own once QEMU has gone.
const EXIT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("starting {binary} (package {package}): {err}")]
    Spawn { binary: &'static str, package: &'static str, err: std::io::Error },
    #[error("creating {path}: {err}")]
    Log { path: PathBuf, err: std::io::Error },
    #[error("{name} exited before it listened ({status}): {log}")]
    EarlyExit { name: &'static str, status: String, log: String },
    #[error("{name} did not create its socket within {READY_TIMEOUT:?}")]
    Timeout { name: &'static str },
    #[error("the zone's {name} exited while the zone ran ({status}): {log}")]
    Died { name: &'static str, status: String, log: String },
}

/// What to start.
pub struct HelperCommand<'a> {
    /// How errors name it: "file server (virtiofsd)", "network (passt)".
    pub name: &'static str,
    pub binary: &'static str,
    /// The Debian package that ships `binary`, for the error when it is missing.
    pub package: &'static str,
    pub args: Vec<OsString>,
    /// The socket it creates when ready; none when it is handed [`Self::inherit`].
    pub socket: Option<&'a Path>,
    /// A connected socket the helper gets as [`INHERITED_FD`].
    pub inherit: Option<OwnedFd>,
    /// Where its stderr goes.
    pub log: &'a Path,
}

/// A running helper.
pub struct Helper {
    name: &'static str,
    log: PathBuf,
    child: tokio::process::Child,
}

impl Helper {
    /// Start the helper and wait until its socket exists, so QEMU can connect. It is killed if
    /// the supervisor dies or drops it.
    pub async fn start(command: HelperCommand<'_>) -> Result<Self, HelperError> {
        if let Some(socket) = command.socket {
            let _ = std::fs::remove_file(socket);
        }
        let stderr = std::fs::File::create(command.log).map_err(|err| HelperError::Log { path: command.log.to_path_buf(), err })?;
        let mut process = std::process::Command::new(command.binary);
        process.args(&command.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        die_with_parent(&mut process, command.inherit.as_ref().map(AsRawFd::as_raw_fd));
        let spawn_error = |err| HelperError::Spawn { binary: command.binary, package: command.package, err };
        let mut child = tokio::process::Command::from(process).kill_on_drop(true).spawn().map_err(spawn_error)?;
        // The child has its copy; ours would keep the connection open after QEMU's end closed.
        drop(command.inherit);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while command.socket.is_some_and(|socket| !socket.exists()) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(HelperError::EarlyExit { name: command.name, status: status.to_string(), log: log_tail(command.log) });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(HelperError::Timeout { name: command.name });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self { name: command.name, log: command.log.to_path_buf(), child })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Wait until the helper exits, and say how and why.
    pub async fn exited(&mut self) -> HelperError {
        let status = self.child.wait().await.map_or_else(|e| e.to_string(), |s| s.to_string());
        HelperError::Died { name: self.name, status, log: log_tail(&self.log) }
    }

    /// End the helper once QEMU is gone: it normally exits when QEMU disconnects; it is killed
    /// after a grace period. Reaped either way.
    pub async fn stop(mut self) {
        if tokio::time::timeout(EXIT_GRACE, self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The descriptor number a process gets an inherited socket as.
pub const INHERITED_FD: RawFd = 3;

/// Make `command`'s process die with the supervisor, and give it `inherit` as [`INHERITED_FD`].
pub fn die_with_parent(command: &mut std::process::Command, inherit: Option<RawFd>) {
    // SAFETY: prctl, dup2 and fcntl are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let failed = match inherit {
                // dup2 onto itself would keep close-on-exec; clear it instead.
                Some(fd) if fd == INHERITED_FD => libc::fcntl(fd, libc::F_SETFD, 0) != 0,
                Some(fd) => libc::dup2(fd, INHERITED_FD) < 0,
                None => false,
            };
            if failed {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The last line a helper logged, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
    moat_proto::session::clip(last.to_string())
}
