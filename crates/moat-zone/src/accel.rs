//! Choosing the accelerator: KVM only when it can really run a standard guest kernel.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// What the user asked for with `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    #[error("--accel kvm: KVM cannot run a zone on this host: {0}")]
    KvmUnusable(String),
    #[error("unknown accelerator {0:?}: expected auto, kvm or tcg")]
    Unknown(String),
}

impl std::str::FromStr for AccelChoice {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            other => Err(AccelError::Unknown(other.to_string())),
        }
    }
}

/// TCG's translation cache, bounded: QEMU 7.2's default is 1 GiB, which a busy zone fills
/// before it flushes, and which QEMU's cgroup must then allow. Measured on this project's test
/// zone (`run --rm true` ×3, an idle zone's PSS, 100 rounds of `ls -R` in it): the cache such a
/// zone uses lies between 64 and 128 MiB, so 128 costs nothing measurable (3.8 s runs, 285 MiB
/// PSS, as the default), while 64 saved 22 MiB for 4 % slower runs and 32 saved 61 MiB for 18 %.
pub const TCG_CACHE_MIB: u64 = 128;

impl Accel {
    pub fn qemu_option(self, cpus: u32) -> String {
        match (self, cpus > 1) {
            (Accel::Kvm, _) => "kvm".into(),
            (Accel::Tcg, true) => format!("tcg,thread=multi,tb-size={TCG_CACHE_MIB}"),
            (Accel::Tcg, false) => format!("tcg,tb-size={TCG_CACHE_MIB}"),
        }
    }

    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// The facts about the host that decide whether KVM can run a zone.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Result of opening `/dev/kvm` and asking its API version.
    pub kvm_device: Result<i32, String>,
    /// The `kvm_pvm` module is loaded: KVM here runs only PVM-enabled guest kernels.
    pub pvm: bool,
    /// The CPU advertises hardware virtualization (vmx or svm).
    pub hardware_virt: bool,
}

/// The stable KVM API version (`KVM_GET_API_VERSION`).
const KVM_API_VERSION: i32 = 12;

impl HostFacts {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            kvm_device: kvm_api_version(),
            pvm: Path::new("/sys/module/kvm_pvm").exists(),
            hardware_virt: cpu_has_virt(&cpuinfo),
        }
    }

    /// `Ok(())` when KVM can run a standard kernel, else why not.
    pub fn kvm_usable(&self) -> Result<(), String> {
        match &self.kvm_device {
            Err(e) => return Err(e.clone()),
            Ok(v) if *v != KVM_API_VERSION => return Err(format!("/dev/kvm reports API version {v}, expected {KVM_API_VERSION}")),
            Ok(_) => {}
        }
        if self.pvm {
            return Err("the host's KVM is PVM (module kvm_pvm), which runs only PVM-enabled guest kernels".into());
        }
        if !self.hardware_virt {
            return Err("the CPU exposes neither vmx nor svm".into());
        }
        Ok(())
    }
}

/// Settle `choice` against the host. The note says why KVM was not used, for `auto`.
pub fn resolve(choice: AccelChoice, facts: &HostFacts) -> Result<(Accel, Option<String>), AccelError> {
    match (choice, facts.kvm_usable()) {
        (AccelChoice::Tcg, _) => Ok((Accel::Tcg, None)),
        (AccelChoice::Kvm | AccelChoice::Auto, Ok(())) => Ok((Accel::Kvm, None)),
        (AccelChoice::Kvm, Err(why)) => Err(AccelError::KvmUnusable(why)),
        (AccelChoice::Auto, Err(why)) => Ok((Accel::Tcg, Some(format!("using TCG software emulation, slower than KVM: {why}")))),
    }
}

