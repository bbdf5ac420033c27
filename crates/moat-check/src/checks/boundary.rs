//! Virtualization boundary: is there a kernel boundary between this workload and the machine's
//! host kernel? Only a moat zone establishes one here: its command line carries the marker,
//! the running kernel is the release the marker names, and the hardware says "virtual
//! machine". A hypervisor *below* the kernel we run on is not such a boundary: it separates
//! this kernel from another machine, not this workload from this kernel.

use std::path::Path;

use super::{Boundary, Context};
use crate::read;
use crate::report::{CheckResult, Priority, Verdict};
use crate::sys::{self, CpuHints};
use crate::zone::{self, ZoneMarker};

const EXPLAIN: &str = "A container shares the kernel it runs on; a kernel exploit or a privileged escape lands in \
that kernel. Only a separate kernel behind a hypervisor (a moat zone) keeps the host kernel out of reach. \
CPUID, DMI and ACPI tell whether we run in a VM; the zone marker plus a matching kernel release tells whether \
that VM's kernel is a zone's rather than the machine's host kernel.";

/// DMI fields that name the platform vendor or product.
const DMI_FIELDS: [&str; 5] = ["sys_vendor", "product_name", "bios_vendor", "board_vendor", "chassis_vendor"];

/// Substrings (lowercase) of DMI values that only virtual platforms report.
const DMI_VM_HINTS: [&str; 14] = [
    "qemu", "kvm", "bochs", "seabios", "vmware", "virtualbox", "innotek", "xen", "virtual machine",
    "amazon ec2", "google compute engine", "firecracker", "cloud hypervisor", "bhyve",
];

/// ACPI OEM ids that virtual machine monitors write into their tables.
const ACPI_VM_OEMS: [&str; 9] = ["BOCHS", "BXPC", "FIRECK", "VBOX", "VMWARE", "XEN", "AMAZON", "VRTUAL", "CLOUDH"];

/// ACPI tables whose headers are read; each header is 36 bytes.
const ACPI_TABLES: [&str; 3] = ["DSDT", "FACP", "APIC"];
const ACPI_HEADER_LEN: usize = 36;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundaryFacts {
    pub release: String,
    pub marker: Option<ZoneMarker>,
    /// Why /proc/cmdline could not be read, if it could not.
    pub cmdline_error: Option<String>,
    pub cpu: CpuHints,
    /// (field, value) pairs from /sys/class/dmi/id.
    pub dmi: Vec<(String, String)>,
    /// (table, OEM id) pairs from ACPI table headers.
    pub acpi: Vec<(String, String)>,
}

fn acpi_oem(table: &str) -> Option<String> {
    use std::io::Read;
    let mut header = [0u8; ACPI_HEADER_LEN];
    let mut file = std::fs::File::open(Path::new("/sys/firmware/acpi/tables").join(table)).ok()?;
    file.read_exact(&mut header).ok()?;
    Some(String::from_utf8_lossy(&header[10..16]).trim().to_string()).filter(|s| !s.is_empty())
}

