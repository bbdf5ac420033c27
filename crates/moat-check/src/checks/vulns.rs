//! Known kernel vulnerabilities, judged from the running kernel's upstream version.

use super::Context;
use crate::kversion::{self, KernelVersion, Source};
use crate::read;
use crate::report::{CheckResult, Priority, Verdict};
use crate::vulns::{self, Exposure, KNOWN};

const EXPLAIN: &str = "Dirty COW, Dirty Pipe, DirtyCred and the nf_tables use-after-free turn any local process, \
containers included, into the kernel's root. The version is read from the most precise source (Debian's uname \
-v, Ubuntu's /proc/version_signature, else the release); distribution kernels may carry fixes their version \
does not show, so for them a version in range is a warning, not a verdict. In a moat zone a vulnerable kernel \
is the zone's, which the VM boundary contains.";

pub fn probe() -> Option<String> {
    read::line("/proc/version_signature")
}

pub fn evaluate(ctx: &Context, version_signature: Option<&str>) -> Verdict {
    let kernel = match kversion::upstream(&ctx.release, &ctx.uname_version, version_signature) {
        Ok(k) => k,
        Err(e) => return Verdict::warn(format!("cannot judge by version: {e}")),
    };
    judge(ctx, &kernel)
}

fn judge(ctx: &Context, kernel: &KernelVersion) -> Verdict {
    let source = match kernel.source {
        Source::Release => "release",
        Source::Debian => "Debian's uname -v",
        Source::Ubuntu => "/proc/version_signature",
    };
    let mut vulnerable = Vec::new();
    let mut unknown = Vec::new();
    for vuln in &KNOWN {
        match vulns::assess(vuln, kernel) {
            Exposure::Vulnerable { fixed_in } => vulnerable.push(format!("{} {} (fixed in {fixed_in})", vuln.cve, vuln.name)),
            Exposure::Unknown(why) => unknown.push(format!("{} {}: {why}", vuln.cve, vuln.name)),
            Exposure::Predates | Exposure::Fixed => {}
        }
    }
    let rc = if kernel.rc { "-rc" } else { "" };
    let head = format!("kernel {}{rc} (from {source})", kernel.version);
    let unknown_note = if unknown.is_empty() { String::new() } else { format!("; undecided: {}", unknown.join("; ")) };
    if vulnerable.is_empty() {
        let checked = KNOWN.iter().map(|v| v.cve).collect::<Vec<_>>().join(", ");
        let verdict = format!("{head}: not vulnerable to {checked} by version{unknown_note}");
        return if unknown.is_empty() { Verdict::pass(verdict) } else { Verdict::warn(verdict) };
    }
    let found = format!("{head} is in the vulnerable range of {}{unknown_note}", vulnerable.join(", "));
    if ctx.boundary.zone().is_some() {
        Verdict::warn(format!("{found}{}", ctx.zone_note()))
    } else if kernel.distro_build {
        Verdict::warn(format!("{found}; a distribution build may carry the fix, check its advisory"))
    } else {
        Verdict::fail(found)
    }
}

pub fn check(ctx: &Context, version_signature: &Option<String>) -> CheckResult {
    let verdict = evaluate(ctx, version_signature.as_deref());
    CheckResult::new("kernel-vulnerabilities", "known kernel vulnerabilities", Priority::High, EXPLAIN, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{context, DOCKER_STATUS};
    use crate::checks::Position;
    use crate::report::{Mode, Status};

    fn ctx_with(release: &str, version: &str, zone: bool) -> Context {
        let mut ctx = context(Mode::Workload, zone, DOCKER_STATUS, Position::Child);
        ctx.release = release.into();
        ctx.uname_version = version.into();
        ctx
    }

    #[test]
    fn current_vanilla_kernel_passes() {
        let v = evaluate(&ctx_with("6.18.44-fc-v595", "#1 SMP PREEMPT_DYNAMIC @0", false), None);
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        assert!(v.reason.starts_with("kernel 6.18.44 (from release)"), "{}", v.reason);
    }

    #[test]
    fn dirty_pipe_era_vanilla_kernel_fails() {
        let v = evaluate(&ctx_with("5.16.10", "#1 SMP", false), None);
        assert_eq!(v.status, Status::Fail);
        assert!(v.reason.contains("CVE-2022-0847 Dirty Pipe (fixed in 5.16.11)"), "{}", v.reason);
    }

    #[test]
    fn debian_kernel_uses_its_real_level() {
        let v = evaluate(&ctx_with("6.1.0-18-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", false), None);
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        let old = evaluate(&ctx_with("6.1.0-17-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.69-1 (2023-12-30)", false), None);
        assert_eq!(old.status, Status::Warn, "distribution build: {}", old.reason);
        assert!(old.reason.contains("CVE-2024-1086"), "{}", old.reason);
    }

    #[test]
    fn hidden_level_is_undecided_and_zone_contains_the_rest() {
        assert_eq!(evaluate(&ctx_with("5.15.0-91-generic", "#101-Ubuntu SMP", false), None).status, Status::Warn);
        let zone = evaluate(&ctx_with("5.16.10", "#1 SMP", true), None);
        assert_eq!(zone.status, Status::Warn);
        assert!(zone.reason.contains("moat zone z1"), "{}", zone.reason);
    }
}
