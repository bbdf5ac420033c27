//! Seccomp profiles in Docker's format: the built-in Moby default (`data/seccomp-default.json`)
//! and custom profiles from `--security-opt seccomp=<profile JSON>`.
//!
//! A profile's rules carry conditions (architecture, capabilities, minimum kernel). They are
//! evaluated against the container's final capability set and the zone's kernel, as moby's
//! `setupSeccomp` does, to produce the spec's `LinuxSeccomp`.

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSyscall,
};
use serde::Deserialize;

use crate::caps::{kernel_cap, CapSet};
use crate::echo;

/// Largest custom profile accepted. The profile travels to the zone inside the runtime spec,
/// in a bounded frame; the Moby default is about 14 KiB.
pub const MAX_SECCOMP_PROFILE_BYTES: usize = 128 * 1024;

/// The Moby default profile, as data (see `data/README.md` for its source).
const DEFAULT_PROFILE_JSON: &str = include_str!("../data/seccomp-default.json");

/// A syscall takes at most six arguments.
const MAX_SYSCALL_ARGS: usize = 6;

/// Longest syscall name accepted (the longest real one is under 32 characters).
const MAX_SYSCALL_NAME: usize = 64;

/// Highest errno a filter may return (the kernel's MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("seccomp profile is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("seccomp profile is not valid JSON in Docker's profile format: {0}")]
    Json(String),
    #[error("seccomp profile sets both \"architectures\" and \"archMap\"; use one")]
    ArchitecturesAndArchMap,
    #[error("seccomp rule {rule} sets both \"name\" and \"names\"; use one")]
    NameAndNames { rule: usize },
    #[error("seccomp rule {rule} names no syscall")]
    NoNames { rule: usize },
    #[error("seccomp rule {rule}: {name:?} is not a syscall name")]
    BadSyscallName { rule: usize, name: String },
    #[error("seccomp rule {rule}: {count} argument filters, at most {MAX_SYSCALL_ARGS} allowed")]
    TooManyArgs { rule: usize, count: usize },
    #[error("seccomp rule {rule}: argument index {index} is out of range 0..{MAX_SYSCALL_ARGS}")]
    ArgIndex { rule: usize, index: usize },
    #[error("seccomp rule {rule}: unknown capability {name:?} in a condition")]
    UnknownCap { rule: usize, name: String },
    #[error("seccomp profile: invalid kernel version {0:?}, expected \"<kernel>.<major>\"")]
    KernelVersion(String),
    #[error("seccomp profile: errno {0} is out of range 0..={MAX_ERRNO}")]
    Errno(u32),
}

/// A kernel version as the profile compares it: only "kernel.major" counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub kernel: u8,
    pub major: u8,
}

impl KernelVersion {
    fn parse(text: &str) -> Result<KernelVersion, SeccompError> {
        let bad = || SeccompError::KernelVersion(echo(text));
        let (kernel, major) = text.split_once('.').ok_or_else(bad)?;
        let version = KernelVersion {
            kernel: kernel.parse().map_err(|_| bad())?,
            major: major.parse().map_err(|_| bad())?,
        };
        if version.kernel == 0 && version.major == 0 {
            return Err(bad());
        }
        Ok(version)
    }
}

/// The zone's architecture, in the two spellings profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneArch {
    X86_64,
    Aarch64,
}

impl ZoneArch {
    /// libseccomp's name, used in rule conditions ("arches").
    fn native_name(self) -> &'static str {
        match self {
            ZoneArch::X86_64 => "amd64",
            ZoneArch::Aarch64 => "arm64",
        }
    }

    fn scmp(self) -> Arch {
        match self {
            ZoneArch::X86_64 => Arch::ScmpArchX86_64,
            ZoneArch::Aarch64 => Arch::ScmpArchAarch64,
        }
    }
}

/// What a profile is evaluated for: the zone's architecture and kernel, not the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneTarget {
    pub arch: ZoneArch,
    pub kernel: KernelVersion,
}

