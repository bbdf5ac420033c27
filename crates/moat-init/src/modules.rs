//! Kernel modules, loaded in the order the host resolved.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::kmod::{finit_module, ModuleInitFlags};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {file}: {err}")]
    List { file: &'static str, err: std::io::Error },
    #[error("loading module {path}: {err}")]
    Load { path: String, err: String },
}

/// Load every module that `list` (one path per line, dependencies first) names. A module
/// already loaded is fine, so a list may be loaded twice.
pub fn load_modules(list: &'static str) -> Result<(), ModuleError> {
    let order = match std::fs::read_to_string(list) {
        Ok(order) => order,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(ModuleError::List { file: list, err }),
    };
    for path in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        load_one(path)?;
    }
    Ok(())
}

/// Load the module file at `path`; already loaded is success.
pub fn load_one(path: &str) -> Result<(), ModuleError> {
    let module_err = |err: String| ModuleError::Load { path: path.to_string(), err };
    let file = std::fs::File::open(path).map_err(|e| module_err(e.to_string()))?;
    let no_params = CString::default();
    match finit_module(file.as_fd(), &no_params, ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(module_err(e.to_string())),
    }
}
