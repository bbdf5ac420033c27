//! Parser for the fields of `/proc/self/status` the checks use.

/// The parsed fields. Seccomp fields are optional: kernels without CONFIG_SECCOMP omit them,
/// and `Seccomp_filters` appeared only in 5.9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// Real, effective, saved and filesystem uids.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: Option<bool>,
    pub seccomp: Option<u8>,
    pub seccomp_filters: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    #[error("/proc/self/status has no {0} line")]
    Missing(&'static str),
    #[error("/proc/self/status field {field} has a malformed value {value:?}")]
    Malformed { field: &'static str, value: String },
}

fn field<'a>(text: &'a str, name: &'static str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

fn required<'a>(text: &'a str, name: &'static str) -> Result<&'a str, StatusError> {
    field(text, name).ok_or(StatusError::Missing(name))
}

fn malformed(field: &'static str, value: &str) -> StatusError {
    StatusError::Malformed { field, value: value.chars().take(80).collect() }
}

fn ids(text: &str, name: &'static str) -> Result<[u32; 4], StatusError> {
    let value = required(text, name)?;
    let parsed: Vec<u32> = value.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| malformed(name, value))?;
    parsed.try_into().map_err(|_| malformed(name, value))
}

fn mask(text: &str, name: &'static str) -> Result<u64, StatusError> {
    let value = required(text, name)?;
    if value.is_empty() || value.len() > 16 {
        return Err(malformed(name, value));
    }
    u64::from_str_radix(value, 16).map_err(|_| malformed(name, value))
}

fn optional<T: std::str::FromStr>(text: &str, name: &'static str) -> Result<Option<T>, StatusError> {
    field(text, name).map(|v| v.parse().map_err(|_| malformed(name, v))).transpose()
}

pub fn parse(text: &str) -> Result<ProcStatus, StatusError> {
    Ok(ProcStatus {
        uid: ids(text, "Uid")?,
        gid: ids(text, "Gid")?,
        cap_inh: mask(text, "CapInh")?,
        cap_prm: mask(text, "CapPrm")?,
        cap_eff: mask(text, "CapEff")?,
        cap_bnd: mask(text, "CapBnd")?,
        // CapAmb appeared in 4.3; an older kernel has no ambient set at all.
        cap_amb: if field(text, "CapAmb").is_some() { mask(text, "CapAmb")? } else { 0 },
        no_new_privs: optional::<u8>(text, "NoNewPrivs")?.map(|v| v != 0),
        seccomp: optional(text, "Seccomp")?,
        seccomp_filters: optional(text, "Seccomp_filters")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
        CapInh:\t0000000000000000\nCapPrm:\t00000000800405fb\nCapEff:\t00000000800405fb\n\
        CapBnd:\t00000000800405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n\
        Seccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread force mitigated\n";

    #[test]
    fn parses_a_container_status() {
        let s = parse(PODMAN).expect("parse");
        assert_eq!(s.uid, [0, 0, 0, 0]);
        assert_eq!(s.cap_eff, 0x8004_05fb);
        assert_eq!(s.no_new_privs, Some(false));
        assert_eq!(s.seccomp, Some(2));
        assert_eq!(s.seccomp_filters, Some(1));
    }

    #[test]
    fn old_kernels_lack_optional_fields() {
        let text = "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t3fffffffff\n";
        let s = parse(text).expect("parse");
        assert_eq!(s.cap_amb, 0);
        assert_eq!(s.cap_bnd, 0x3f_ffff_ffff);
        assert_eq!((s.no_new_privs, s.seccomp, s.seccomp_filters), (None, None, None));
    }

    #[test]
    fn rejects_malformed_values() {
        assert_eq!(parse("Gid:\t0\t0\t0\t0\n"), Err(StatusError::Missing("Uid")));
        let short_uid = PODMAN.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0");
        assert!(matches!(parse(&short_uid), Err(StatusError::Malformed { field: "Uid", .. })));
        let long_mask = PODMAN.replace("CapEff:\t00000000800405fb", "CapEff:\t100000000800405fb");
        assert!(matches!(parse(&long_mask), Err(StatusError::Malformed { field: "CapEff", .. })));
        let bad_seccomp = PODMAN.replace("Seccomp:\t2", "Seccomp:\ttwo");
        assert!(matches!(parse(&bad_seccomp), Err(StatusError::Malformed { field: "Seccomp", .. })));
    }

    #[test]
    fn field_names_match_exactly() {
        // "Seccomp" must not match the "Seccomp_filters" line, nor "Cap" lines each other.
        let text = PODMAN.replace("Seccomp:\t2\n", "");
        assert_eq!(parse(&text).expect("parse").seccomp, None);
    }
}
