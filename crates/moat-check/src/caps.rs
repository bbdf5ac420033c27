//! The 41 Linux capabilities (0..=40, CAP_CHECKPOINT_RESTORE last, since 5.9), which of them
//! are dangerous, and which the kernel only honours in the initial user namespace.

/// One capability and what it means for isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub bit: u32,
    /// Name without the `CAP_` prefix.
    pub name: &'static str,
    /// Lets a holder act on the kernel or other tenants in a way that breaks isolation.
    pub dangerous: bool,
    /// The kernel checks this one with `capable()`, i.e. against the initial user namespace:
    /// inside any other user namespace it grants nothing (the seed's CAP_SYSLOG lesson).
    pub init_userns_only: bool,
}

const fn cap(bit: u32, name: &'static str, dangerous: bool, init_userns_only: bool) -> Cap {
    Cap { bit, name, dangerous, init_userns_only }
}

/// Every capability the kernel defines, indexed by bit. The `init_userns_only` column follows
/// the kernel's use of `capable()` rather than `ns_capable()` for the capability's main uses.
pub const CAPS: [Cap; 41] = [
    cap(0, "CHOWN", false, false),
    cap(1, "DAC_OVERRIDE", false, false),
    cap(2, "DAC_READ_SEARCH", true, false),
    cap(3, "FOWNER", false, false),
    cap(4, "FSETID", false, false),
    cap(5, "KILL", false, false),
    cap(6, "SETGID", false, false),
    cap(7, "SETUID", false, false),
    cap(8, "SETPCAP", false, false),
    cap(9, "LINUX_IMMUTABLE", false, true),
    cap(10, "NET_BIND_SERVICE", false, false),
    cap(11, "NET_BROADCAST", false, false),
    cap(12, "NET_ADMIN", true, false),
    cap(13, "NET_RAW", false, false),
    cap(14, "IPC_LOCK", false, false),
    cap(15, "IPC_OWNER", false, false),
    cap(16, "SYS_MODULE", true, true),
    cap(17, "SYS_RAWIO", true, true),
    cap(18, "SYS_CHROOT", false, false),
    cap(19, "SYS_PTRACE", true, false),
    cap(20, "SYS_PACCT", true, true),
    cap(21, "SYS_ADMIN", true, false),
    cap(22, "SYS_BOOT", true, false),
    cap(23, "SYS_NICE", false, false),
    cap(24, "SYS_RESOURCE", true, true),
    cap(25, "SYS_TIME", true, true),
    cap(26, "SYS_TTY_CONFIG", false, true),
    cap(27, "MKNOD", false, false),
    cap(28, "LEASE", false, false),
    cap(29, "AUDIT_WRITE", false, false),
    cap(30, "AUDIT_CONTROL", true, true),
    cap(31, "SETFCAP", false, false),
    cap(32, "MAC_OVERRIDE", true, true),
    cap(33, "MAC_ADMIN", true, true),
    cap(34, "SYSLOG", true, true),
    cap(35, "WAKE_ALARM", false, true),
    cap(36, "BLOCK_SUSPEND", false, true),
    cap(37, "AUDIT_READ", false, true),
    cap(38, "PERFMON", true, true),
    cap(39, "BPF", true, true),
    cap(40, "CHECKPOINT_RESTORE", true, false),
];

/// The capabilities set in `mask`. Bits beyond the table (a newer kernel) come back as
/// `unknown` bit numbers.
pub fn decode(mask: u64) -> (Vec<Cap>, Vec<u32>) {
    let known = CAPS.iter().filter(|c| mask & (1 << c.bit) != 0).copied().collect();
    let unknown = (41..64).filter(|bit| mask & (1u64 << bit) != 0).collect();
    (known, unknown)
}

pub fn names(caps: &[Cap]) -> String {
    if caps.is_empty() {
        return "none".to_string();
    }
    caps.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_bit() {
        for (i, c) in CAPS.iter().enumerate() {
            assert_eq!(usize::try_from(c.bit).expect("small"), i, "{}", c.name);
        }
        assert_eq!(CAPS[40].name, "CHECKPOINT_RESTORE");
    }

    #[test]
    fn docker_default_set_has_nothing_dangerous() {
        let (caps, unknown) = decode(0xa804_25fb);
        assert!(unknown.is_empty());
        assert_eq!(
            names(&caps),
            "CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, \
             SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP"
        );
        assert!(caps.iter().all(|c| !c.dangerous));
    }

    #[test]
    fn privileged_set_is_all_41() {
        let (caps, unknown) = decode(0x1ff_ffff_ffff);
        assert_eq!(caps.len(), 41);
        assert!(unknown.is_empty());
        let (_, unknown) = decode(1 << 41);
        assert_eq!(unknown, vec![41]);
    }

    #[test]
    fn syslog_needs_the_initial_user_namespace() {
        let syslog = CAPS.iter().find(|c| c.name == "SYSLOG").expect("present");
        assert!(syslog.dangerous && syslog.init_userns_only);
        let sys_admin = CAPS.iter().find(|c| c.name == "SYS_ADMIN").expect("present");
        assert!(!sys_admin.init_userns_only, "SYS_ADMIN works over a user namespace's own resources");
    }
}
