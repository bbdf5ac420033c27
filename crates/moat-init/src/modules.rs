//! Kernel modules, loaded in the order the host resolved.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::kmod::{finit_module, ModuleInitFlags};

/// Written by the host's initramfs builder: one module path per line, dependencies first. These
/// are in the initramfs and load at boot.
pub const MODULE_ORDER_FILE: &str = "/etc/moat/modules";

/// The same, for the modules a privileged container finds loaded (loop), as a Docker host has
/// them: they load before the zone's devices are listed for it, so their device nodes are
/// among them. Their files are on the modules disk.
pub const PRIVILEGED_MODULE_ORDER_FILE: &str = "/etc/moat/modules-privileged";

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {file}: {err}")]
    List { file: &'static str, err: std::io::Error },
    #[error("loading module {path}: {err}")]
    Load { path: String, err: String },
}

/// Load every module `file` lists, in order; a missing list loads nothing.
pub fn load_listed(file: &'static str) -> Result<(), ModuleError> {
    let order = match std::fs::read_to_string(file) {
        Ok(order) => order,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(ModuleError::List { file, err }),
    };
    for path in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        load_one(path)?;
    }
    Ok(())
}

fn load_one(path: &str) -> Result<(), ModuleError> {
    let module_err = |err: String| ModuleError::Load { path: path.to_string(), err };
    let file = std::fs::File::open(path).map_err(|e| module_err(e.to_string()))?;
    let no_params = CString::default();
    match finit_module(file.as_fd(), &no_params, ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(module_err(e.to_string())),
    }
}