impl ZoneTarget {
    /// moat's zones: x86-64 QEMU microvm with Debian's 6.1 cloud kernel.
    pub const DEFAULT: ZoneTarget = ZoneTarget {
        arch: ZoneArch::X86_64,
        kernel: KernelVersion {
            kernel: 6,
            major: 1,
        },
    };
}

/// A parsed and validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct SeccompProfile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Vec<Arch>,
    arch_map: Vec<(Arch, Vec<Arch>)>,
    flags: Vec<LinuxSeccompFilterFlag>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    syscall: LinuxSyscall,
    includes: Condition,
    excludes: Condition,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Condition {
    caps: Vec<Capability>,
    arches: Vec<String>,
    min_kernel: Option<KernelVersion>,
}

/// The built-in Moby default profile.
pub fn default_profile() -> Result<SeccompProfile, SeccompError> {
    parse_profile(DEFAULT_PROFILE_JSON)
}

/// Parses and validates a profile in Docker's JSON format.
pub fn parse_profile(text: &str) -> Result<SeccompProfile, SeccompError> {
    if text.len() > MAX_SECCOMP_PROFILE_BYTES {
        return Err(SeccompError::TooLarge {
            size: text.len(),
            max: MAX_SECCOMP_PROFILE_BYTES,
        });
    }
    let raw: RawProfile =
        serde_json::from_str(text).map_err(|e| SeccompError::Json(e.to_string()))?;
    raw.validate()
}

impl SeccompProfile {
    /// The rules that apply to a container holding `caps` in `target`, as the spec's seccomp.
    pub fn evaluate(&self, caps: CapSet, target: &ZoneTarget) -> LinuxSeccomp {
        let mut architectures = self.architectures.clone();
        if let Some((main, subs)) = self.arch_map.iter().find(|(a, _)| *a == target.arch.scmp()) {
            architectures.push(*main);
            architectures.extend(subs);
        }
        let syscalls: Vec<LinuxSyscall> = self
            .rules
            .iter()
            .filter(|rule| rule.applies(caps, target))
            .map(|rule| rule.syscall.clone())
            .collect();

        let mut seccomp = LinuxSeccomp::default();
        seccomp
            .set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures(Some(architectures))
            .set_flags((!self.flags.is_empty()).then(|| self.flags.clone()))
            .set_listener_path(self.listener_path.clone())
            .set_listener_metadata(self.listener_metadata.clone())
            .set_syscalls(Some(syscalls));
        seccomp
    }
}

impl Rule {
    /// Moby's semantics: excluded when the arch is listed, when *any* listed cap is held, or
    /// when the kernel is at least the version; included only when the arch is listed, *all*
    /// listed caps are held, and the kernel is at least the version.
    fn applies(&self, caps: CapSet, target: &ZoneTarget) -> bool {
        let arch = target.arch.native_name();
        let ex = &self.excludes;
        let excluded = ex.arches.iter().any(|a| a == arch)
            || ex.caps.iter().any(|c| caps.contains(*c))
            || ex.min_kernel.is_some_and(|v| target.kernel >= v);
        let inc = &self.includes;
        let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
            && inc.caps.iter().all(|c| caps.contains(*c))
            && inc.min_kernel.is_none_or(|v| target.kernel >= v);
        !excluded && included
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<RawArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
    #[serde(default)]
    includes: Option<RawCondition>,
    #[serde(default)]
    excludes: Option<RawCondition>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCondition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

impl RawProfile {
    fn validate(self) -> Result<SeccompProfile, SeccompError> {
        let architectures = self.architectures.unwrap_or_default();
        let arch_map: Vec<(Arch, Vec<Arch>)> = self
            .arch_map
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.architecture, m.sub_architectures.unwrap_or_default()))
            .collect();
        if !architectures.is_empty() && !arch_map.is_empty() {
            return Err(SeccompError::ArchitecturesAndArchMap);
        }
        checked_errno(self.default_errno_ret)?;
        let rules = self
            .syscalls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, rule)| rule.validate(index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SeccompProfile {
            default_action: self.default_action,
            default_errno_ret: self.default_errno_ret,
            architectures,
            arch_map,
            flags: self.flags.unwrap_or_default(),
            listener_path: self.listener_path,
            listener_metadata: self.listener_metadata,
            rules,
        })
    }
}

