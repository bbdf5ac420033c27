//! `-u USER[:GROUP]` resolution against the image's /etc/passwd and /etc/group, with Docker's
//! rules (moby/sys/user `GetExecUser`, then `getUser` in moby's `daemon/oci_linux.go`).
//!
//! The host cannot read the rootfs, so the builder keeps the raw user string in the
//! `moat.user` annotation and the guest runner calls [`apply_user`] after mounting the rootfs.

use oci_spec::runtime::{Linux, LinuxIdMapping, Process, Spec};

use crate::echo;
use crate::env::set_default;

/// Annotation carrying the raw `-u` value (or the image's `User`) to the guest.
pub const USER_ANNOTATION: &str = "moat.user";

/// Largest /etc/passwd or /etc/group read. Both come from the image, which is hostile input.
pub const MAX_ACCOUNT_FILE_BYTES: usize = 1024 * 1024;

/// Longest `-u` value or image `User`.
pub const MAX_USER_SPEC_BYTES: usize = 256;

/// Most supplementary groups a process can hold (the kernel's NGROUPS_MAX).
pub const MAX_SUPPLEMENTARY_GROUPS: usize = 65_536;

/// Highest uid/gid Docker accepts (2^31 - 1).
const MAX_ID: u64 = 0x7fff_ffff;

/// Home directory when the user has no passwd entry (runc's default).
const DEFAULT_HOME: &str = "/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} is not in the image's /etc/passwd; use a numeric uid or a user the image defines")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group; use a numeric gid or a group the image defines")]
    UnknownGroup(String),
    #[error("user spec {0:?} is invalid: expected USER, USER:GROUP, UID or UID:GID")]
    InvalidSpec(String),
    #[error("id {0} is out of range: uids and gids must be 0..=2147483647")]
    OutOfRange(String),
    #[error("{file} is {size} bytes, more than the {max} allowed")]
    FileTooLarge {
        file: &'static str,
        size: usize,
        max: usize,
    },
    #[error("user belongs to more than {MAX_SUPPLEMENTARY_GROUPS} groups")]
    TooManyGroups,
    #[error("{kind} {id} is outside the container's user namespace (it maps ids {start}..{end})")]
    Unmapped {
        kind: &'static str,
        id: u32,
        start: u32,
        end: u64,
    },
    #[error("the spec has no process to set the user of")]
    NoProcess,
}

/// The numeric identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then supplementary groups, as Docker passes them.
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Checks a user spec's shape on the host, before it travels to the guest.
pub fn validate_user_spec(spec: &str) -> Result<(), UserError> {
    parse_spec(spec).map(|_| ())
}

/// Resolves `spec` against the rootfs's /etc/passwd and /etc/group (`None` when the file does
/// not exist). An empty spec means root, as in Docker.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let (user_arg, group_arg) = parse_spec(spec)?;
    let passwd = bounded("/etc/passwd", passwd)?;
    let group = bounded("/etc/group", group)?;

    let wanted_uid = if user_arg.is_empty() {
        Some(0)
    } else {
        numeric(user_arg)?
    };
    let entry = passwd_entries(passwd).find(|entry| match wanted_uid {
        Some(uid) => entry.uid == uid,
        None => entry.name == user_arg,
    });
    let mut resolved = match (&entry, wanted_uid) {
        (Some(entry), _) => ResolvedUser {
            uid: entry.uid,
            gid: entry.gid,
            additional_gids: Vec::new(),
            home: entry.home.to_string(),
        },
        (None, Some(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: DEFAULT_HOME.to_string(),
        },
        (None, None) => return Err(UserError::UnknownUser(echo(user_arg))),
    };

    let mut supplementary = Vec::new();
    match group_arg {
        Some(group_arg) => {
            let wanted_gid = numeric(group_arg)?;
            let found = group_entries(group).find(|g| match wanted_gid {
                Some(gid) => g.gid == gid,
                None => g.name == group_arg,
            });
            resolved.gid = match (found, wanted_gid) {
                (Some(g), _) => g.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(UserError::UnknownGroup(echo(group_arg))),
            };
        }
        None => {
            if let Some(entry) = &entry {
                for g in group_entries(group).filter(|g| g.has_member(entry.name)) {
                    if supplementary.len() == MAX_SUPPLEMENTARY_GROUPS {
                        return Err(UserError::TooManyGroups);
                    }
                    supplementary.push(g.gid);
                }
            }
        }
    }
    resolved.additional_gids.push(resolved.gid);
    resolved.additional_gids.extend(supplementary);
    Ok(resolved)
}

