//! Thin wrappers over the syscalls the checks need. Every probe here observes; none changes
//! kernel state: files are opened and closed without reading or writing, sockets are connected
//! and closed without sending, and the one mapping made is unmapped at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `uname(2)` release and version strings.
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; an all-zero value is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (String::new(), String::new());
    }
    let field = |raw: &[libc::c_char]| {
        let bytes: Vec<u8> = raw.iter().take_while(|&&c| c != 0).map(|&c| c.to_ne_bytes()[0]).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&uts.release), field(&uts.version))
}

/// What CPUID says about a hypervisor: leaf 1 ECX bit 31, then the 0x40000000 vendor string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuHints {
    pub hypervisor_bit: bool,
    pub vendor: Option<String>,
}

#[cfg(target_arch = "x86_64")]
// `__cpuid` became a safe function in newer toolchains; the blocks keep 1.85 (our MSRV) happy.
#[allow(unused_unsafe)]
pub fn cpuid() -> CpuHints {
    use core::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification registers.
    let leaf1 = unsafe { __cpuid(1) };
    let hypervisor_bit = leaf1.ecx & (1 << 31) != 0;
    // Leaf 0x40000000 is only defined when a hypervisor sets the bit; bare metal returns
    // whatever its highest basic leaf holds.
    let vendor = hypervisor_bit.then(|| {
        // SAFETY: as above; the leaf is reserved for hypervisor use and harmless to query.
        let leaf = unsafe { __cpuid(0x4000_0000) };
        let bytes: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx].iter().flat_map(|r| r.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string()
    });
    CpuHints { hypervisor_bit, vendor: vendor.filter(|v| !v.is_empty()) }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn cpuid() -> CpuHints {
    CpuHints::default()
}

/// What an open attempt found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The open succeeded; this is the file type and device number actually reached.
    File { kind: FileKind, rdev: u64 },
    /// The open failed with this errno.
    Refused(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    CharDevice,
    BlockDevice,
    Other,
}

impl Opened {
    /// The open succeeded and did not land on a /dev/null bind (how runtimes mask files).
    pub fn reached(self) -> bool {
        matches!(self, Opened::File { .. }) && !self.is_dev_null()
    }

    pub fn is_dev_null(self) -> bool {
        matches!(self, Opened::File { kind: FileKind::CharDevice, rdev } if dev_major_minor(rdev) == (1, 3))
    }
}

fn kind_of(meta: &std::fs::Metadata) -> FileKind {
    let ft = meta.file_type();
    if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::Other
    }
}

