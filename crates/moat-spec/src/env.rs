//! The container's environment, with Docker's rules: `-e`, `--env-file`, the image's `Env`, and
//! the defaults (PATH, HOSTNAME, TERM).
//!
//! An entry without `=` means "take it from the caller's environment"; when the caller has no
//! such variable, the bare name stays and removes the variable from the container, as in Docker.

use std::collections::BTreeMap;

use crate::echo;
/// Largest env file accepted. The file ends up in the runtime spec, which crosses to the zone
/// in a bounded frame; a larger file could only fail later, with a less clear error.
pub const MAX_ENV_FILE_BYTES: usize = 128 * 1024;

/// PATH a container gets when neither the image nor the user sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("env file is {size} bytes, more than the {max} allowed")]
    FileTooLarge { size: usize, max: usize },
    #[error("env file line {line}: variable {name:?} contains whitespace")]
    Whitespace { line: usize, name: String },
    #[error("env file line {line}: no variable name in {text:?}")]
    NoName { line: usize, text: String },
    #[error("invalid environment variable {0:?}: the name before '=' is empty")]
    EmptyName(String),
    #[error("environment variable {0:?} contains a NUL byte")]
    Nul(String),
}

/// Parses one `--env-file`'s contents in Docker's format: one `KEY=VALUE` or bare `KEY` per
/// line, `#` comments, blank lines. Values are kept as written (no quotes removed, no trim).
pub fn parse_env_file(
    text: &str,
    caller_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, EnvError> {
    if text.len() > MAX_ENV_FILE_BYTES {
        return Err(EnvError::FileTooLarge {
            size: text.len(),
            max: MAX_ENV_FILE_BYTES,
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        if name.contains([' ', '\t']) {
            return Err(EnvError::Whitespace {
                line: line_number,
                name: echo(name),
            });
        }
        if name.is_empty() {
            return Err(EnvError::NoName {
                line: line_number,
                text: echo(line),
            });
        }
        let entry = match value {
            Some(value) => format!("{name}={value}"),
            None => from_caller(name, caller_env),
        };
        entries.push(checked(entry)?);
    }
    Ok(entries)
}

/// Resolves one `-e` argument: `KEY=VALUE` as given, bare `KEY` from the caller's environment.
pub fn resolve_flag(arg: &str, caller_env: &BTreeMap<String, String>) -> Result<String, EnvError> {
    match arg.split_once('=') {
        Some(("", _)) => Err(EnvError::EmptyName(echo(arg))),
        Some(_) => checked(arg.to_string()),
        None if arg.is_empty() => Err(EnvError::EmptyName(String::new())),
        None => checked(from_caller(arg, caller_env)),
    }
}

/// The user's variables: every env file in order, then every `-e`, as the Docker CLI orders
/// them (later entries win).
pub fn user_env(
    env_files: &[String],
    flags: &[String],
    caller_env: &BTreeMap<String, String>,
) -> Result<Vec<String>, EnvError> {
    let mut entries = Vec::new();
    for file in env_files {
        entries.extend(parse_env_file(file, caller_env)?);
    }
    for flag in flags {
        entries.push(resolve_flag(flag, caller_env)?);
    }
    Ok(entries)
}

/// The container's final environment.
///
/// The user's entries override the image's by name; both override the defaults (PATH,
/// HOSTNAME, and TERM=xterm with a terminal). A bare name removes the variable. Each name
/// appears once, where it first appeared, with its last value.
pub fn container_env(
    image_env: &[String],
    user: &[String],
    hostname: &str,
    tty: bool,
) -> Result<Vec<String>, EnvError> {
    let mut merged = Env::default();
    merged.set(format!("PATH={DEFAULT_PATH}"));
    merged.set(format!("HOSTNAME={hostname}"));
    if tty {
        merged.set("TERM=xterm".to_string());
    }
    for entry in user {
        merged.set(checked(entry.clone())?);
    }
    let user_names: Vec<&str> = user.iter().map(|e| name_of(e)).collect();
    for entry in image_env {
        if !user_names.contains(&name_of(entry)) {
            merged.set(checked(entry.clone())?);
        }
    }
    Ok(merged.into_entries())
}

/// The environment of a process `exec`ed into a container: the container's own, with
/// TERM=xterm added for a terminal unless it sets TERM, then the user's entries (from
/// [`user_env`]) replacing or adding by name; a bare name removes the variable.
pub fn exec_env(container: &[String], user: &[String], tty: bool) -> Result<Vec<String>, EnvError> {
    let mut merged = Env::default();
    for entry in container {
        merged.set(checked(entry.clone())?);
    }
    if tty && !container.iter().any(|e| name_of(e) == "TERM") {
        merged.set("TERM=xterm".to_string());
    }
    for entry in user {
        merged.set(checked(entry.clone())?);
    }
    Ok(merged.into_entries())
}

/// Sets `name=value` unless the environment already has `name` (Docker's runtimes add HOME
/// this way).
pub fn set_default(env: &mut Vec<String>, name: &str, value: &str) {
    if !env.iter().any(|e| name_of(e) == name) {
        env.push(format!("{name}={value}"));
    }
}

/// An ordered environment where a bare name unsets.
#[derive(Default)]
struct Env {
    entries: Vec<(String, Option<String>)>,
}

impl Env {
    fn set(&mut self, entry: String) {
        let (name, value) = match entry.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (entry, None),
        };
        match self.entries.iter_mut().find(|(known, _)| *known == name) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    fn into_entries(self) -> Vec<String> {
        self.entries
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
            .collect()
    }
}

fn name_of(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(name, _)| name)
}

fn from_caller(name: &str, caller_env: &BTreeMap<String, String>) -> String {
    match caller_env.get(name) {
        Some(value) => format!("{name}={value}"),
        None => name.to_string(),
    }
}

fn checked(entry: String) -> Result<String, EnvError> {
    if entry.contains('\0') {
        return Err(EnvError::Nul(echo(&entry)));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("FROM_HOST".to_string(), "host value".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_file_basic_lines() {
        let text = "# comment\n\nA=1\n   B=two words  \n\tC=\nD=x=y\n  # indented comment\n";
        let parsed = parse_env_file(text, &caller()).expect("parse");
        assert_eq!(parsed, strings(&["A=1", "B=two words  ", "C=", "D=x=y"]));
    }

    #[test]
    fn env_file_keeps_quotes_and_inline_hashes() {
        let parsed = parse_env_file("Q=\"quoted\" # not a comment\n", &caller()).expect("parse");
        assert_eq!(parsed, strings(&["Q=\"quoted\" # not a comment"]));
    }

    #[test]
    fn env_file_bare_names_come_from_the_caller() {
        let parsed = parse_env_file("FROM_HOST\nEMPTY\nMISSING\n", &caller()).expect("parse");
        assert_eq!(
            parsed,
            strings(&["FROM_HOST=host value", "EMPTY=", "MISSING"])
        );
    }

    #[test]
    fn env_file_crlf_and_bom() {
        let parsed = parse_env_file("\u{feff}A=1\r\nB=2\r\n", &caller()).expect("parse");
        assert_eq!(parsed, strings(&["A=1", "B=2"]));
    }

    #[test]
    fn env_file_whitespace_in_name_is_an_error_with_line() {
        let err = parse_env_file("A=1\nMY VAR=2\n", &caller()).expect_err("bad name");
        assert_eq!(
            err,
            EnvError::Whitespace {
                line: 2,
                name: "MY VAR".into()
            }
        );
        let err = parse_env_file("BARE \n", &caller()).expect_err("trailing space");
        assert!(matches!(err, EnvError::Whitespace { line: 1, .. }));
    }

    #[test]
    fn env_file_empty_name_is_an_error() {
        let err = parse_env_file("\n=value\n", &caller()).expect_err("no name");
        assert_eq!(
            err,
            EnvError::NoName {
                line: 2,
                text: "=value".into()
            }
        );
    }

    #[test]
    fn env_file_size_is_bounded() {
        let big = "A=1\n".repeat(MAX_ENV_FILE_BYTES / 4 + 1);
        assert!(matches!(
            parse_env_file(&big, &caller()),
            Err(EnvError::FileTooLarge { .. })
        ));
    }

    #[test]
    fn env_file_nul_is_rejected() {
        assert!(matches!(
            parse_env_file("A=x\0y\n", &caller()),
            Err(EnvError::Nul(_))
        ));
    }

    #[test]
    fn flags_resolve_like_docker() {
        let env = caller();
        assert_eq!(resolve_flag("A=1", &env), Ok("A=1".into()));
        assert_eq!(resolve_flag("A=", &env), Ok("A=".into()));
        assert_eq!(
            resolve_flag("FROM_HOST", &env),
            Ok("FROM_HOST=host value".into())
        );
        assert_eq!(resolve_flag("MISSING", &env), Ok("MISSING".into()));
        assert_eq!(
            resolve_flag("=x", &env),
            Err(EnvError::EmptyName("=x".into()))
        );
        assert!(resolve_flag("", &env).is_err());
    }

    #[test]
    fn flags_come_after_files() {
        let user = user_env(
            &strings(&["A=file\nB=file\n"]),
            &strings(&["A=flag"]),
            &caller(),
        )
        .expect("user env");
        assert_eq!(user, strings(&["A=file", "B=file", "A=flag"]));
        let env = container_env(&[], &user, "h", false).expect("env");
        assert!(env.contains(&"A=flag".to_string()));
        assert!(env.contains(&"B=file".to_string()));
    }

    #[test]
    fn defaults_and_tty() {
        let env = container_env(&[], &[], "box", true).expect("env");
        assert_eq!(
            env,
            strings(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box",
                "TERM=xterm"
            ])
        );
        let env = container_env(&[], &[], "box", false).expect("env");
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn image_overrides_defaults_and_user_overrides_image() {
        let image = strings(&["PATH=/image/bin", "LANG=C", "KEEP=1"]);
        let user = strings(&["LANG=en_US.UTF-8", "NEW=x"]);
        let env = container_env(&image, &user, "h", false).expect("env");
        assert_eq!(
            env,
            strings(&[
                "PATH=/image/bin",
                "HOSTNAME=h",
                "LANG=en_US.UTF-8",
                "NEW=x",
                "KEEP=1"
            ])
        );
    }

    #[test]
    fn bare_missing_name_unsets_image_and_default_values() {
        let image = strings(&["SECRET=from-image"]);
        let user = strings(&["SECRET", "PATH"]);
        let env = container_env(&image, &user, "h", false).expect("env");
        assert_eq!(env, strings(&["HOSTNAME=h"]));
    }

    #[test]
    fn user_can_override_term_and_hostname() {
        let env =
            container_env(&[], &strings(&["TERM=dumb", "HOSTNAME=x"]), "h", true).expect("env");
        assert!(env.contains(&"TERM=dumb".to_string()));
        assert!(env.contains(&"HOSTNAME=x".to_string()));
        assert!(!env.contains(&"TERM=xterm".to_string()));
    }

    #[test]
    fn image_env_with_nul_is_rejected() {
        let image = strings(&["BAD=a\0b"]);
        assert!(matches!(
            container_env(&image, &[], "h", false),
            Err(EnvError::Nul(_))
        ));
    }

    #[test]
    fn set_default_only_when_missing() {
        let mut env = strings(&["HOME=/custom"]);
        set_default(&mut env, "HOME", "/root");
        assert_eq!(env, strings(&["HOME=/custom"]));
        let mut env = strings(&["PATH=/bin"]);
        set_default(&mut env, "HOME", "/root");
        assert_eq!(env, strings(&["PATH=/bin", "HOME=/root"]));
    }

    #[test]
    fn exec_env_keeps_the_containers_and_applies_the_users() {
        let container = strings(&["PATH=/bin", "HOSTNAME=box", "FROM_RUN=yes", "GONE=1"]);
        let user = strings(&["FROM_RUN=over", "NEW=1", "GONE"]);
        let env = exec_env(&container, &user, false).expect("env");
        assert_eq!(
            env,
            strings(&["PATH=/bin", "HOSTNAME=box", "FROM_RUN=over", "NEW=1"])
        );
    }

    #[test]
    fn exec_env_term_only_with_a_terminal_and_never_over_the_containers() {
        let plain = strings(&["PATH=/bin"]);
        assert_eq!(exec_env(&plain, &[], false).expect("env"), plain);
        assert_eq!(
            exec_env(&plain, &[], true).expect("env"),
            strings(&["PATH=/bin", "TERM=xterm"])
        );
        let dumb = strings(&["TERM=dumb"]);
        assert_eq!(exec_env(&dumb, &[], true).expect("env"), dumb);
        assert_eq!(
            exec_env(&dumb, &strings(&["TERM=vt100"]), true).expect("env"),
            strings(&["TERM=vt100"])
        );
        assert!(matches!(
            exec_env(&[], &strings(&["A=\0"]), false),
            Err(EnvError::Nul(_))
        ));
    }
}