/// Resolves the spec's `moat.user` annotation and writes the result into `process.user`, with
/// HOME from the passwd entry unless the environment already sets it. Fails when an id falls
/// outside the spec's user namespace mapping, which the runtime could not apply.
pub fn apply_user(
    spec: &mut Spec,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let raw = spec_user(spec).to_string();
    let linux = spec.linux().clone();
    let process = spec.process_mut().as_mut().ok_or(UserError::NoProcess)?;
    set_process_user(process, linux.as_ref(), &raw, passwd, group)
}

/// The container's raw `USER[:GROUP]`, from the spec's `moat.user` annotation (empty: root).
pub fn spec_user(spec: &Spec) -> &str {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(USER_ANNOTATION))
        .map_or("", String::as_str)
}

/// Resolves `user` and writes it into `process` as [`apply_user`] does, checking the ids
/// against the user namespace mapping of the container's `linux` section. Used for the
/// workload and for every process `exec`ed into its container.
pub fn set_process_user(
    process: &mut Process,
    linux: Option<&Linux>,
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let resolved = resolve_user(user, passwd, group)?;
    if let Some(linux) = linux {
        if let Some(map) = linux.uid_mappings() {
            check_mapped("uid", resolved.uid, map)?;
        }
        if let Some(map) = linux.gid_mappings() {
            for gid in &resolved.additional_gids {
                check_mapped("gid", *gid, map)?;
            }
        }
    }
    let process_user = process.user_mut();
    process_user.set_uid(resolved.uid);
    process_user.set_gid(resolved.gid);
    process_user.set_additional_gids(Some(resolved.additional_gids.clone()));
    let env = process.env_mut().get_or_insert_with(Vec::new);
    set_default(env, "HOME", &resolved.home);
    Ok(resolved)
}

/// Whether the spec gives the container a user namespace of its own.
pub fn has_user_namespace(spec: &Spec) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|n| n.iter().any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::User))
}

/// The zone id that container id 0 maps to, if any.
pub fn zone_id_of_root(mappings: &[LinuxIdMapping]) -> Option<u32> {
    mappings.iter().find(|m| m.container_id() == 0 && m.size() > 0).map(LinuxIdMapping::host_id)
}

fn check_mapped(kind: &'static str, id: u32, map: &[LinuxIdMapping]) -> Result<(), UserError> {
    let inside = map.iter().any(|m| {
        id >= m.container_id() && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
    });
    if inside {
        return Ok(());
    }
    let (start, end) = map
        .first()
        .map(|m| {
            (
                m.container_id(),
                u64::from(m.container_id()) + u64::from(m.size()),
            )
        })
        .unwrap_or((0, 0));
    Err(UserError::Unmapped {
        kind,
        id,
        start,
        end,
    })
}

/// Splits `USER[:GROUP]`.
fn parse_spec(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    if spec.len() > MAX_USER_SPEC_BYTES || spec.contains(['\0', '\n']) {
        return Err(UserError::InvalidSpec(echo(spec)));
    }
    match spec.split_once(':') {
        None => Ok((spec, None)),
        Some((_, group)) if group.is_empty() || group.contains(':') => {
            Err(UserError::InvalidSpec(echo(spec)))
        }
        Some((user, group)) => Ok((user, Some(group))),
    }
}

/// `Some(id)` when `arg` is a number, `None` when it is a name.
fn numeric(arg: &str) -> Result<Option<u32>, UserError> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match arg.parse::<u64>() {
        Ok(id) if id <= MAX_ID => Ok(u32::try_from(id).ok()),
        _ => Err(UserError::OutOfRange(echo(arg))),
    }
}

fn bounded<'a>(file: &'static str, text: Option<&'a str>) -> Result<&'a str, UserError> {
    let text = text.unwrap_or("");
    if text.len() > MAX_ACCOUNT_FILE_BYTES {
        return Err(UserError::FileTooLarge {
            file,
            size: text.len(),
            max: MAX_ACCOUNT_FILE_BYTES,
        });
    }
    Ok(text)
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

impl GroupEntry<'_> {
    fn has_member(&self, user: &str) -> bool {
        self.members.split(',').any(|m| m == user)
    }
}

