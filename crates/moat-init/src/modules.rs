//! Kernel modules from the initramfs, loaded in the order the host resolved.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::kmod::{finit_module, ModuleInitFlags};

use crate::Error;

/// Written by the host's initramfs builder: one module path per line, dependencies first.
pub const MODULE_ORDER_FILE: &str = "/etc/moat/modules";

pub fn load_modules() -> Result<(), Error> {
    let order = match std::fs::read_to_string(MODULE_ORDER_FILE) {
        Ok(order) => order,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(MODULE_ORDER_FILE, e)),
    };
    for path in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        load_one(path)?;
    }
    Ok(())
}

fn load_one(path: &str) -> Result<(), Error> {
    let module_err = |err: String| Error::Module { path: path.to_string(), err };
    let file = std::fs::File::open(path).map_err(|e| module_err(e.to_string()))?;
    let no_params = CString::default();
    match finit_module(file.as_fd(), &no_params, ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(module_err(e.to_string())),
    }
}
