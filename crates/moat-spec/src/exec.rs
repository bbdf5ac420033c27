//! The process `moat exec` starts in a running container, built from the container's own
//! process as Docker builds an exec: the same capabilities, no_new_privileges, rlimits and
//! security labels; its own command; the container's environment with the user's `-e` on top;
//! and the container's user and working directory unless `-u` or `-w` say otherwise.
//!
//! Namespaces, cgroup, seccomp and the user namespace are the container's by construction:
//! the runtime joins them (`runc exec`), so they are not part of the process.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{BoxBuilder, Process, Spec};

use crate::user::{spec_user, validate_user_spec};
use crate::{check_size, env, process, SpecError};

/// The `moat exec` flags that shape the new process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `-e KEY=VALUE` or `-e KEY` (taken from the caller's environment).
    pub env: Vec<String>,
    /// `-w`: an absolute path; the container's working directory when not given.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`; the container's user when not given. Resolved in the zone.
    pub user: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// The caller's terminal as (rows, cols), set on the new pty before the command starts.
    pub console_size: Option<(u16, u16)>,
}

/// The process to start, and the `USER[:GROUP]` the zone resolves against the container's
/// /etc/passwd and /etc/group before starting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecProcess {
    pub process: Process,
    pub user: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("no command given: use `moat exec CONTAINER COMMAND [ARG...]`")]
    NoCommand,
    #[error("the container's spec has no process to start another from")]
    NoProcess,
}

/// Builds the exec'd process from the container's spec (as the host built it for `run`) and
/// the exec flags. `caller_env` serves `-e KEY` without a value.
pub fn exec_process(
    container: &Spec,
    opts: &ExecOptions,
    caller_env: &BTreeMap<String, String>,
) -> Result<ExecProcess, SpecError> {
    let mut process = container.process().clone().ok_or(ExecError::NoProcess)?;
    if opts.command.is_empty() {
        return Err(ExecError::NoCommand.into());
    }
    for arg in &opts.command {
        process::no_nul("argument", arg)?;
    }
    let user_env = env::user_env(&[], &opts.env, caller_env)?;
    let env = env::exec_env(
        process.env().as_deref().unwrap_or_default(),
        &user_env,
        opts.tty,
    )?;
    if let Some(dir) = opts.workdir.as_deref().filter(|d| !d.is_empty()) {
        process.set_cwd(PathBuf::from(process::workdir(Some(dir), None)?));
    }
    let user = opts
        .user
        .as_deref()
        .unwrap_or_else(|| spec_user(container))
        .to_string();
    validate_user_spec(&user)?;
    let console_size = match opts.console_size.filter(|_| opts.tty) {
        Some((rows, cols)) => Some(
            BoxBuilder::default()
                .height(rows)
                .width(cols)
                .build()
                .map_err(|e| SpecError::Oci(e.to_string()))?,
        ),
        None => None,
    };
    process
        .set_args(Some(opts.command.clone()))
        .set_env(Some(env))
        .set_terminal(Some(opts.tty))
        .set_console_size(console_size);
    process_to_json(&process)?;
    Ok(ExecProcess { process, user })
}

/// The process as JSON, refused when larger than [`crate::MAX_SPEC_JSON_BYTES`].
pub fn process_to_json(process: &Process) -> Result<String, SpecError> {
    let json = serde_json::to_string(process).map_err(|e| SpecError::Json(e.to_string()))?;
    check_size(json.len())?;
    Ok(json)
}