/// Entries of `name:password:uid:gid:gecos:home:shell`. Lines whose ids are not numbers are
/// skipped rather than read as 0 (root), unlike the Go parser.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    account_lines(text).filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let _gecos = fields.next();
        let home = fields.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home: if home.is_empty() { DEFAULT_HOME } else { home },
        })
    })
}

/// Entries of `name:password:gid:member,member`.
fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    account_lines(text).filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        let members = fields.next().unwrap_or("");
        Some(GroupEntry { name, gid, members })
    })
}

fn account_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
broken:x:notanumber:0::/:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
users:x:100:alice,bob
alice:x:1000:
docker:x:999:alice
";

    fn resolve(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve_user(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_spec_is_root_with_its_groups() {
        let user = resolve("").expect("root");
        assert_eq!((user.uid, user.gid), (0, 0));
        assert_eq!(user.additional_gids, vec![0, 10]);
        assert_eq!(user.home, "/root");
    }

    #[test]
    fn name_gets_primary_and_supplementary_groups() {
        let user = resolve("alice").expect("alice");
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.additional_gids, vec![1000, 10, 100, 999]);
        assert_eq!(user.home, "/home/alice");
    }

    #[test]
    fn numeric_uid_with_entry_uses_the_entry() {
        let user = resolve("1001").expect("bob by uid");
        assert_eq!((user.uid, user.gid), (1001, 100));
        assert_eq!(user.additional_gids, vec![100, 100]);
    }

    #[test]
    fn numeric_uid_without_entry_is_allowed() {
        let user = resolve("4242").expect("bare uid");
        assert_eq!((user.uid, user.gid), (4242, 0));
        assert_eq!(user.additional_gids, vec![0]);
        assert_eq!(user.home, "/");
    }

    #[test]
    fn numeric_uid_without_any_passwd_file() {
        let user = resolve_user("7:8", None, None).expect("ids only");
        assert_eq!((user.uid, user.gid), (7, 8));
        assert_eq!(user.additional_gids, vec![8]);
        let root = resolve_user("", None, None).expect("root without passwd");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = resolve("mallory").expect_err("unknown");
        assert_eq!(err, UserError::UnknownUser("mallory".into()));
        assert!(err.to_string().contains("\"mallory\""));
        assert!(resolve_user("alice", None, None).is_err());
    }

    #[test]
    fn uid_colon_gid() {
        let user = resolve("1000:4000").expect("uid:gid");
        assert_eq!((user.uid, user.gid), (1000, 4000));
        assert_eq!(
            user.additional_gids,
            vec![4000],
            "explicit group: no supplementary groups"
        );
    }

    #[test]
    fn name_colon_groupname() {
        let user = resolve("alice:docker").expect("name:group");
        assert_eq!((user.uid, user.gid), (1000, 999));
        assert_eq!(user.additional_gids, vec![999]);
        let user = resolve("4242:users").expect("uid:group");
        assert_eq!((user.uid, user.gid), (4242, 100));
    }

    #[test]
    fn unknown_group_name_is_an_error() {
        assert_eq!(
            resolve("alice:nogroup").expect_err("unknown group"),
            UserError::UnknownGroup("nogroup".into())
        );
    }

    #[test]
    fn malformed_specs_and_ranges() {
        for bad in ["alice:", "a:b:c", "x\0y"] {
            assert!(
                matches!(resolve(bad), Err(UserError::InvalidSpec(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            resolve("2147483648"),
            Err(UserError::OutOfRange(_))
        ));
        assert!(matches!(
            resolve("99999999999999999999999"),
            Err(UserError::OutOfRange(_))
        ));
        assert_eq!(resolve("2147483647").expect("max id").uid, 2_147_483_647);
        assert!(validate_user_spec(&"u".repeat(MAX_USER_SPEC_BYTES + 1)).is_err());
    }

    #[test]
    fn line_with_bad_uid_is_not_root() {
        assert!(matches!(resolve("broken"), Err(UserError::UnknownUser(_))));
    }

    #[test]
    fn account_files_are_bounded() {
        let huge = "x".repeat(MAX_ACCOUNT_FILE_BYTES + 1);
        assert!(matches!(
            resolve_user("", Some(&huge), None),
            Err(UserError::FileTooLarge {
                file: "/etc/passwd",
                ..
            })
        ));
        assert!(matches!(
            resolve_user("", None, Some(&huge)),
            Err(UserError::FileTooLarge {
                file: "/etc/group",
                ..
            })
        ));
    }
}