impl RawRule {
    fn validate(self, rule: usize) -> Result<Rule, SeccompError> {
        let names = match (self.name, self.names) {
            (Some(_), Some(names)) if !names.is_empty() => {
                return Err(SeccompError::NameAndNames { rule })
            }
            (Some(name), _) => vec![name],
            (None, names) => names.unwrap_or_default(),
        };
        if names.is_empty() {
            return Err(SeccompError::NoNames { rule });
        }
        if let Some(name) = names.iter().find(|n| !is_syscall_name(n)) {
            return Err(SeccompError::BadSyscallName {
                rule,
                name: echo(name),
            });
        }
        let args = self.args.unwrap_or_default();
        if args.len() > MAX_SYSCALL_ARGS {
            return Err(SeccompError::TooManyArgs {
                rule,
                count: args.len(),
            });
        }
        if let Some(arg) = args.iter().find(|a| a.index() >= MAX_SYSCALL_ARGS) {
            return Err(SeccompError::ArgIndex {
                rule,
                index: arg.index(),
            });
        }
        checked_errno(self.errno_ret)?;

        let mut syscall = LinuxSyscall::default();
        syscall
            .set_names(names)
            .set_action(self.action)
            .set_errno_ret(self.errno_ret)
            .set_args((!args.is_empty()).then_some(args));
        Ok(Rule {
            syscall,
            includes: self.includes.unwrap_or_default().validate(rule)?,
            excludes: self.excludes.unwrap_or_default().validate(rule)?,
        })
    }
}

impl RawCondition {
    fn validate(self, rule: usize) -> Result<Condition, SeccompError> {
        let caps = self
            .caps
            .unwrap_or_default()
            .iter()
            .map(|name| {
                kernel_cap(name).ok_or_else(|| SeccompError::UnknownCap {
                    rule,
                    name: echo(name),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_kernel = match self.min_kernel.as_deref() {
            None | Some("") => None,
            Some(text) => Some(KernelVersion::parse(text)?),
        };
        Ok(Condition {
            caps,
            arches: self.arches.unwrap_or_default(),
            min_kernel,
        })
    }
}

fn checked_errno(errno: Option<u32>) -> Result<(), SeccompError> {
    match errno {
        Some(e) if e > MAX_ERRNO => Err(SeccompError::Errno(e)),
        _ => Ok(()),
    }
}

fn is_syscall_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SYSCALL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompOperator;

    fn default_for(caps: CapSet) -> LinuxSeccomp {
        default_profile()
            .expect("built-in profile parses")
            .evaluate(caps, &ZoneTarget::DEFAULT)
    }

    /// Rules naming `syscall` with their action and whether they filter arguments.
    fn rules_for(seccomp: &LinuxSeccomp, syscall: &str) -> Vec<(LinuxSeccompAction, bool)> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == syscall))
            .map(|s| (s.action(), s.args().is_some()))
            .collect()
    }

    /// Allowed whatever its arguments.
    fn fully_allowed(seccomp: &LinuxSeccomp, syscall: &str) -> bool {
        rules_for(seccomp, syscall).contains(&(LinuxSeccompAction::ScmpActAllow, false))
    }

    fn with(cap: Capability) -> CapSet {
        let mut caps = CapSet::docker_default();
        caps.insert(cap);
        caps
    }

    #[test]
    fn default_profile_denies_with_eperm_for_x86_64() {
        let seccomp = default_for(CapSet::docker_default());
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert!(fully_allowed(&seccomp, "read"));
        assert!(fully_allowed(&seccomp, "arch_prctl"), "amd64-only rule");
        assert!(fully_allowed(&seccomp, "modify_ldt"));
        assert!(!fully_allowed(&seccomp, "set_tls"), "arm-only rule");
        assert!(!fully_allowed(&seccomp, "s390_runtime_instr"));
    }

