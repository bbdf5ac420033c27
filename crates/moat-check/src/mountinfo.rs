//! Parser for `/proc/self/mountinfo` (see proc(5)):
//! `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`.

/// Bound on the number of mounts parsed. Threat: a workload that can mount may create a huge
/// table to slow the checker; beyond this the table is rejected and the checks say so.
pub const MAX_MOUNTS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the mounted filesystem that is mounted here ("/" for a whole fs).
    pub root: String,
    pub mount_point: String,
    pub read_only: bool,
    pub fstype: String,
    pub source: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountInfoError {
    #[error("mountinfo line {line} is malformed: {text:?}")]
    Malformed { line: usize, text: String },
    #[error("mountinfo lists more than {MAX_MOUNTS} mounts")]
    TooMany,
}

/// Undo the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Result<Vec<Mount>, MountInfoError> {
    let mut mounts = Vec::new();
    for (index, raw) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if mounts.len() == MAX_MOUNTS {
            return Err(MountInfoError::TooMany);
        }
        let malformed = || MountInfoError::Malformed { line: index + 1, text: raw.chars().take(120).collect() };
        let fields: Vec<&str> = raw.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-").filter(|&p| p >= 6).ok_or_else(malformed)?;
        let (fstype, source) = match fields.get(sep + 1..sep + 3) {
            Some([fstype, source]) => (*fstype, *source),
            _ => return Err(malformed()),
        };
        mounts.push(Mount {
            root: unescape(fields[3]),
            mount_point: unescape(fields[4]),
            read_only: fields[5].split(',').any(|o| o == "ro"),
            fstype: fstype.to_string(),
            source: unescape(source),
        });
    }
    Ok(mounts)
}

/// The mount that `path` resolves to: the last-mounted entry with the longest matching
/// mount point (later entries shadow earlier ones at the same point).
pub fn covering<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let within = |m: &&Mount| {
        let mp = m.mount_point.trim_end_matches('/');
        path == mp || mp.is_empty() || path.strip_prefix(mp).is_some_and(|rest| rest.starts_with('/'))
    };
    mounts.iter().filter(within).fold(None, |best: Option<&Mount>, m| match best {
        Some(b) if b.mount_point.len() > m.mount_point.len() => Some(b),
        _ => Some(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN: &str = "\
1271 1114 0:95 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/X
1272 1271 0:98 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1280 1271 0:100 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1290 1272 0:98 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
1300 1271 254:1 /var/lib/containers/storage/overlay-containers/abc/userdata/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
1301 1271 254:1 / /mnt/host\\040root rw,relatime shared:1 master:2 - ext4 /dev/vda1 rw
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let mounts = parse(PODMAN).expect("parse");
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[0].fstype, "overlay");
        assert!(mounts[2].read_only);
        assert_eq!(mounts[3].root, "/sys");
        assert_eq!(mounts[5].mount_point, "/mnt/host root");
        assert_eq!(mounts[5].fstype, "ext4");
        assert_eq!(mounts[5].source, "/dev/vda1");
    }

    #[test]
    fn covering_picks_the_deepest_mount() {
        let mounts = parse(PODMAN).expect("parse");
        assert_eq!(covering(&mounts, "/proc/sys/kernel/core_pattern").map(|m| m.mount_point.as_str()), Some("/proc/sys"));
        assert_eq!(covering(&mounts, "/proc/sysrq-trigger").map(|m| m.mount_point.as_str()), Some("/proc"));
        assert_eq!(covering(&mounts, "/sys/kernel").map(|m| m.mount_point.as_str()), Some("/sys"));
        assert_eq!(covering(&mounts, "/etc/passwd").map(|m| m.mount_point.as_str()), Some("/"));
    }

    #[test]
    fn rejects_lines_without_separator() {
        assert!(matches!(parse("1 2 0:1 / / rw ext4 /dev/sda rw\n"), Err(MountInfoError::Malformed { line: 1, .. })));
        assert!(matches!(parse("1 2 0:1 / / rw - ext4\n"), Err(MountInfoError::Malformed { .. })));
    }

    #[test]
    fn unescapes_octal_only_when_complete() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\134b"), "a\\b");
    }
}