pub fn probe(release: &str) -> BoundaryFacts {
    let (marker, cmdline_error) = match read::text("/proc/cmdline", read::MAX_SMALL_FILE) {
        Ok(cmdline) => (zone::parse(&cmdline), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let dmi = DMI_FIELDS
        .iter()
        .filter_map(|f| read::line(Path::new("/sys/class/dmi/id").join(f)).map(|v| (f.to_string(), v)))
        .collect();
    let acpi = ACPI_TABLES.iter().filter_map(|t| acpi_oem(t).map(|oem| (t.to_string(), oem))).collect();
    BoundaryFacts { release: release.to_string(), marker, cmdline_error, cpu: sys::cpuid(), dmi, acpi }
}

/// The hardware's word that we run in a VM, as readable evidence.
fn vm_evidence(f: &BoundaryFacts) -> Vec<String> {
    let mut evidence = Vec::new();
    if f.cpu.hypervisor_bit {
        evidence.push("CPUID hypervisor bit set".to_string());
    }
    if let Some(vendor) = &f.cpu.vendor {
        evidence.push(format!("CPUID vendor {vendor:?}"));
    }
    for (field, value) in &f.dmi {
        if DMI_VM_HINTS.iter().any(|h| value.to_lowercase().contains(h)) {
            evidence.push(format!("DMI {field} {value:?}"));
        }
    }
    for (table, oem) in &f.acpi {
        if ACPI_VM_OEMS.iter().any(|h| oem.to_uppercase().starts_with(h)) {
            evidence.push(format!("ACPI {table} OEM {oem:?}"));
            break;
        }
    }
    evidence
}

/// Decide the boundary and the sentence that explains it.
pub fn assess(f: &BoundaryFacts) -> (Boundary, Verdict) {
    let evidence = vm_evidence(f);
    let hw = if evidence.is_empty() { "no hypervisor seen (CPUID, DMI, ACPI)".to_string() } else { evidence.join(", ") };
    let Some(marker) = &f.marker else {
        let why = f.cmdline_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        let below = if evidence.is_empty() {
            "this looks like bare metal".to_string()
        } else {
            format!("a hypervisor is present ({hw}) but it sits below this kernel, so it is no boundary between this workload and it")
        };
        return (
            Boundary::None,
            Verdict::fail(format!(
                "no kernel boundary established: no moat zone marker on the kernel command line{why}, so kernel {} \
                 is taken to be the machine's host kernel; {below}",
                f.release
            )),
        );
    };
    match marker.kernel.as_deref() {
        Some(k) if k == f.release && !evidence.is_empty() => (
            Boundary::Zone { zone: marker.zone.clone(), release: f.release.clone() },
            Verdict::pass(format!(
                "kernel boundary: the running kernel {} is moat zone {}'s own (marker and uname agree) and runs in a VM ({hw}); \
                 the host kernel is outside this VM",
                f.release, marker.zone
            )),
        ),
        Some(k) if k == f.release => (
            Boundary::None,
            Verdict::fail(format!(
                "the kernel command line claims moat zone {} with kernel {k}, but {hw}: a zone marker alone is not a boundary",
                marker.zone
            )),
        ),
        Some(k) => (
            Boundary::None,
            Verdict::fail(format!(
                "the command line claims moat zone {} with kernel {k}, but the running kernel is {}: the marker is not trusted",
                marker.zone, f.release
            )),
        ),
        None => (
            Boundary::None,
            Verdict::fail(format!(
                "the command line claims moat zone {} but names no kernel release to check against {}: marker not trusted",
                marker.zone, f.release
            )),
        ),
    }
}

pub fn check(ctx: &Context, verdict: Verdict) -> CheckResult {
    CheckResult::new("virtualization-boundary", "virtualization boundary", Priority::High, EXPLAIN, ctx.workload_only(verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn zone_facts() -> BoundaryFacts {
        BoundaryFacts {
            release: "6.1.0-18-cloud-amd64".into(),
            marker: zone::parse("console=ttyS0 moat.zone=z1 moat.kernel=6.1.0-18-cloud-amd64"),
            cpu: CpuHints { hypervisor_bit: true, vendor: Some("TCGTCGTCGTCG".into()) },
            acpi: vec![("DSDT".into(), "BOCHS".into())],
            ..BoundaryFacts::default()
        }
    }

    #[test]
    fn zone_kernel_under_a_hypervisor_is_a_boundary() {
        let (boundary, verdict) = assess(&zone_facts());
        assert_eq!(boundary, Boundary::Zone { zone: "z1".into(), release: "6.1.0-18-cloud-amd64".into() });
        assert_eq!(verdict.status, Status::Pass);
        assert!(verdict.reason.contains("ACPI DSDT OEM \"BOCHS\""), "{}", verdict.reason);
    }

    #[test]
    fn dmi_alone_can_confirm_the_vm() {
        let facts = BoundaryFacts {
            cpu: CpuHints::default(),
            acpi: vec![],
            dmi: vec![("sys_vendor".into(), "QEMU".into())],
            ..zone_facts()
        };
        assert!(matches!(assess(&facts).0, Boundary::Zone { .. }));
    }

    #[test]
    fn marker_without_vm_evidence_or_with_wrong_release_is_not_trusted() {
        let no_vm = BoundaryFacts { cpu: CpuHints::default(), acpi: vec![], ..zone_facts() };
        let (boundary, verdict) = assess(&no_vm);
        assert_eq!((boundary, verdict.status), (Boundary::None, Status::Fail));
        let wrong = BoundaryFacts { release: "6.18.44".into(), ..zone_facts() };
        let (boundary, verdict) = assess(&wrong);
        assert_eq!(boundary, Boundary::None);
        assert!(verdict.reason.contains("running kernel is 6.18.44"), "{}", verdict.reason);
    }

    #[test]
    fn hypervisor_below_the_host_is_not_a_boundary() {
        let host = BoundaryFacts {
            release: "6.18.44-fc-v595".into(),
            cpu: CpuHints { hypervisor_bit: true, vendor: Some("KVMKVMKVM".into()) },
            acpi: vec![("DSDT".into(), "FIRECK".into())],
            ..BoundaryFacts::default()
        };
        let (boundary, verdict) = assess(&host);
        assert_eq!((boundary, verdict.status), (Boundary::None, Status::Fail));
        assert!(verdict.reason.contains("below this kernel"), "{}", verdict.reason);
        let bare = BoundaryFacts { release: "6.1.0".into(), ..BoundaryFacts::default() };
        assert!(assess(&bare).1.reason.contains("bare metal"));
    }
}