/// Parses a process received as JSON, refusing oversized input before parsing it.
pub fn process_from_json(json: &str) -> Result<Process, SpecError> {
    check_size(json.len())?;
    serde_json::from_str(json).map_err(|e| SpecError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build_spec, RunOptions};
    use oci_spec::image::ImageConfiguration;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn container(opts: RunOptions) -> Spec {
        let image = ImageConfiguration::from_reader(
            br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin","FROM_IMAGE=1"],"WorkingDir":"/srv","User":"app"},
                "rootfs":{"type":"layers","diff_ids":[]}}"#
                .as_slice(),
        )
        .expect("image config");
        let opts = RunOptions {
            env: strings(&["FROM_RUN=yes"]),
            hostname: Some("box".into()),
            ..opts
        };
        build_spec(&image, &opts, &BTreeMap::new()).expect("spec")
    }

    fn exec(spec: &Spec, opts: ExecOptions) -> Result<ExecProcess, SpecError> {
        let caller = BTreeMap::from([("FROM_CALLER".to_string(), "c".to_string())]);
        exec_process(spec, &opts, &caller)
    }

    fn command(args: &[&str]) -> ExecOptions {
        ExecOptions {
            command: strings(args),
            ..ExecOptions::default()
        }
    }

    #[test]
    fn inherits_the_containers_security_user_and_directory() {
        for privileged in [false, true] {
            let spec = container(RunOptions {
                privileged,
                cap_drop: strings(&["NET_RAW"]),
                security_opt: strings(&["no-new-privileges"]),
                ..RunOptions::default()
            });
            let built = exec(&spec, command(&["id", "-u"])).expect("exec");
            let main = spec.process().as_ref().expect("process");
            let p = &built.process;
            assert_eq!(p.args().as_deref(), Some(&strings(&["id", "-u"])[..]));
            assert_eq!(p.capabilities(), main.capabilities());
            assert_eq!(p.no_new_privileges(), Some(true));
            assert_eq!(p.rlimits(), main.rlimits());
            assert_eq!(p.apparmor_profile(), main.apparmor_profile());
            assert_eq!(p.cwd(), main.cwd());
            assert_eq!(p.cwd(), &PathBuf::from("/srv"));
            assert_eq!(p.user(), main.user());
            assert_eq!(
                built.user, "app",
                "the container's user, resolved in the zone"
            );
            assert_eq!(p.env(), main.env(), "the container's environment");
            assert_eq!(p.terminal(), Some(false));
            assert_eq!(p.console_size(), None);
        }
    }

    #[test]
    fn flags_override_env_user_and_directory() {
        let spec = container(RunOptions::default());
        let opts = ExecOptions {
            command: strings(&["env"]),
            env: strings(&["FROM_RUN=over", "NEW=1", "FROM_CALLER", "FROM_IMAGE"]),
            workdir: Some("/tmp/./x/..".into()),
            user: Some("nobody:nogroup".into()),
            ..ExecOptions::default()
        };
        let built = exec(&spec, opts).expect("exec");
        let env = built.process.env().clone().expect("env");
        assert!(env.contains(&"FROM_RUN=over".to_string()), "{env:?}");
        assert!(env.contains(&"NEW=1".to_string()));
        assert!(
            env.contains(&"FROM_CALLER=c".to_string()),
            "-e KEY takes the caller's value"
        );
        assert!(
            !env.iter().any(|e| e.starts_with("FROM_IMAGE")),
            "a bare unknown name removes it"
        );
        assert!(env.contains(&"HOSTNAME=box".to_string()));
        assert_eq!(built.process.cwd(), &PathBuf::from("/tmp"));
        assert_eq!(built.user, "nobody:nogroup");
    }

    #[test]
    fn a_terminal_gets_term_and_the_callers_size() {
        let spec = container(RunOptions::default());
        let opts = ExecOptions {
            tty: true,
            console_size: Some((37, 101)),
            ..command(&["sh"])
        };
        let built = exec(&spec, opts).expect("exec");
        assert_eq!(built.process.terminal(), Some(true));
        let size = built.process.console_size().expect("size");
        assert_eq!((size.height(), size.width()), (37, 101));
        assert!(built
            .process
            .env()
            .iter()
            .flatten()
            .any(|e| e == "TERM=xterm"));
        let no_tty = exec(
            &spec,
            ExecOptions {
                console_size: Some((37, 101)),
                ..command(&["sh"])
            },
        )
        .expect("exec");
        assert_eq!(
            no_tty.process.console_size(),
            None,
            "a size only with a terminal"
        );
    }

    #[test]
    fn bad_flags_are_typed_errors() {
        let spec = container(RunOptions::default());
        assert_eq!(
            exec(&spec, command(&[])).unwrap_err(),
            SpecError::Exec(ExecError::NoCommand)
        );
        assert!(matches!(
            exec(&spec, command(&["a\0b"])),
            Err(SpecError::Process(process::ProcessError::Nul { .. }))
        ));
        let relative = ExecOptions {
            workdir: Some("tmp".into()),
            ..command(&["pwd"])
        };
        assert!(matches!(
            exec(&spec, relative),
            Err(SpecError::Process(process::ProcessError::RelativeWorkdir(
                _
            )))
        ));
        let bad_user = ExecOptions {
            user: Some("a:b:c".into()),
            ..command(&["id"])
        };
        assert!(matches!(exec(&spec, bad_user), Err(SpecError::User(_))));
        let empty_env = ExecOptions {
            env: strings(&["=x"]),
            ..command(&["id"])
        };
        assert!(matches!(exec(&spec, empty_env), Err(SpecError::Env(_))));
        let mut no_process = spec.clone();
        no_process.set_process(None);
        assert_eq!(
            exec(&no_process, command(&["id"])).unwrap_err(),
            SpecError::Exec(ExecError::NoProcess)
        );
    }

    #[test]
    fn the_process_round_trips_through_bounded_json() {
        let spec = container(RunOptions::default());
        let built = exec(&spec, command(&["true"])).expect("exec");
        let json = process_to_json(&built.process).expect("json");
        assert_eq!(process_from_json(&json).expect("parse"), built.process);
        let huge = ExecOptions {
            env: vec![format!("BIG={}", "x".repeat(crate::MAX_SPEC_JSON_BYTES))],
            ..command(&["true"])
        };
        assert!(matches!(exec(&spec, huge), Err(SpecError::TooLarge { .. })));
        assert!(matches!(
            process_from_json(&" ".repeat(crate::MAX_SPEC_JSON_BYTES + 1)),
            Err(SpecError::TooLarge { .. })
        ));
        assert!(matches!(
            process_from_json("{\"args\": 1}"),
            Err(SpecError::Json(_))
        ));
    }
}
