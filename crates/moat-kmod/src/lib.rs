//! Kernel module metadata as `depmod` writes it, parsed without I/O: `modules.dep` (what a
//! module needs, [`ModuleDeps`]), `modules.alias` (which module serves a name the kernel asks
//! for, [`Aliases`]) and `modules.builtin` ([`builtin_names`]). The host resolves the modules a
//! zone loads at boot with it; the zone's modprobe resolves the kernel's requests with it.

mod alias;
mod deps;

pub use alias::{check_request, Aliases, MAX_REQUEST_LEN};
pub use deps::{builtin_names, module_name, ModuleDeps, MAX_DEP_DEPTH};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KmodError {
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("{file} line {line} is malformed")]
    Malformed { file: &'static str, line: usize },
    #[error("module {0} has dependencies nested deeper than {MAX_DEP_DEPTH}")]
    TooDeep(String),
    #[error("module request {0:?} is not a plain name of at most {MAX_REQUEST_LEN} bytes")]
    BadRequest(String),
}
