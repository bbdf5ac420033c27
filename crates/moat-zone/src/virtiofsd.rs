//! The zone's file server: QEMU's C virtiofsd, one per zone, serving the share (see
//! [`crate::share`]) over a vhost-user socket in the zone directory. It talks to the guest,
//! so it runs confined: its own mount, pid and network namespaces with the share as `/`
//! (`sandbox=namespace`), its built-in seccomp filter (always on in this virtiofsd), and only
//! the capabilities a file server needs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::helper::{Helper, HelperCommand, HelperError};

pub const VIRTIOFSD_BINARY: &str = "/usr/lib/qemu/virtiofsd";

/// Most files virtiofsd may hold open. It keeps a descriptor for every inode the guest
/// knows, so this bounds the host descriptors and kernel memory a guest can pin by walking a
/// large shared tree (virtiofsd's own default is up to a million).
pub const MAX_OPEN_FILES: u32 = 65536;

#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    #[error("the share path {0} holds a comma or a backslash, which virtiofsd's options cannot carry; use another --root")]
    BadPath(PathBuf),
    #[error(transparent)]
    Helper(#[from] HelperError),
}

/// virtiofsd's command line for one zone.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    /// The directory served (the share's mount).
    pub source: PathBuf,
}

/// One `-o` option of virtiofsd.
enum Opt {
    Source(PathBuf),
    /// Namespaces and pivot_root into the share; the strongest sandbox this virtiofsd has.
    SandboxNamespace,
    /// Metadata cached for 1 s, file data kept while the host file's mtime is unchanged:
    /// images are immutable and volumes see host changes within a second. `always` would
    /// hide host changes to volumes; `none` sends every read to the host.
    CacheAuto,
    /// No extended attributes: nothing in a zone needs them through the share, and they are
    /// how file capabilities and security labels would reach host files.
    NoXattr,
    /// Give exposed mounts their own device numbers in the guest, so inode numbers of
    /// different host filesystems cannot collide (tools that walk trees rely on them).
    AnnounceSubmounts,
    /// Drop, from virtiofsd's default set, the capabilities to make device nodes and to set
    /// file capabilities: a guest has no use for either on host files.
    DropCapabilities,
    /// Guest activity must not fill the host's disk with log lines.
    LogWarnings,
}

impl Opt {
    fn render(&self) -> OsString {
        match self {
            Opt::Source(path) => {
                let mut value = OsString::from("source=");
                value.push(path);
                value
            }
            Opt::SandboxNamespace => "sandbox=namespace".into(),
            Opt::CacheAuto => "cache=auto".into(),
            Opt::NoXattr => "no_xattr".into(),
            Opt::AnnounceSubmounts => "announce_submounts".into(),
            Opt::DropCapabilities => "modcaps=-mknod:-setfcap".into(),
            Opt::LogWarnings => "log_level=warn".into(),
        }
    }
}

impl Config {
    pub fn args(&self) -> Result<Vec<OsString>, VirtiofsdError> {
        // virtiofsd splits -o values on commas; refuse rather than guess its escaping.
        let text = self.source.to_string_lossy();
        if text.contains([',', '\\']) {
            return Err(VirtiofsdError::BadPath(self.source.clone()));
        }
        let mut socket = OsString::from("--socket-path=");
        socket.push(&self.socket);
        let mut args = vec![socket, format!("--rlimit-nofile={MAX_OPEN_FILES}").into()];
        let opts = [
            Opt::Source(self.source.clone()),
            Opt::SandboxNamespace,
            Opt::CacheAuto,
            Opt::NoXattr,
            Opt::AnnounceSubmounts,
            Opt::DropCapabilities,
            Opt::LogWarnings,
        ];
        for opt in opts {
            args.push("-o".into());
            args.push(opt.render());
        }
        Ok(args)
    }
}

/// Start virtiofsd for one zone; see [`Helper`].
pub async fn start(config: &Config, log: &Path) -> Result<Helper, VirtiofsdError> {
    let command = HelperCommand { name: "file server (virtiofsd)", binary: VIRTIOFSD_BINARY, package: "qemu-system-x86", args: config.args()?, socket: Some(&config.socket), inherit: None, log };
    Ok(Helper::start(command).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_sandboxed_and_bounded() {
        let config = Config { socket: "/z/vfs.sock".into(), source: "/z/share".into() };
        let args: Vec<String> = config.args().unwrap().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(args[..2], ["--socket-path=/z/vfs.sock", "--rlimit-nofile=65536"]);
        let opts: Vec<&str> = args.windows(2).filter(|w| w[0] == "-o").map(|w| w[1].as_str()).collect();
        assert_eq!(opts, ["source=/z/share", "sandbox=namespace", "cache=auto", "no_xattr", "announce_submounts", "modcaps=-mknod:-setfcap", "log_level=warn"]);
    }

    #[test]
    fn paths_virtiofsd_would_split_are_refused() {
        for bad in ["/z,x/share", "/z\\x/share"] {
            let config = Config { socket: "/z/vfs.sock".into(), source: bad.into() };
            assert!(matches!(config.args(), Err(VirtiofsdError::BadPath(_))), "{bad}");
        }
    }
}
