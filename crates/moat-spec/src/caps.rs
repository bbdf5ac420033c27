//! Linux capabilities: names, numbers, and the `--cap-add` / `--cap-drop` arithmetic.
//!
//! A capability set is a bit mask (`CapSet`), the same shape as the kernel's `CapEff` line in
//! `/proc/self/status`, so tests can compare against what a container really sees.

use std::collections::HashSet;

use oci_spec::runtime::{Capabilities, Capability};

use crate::echo;

/// Every capability the kernel knows (Linux 5.9 added the last one, CAP_CHECKPOINT_RESTORE),
/// indexed by its number: `CAPABILITIES[n]` is capability `n`.
const CAPABILITIES: [(&str, Capability); 41] = [
    ("CAP_CHOWN", Capability::Chown),
    ("CAP_DAC_OVERRIDE", Capability::DacOverride),
    ("CAP_DAC_READ_SEARCH", Capability::DacReadSearch),
    ("CAP_FOWNER", Capability::Fowner),
    ("CAP_FSETID", Capability::Fsetid),
    ("CAP_KILL", Capability::Kill),
    ("CAP_SETGID", Capability::Setgid),
    ("CAP_SETUID", Capability::Setuid),
    ("CAP_SETPCAP", Capability::Setpcap),
    ("CAP_LINUX_IMMUTABLE", Capability::LinuxImmutable),
    ("CAP_NET_BIND_SERVICE", Capability::NetBindService),
    ("CAP_NET_BROADCAST", Capability::NetBroadcast),
    ("CAP_NET_ADMIN", Capability::NetAdmin),
    ("CAP_NET_RAW", Capability::NetRaw),
    ("CAP_IPC_LOCK", Capability::IpcLock),
    ("CAP_IPC_OWNER", Capability::IpcOwner),
    ("CAP_SYS_MODULE", Capability::SysModule),
    ("CAP_SYS_RAWIO", Capability::SysRawio),
    ("CAP_SYS_CHROOT", Capability::SysChroot),
    ("CAP_SYS_PTRACE", Capability::SysPtrace),
    ("CAP_SYS_PACCT", Capability::SysPacct),
    ("CAP_SYS_ADMIN", Capability::SysAdmin),
    ("CAP_SYS_BOOT", Capability::SysBoot),
    ("CAP_SYS_NICE", Capability::SysNice),
    ("CAP_SYS_RESOURCE", Capability::SysResource),
    ("CAP_SYS_TIME", Capability::SysTime),
    ("CAP_SYS_TTY_CONFIG", Capability::SysTtyConfig),
    ("CAP_MKNOD", Capability::Mknod),
    ("CAP_LEASE", Capability::Lease),
    ("CAP_AUDIT_WRITE", Capability::AuditWrite),
    ("CAP_AUDIT_CONTROL", Capability::AuditControl),
    ("CAP_SETFCAP", Capability::Setfcap),
    ("CAP_MAC_OVERRIDE", Capability::MacOverride),
    ("CAP_MAC_ADMIN", Capability::MacAdmin),
    ("CAP_SYSLOG", Capability::Syslog),
    ("CAP_WAKE_ALARM", Capability::WakeAlarm),
    ("CAP_BLOCK_SUSPEND", Capability::BlockSuspend),
    ("CAP_AUDIT_READ", Capability::AuditRead),
    ("CAP_PERFMON", Capability::Perfmon),
    ("CAP_BPF", Capability::Bpf),
    ("CAP_CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

/// Docker's default capability set (moby `daemon/pkg/oci/caps/defaults.go`):
/// CapEff `00000000a80425fb`.
const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::SysChroot,
    Capability::Mknod,
    Capability::AuditWrite,
    Capability::Setfcap,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapError {
    #[error(
        "unknown capability {0:?}: expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
    )]
    Unknown(String),
}

/// One `--cap-add` / `--cap-drop` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapArg {
    All,
    One(Capability),
}

