//! The container process's command line, working directory and hostname, with Docker's rules.

use crate::echo;

/// Longest hostname the kernel accepts (__NEW_UTS_LEN).
pub const MAX_HOSTNAME_BYTES: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcessError {
    #[error("no command specified: the image has no Entrypoint or Cmd; give a command after the image name")]
    NoCommand,
    #[error("working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error(
        "hostname {0:?} is invalid: use 1 to {MAX_HOSTNAME_BYTES} letters, digits, '-', '_' or '.'"
    )]
    BadHostname(String),
    #[error("{what} {text:?} contains a NUL byte")]
    Nul { what: &'static str, text: String },
}

/// The process's argv from the image's Entrypoint/Cmd and the user's `--entrypoint` and
/// command, as Docker merges them:
/// - no `--entrypoint`: the image's entrypoint, then the user's command or else the image's Cmd;
/// - `--entrypoint X`: X, then the user's command; the image's Cmd is dropped;
/// - `--entrypoint ""`: no entrypoint, only the user's command.
pub fn command(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    user_command: &[String],
) -> Result<Vec<String>, ProcessError> {
    let (entrypoint, cmd): (Vec<String>, &[String]) = match entrypoint {
        None if user_command.is_empty() => (image_entrypoint.to_vec(), image_cmd),
        None => (image_entrypoint.to_vec(), user_command),
        Some("") => (Vec::new(), user_command),
        Some(given) => (vec![given.to_string()], user_command),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd.iter().cloned()).collect();
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }
    for arg in &args {
        no_nul("argument", arg)?;
    }
    Ok(args)
}

/// The working directory: the user's `-w`, else the image's WorkingDir, else `/`; cleaned
/// like Go's `filepath.Clean`. A relative path is an error, as in Docker.
pub fn workdir(user: Option<&str>, image: Option<&str>) -> Result<String, ProcessError> {
    let dir = user
        .filter(|d| !d.is_empty())
        .or(image.filter(|d| !d.is_empty()))
        .unwrap_or("/");
    no_nul("working directory", dir)?;
    if !dir.starts_with('/') {
        return Err(ProcessError::RelativeWorkdir(echo(dir)));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Checks a `--hostname`.
pub fn hostname(name: &str) -> Result<&str, ProcessError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_HOSTNAME_BYTES
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(name)
    } else {
        Err(ProcessError::BadHostname(echo(name)))
    }
}

pub(crate) fn no_nul(what: &'static str, text: &str) -> Result<(), ProcessError> {
    if text.contains('\0') {
        return Err(ProcessError::Nul {
            what,
            text: echo(text),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// One row of Docker's override matrix.
    struct Case<'a> {
        image_entrypoint: &'a [String],
        image_cmd: &'a [String],
        flag: Option<&'a str>,
        command: &'a [&'a str],
        argv: &'a [&'a str],
    }

    #[test]
    fn entrypoint_and_cmd_matrix() {
        let ep = v(&["/entry.sh"]);
        let cmd = v(&["serve", "--port=80"]);
        let case = |image_entrypoint, image_cmd, flag, command, argv| Case {
            image_entrypoint,
            image_cmd,
            flag,
            command,
            argv,
        };
        let cases = [
            // Image defaults only.
            case(&ep, &cmd, None, &[], &["/entry.sh", "serve", "--port=80"]),
            case(&[], &cmd, None, &[], &["serve", "--port=80"]),
            case(&ep, &[], None, &[], &["/entry.sh"]),
            // A command replaces Cmd and keeps the entrypoint.
            case(
                &ep,
                &cmd,
                None,
                &["sh", "-c", "id"],
                &["/entry.sh", "sh", "-c", "id"],
            ),
            case(&[], &cmd, None, &["id"], &["id"]),
            // --entrypoint drops the image's Cmd.
            case(&ep, &cmd, Some("/bin/sh"), &[], &["/bin/sh"]),
            case(
                &ep,
                &cmd,
                Some("/bin/sh"),
                &["-c", "id"],
                &["/bin/sh", "-c", "id"],
            ),
            case(&[], &cmd, Some("env"), &[], &["env"]),
            // --entrypoint "" clears the entrypoint; only the command runs.
            case(&ep, &cmd, Some(""), &["id", "-u"], &["id", "-u"]),
        ];
        for c in cases {
            assert_eq!(
                command(c.image_entrypoint, c.image_cmd, c.flag, &v(c.command)),
                Ok(v(c.argv)),
                "{:?} {:?} {:?} {:?}",
                c.image_entrypoint,
                c.image_cmd,
                c.flag,
                c.command
            );
        }
    }

    #[test]
    fn no_command_at_all_is_an_error() {
        assert_eq!(command(&[], &[], None, &[]), Err(ProcessError::NoCommand));
        assert_eq!(
            command(&v(&["/e"]), &v(&["c"]), Some(""), &[]),
            Err(ProcessError::NoCommand),
            "--entrypoint \"\" with no command: Docker's 'no command specified'"
        );
    }

    #[test]
    fn nul_in_arguments_is_rejected() {
        assert!(matches!(
            command(&[], &v(&["a\0b"]), None, &[]),
            Err(ProcessError::Nul { .. })
        ));
    }

    #[test]
    fn workdir_precedence_and_cleaning() {
        assert_eq!(workdir(None, None), Ok("/".into()));
        assert_eq!(workdir(None, Some("/app")), Ok("/app".into()));
        assert_eq!(workdir(Some("/work"), Some("/app")), Ok("/work".into()));
        assert_eq!(workdir(Some(""), Some("/app")), Ok("/app".into()));
        assert_eq!(workdir(Some("/a/./b/../c//"), None), Ok("/a/c".into()));
        assert_eq!(workdir(Some("/../.."), None), Ok("/".into()));
        assert_eq!(
            workdir(Some("relative"), None),
            Err(ProcessError::RelativeWorkdir("relative".into()))
        );
        assert!(workdir(None, Some("app")).is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname("web-1.example"), Ok("web-1.example"));
        assert_eq!(hostname("a1b2c3d4e5f6"), Ok("a1b2c3d4e5f6"));
        for bad in ["", "-lead", "has space", "slash/y", "nul\0"] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
        assert!(hostname(&"h".repeat(MAX_HOSTNAME_BYTES)).is_ok());
        assert!(hostname(&"h".repeat(MAX_HOSTNAME_BYTES + 1)).is_err());
    }
}
