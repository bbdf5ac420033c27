//! The spec's hooks that run in the runtime's namespace, which for moat-oci is the host's:
//! `prestart` and `createRuntime` once the container is created, `poststart` after it started,
//! `poststop` after it is deleted. Each gets the OCI state on stdin and is killed at its
//! timeout. They come from the caller's bundle, never from a zone. The hooks that run in the
//! container's namespaces (`createContainer`, `startContainer`) would have to run in the zone,
//! which has no host programs: they are dropped, with a note.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// How often a running hook is looked at.
const POLL: Duration = Duration::from_millis(10);
/// A hook without a timeout still may not hang the runtime forever.
const MAX_HOOK_TIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{phase} hook {path}: {err}")]
    Spawn { phase: &'static str, path: PathBuf, err: std::io::Error },
    #[error("{phase} hook {path} failed: {status}")]
    Failed { phase: &'static str, path: PathBuf, status: ExitStatus },
    #[error("{phase} hook {path} did not finish within {secs} s")]
    Timeout { phase: &'static str, path: PathBuf, secs: u64 },
}

/// Run `hooks` of `phase` in order, each with `state` (the OCI state, JSON) on stdin; the first
/// failure stops them.
pub fn run_all(phase: &'static str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    hooks.iter().try_for_each(|hook| run(phase, hook, state))
}

fn run(phase: &'static str, hook: &Hook, state: &str) -> Result<(), HookError> {
    let path = hook.path().clone();
    let spawn_err = |err| HookError::Spawn { phase, path: path.clone(), err };
    let mut command = Command::new(&path);
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        command.arg0(arg0).args(rest);
    }
    command.env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is no error.
        let _ = stdin.write_all(state.as_bytes());
    }
    let limit = hook.timeout().and_then(|t| u64::try_from(t).ok()).map_or(MAX_HOOK_TIME, |t| Duration::from_secs(t).min(MAX_HOOK_TIME));
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(HookError::Failed { phase, path, status }),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { phase, path, secs: limit.as_secs() });
            }
            None => std::thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut builder = HookBuilder::default().path("/bin/sh").args(vec!["sh".to_string(), "-c".to_string(), script.to_string()]).env(vec!["GREETING=hi".to_string()]);
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        builder.build().unwrap()
    }

    #[test]
    fn a_hook_reads_the_state_and_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        run_all("poststart", &[hook(&format!("cat > {}; echo $GREETING >> {}", out.display(), out.display()), None)], "{\"id\":\"c\"}").unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "{\"id\":\"c\"}hi\n");
    }

    #[test]
    fn failures_and_timeouts_stop_the_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let after = dir.path().join("after");
        let hooks = [hook("exit 3", None), hook(&format!("touch {}", after.display()), None)];
        assert!(matches!(run_all("prestart", &hooks, "{}"), Err(HookError::Failed { .. })));
        assert!(!after.exists(), "the hooks after a failure do not run");
        assert!(matches!(run_all("prestart", &[hook("sleep 5", Some(1))], "{}"), Err(HookError::Timeout { secs: 1, .. })));
        let missing = HookBuilder::default().path("/no/such/hook").build().unwrap();
        assert!(matches!(run_all("poststop", &[missing], "{}"), Err(HookError::Spawn { .. })));
    }
}
