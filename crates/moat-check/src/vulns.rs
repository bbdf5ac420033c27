//! Known kernel privilege escalations that matter to containers, with the versions that fix
//! them. Only releases checked against a primary source are recorded; for a stable branch
//! without a recorded fix the verdict says "unknown" rather than guessing.

use crate::kversion::{KernelVersion, Version};

#[derive(Debug, Clone, Copy)]
pub struct Vuln {
    pub cve: &'static str,
    pub name: &'static str,
    /// First release with the bug; `None` when it predates git history (2.6.12).
    pub introduced: Option<Version>,
    /// First mainline release with the fix.
    pub mainline_fix: Version,
    /// First fixed release of each stable branch that received the fix.
    pub stable_fixes: &'static [Version],
}

const fn v(major: u32, minor: u32, patch: u32) -> Version {
    Version::new(major, minor, patch)
}

pub const KNOWN: [Vuln; 5] = [
    Vuln {
        cve: "CVE-2016-5195",
        name: "Dirty COW",
        introduced: Some(v(2, 6, 22)),
        mainline_fix: v(4, 9, 0),
        stable_fixes: &[v(4, 4, 26), v(4, 7, 9), v(4, 8, 3)],
    },
    Vuln {
        cve: "CVE-2022-0847",
        name: "Dirty Pipe",
        introduced: Some(v(5, 8, 0)),
        mainline_fix: v(5, 17, 0),
        stable_fixes: &[v(5, 10, 102), v(5, 15, 25), v(5, 16, 11)],
    },
    Vuln {
        // The cls_route use-after-free that DirtyCred turned into a credential swap.
        cve: "CVE-2022-2588",
        name: "DirtyCred (cls_route)",
        introduced: None,
        mainline_fix: v(6, 0, 0),
        stable_fixes: &[],
    },
    Vuln {
        cve: "CVE-2023-0386",
        name: "OverlayFS setuid copy-up",
        introduced: Some(v(5, 11, 0)),
        mainline_fix: v(6, 2, 0),
        stable_fixes: &[v(6, 1, 9)],
    },
    Vuln {
        cve: "CVE-2024-1086",
        name: "nf_tables verdict use-after-free",
        introduced: Some(v(3, 15, 0)),
        mainline_fix: v(6, 8, 0),
        stable_fixes: &[v(5, 15, 149), v(6, 1, 76), v(6, 6, 15)],
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// The bug came later than this kernel.
    Predates,
    Fixed,
    Vulnerable { fixed_in: Version },
    /// In the affected range, but this table cannot tell whether the branch has the fix.
    Unknown(String),
}

pub fn assess(vuln: &Vuln, kernel: &KernelVersion) -> Exposure {
    let ver = kernel.version;
    if vuln.introduced.is_some_and(|first| ver < first) {
        return Exposure::Predates;
    }
    if kernel.rc && ver.branch() == vuln.mainline_fix.branch() {
        return Exposure::Unknown(format!("a release candidate of {}, the release that fixed it", vuln.mainline_fix));
    }
    if ver >= vuln.mainline_fix {
        return Exposure::Fixed;
    }
    match vuln.stable_fixes.iter().find(|fix| fix.branch() == ver.branch()) {
        Some(&fix) if ver >= fix => Exposure::Fixed,
        Some(&fix) => Exposure::Vulnerable { fixed_in: fix },
        None => Exposure::Unknown(format!(
            "before the mainline fix in {}; no fixed {}.{} stable release is recorded here",
            vuln.mainline_fix, ver.major, ver.minor
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kversion::Source;

    fn kernel(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion { version: v(major, minor, patch), rc: false, distro_build: false, source: Source::Release }
    }

    fn dirty_pipe() -> &'static Vuln {
        KNOWN.iter().find(|v| v.cve == "CVE-2022-0847").expect("listed")
    }

    #[test]
    fn dirty_pipe_ranges_are_exact() {
        let d = dirty_pipe();
        assert_eq!(assess(d, &kernel(5, 7, 19)), Exposure::Predates);
        assert_eq!(assess(d, &kernel(5, 8, 0)), Exposure::Unknown(
            "before the mainline fix in 5.17.0; no fixed 5.8 stable release is recorded here".into()
        ));
        assert_eq!(assess(d, &kernel(5, 10, 101)), Exposure::Vulnerable { fixed_in: v(5, 10, 102) });
        assert_eq!(assess(d, &kernel(5, 10, 102)), Exposure::Fixed);
        assert_eq!(assess(d, &kernel(5, 15, 24)), Exposure::Vulnerable { fixed_in: v(5, 15, 25) });
        assert_eq!(assess(d, &kernel(5, 15, 25)), Exposure::Fixed);
        assert_eq!(assess(d, &kernel(5, 16, 10)), Exposure::Vulnerable { fixed_in: v(5, 16, 11) });
        assert_eq!(assess(d, &kernel(5, 16, 11)), Exposure::Fixed);
        assert_eq!(assess(d, &kernel(5, 17, 0)), Exposure::Fixed);
        assert_eq!(assess(d, &kernel(6, 18, 44)), Exposure::Fixed);
    }

    #[test]
    fn release_candidates_of_the_fixing_release_are_unknown() {
        let rc = KernelVersion { rc: true, ..kernel(5, 17, 0) };
        assert!(matches!(assess(dirty_pipe(), &rc), Exposure::Unknown(_)));
        let older_rc = KernelVersion { rc: true, ..kernel(5, 16, 0) };
        assert_eq!(assess(dirty_pipe(), &older_rc), Exposure::Vulnerable { fixed_in: v(5, 16, 11) });
    }

    #[test]
    fn nf_tables_fix_per_branch() {
        let nft = KNOWN.iter().find(|v| v.cve == "CVE-2024-1086").expect("listed");
        assert_eq!(assess(nft, &kernel(6, 1, 75)), Exposure::Vulnerable { fixed_in: v(6, 1, 76) });
        assert_eq!(assess(nft, &kernel(6, 1, 76)), Exposure::Fixed);
        assert_eq!(assess(nft, &kernel(3, 14, 79)), Exposure::Predates);
        assert!(matches!(assess(nft, &kernel(5, 10, 300)), Exposure::Unknown(_)));
    }

    #[test]
    fn dirty_cred_without_stable_data_is_unknown_below_mainline() {
        let dc = KNOWN.iter().find(|v| v.cve == "CVE-2022-2588").expect("listed");
        assert!(matches!(assess(dc, &kernel(2, 6, 32)), Exposure::Unknown(_)));
        assert_eq!(assess(dc, &kernel(6, 0, 0)), Exposure::Fixed);
    }

    #[test]
    fn table_is_consistent() {
        for vuln in &KNOWN {
            assert!(vuln.introduced.is_none_or(|i| i < vuln.mainline_fix), "{}", vuln.cve);
            for fix in vuln.stable_fixes {
                assert!(*fix < vuln.mainline_fix && fix.patch > 0, "{} {fix}", vuln.cve);
                assert!(vuln.introduced.is_none_or(|i| i.branch() <= fix.branch()), "{} {fix}", vuln.cve);
            }
        }
    }
}
