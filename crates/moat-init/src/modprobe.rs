//! The zone kernel's modprobe: init's binary, called as `modprobe` (see
//! [`moat_proto::layout::MODPROBE_PATH`]). The kernel runs it as `modprobe -q -- NAME` in the
//! zone's init namespaces when something needs a module it lacks. NAME is a module or an alias
//! (`rtnl-link-bridge`, `net-pf-16-proto-12`); it resolves through the zone's module tree,
//! whose `modules.dep` and `modules.alias` the host built with depmod.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use moat_kmod::{builtin_names, check_request, Aliases, KmodError, ModuleDeps};

use crate::modules::{self, ModuleError};

/// Largest metadata file read from the module tree. Debian's are about 100 KiB; the tree is
/// the host's read-only disk, but a request from a container makes the zone read them.
const MAX_METADATA_BYTES: u64 = 4 << 20;

const MODULES_ROOT: &str = "/lib/modules";

#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    #[error("usage: modprobe [-q] [-v] [--] NAME")]
    Usage,
    #[error("reading {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{} is larger than {MAX_METADATA_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("uname: {0}")]
    Uname(nix::Error),
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Load(#[from] ModuleError),
    #[error("no module serves {0:?}")]
    NotFound(String),
}

/// True when this process was started under the name `modprobe`.
pub fn called_as_modprobe() -> bool {
    std::env::args_os().next().is_some_and(|arg0| Path::new(&arg0).file_name().is_some_and(|n| n == "modprobe"))
}

/// Run as modprobe with `args` (argv without argv\[0\]); returns the exit status.
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let (quiet, request) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("modprobe: {err}");
            return 2;
        }
    };
    match probe(&request) {
        Ok(()) => 0,
        Err(err) => {
            if !quiet {
                eprintln!("modprobe: {err}");
            }
            1
        }
    }
}

/// `(quiet, name)` from the kernel's `-q -- NAME`; `-v` is accepted and ignored.
fn parse_args(args: impl Iterator<Item = OsString>) -> Result<(bool, String), ModprobeError> {
    let mut quiet = false;
    let mut names = Vec::new();
    let mut options_done = false;
    for arg in args {
        let arg = arg.into_string().map_err(|_| ModprobeError::Usage)?;
        match arg.as_str() {
            "--" if !options_done => options_done = true,
            "-q" | "--quiet" if !options_done => quiet = true,
            "-v" | "--verbose" if !options_done => {}
            _ if arg.starts_with('-') && !options_done => return Err(ModprobeError::Usage),
            _ => names.push(arg),
        }
    }
    let [name] = <[String; 1]>::try_from(names).map_err(|_| ModprobeError::Usage)?;
    check_request(&name)?;
    Ok((quiet, name))
}

fn probe(request: &str) -> Result<(), ModprobeError> {
    let release = nix::sys::utsname::uname().map_err(ModprobeError::Uname)?.release().to_os_string();
    let tree = Path::new(MODULES_ROOT).join(release);
    let deps = ModuleDeps::parse(&read_bounded(&tree.join("modules.dep"))?)?;
    let builtin = builtin_names(&read_bounded(&tree.join("modules.builtin")).unwrap_or_default());
    let aliases = Aliases::parse(&read_bounded(&tree.join("modules.alias"))?)?;
    for path in resolve(request, &deps, &builtin, &aliases)? {
        modules::load_one(&tree.join(path).to_string_lossy())?;
    }
    Ok(())
}

/// The module files (relative to the tree) to load for `request`, dependencies first; empty
/// when the kernel has it built in. A module's own name wins over aliases, as in kmod.
fn resolve(request: &str, deps: &ModuleDeps, builtin: &BTreeSet<String>, aliases: &Aliases) -> Result<Vec<String>, ModprobeError> {
    let name = request.replace('-', "_");
    if deps.contains(&name) {
        return Ok(deps.load_order(&[name])?);
    }
    if builtin.contains(&name) {
        return Ok(Vec::new());
    }
    let modules = aliases.resolve(request);
    let loadable: Vec<&str> = modules.iter().copied().filter(|m| deps.contains(m)).collect();
    if loadable.is_empty() {
        return match modules.iter().any(|m| builtin.contains(*m)) {
            true => Ok(Vec::new()),
            false => Err(ModprobeError::NotFound(request.to_string())),
        };
    }
    Ok(deps.load_order(&loadable)?)
}

/// A metadata file of the tree, refused past [`MAX_METADATA_BYTES`].
fn read_bounded(path: &Path) -> Result<String, ModprobeError> {
    let file = std::fs::File::open(path).map_err(|err| ModprobeError::Read { path: path.to_path_buf(), err })?;
    let mut bytes = Vec::new();
    file.take(MAX_METADATA_BYTES + 1).read_to_end(&mut bytes).map_err(|err| ModprobeError::Read { path: path.to_path_buf(), err })?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(ModprobeError::TooLarge { path: path.to_path_buf() });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/veth.ko:
kernel/net/netfilter/nfnetlink.ko:
kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
";
    const ALIAS: &str = "\
alias rtnl-link-bridge bridge
alias rtnl-link-veth veth
alias net-pf-16-proto-12 nfnetlink
alias nfnetlink-subsys-10 nf_tables
alias fs-binfmt_script binfmt_script
";

    fn resolved(request: &str) -> Result<Vec<String>, ModprobeError> {
        let deps = ModuleDeps::parse(DEP).unwrap();
        let builtin = builtin_names("kernel/fs/binfmt_script.ko\n");
        resolve(request, &deps, &builtin, &Aliases::parse(ALIAS).unwrap())
    }

    #[test]
    fn aliases_resolve_with_dependencies_first() {
        assert_eq!(resolved("rtnl-link-bridge").unwrap(), ["kernel/net/llc/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko"]);
        assert_eq!(
            resolved("nfnetlink-subsys-10").unwrap(),
            ["kernel/lib/libcrc32c.ko", "kernel/net/netfilter/nfnetlink.ko", "kernel/net/netfilter/nf_tables.ko"]
        );
        assert_eq!(resolved("net_pf_16_proto_12").unwrap(), ["kernel/net/netfilter/nfnetlink.ko"]);
        assert_eq!(resolved("veth").unwrap(), ["kernel/drivers/net/veth.ko"], "a module's own name");
    }

    #[test]
    fn builtins_are_met_and_unknowns_are_not() {
        assert!(resolved("binfmt_script").unwrap().is_empty());
        assert!(resolved("fs-binfmt_script").unwrap().is_empty());
        assert!(matches!(resolved("rtnl-link-nope"), Err(ModprobeError::NotFound(_))));
    }

    #[test]
    fn arguments_are_the_kernels() {
        let args = |list: &[&str]| parse_args(list.iter().map(OsString::from));
        assert_eq!(args(&["-q", "--", "rtnl-link-bridge"]).unwrap(), (true, "rtnl-link-bridge".to_string()));
        assert_eq!(args(&["tun"]).unwrap(), (false, "tun".to_string()));
        for bad in [&["-q", "--"][..], &["-r", "tun"], &["a", "b"], &["--", "../x"], &["--", "-x"]] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("modules.alias");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_METADATA_BYTES + 1).unwrap();
        assert!(matches!(read_bounded(&big), Err(ModprobeError::TooLarge { .. })));
        std::fs::write(&big, "alias a b\n").unwrap();
        assert_eq!(read_bounded(&big).unwrap(), "alias a b\n");
    }
}
