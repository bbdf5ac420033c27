//! The upstream kernel version behind a release string, and how far it can be trusted.
//!
//! A release string alone misleads: Debian's `6.1.0-18-cloud-amd64` is stable 6.1.76 (its
//! `uname -v` says `Debian 6.1.76-1`), Ubuntu keeps the real level in /proc/version_signature,
//! and RHEL's `4.18.0-513.el8` carries years of backports. So the version comes from the most
//! precise source available, and distribution builds are marked as such.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// The stable branch, e.g. (5, 15) for 5.15.25.
    pub fn branch(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The release string itself (upstream numbering).
    Release,
    /// `Debian X.Y.Z-N` in `uname -v`.
    Debian,
    /// The last field of /proc/version_signature.
    Ubuntu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelVersion {
    pub version: Version,
    /// A release candidate of `version` (e.g. 5.17.0-rc6): older than 5.17.0 itself.
    pub rc: bool,
    /// Built by a distribution, which may carry fixes its version number does not show.
    pub distro_build: bool,
    pub source: Source,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("kernel release {0:?} does not start with a version number")]
    Malformed(String),
    #[error("kernel release {0:?} is a distribution ABI name that hides the stable level")]
    HiddenStableLevel(String),
}

/// Parse `X.Y[.Z]` at the start of `s`, returning the version and the rest.
fn leading_version(s: &str) -> Option<(Version, &str)> {
    let mut rest = s;
    let mut parts = [0u32; 3];
    for (i, part) in parts.iter_mut().enumerate() {
        if i > 0 {
            match rest.strip_prefix('.') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
                _ if i == 2 => break,
                _ => return None,
            }
        }
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        *part = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
    }
    Some((Version::new(parts[0], parts[1], parts[2]), rest))
}

/// The `X.Y[.Z]` a release string starts with, whatever follows it.
pub fn leading(release: &str) -> Option<Version> {
    leading_version(release).map(|(v, _)| v)
}

/// A suffix such as `-18-cloud-amd64`, `-91-generic` or `-513.el8.x86_64`: a package build.
fn is_distro_suffix(rest: &str) -> bool {
    rest.strip_prefix('-').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

pub fn upstream(release: &str, uname_version: &str, version_signature: Option<&str>) -> Result<KernelVersion, VersionError> {
    if let Some(v) = version_signature.and_then(|s| s.split_whitespace().last()).and_then(leading_version) {
        return Ok(KernelVersion { version: v.0, rc: false, distro_build: true, source: Source::Ubuntu });
    }
    let debian = uname_version.split_whitespace().skip_while(|w| *w != "Debian").nth(1);
    if let Some((version, _)) = debian.and_then(leading_version) {
        return Ok(KernelVersion { version, rc: false, distro_build: true, source: Source::Debian });
    }
    let (version, rest) = leading_version(release).ok_or_else(|| VersionError::Malformed(release.to_string()))?;
    let distro_build = is_distro_suffix(rest);
    // X.Y.0-N-flavour (Debian, Ubuntu) names an ABI, not a stable release.
    let hides_level = distro_build && version.patch == 0 && !rest.contains(".el") && !rest.contains(".fc");
    if hides_level || rest.contains(".el") {
        return Err(VersionError::HiddenStableLevel(release.to_string()));
    }
    Ok(KernelVersion { version, rc: rest.starts_with("-rc"), distro_build, source: Source::Release })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> Version {
        Version::new(major, minor, patch)
    }

    #[test]
    fn vanilla_and_custom_releases() {
        let k = upstream("6.18.44-fc-v595", "#1 SMP PREEMPT_DYNAMIC @0", None).expect("parse");
        assert_eq!((k.version, k.rc, k.distro_build, k.source), (v(6, 18, 44), false, false, Source::Release));
        assert_eq!(upstream("5.10", "#1", None).expect("parse").version, v(5, 10, 0));
        assert_eq!(upstream("6.8.9-arch1-1", "#1", None).expect("parse").version, v(6, 8, 9));
    }

    #[test]
    fn release_candidates_are_marked() {
        let k = upstream("5.17.0-rc6", "#1", None).expect("parse");
        assert_eq!((k.version, k.rc), (v(5, 17, 0), true));
    }

    #[test]
    fn debian_takes_the_level_from_uname_version() {
        let k = upstream("6.1.0-18-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", None).expect("parse");
        assert_eq!((k.version, k.distro_build, k.source), (v(6, 1, 76), true, Source::Debian));
        let bpo = upstream("6.1.0-0.deb11.17-amd64", "#1 SMP Debian 6.1.69-1~bpo11+1 (2023-12-30)", None).expect("parse");
        assert_eq!(bpo.version, v(6, 1, 69));
    }

    #[test]
    fn ubuntu_takes_the_level_from_the_signature() {
        let k = upstream("5.15.0-91-generic", "#101-Ubuntu SMP", Some("Ubuntu 5.15.0-91.101-generic 5.15.131")).expect("parse");
        assert_eq!((k.version, k.source), (v(5, 15, 131), Source::Ubuntu));
    }

    #[test]
    fn abi_names_without_a_signature_hide_the_level() {
        assert!(matches!(upstream("5.15.0-91-generic", "#101-Ubuntu SMP", None), Err(VersionError::HiddenStableLevel(_))));
        assert!(matches!(upstream("4.18.0-513.el8.x86_64", "#1 SMP", None), Err(VersionError::HiddenStableLevel(_))));
    }

    #[test]
    fn fedora_style_builds_keep_their_level_but_are_distro() {
        let k = upstream("6.8.9-300.fc40.x86_64", "#1 SMP", None).expect("parse");
        assert_eq!((k.version, k.distro_build), (v(6, 8, 9), true));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(upstream("linux", "#1", None), Err(VersionError::Malformed(_))));
        assert!(matches!(upstream("6", "#1", None), Err(VersionError::Malformed(_))));
        assert!(matches!(upstream("6.", "#1", None), Err(VersionError::Malformed(_))));
        assert!(matches!(upstream("99999999999.1", "#1", None), Err(VersionError::Malformed(_))));
    }
}