    #[test]
    fn default_caps_deny_keyctl_unshare_mount_syslog() {
        let seccomp = default_for(CapSet::docker_default());
        // Moby lists keyctl, add_key and request_key in no rule: always EPERM.
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "syslog",
            "bpf",
            "perf_event_open",
            "init_module",
            "reboot",
        ] {
            assert!(
                rules_for(&seccomp, denied).is_empty(),
                "{denied} has a rule"
            );
        }
        // ptrace is allowed from kernel 4.8 on (the zone runs 6.1).
        assert!(fully_allowed(&seccomp, "ptrace"));
        // chroot is gated on CAP_SYS_CHROOT, which Docker grants by default.
        assert!(fully_allowed(&seccomp, "chroot"));
    }

    #[test]
    fn clone_is_limited_and_clone3_gets_enosys_without_sys_admin() {
        let seccomp = default_for(CapSet::docker_default());
        assert_eq!(
            rules_for(&seccomp, "clone"),
            vec![(LinuxSeccompAction::ScmpActAllow, true)]
        );
        let clone_rule = seccomp
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone".to_string()])
            .expect("clone rule");
        let arg = clone_rule.args().as_ref().expect("args")[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3: Vec<_> = seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == "clone3"))
            .collect();
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
    }

    #[test]
    fn sys_admin_allows_mount_unshare_setns_and_unfiltered_clone() {
        let seccomp = default_for(with(Capability::SysAdmin));
        for allowed in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "open_tree",
            "fsopen",
        ] {
            assert!(fully_allowed(&seccomp, allowed), "{allowed}");
        }
        assert!(
            !rules_for(&seccomp, "clone3").contains(&(LinuxSeccompAction::ScmpActErrno, false)),
            "the ENOSYS rule for clone3 is excluded with CAP_SYS_ADMIN"
        );
        assert_eq!(
            rules_for(&seccomp, "clone"),
            vec![(LinuxSeccompAction::ScmpActAllow, false)],
            "the masked clone rule is excluded with CAP_SYS_ADMIN"
        );
        assert!(
            rules_for(&seccomp, "keyctl").is_empty(),
            "keyctl stays denied"
        );
    }

    #[test]
    fn syslog_cap_allows_syslog_syscall() {
        assert!(fully_allowed(
            &default_for(with(Capability::Syslog)),
            "syslog"
        ));
    }

    #[test]
    fn each_gating_cap_opens_its_syscalls() {
        let cases = [
            (Capability::SysBoot, "reboot"),
            (Capability::SysModule, "finit_module"),
            (Capability::SysPacct, "acct"),
            (Capability::SysPtrace, "kcmp"),
            (Capability::SysRawio, "iopl"),
            (Capability::SysTime, "settimeofday"),
            (Capability::SysTtyConfig, "vhangup"),
            (Capability::SysNice, "mbind"),
            (Capability::Bpf, "bpf"),
            (Capability::Perfmon, "perf_event_open"),
            (Capability::DacReadSearch, "open_by_handle_at"),
        ];
        let plain = default_for(CapSet::docker_default());
        for (cap, syscall) in cases {
            assert!(!fully_allowed(&plain, syscall), "{syscall} without cap");
            assert!(
                fully_allowed(&default_for(with(cap)), syscall),
                "{syscall} with {cap:?}"
            );
        }
    }

    #[test]
    fn min_kernel_and_arch_conditions_follow_the_target() {
        let profile = default_profile().expect("profile");
        let old = ZoneTarget {
            arch: ZoneArch::X86_64,
            kernel: KernelVersion {
                kernel: 4,
                major: 4,
            },
        };
        let seccomp = profile.evaluate(CapSet::docker_default(), &old);
        assert!(!fully_allowed(&seccomp, "ptrace"));
        let arm = ZoneTarget {
            arch: ZoneArch::Aarch64,
            ..ZoneTarget::DEFAULT
        };
        let seccomp = profile.evaluate(CapSet::docker_default(), &arm);
        assert!(fully_allowed(&seccomp, "set_tls"));
        assert!(!fully_allowed(&seccomp, "arch_prctl"));
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
    }

    #[test]
    fn socket_denies_af_alg_and_af_vsock() {
        let seccomp = default_for(CapSet::docker_default());
        let values: Vec<(u64, LinuxSeccompOperator)> = seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names() == &["socket".to_string()])
            .flat_map(|s| s.args().clone().unwrap_or_default())
            .map(|a| (a.value(), a.op()))
            .collect();
        assert_eq!(
            values,
            vec![
                (38, LinuxSeccompOperator::ScmpCmpLt),
                (39, LinuxSeccompOperator::ScmpCmpEq),
                (40, LinuxSeccompOperator::ScmpCmpGt)
            ]
        );
    }

    #[test]
    fn evaluated_profile_round_trips_through_oci_spec_json() {
        let seccomp = default_for(CapSet::docker_default());
        let json = serde_json::to_string(&seccomp).expect("serialize");
        let back: LinuxSeccomp = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, seccomp);
        assert!(json.contains("\"defaultAction\":\"SCMP_ACT_ERRNO\""));
        assert!(json.contains("\"SCMP_ARCH_X86_64\""));
        assert!(json.len() < 32 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn custom_profile_in_docker_format() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "keyctl", "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "why"}
            ]
        }"#;
        let profile = parse_profile(text).expect("parse");
        let seccomp = profile.evaluate(CapSet::docker_default(), &ZoneTarget::DEFAULT);
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            seccomp.syscalls().as_ref().map(Vec::len),
            Some(2),
            "both rules apply without CAP_SYS_ADMIN"
        );
        let seccomp = profile.evaluate(CapSet::all(), &ZoneTarget::DEFAULT);
        assert_eq!(seccomp.syscalls().as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn bad_profiles_give_one_clear_error() {
        type Expected = fn(&SeccompError) -> bool;
        let cases: [(&str, Expected); 12] = [
            ("not json", |e| matches!(e, SeccompError::Json(_))),
            ("{}", |e| matches!(e, SeccompError::Json(_))),
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, |e| {
                matches!(e, SeccompError::Json(_))
            }),
            (r#"{"defaultAction": "SCMP_ACT_ALLOW", "typo": 1}"#, |e| {
                matches!(e, SeccompError::Json(_))
            }),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                   "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                |e| *e == SeccompError::ArchitecturesAndArchMap,
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
                |e| *e == SeccompError::NoNames { rule: 0 },
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
                |e| *e == SeccompError::NameAndNames { rule: 0 },
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["rm -rf"], "action": "SCMP_ACT_ALLOW"}]}"#,
                |e| matches!(e, SeccompError::BadSyscallName { rule: 1, .. }),
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
                |e| matches!(e, SeccompError::ArgIndex { index: 6, .. }),
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_FLY"]}}]}"#,
                |e| matches!(e, SeccompError::UnknownCap { .. }),
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6"}}]}"#,
                |e| matches!(e, SeccompError::KernelVersion(_)),
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99999}"#,
                |e| *e == SeccompError::Errno(99999),
            ),
        ];
        for (text, expected) in cases {
            let err = parse_profile(text).expect_err(text);
            assert!(expected(&err), "{text}: got {err}");
        }
    }

    #[test]
    fn profile_size_is_bounded() {
        let huge = format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "{}"}}"#,
            "x".repeat(MAX_SECCOMP_PROFILE_BYTES)
        );
        assert!(matches!(
            parse_profile(&huge),
            Err(SeccompError::TooLarge { .. })
        ));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(
            KernelVersion::parse("4.8"),
            Ok(KernelVersion {
                kernel: 4,
                major: 8
            })
        );
        assert!(KernelVersion::parse("0.0").is_err());
        assert!(KernelVersion::parse("4").is_err());
        assert!(KernelVersion::parse("4.x").is_err());
        assert!(KernelVersion::parse("300.1").is_err());
        assert!(
            KernelVersion {
                kernel: 6,
                major: 1
            } > KernelVersion {
                kernel: 4,
                major: 8
            }
        );
    }
}