/// The host's TSC rate in kHz, when the CPU has a constant TSC and reports its rate.
///
/// Under TCG the guest's TSC runs at the host's rate, and the guest kernel's own calibration
/// against the PIT is timing-sensitive: with several zones booting at once it fails and the
/// guest hangs. Passing `tsc_early_khz` lets the guest skip that calibration.
pub fn host_tsc_khz() -> Option<u64> {
    tsc_khz_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The kernel arguments a guest under TCG needs for its clock, when the host's TSC rate is known.
///
/// `tsc=reliable`: the guest's TSC is the host's, at a rate it is told. Its jiffies lag under
/// emulation, and without this the clocksource watchdog soon takes the TSC for the faulty one and
/// falls back to jiffies: no high-resolution timers and no tickless idle, so every zone ticks 250
/// times a second while it waits and every sleep rounds to 4 ms.
pub fn tcg_tsc_kernel_args() -> Option<String> {
    host_tsc_khz().map(|khz| format!("tsc_early_khz={khz} tsc=reliable"))
}

fn tsc_khz_from_cpuinfo(cpuinfo: &str) -> Option<u64> {
    let first_cpu = cpuinfo.split("\n\n").next()?;
    let field = |name: &str| {
        first_cpu.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    if !field("flags")?.split_whitespace().any(|f| f == "constant_tsc") {
        return None;
    }
    // "2596.148" MHz -> 2596148 kHz, in integers: the fraction's first three digits are kHz.
    let mhz = field("cpu MHz")?;
    let (whole, fraction) = mhz.split_once('.').unwrap_or((&mhz, ""));
    let fraction: String = fraction.chars().chain("000".chars()).take(3).collect();
    let khz = whole.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(fraction.parse::<u64>().ok()?)?;
    (1..100_000_000).contains(&khz).then_some(khz)
}

fn cpu_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

fn kvm_api_version() -> Result<i32, String> {
    use std::os::fd::AsRawFd;
    let kvm = std::fs::File::options().read(true).write(true).open("/dev/kvm").map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an integer; the fd is open.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version < 0 {
        return Err(format!("KVM_GET_API_VERSION failed: {}", std::io::Error::last_os_error()));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kvm: Result<i32, String>, pvm: bool, virt: bool) -> HostFacts {
        HostFacts { kvm_device: kvm, pvm, hardware_virt: virt }
    }

    #[test]
    fn pvm_host_falls_back_to_tcg_on_auto_and_refuses_kvm() {
        let pvm = facts(Ok(12), true, false);
        let (accel, note) = resolve(AccelChoice::Auto, &pvm).unwrap();
        assert_eq!(accel, Accel::Tcg);
        assert!(note.unwrap().contains("PVM"));
        assert!(matches!(resolve(AccelChoice::Kvm, &pvm), Err(AccelError::KvmUnusable(_))));
    }

    #[test]
    fn real_kvm_is_used() {
        let good = facts(Ok(12), false, true);
        assert_eq!(resolve(AccelChoice::Auto, &good).unwrap(), (Accel::Kvm, None));
        assert_eq!(resolve(AccelChoice::Tcg, &good).unwrap(), (Accel::Tcg, None));
    }

    #[test]
    fn no_device() {
        let none = facts(Err("cannot open /dev/kvm: No such file".into()), false, true);
        assert!(resolve(AccelChoice::Auto, &none).unwrap().1.unwrap().contains("/dev/kvm"));
    }

    #[test]
    fn tsc_rate() {
        let info = "processor\t: 0\ncpu MHz\t\t: 2596.148\nflags\t\t: fpu tsc constant_tsc\n\nprocessor\t: 1\n";
        assert_eq!(tsc_khz_from_cpuinfo(info), Some(2_596_148));
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: 2596.148\nflags\t: fpu tsc\n"), None, "no constant TSC");
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: fast\nflags\t: constant_tsc\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: 3000\nflags\t: constant_tsc\n"), Some(3_000_000));
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: 2400.5\nflags\t: constant_tsc\n"), Some(2_400_500));
    }

    #[test]
    fn cpu_flags() {
        assert!(cpu_has_virt("flags\t\t: fpu vme vmx sse\n"));
        assert!(!cpu_has_virt("flags\t\t: fpu vme sse\nbugs: vmx_fake\n"));
    }
}