/// Open `path` for writing (`write`) or reading, then close it without transferring a byte.
/// No O_TRUNC, no O_CREAT: opening a sysctl, sysrq-trigger or release_agent for writing has no
/// effect until something is written.
pub fn open_probe(path: &Path, write: bool) -> Opened {
    let mut options = OpenOptions::new();
    options.read(!write).write(write).custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK);
    match options.open(path).and_then(|f| f.metadata()) {
        Ok(meta) => Opened::File { kind: kind_of(&meta), rdev: meta.rdev() },
        Err(e) => Opened::Refused(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Split a `dev_t` into (major, minor) the way glibc's `gnu_dev_major/minor` do.
pub fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Connect to a unix stream socket and close it at once. `Ok` means something listens there.
pub fn connect_unix(path: &Path) -> Result<(), i32> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; an all-zero value is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes and outlives the call.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast::<libc::sockaddr>(), len) };
    // A full backlog (EAGAIN) still proves a listener.
    if rc == 0 || last_errno() == libc::EAGAIN {
        Ok(())
    } else {
        Err(last_errno())
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `NS_GET_USERNS` from linux/nsfs.h: `_IO(0xb7, 0x1)`.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// The inode of the user namespace that owns the namespace at `ns_path`.
pub fn ns_owner_inode(ns_path: &Path) -> Result<u64, i32> {
    let ns = File::open(ns_path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    owner.metadata().map(|m| m.ino()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// syslog(2) actions, from linux/syslog.h.
const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;

/// Read the kernel log through `klogctl(2)` non-destructively: at most `limit` bytes, the
/// most recent ones (the kernel hands back the tail when the buffer is smaller than the log).
pub fn klog_read_all(limit: usize) -> Result<String, i32> {
    // SAFETY: SIZE_BUFFER ignores the buffer arguments.
    let size = unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(last_errno());
    }
    let len = usize::try_from(size).unwrap_or(0).min(limit);
    let mut buf = vec![0u8; len];
    let len_c = libc::c_int::try_from(len).unwrap_or(libc::c_int::MAX);
    // SAFETY: `buf` is writable for `len_c` bytes; READ_ALL writes at most that many.
    let read = unsafe { libc::klogctl(SYSLOG_ACTION_READ_ALL, buf.as_mut_ptr().cast(), len_c) };
    if read < 0 {
        return Err(last_errno());
    }
    buf.truncate(usize::try_from(read).unwrap_or(0));
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Can this process map anonymous memory writable and executable at once?
pub fn can_map_rwx() -> Result<(), i32> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
    // SAFETY: a fresh anonymous private mapping at a kernel-chosen address touches no
    // existing memory.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), page, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if addr == libc::MAP_FAILED {
        return Err(last_errno());
    }
    // SAFETY: `addr` is the mapping of `page` bytes made just above, used by nothing else.
    unsafe { libc::munmap(addr, page) };
    Ok(())
}

/// Human name of an errno, e.g. "EACCES".
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::ENXIO => "ENXIO",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ENOSYS => "ENOSYS",
        libc::EBUSY => "EBUSY",
        libc::ENOTTY => "ENOTTY",
        libc::EIO => "EIO",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// The `Linux version <release>` line of a kernel log, if the log still holds it.
pub fn log_kernel_release(log: &str) -> Option<String> {
    let start = log.find("Linux version ")? + "Linux version ".len();
    log[start..].split_whitespace().next().map(str::to_string)
}

/// Read the first records of `/dev/kmsg` (oldest first), up to `limit` bytes in total.
pub fn kmsg_head(limit: usize) -> Result<String, i32> {
    use std::io::Read;
    const RECORD_BUF: usize = 8192;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/dev/kmsg")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut out = String::new();
    let mut record = vec![0u8; RECORD_BUF];
    while out.len() < limit {
        match file.read(&mut record) {
            Ok(0) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&record[..n])),
            // EPIPE: the record was overwritten while we read; the next read moves on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if out.is_empty() && e.raw_os_error() != Some(libc::EAGAIN) => {
                return Err(e.raw_os_error().unwrap_or(libc::EIO))
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_dev_numbers_like_glibc() {
        // /dev/null is 1:3; sda is 8:0; a large minor uses the high bits.
        assert_eq!(dev_major_minor(0x103), (1, 3));
        assert_eq!(dev_major_minor(0x800), (8, 0));
        assert_eq!(dev_major_minor((259 << 8) | 0x100005), (259, 0x100 | 5));
    }

    #[test]
    fn finds_the_release_in_a_log() {
        let log = "<5>[    0.000000] Linux version 6.1.0-18-cloud-amd64 (debian-kernel@lists.debian.org) (gcc)\n";
        assert_eq!(log_kernel_release(log).as_deref(), Some("6.1.0-18-cloud-amd64"));
        assert_eq!(log_kernel_release("[ 1.0] usb 1-1: new device"), None);
    }

    #[test]
    fn dev_null_counts_as_masked() {
        let null = open_probe(Path::new("/dev/null"), false);
        assert!(null.is_dev_null());
        assert!(!null.reached());
        assert_eq!(open_probe(Path::new("/nonexistent/x"), false), Opened::Refused(libc::ENOENT));
    }

    #[test]
    fn uname_reports_a_release() {
        let (release, _) = uname();
        assert!(release.chars().next().is_some_and(|c| c.is_ascii_digit()), "{release}");
    }
}
