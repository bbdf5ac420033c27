//! `--security-opt` values, with Docker's spelling.
//!
//! The CLI reads a seccomp profile file and passes its text, so `seccomp=` here carries JSON,
//! never a path.

use crate::echo;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityOptError {
    #[error("invalid --security-opt {0:?}: expected seccomp=unconfined, seccomp=builtin, seccomp=<profile JSON>, no-new-privileges or no-new-privileges=true|false")]
    Unknown(String),
    #[error("invalid --security-opt {0:?}: no-new-privileges takes true or false")]
    NotABool(String),
}

/// Which seccomp profile the user chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompChoice {
    /// The profile's default: Moby's profile when unprivileged, none when privileged.
    #[default]
    ProfileDefault,
    /// Moby's default profile, even when privileged (`seccomp=builtin`, Docker's name).
    Builtin,
    /// No seccomp filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (its text).
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityOpts {
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
}

/// Parses every `--security-opt`; later values win, as in Docker.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, SecurityOptError> {
    let mut parsed = SecurityOpts::default();
    for opt in opts {
        match opt.split_once('=') {
            None if opt == "no-new-privileges" => parsed.no_new_privileges = true,
            Some(("no-new-privileges", value)) => {
                parsed.no_new_privileges =
                    parse_bool(value).ok_or_else(|| SecurityOptError::NotABool(echo(opt)))?;
            }
            Some(("seccomp", "unconfined")) => parsed.seccomp = SeccompChoice::Unconfined,
            Some(("seccomp", "builtin")) => parsed.seccomp = SeccompChoice::Builtin,
            Some(("seccomp", json)) if json.trim_start().starts_with('{') => {
                parsed.seccomp = SeccompChoice::Custom(json.to_string());
            }
            _ => return Err(SecurityOptError::Unknown(echo(opt))),
        }
    }
    Ok(parsed)
}

/// Go's `strconv.ParseBool`, which Docker uses for this option.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<SecurityOpts, SecurityOptError> {
        parse_security_opts(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults() {
        assert_eq!(parse(&[]), Ok(SecurityOpts::default()));
    }

    #[test]
    fn no_new_privileges_forms() {
        assert!(
            parse(&["no-new-privileges"])
                .expect("nnp")
                .no_new_privileges
        );
        assert!(
            parse(&["no-new-privileges=true"])
                .expect("nnp")
                .no_new_privileges
        );
        assert!(
            !parse(&["no-new-privileges", "no-new-privileges=false"])
                .expect("nnp")
                .no_new_privileges
        );
        assert_eq!(
            parse(&["no-new-privileges=maybe"]),
            Err(SecurityOptError::NotABool("no-new-privileges=maybe".into()))
        );
    }

    #[test]
    fn seccomp_forms() {
        assert_eq!(
            parse(&["seccomp=unconfined"]).expect("unconfined").seccomp,
            SeccompChoice::Unconfined
        );
        assert_eq!(
            parse(&["seccomp=builtin"]).expect("builtin").seccomp,
            SeccompChoice::Builtin
        );
        let json = r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#;
        assert_eq!(
            parse(&[json]).expect("custom").seccomp,
            SeccompChoice::Custom(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into())
        );
    }

    #[test]
    fn anything_else_is_an_error_naming_it() {
        for bad in [
            "seccomp=/etc/profile.json",
            "apparmor=unconfined",
            "label=disable",
            "no-new-privileges:true",
            "",
            "seccomp",
        ] {
            let err = parse(&[bad]).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
