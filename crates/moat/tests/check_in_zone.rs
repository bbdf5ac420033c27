//! The isolation checker run as a moat workload (`moat run IMAGE --check`), unprivileged and
//! privileged, asserting the verdicts the checker's own tests define for these settings.

mod common;
#[path = "../../moat-check/tests/support/mod.rs"]
mod support;

use common::{Moat, BUSYBOX};

fn check(moat: &Moat, extra: &[&str]) -> support::Outcome {
    let mut args = vec!["run", "--rm", "--name", "checked"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[BUSYBOX, "--check", "--json"]);
    support::outcome_from(moat.run(&args))
}

#[test]
fn unprivileged_workload_is_all_green() {
    let moat = Moat::with_busybox();
    let outcome = check(&moat, &[]);
    support::assert_verdicts(&outcome, support::MOAT_UNPRIVILEGED);
    assert_eq!(outcome.exit, 0, "no high-priority failure:\n{}", outcome.stderr);
}

#[test]
fn privileged_workload_flags_caps_yet_the_boundary_holds() {
    let moat = Moat::with_busybox();
    let outcome = check(&moat, &["--privileged"]);
    support::assert_verdicts(&outcome, support::MOAT_PRIVILEGED);
    assert_eq!(outcome.exit, 0, "the boundary and namespace checks pass in a zone:\n{}", outcome.stderr);
}