/// A set of capabilities as the kernel's bit mask (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    /// Every capability the kernel knows: `000001ffffffffff`.
    pub fn all() -> CapSet {
        CapSet((1u64 << CAPABILITIES.len()) - 1)
    }

    /// Docker's default set: `00000000a80425fb`.
    pub fn docker_default() -> CapSet {
        DOCKER_DEFAULT.iter().copied().collect()
    }

    /// The set of a kernel mask such as `CapEff`; bits above the last capability are ignored.
    pub fn from_mask(mask: u64) -> CapSet {
        CapSet(mask & CapSet::all().0)
    }

    pub fn mask(self) -> u64 {
        self.0
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & bit(cap) != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= bit(cap);
    }

    pub fn remove(&mut self, cap: Capability) {
        self.0 &= !bit(cap);
    }

    /// The set in oci-spec's form, for `process.capabilities`.
    pub fn to_oci(self) -> Capabilities {
        CAPABILITIES
            .iter()
            .filter(|(_, cap)| self.contains(*cap))
            .map(|(_, cap)| *cap)
            .collect()
    }

    /// The kernel names of the capabilities in the set, in number order.
    pub fn names(self) -> Vec<&'static str> {
        CAPABILITIES
            .iter()
            .filter(|(_, cap)| self.contains(*cap))
            .map(|(name, _)| *name)
            .collect()
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapSet::EMPTY;
        for cap in iter {
            set.insert(cap);
        }
        set
    }
}

fn bit(cap: Capability) -> u64 {
    let number = CAPABILITIES
        .iter()
        .position(|(_, known)| *known == cap)
        .unwrap_or_else(|| unreachable!("every oci-spec Capability is in CAPABILITIES"));
    1u64 << number
}

/// Parses a capability as Docker does: case-insensitive, with or without the `CAP_` prefix,
/// or `ALL`.
pub fn parse_cap_name(arg: &str) -> Result<CapArg, CapError> {
    let upper = arg.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(CapArg::All);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    kernel_cap(&full)
        .map(CapArg::One)
        .ok_or_else(|| CapError::Unknown(echo(arg)))
}

/// Looks up an exact kernel name such as `CAP_SYS_ADMIN`.
pub fn kernel_cap(name: &str) -> Option<Capability> {
    CAPABILITIES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, cap)| *cap)
}

/// The kernel's mask of an oci-spec capability set, as `/proc/self/status` prints it.
pub fn mask_of(set: &HashSet<Capability>) -> u64 {
    set.iter().copied().collect::<CapSet>().mask()
}

/// Applies `--cap-add` and `--cap-drop` to `base`.
///
/// Like Docker, `--cap-add ALL` grants everything not dropped, and `--cap-drop ALL` keeps only
/// what is added. Otherwise drops apply first and adds win.
pub fn adjust(base: CapSet, add: &[String], drop: &[String]) -> Result<CapSet, CapError> {
    let add = parse_all(add)?;
    let drop = parse_all(drop)?;
    let start = if add.contains(&CapArg::All) {
        CapSet::all()
    } else if drop.contains(&CapArg::All) {
        CapSet::EMPTY
    } else {
        base
    };
    let mut set = start;
    for arg in &drop {
        if let CapArg::One(cap) = arg {
            set.remove(*cap);
        }
    }
    if !add.contains(&CapArg::All) {
        for arg in &add {
            if let CapArg::One(cap) = arg {
                set.insert(*cap);
            }
        }
    }
    Ok(set)
}

