//! RWX memory: can this process map anonymous memory writable and executable at once?

use crate::report::{CheckResult, Priority, Verdict};
use crate::sys;

const EXPLAIN: &str = "Mapping memory writable and executable at once is how injected code runs and how JITs \
work. SELinux (execmem), PaX-style kernels or a seccomp filter on mmap/mprotect can forbid it; most Linux \
systems allow it, so this line is informational.";

pub fn evaluate(result: Result<(), i32>) -> Verdict {
    match result {
        Ok(()) => Verdict::warn("anonymous PROT_WRITE|PROT_EXEC memory can be mapped"),
        Err(errno) => Verdict::pass(format!("anonymous PROT_WRITE|PROT_EXEC mapping refused ({})", sys::errno_name(errno))),
    }
}

pub fn check(result: Result<(), i32>) -> CheckResult {
    CheckResult::new("rwx-memory", "RWX memory", Priority::Low, EXPLAIN, evaluate(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn refusal_passes_permission_warns() {
        assert_eq!(evaluate(Err(libc::EACCES)).status, Status::Pass);
        assert_eq!(evaluate(Ok(())).status, Status::Warn);
    }
}