fn parse_all(args: &[String]) -> Result<Vec<CapArg>, CapError> {
    args.iter().map(|a| parse_cap_name(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_default_mask_matches_docker_capeff() {
        assert_eq!(CapSet::docker_default().mask(), 0xa80425fb);
        assert_eq!(CapSet::docker_default().names().len(), 14);
    }

    #[test]
    fn all_caps_is_41_bits() {
        assert_eq!(CapSet::all().mask(), 0x1ffffffffff);
        assert_eq!(CapSet::all().names().len(), 41);
        assert_eq!(
            CAPABILITIES[40],
            ("CAP_CHECKPOINT_RESTORE", Capability::CheckpointRestore)
        );
    }

    #[test]
    fn table_names_agree_with_oci_spec_serialization() {
        for (name, cap) in CAPABILITIES {
            let json = serde_json::to_string(&cap).expect("serialize capability");
            assert_eq!(json, format!("\"{name}\""));
        }
    }

    #[test]
    fn from_mask_keeps_known_bits() {
        assert_eq!(CapSet::from_mask(u64::MAX), CapSet::all());
        assert_eq!(CapSet::from_mask(1 << 24).names(), vec!["CAP_SYS_RESOURCE"]);
    }

    #[test]
    fn mask_of_oci_set_round_trips() {
        let oci = CapSet::docker_default().to_oci();
        assert_eq!(oci.len(), 14);
        assert_eq!(mask_of(&oci), 0xa80425fb);
        assert_eq!(mask_of(&CapSet::all().to_oci()), 0x1ffffffffff);
    }

    #[test]
    fn parse_accepts_prefix_and_any_case() {
        for arg in [
            "SYSLOG",
            "CAP_SYSLOG",
            "syslog",
            "cap_syslog",
            "Cap_SysLog",
            " syslog ",
        ] {
            assert_eq!(
                parse_cap_name(arg),
                Ok(CapArg::One(Capability::Syslog)),
                "{arg}"
            );
        }
        assert_eq!(parse_cap_name("all"), Ok(CapArg::All));
        assert_eq!(parse_cap_name("ALL"), Ok(CapArg::All));
    }

    #[test]
    fn parse_unknown_names_the_value() {
        let err = parse_cap_name("CAP_FLY").expect_err("unknown cap");
        assert_eq!(err, CapError::Unknown("CAP_FLY".into()));
        assert!(err.to_string().contains("\"CAP_FLY\""));
        assert!(parse_cap_name("").is_err());
        assert!(parse_cap_name("CAP_").is_err());
        assert!(parse_cap_name("CAP_ALL").is_err());
    }

    #[test]
    fn long_unknown_name_is_cut_in_the_error() {
        let long = "X".repeat(10_000);
        let CapError::Unknown(echo) = parse_cap_name(&long).expect_err("unknown");
        assert_eq!(echo.len(), crate::MAX_ECHOED);
    }

    #[test]
    fn add_and_drop() {
        let base = CapSet::docker_default();
        let set = adjust(base, &strings(&["SYSLOG"]), &strings(&["net_raw"])).expect("adjust");
        assert!(set.contains(Capability::Syslog));
        assert!(!set.contains(Capability::NetRaw));
        assert_eq!(set.mask(), (0xa80425fb & !(1 << 13)) | (1 << 34));
    }

    #[test]
    fn add_wins_over_drop_of_the_same_cap() {
        let set = adjust(
            CapSet::docker_default(),
            &strings(&["KILL"]),
            &strings(&["KILL"]),
        )
        .expect("adjust");
        assert!(set.contains(Capability::Kill));
    }

    #[test]
    fn add_all_minus_drops() {
        let set =
            adjust(CapSet::EMPTY, &strings(&["ALL"]), &strings(&["SYS_ADMIN"])).expect("adjust");
        assert_eq!(set.mask(), 0x1ffffffffff & !(1 << 21));
    }

    #[test]
    fn drop_all_keeps_only_adds() {
        let set = adjust(
            CapSet::docker_default(),
            &strings(&["CHOWN"]),
            &strings(&["all"]),
        )
        .expect("adjust");
        assert_eq!(set.mask(), 1);
    }

    #[test]
    fn unknown_in_either_list_is_an_error() {
        assert!(adjust(CapSet::EMPTY, &strings(&["NOPE"]), &[]).is_err());
        assert!(adjust(CapSet::EMPTY, &[], &strings(&["NOPE"])).is_err());
    }
}
