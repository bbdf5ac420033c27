//! Guest assets: the kernel, its modules, moat-init, the zone's OCI runtime (runc or crun,
//! with its shared libraries), moat-check when built; the initramfs assembled from the first three, and the files of the
//! tools disk (see [`crate::guest_disks`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use moat_proto::layout::{BOOT_MODULES_FILE, CHECK_FILE, MODPROBE_PATH, PRIVILEGED_MODULES_FILE, TOOLS_DIR, WORKLOAD_MODULES_FILE};
use moat_proto::oci_runtime::UnknownOciRuntime;
use moat_proto::OciRuntime;

use crate::guest_disks::ToolFile;
use crate::initramfs::{self, Entry};
use moat_kmod::{builtin_names, KmodError, ModuleDeps};

/// Where `scripts/provision-kernel.sh` puts the kernel, unless `MOAT_ASSETS` says otherwise.
pub const DEFAULT_ASSETS_DIR: &str = "/var/lib/moat/assets";

/// Modules init loads before it opens the channel to the host: the channel, the share
/// (virtio-fs), which init mounts during boot, and pvpanic, which tells QEMU of a panic.
pub const BOOT_MODULES: &[&str] = &["virtio_mmio", "virtio_console", "virtiofs", "pvpanic_mmio"];
/// Modules init loads when a workload starts: its disks, its overlay root, loop devices for
/// container images (EROFS files) that arrive through the share, the network device, and the
/// balloon, which reports the workload's freed memory to the host.
pub const WORKLOAD_MODULES: &[&str] = &["virtio_blk", "erofs", "overlay", "loop", "virtio_net", "virtio_balloon"];
/// Modules init loads, from the modules disk, for a privileged container before its devices
/// are listed: a Docker host has loop devices.
pub const PRIVILEGED_MODULES: &[&str] = &["loop"];

const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// The cargo profile scripts/build-guest.sh builds the guest binaries with (small binaries).
const GUEST_PROFILE: &str = "guest";

/// Names the OCI runtime new zones run their containers with, `runc` or `crun`, to compare
/// them; without it, [`OciRuntime::default`].
pub const OCI_RUNTIME_ENV: &str = "MOAT_OCI_RUNTIME";

/// A module load list for init: `modules` in load order, written to `file`. The initramfs
/// carries the modules themselves when `carried`; otherwise init loads them from the modules disk.
struct ModuleList {
    file: &'static str,
    modules: Vec<String>,
    carried: bool,
}

/// A static binary built from this workspace for the guest.
struct GuestBinary {
    name: &'static str,
    /// Environment variable naming the file explicitly.
    env: &'static str,
}

const INIT: GuestBinary = GuestBinary { name: "moat-init", env: "MOAT_INIT" };
const CHECK: GuestBinary = GuestBinary { name: "moat-check", env: "MOAT_CHECK" };

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("no {kernel} guest kernel in {dir}: run {} (or scripts/setup.sh)", kernel.script())]
    NoKernel { kernel: GuestKernel, dir: PathBuf },
    #[error("{KERNEL_ENV}: unknown kernel {0:?} (moat or debian)")]
    UnknownKernel(String),
    #[error("moat-init not found (looked in {searched}); build it with scripts/build-guest.sh")]
    NoInit { searched: String },
    #[error("{path} is not a static executable; build it with scripts/build-guest.sh")]
    InitNotStatic { path: PathBuf },
    #[error("{runtime} not found at {}: install Debian's {runtime} package (scripts/setup.sh)", runtime.path())]
    NoRuntime { runtime: OciRuntime },
    #[error("{OCI_RUNTIME_ENV}: {0}")]
    UnknownRuntime(#[from] UnknownOciRuntime),
    #[error("running ldd on {path}: {err}")]
    Ldd { path: PathBuf, err: String },
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("kernel modules: {0}")]
    Modules(#[from] KmodError),
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
}

/// Everything a zone boots from.
#[derive(Debug, Clone)]
pub struct Assets {
    pub dir: PathBuf,
    pub kernel_choice: GuestKernel,
    pub kernel: PathBuf,
    pub kernel_release: String,
    pub modules_dir: PathBuf,
    pub init: PathBuf,
    /// The isolation checker, when a static build of it was found.
    pub check: Option<PathBuf>,
}

impl Assets {
    /// The assets directory: `MOAT_ASSETS`, else [`DEFAULT_ASSETS_DIR`].
    pub fn default_dir() -> PathBuf {
        std::env::var_os("MOAT_ASSETS").map_or_else(|| PathBuf::from(DEFAULT_ASSETS_DIR), PathBuf::from)
    }

    /// The assets for a new zone: the kernel [`GuestKernel::chosen`] names.
    pub fn locate(dir: &Path) -> Result<Self, AssetError> {
        Self::locate_with(dir, GuestKernel::chosen(dir)?)
    }

    /// The assets for a zone booting `kernel_choice`.
    pub fn locate_with(dir: &Path, kernel_choice: GuestKernel) -> Result<Self, AssetError> {
        let kernel_release = kernel_choice.release(dir)?;
        let kernel_dir = kernel_choice.dir(dir);
        let modules_dir = kernel_dir.join("lib/modules").join(&kernel_release);
        let init = match find_static(&INIT, dir)? {
            Found::Static(path) => path,
            Found::OnlyDynamic(path) => return Err(AssetError::InitNotStatic { path }),
            Found::Missing(searched) => return Err(AssetError::NoInit { searched: display_paths(&searched) }),
        };
        let check = match find_static(&CHECK, dir)? {
            Found::Static(path) => Some(path),
            Found::OnlyDynamic(path) => {
                tracing::warn!(path = %path.display(), "moat-check is not static; zones boot without it (build it with scripts/build-guest.sh)");
                None
            }
            Found::Missing(_) => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            kernel_choice,
            kernel: kernel_dir.join(kernel_choice.image()),
            kernel_release,
            modules_dir,
            init,
            check,
        })
    }

    /// The initramfs for these assets, built on first use and cached by the digest of
    /// everything it holds.
    /// `tools` are the files of the tools disk ([`Self::tools`]); the initramfs links to them.
    pub fn initramfs(&self, tools: &[ToolFile]) -> Result<PathBuf, AssetError> {
        let deps = ModuleDeps::parse(&read_text(&self.modules_dir.join("modules.dep"))?)?;
        let builtin = self.builtin_modules()?;
        let loadable = |names: &[&str]| deps.load_order(&names.iter().filter(|n| !builtin.contains(**n)).collect::<Vec<_>>());
        let boot = loadable(BOOT_MODULES)?;
        let workload: Vec<String> = loadable(WORKLOAD_MODULES)?.into_iter().filter(|m| !boot.contains(m)).collect();
        let privileged = loadable(PRIVILEGED_MODULES)?.into_iter().filter(|m| !boot.contains(m) && !workload.contains(m)).collect();
        let lists = [
            ModuleList { file: BOOT_MODULES_FILE, modules: boot, carried: true },
            ModuleList { file: WORKLOAD_MODULES_FILE, modules: workload, carried: true },
            ModuleList { file: PRIVILEGED_MODULES_FILE, modules: privileged, carried: false },
        ];
        let entries = self.initramfs_entries(&lists, tools)?;
        let digest = initramfs::digest(&entries)?;
        let cached = self.dir.join("initramfs").join(format!("{}.cpio", &digest[..16]));
        if cached.is_file() {
            crate::asset_cache::touch(&cached);
            return Ok(cached);
        }

        let parent = cached.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|err| AssetError::Write { path: parent.to_path_buf(), err })?;
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|err| AssetError::Write { path: tmp.clone(), err })?;
        initramfs::write_archive(std::io::BufWriter::new(file), &entries)?;
        std::fs::rename(&tmp, &cached).map_err(|err| AssetError::Write { path: cached.clone(), err })?;
        crate::asset_cache::prune_beside(&cached, std::time::SystemTime::now());
        Ok(cached)
    }

    /// The names of the modules built into the kernel (none for a kernel without `modules.builtin`).
    fn builtin_modules(&self) -> Result<BTreeSet<String>, AssetError> {
        let file = self.modules_dir.join("modules.builtin");
        Ok(if file.is_file() { builtin_names(&read_text(&file)?) } else { BTreeSet::new() })
    }

    /// The OCI runtime and its libraries at their host paths, and moat-check when built.
    pub fn tools(&self, runtime: OciRuntime) -> Result<Vec<ToolFile>, AssetError> {
        let binary = runtime_binary(runtime)?;
        let mut files = vec![ToolFile { path: relative(binary), source: binary.to_path_buf() }];
        files.extend(shared_libraries(binary)?.into_iter().map(|library| ToolFile { path: relative(&library), source: library }));
        if let Some(check) = &self.check {
            files.push(ToolFile { path: CHECK_FILE.into(), source: check.clone() });
        }
        Ok(files)
    }

    /// The archive: init (and its modprobe link), each module load list with the modules it
    /// carries, and links to the tools disk.
    fn initramfs_entries(&self, module_lists: &[ModuleList], tools: &[ToolFile]) -> Result<Vec<Entry>, AssetError> {
        let release = &self.kernel_release;
        let mut files = Vec::new();
        for list in module_lists {
            let paths: Vec<String> = list.modules.iter().map(|m| format!("lib/modules/{release}/{m}")).collect();
            let order = paths.iter().map(|p| format!("/{p}\n")).collect::<String>();
            files.push(Entry::Bytes { path: relative(Path::new(list.file)), data: order.into_bytes(), mode: 0o644 });
            if list.carried {
                for (module, path) in list.modules.iter().zip(paths) {
                    files.push(Entry::File { path, source: self.modules_dir.join(module), mode: 0o644 });
                }
            }
        }
        // The runtime and its libraries at their usual paths, pointing into the tools disk's mount.
        for tool in tools.iter().filter(|tool| tool.path != CHECK_FILE) {
            files.push(Entry::Symlink { target: format!("{TOOLS_DIR}/{}", tool.path), path: tool.path.clone() });
        }
        files.push(Entry::Bytes { path: "init".into(), data: read_bytes(&self.init)?, mode: 0o755 });
        // Init is also the zone kernel's modprobe, by this name.
        files.push(Entry::Symlink { path: relative(Path::new(MODPROBE_PATH)), target: "/init".into() });

        // A trailing slash makes parent_dirs list the directory itself.
        let mount_points = ["dev", "proc", "sys", "run", "tmp", TOOLS_DIR.trim_start_matches('/')].map(|dir| format!("{dir}/"));
        let dirs = initramfs::parent_dirs(files.iter().map(Entry::path).chain(mount_points.iter().map(String::as_str)));
        let mut entries: Vec<Entry> = dirs.into_iter().map(|path| Entry::Dir { path }).collect();
        entries.push(Entry::CharDevice { path: "dev/console".into(), major: 5, minor: 1, mode: 0o600 });
        entries.extend(files);
        Ok(entries)
    }
}

/// The OCI runtime new zones get: [`OCI_RUNTIME_ENV`]'s, else the default; it must be installed.
pub fn chosen_oci_runtime() -> Result<OciRuntime, AssetError> {
    let runtime = match std::env::var(OCI_RUNTIME_ENV) {
        Ok(name) => name.parse()?,
        Err(_) => OciRuntime::default(),
    };
    runtime_binary(runtime)?;
    Ok(runtime)
}

fn runtime_binary(runtime: OciRuntime) -> Result<&'static Path, AssetError> {
    let binary = Path::new(runtime.path());
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(AssetError::NoRuntime { runtime })
    }
}

/// An absolute host path as an archive path (no leading slash).
fn relative(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

/// The host's dynamic loader (x86-64). Asked directly, it lists what a binary loads, as `ldd`
/// does, in one process rather than ldd's shell script and its three (2 ms against 8 to 15 ms,
/// paid by every zone start).
const DYNAMIC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The shared objects (the dynamic loader included) that `binary` loads, as the host's loader
/// resolves them (`ldd`'s output). It runs the host's own loader on a host binary we chose;
/// nothing here comes from a guest or an image.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, AssetError> {
    let ldd_err = |err: String| AssetError::Ldd { path: binary.to_path_buf(), err };
    let output = std::process::Command::new(DYNAMIC_LOADER).arg("--list").arg(binary).output().map_err(|e| ldd_err(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(ldd_err(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    parse_ldd(&text).map_err(ldd_err)
}

/// The paths in `ldd` output: `name => /path (addr)` and `/path (addr)` lines; the vDSO has no
/// file. A library ldd could not find is an error naming it.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} not found", name.trim()));
                }
                target
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}
/// The release of the guest kernel new zones boot, from the assets directory `dir`.
pub fn kernel_release(dir: &Path) -> Result<String, AssetError> {
    GuestKernel::chosen(dir)?.release(dir)
}

/// Names the guest kernel new zones boot, `moat` or `debian`; without it, [`GuestKernel::chosen`].
pub const KERNEL_ENV: &str = "MOAT_KERNEL";

/// A guest kernel zones can boot. A zone records the one it booted; records from before the
/// choice existed booted Debian's, the default here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GuestKernel {
    /// moat's own, from kernel/moat.config (scripts/build-kernel.sh): the drivers every zone
    /// uses built in, booted as a PVH `vmlinux`.
    Moat,
    /// Debian's cloud kernel (scripts/provision-kernel.sh), drivers as modules: the fallback.
    #[default]
    Debian,
}

impl GuestKernel {
    /// [`KERNEL_ENV`]'s kernel; without it, moat's own when it is built, else Debian's.
    pub fn chosen(dir: &Path) -> Result<Self, AssetError> {
        Self::choose(std::env::var(KERNEL_ENV).ok().as_deref(), dir)
    }

    fn choose(named: Option<&str>, dir: &Path) -> Result<Self, AssetError> {
        match named {
            Some(name) => name.parse(),
            None if GuestKernel::Moat.dir(dir).join("release").is_file() => Ok(GuestKernel::Moat),
            None => Ok(GuestKernel::Debian),
        }
    }

    /// Its directory in the assets: a link the script that installs it keeps current.
    fn dir(self, assets: &Path) -> PathBuf {
        assets.join("kernel").join(self.to_string())
    }

    /// The file QEMU boots: an uncompressed PVH ELF for ours, Debian's compressed bzImage.
    fn image(self) -> &'static str {
        match self {
            GuestKernel::Moat => "vmlinux",
            GuestKernel::Debian => "vmlinuz",
        }
    }

    fn script(self) -> &'static str {
        match self {
            GuestKernel::Moat => "scripts/build-kernel.sh",
            GuestKernel::Debian => "scripts/provision-kernel.sh",
        }
    }

    /// Its release, from the assets directory `assets`.
    pub fn release(self, assets: &Path) -> Result<String, AssetError> {
        let dir = self.dir(assets);
        if !dir.join(self.image()).is_file() || !dir.join("release").is_file() {
            return Err(AssetError::NoKernel { kernel: self, dir: assets.to_path_buf() });
        }
        Ok(read_text(&dir.join("release"))?.trim().to_string())
    }
}

impl std::fmt::Display for GuestKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestKernel::Moat => "moat",
            GuestKernel::Debian => "debian",
        })
    }
}

moat_proto::serde_as_text!(GuestKernel);

impl std::str::FromStr for GuestKernel {
    type Err = AssetError;
    fn from_str(name: &str) -> Result<Self, AssetError> {
        match name {
            "moat" => Ok(GuestKernel::Moat),
            "debian" => Ok(GuestKernel::Debian),
            other => Err(AssetError::UnknownKernel(other.chars().take(32).collect())),
        }
    }
}

/// Candidates for a guest binary, in the order they are tried: its environment variable, next
/// to the running executable, the cargo target directory of that executable, the assets.
fn candidates(binary: &GuestBinary, assets_dir: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os(binary.env).map(PathBuf::from).into_iter().collect();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(exe_dir.join(binary.name));
        // A cargo build: target/<profile>/moat sits beside target/<triple>/<profile>/<binary>.
        if let (Some(target), Some(profile)) = (exe_dir.parent(), exe_dir.file_name()) {
            for profile in [GUEST_PROFILE.as_ref(), profile] {
                candidates.push(target.join(TARGET_TRIPLE).join(profile).join(binary.name));
            }
        }
    }
    candidates.push(assets_dir.join("bin").join(binary.name));
    candidates
}

enum Found {
    Static(PathBuf),
    /// No static candidate; this dynamic one (say, from a plain `cargo build`) came first.
    OnlyDynamic(PathBuf),
    Missing(Vec<PathBuf>),
}

/// The first candidate that is a static executable.
fn find_static(binary: &GuestBinary, assets_dir: &Path) -> Result<Found, AssetError> {
    let candidates = candidates(binary, assets_dir);
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.is_file()).collect();
    for path in &existing {
        if is_static_elf(&read_head(path)?) {
            return Ok(Found::Static(path.to_path_buf()));
        }
    }
    Ok(match existing.first() {
        Some(dynamic) => Found::OnlyDynamic(dynamic.to_path_buf()),
        None => Found::Missing(candidates),
    })
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

const PT_INTERP: u32 = 3;

/// True for a 64-bit little-endian ELF file without a program interpreter (statically linked).
pub fn is_static_elf(elf: &[u8]) -> bool {
    let field = |at: usize, len: usize| elf.get(at..at + len);
    let u16_at = |at| field(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    if field(0, 4) != Some(b"\x7fELF") || field(4, 2) != Some(&[2, 1]) {
        return false;
    }
    let Some(phoff) = field(0x20, 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else { return false };
    let (Some(phentsize), Some(phnum)) = (u16_at(0x36), u16_at(0x38)) else { return false };
    (0..phnum).all(|i| {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX).saturating_add(i * phentsize);
        field(at, 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

/// Enough of an executable for [`is_static_elf`]: its ELF header and program headers come first.
/// Every command that boots a zone looks at init and the checker, so not the whole files.
fn read_head(path: &Path) -> Result<Vec<u8>, AssetError> {
    use std::io::Read;
    const ELF_HEADERS_BYTES: u64 = 64 << 10;
    let file = std::fs::File::open(path).map_err(|err| AssetError::Read { path: path.to_path_buf(), err })?;
    let mut head = Vec::new();
    file.take(ELF_HEADERS_BYTES).read_to_end(&mut head).map_err(|err| AssetError::Read { path: path.to_path_buf(), err })?;
    Ok(head)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, AssetError> {
    std::fs::read(path).map_err(|err| AssetError::Read { path: path.to_path_buf(), err })
}

fn read_text(path: &Path) -> Result<String, AssetError> {
    std::fs::read_to_string(path).map_err(|err| AssetError::Read { path: path.to_path_buf(), err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moat_kernel_is_the_default_once_built_and_either_can_be_named() {
        let assets = tempfile::tempdir().unwrap();
        assert_eq!(GuestKernel::choose(None, assets.path()).unwrap(), GuestKernel::Debian, "not built yet");
        let ours = assets.path().join("kernel/moat");
        std::fs::create_dir_all(&ours).unwrap();
        std::fs::write(ours.join("release"), "6.1.192-moat\n").unwrap();
        assert_eq!(GuestKernel::choose(None, assets.path()).unwrap(), GuestKernel::Moat);
        assert_eq!(GuestKernel::choose(Some("debian"), assets.path()).unwrap(), GuestKernel::Debian);
        assert!(matches!(GuestKernel::choose(Some("vanilla"), assets.path()), Err(AssetError::UnknownKernel(name)) if name == "vanilla"));
        assert!(
            matches!(GuestKernel::Moat.release(assets.path()), Err(AssetError::NoKernel { kernel: GuestKernel::Moat, .. })),
            "a release without its vmlinux is no kernel"
        );
        std::fs::write(ours.join("vmlinux"), "").unwrap();
        assert_eq!(GuestKernel::Moat.release(assets.path()).unwrap(), "6.1.192-moat");
    }

    #[test]
    fn dynamic_executables_are_not_static() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me), "test binaries are dynamically linked");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&me[..64]), "truncated headers are not static executables");
    }

    #[test]
    fn ldd_output_gives_files_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        let paths = parse_ldd(text).unwrap();
        assert_eq!(
            paths,
            ["/lib/x86_64-linux-gnu/libseccomp.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"].map(PathBuf::from)
        );
        assert_eq!(parse_ldd("\tlibnope.so.1 => not found\n").unwrap_err(), "libnope.so.1 not found");
        assert!(parse_ldd("").unwrap().is_empty());
    }

    #[test]
    fn runtime_libraries_resolve_on_this_host() {
        for runtime in [OciRuntime::Runc, OciRuntime::Crun] {
            let libraries = shared_libraries(Path::new(runtime.path())).expect("runc and crun are installed (apt-packages.txt)");
            assert!(libraries.iter().any(|l| l.ends_with("libc.so.6")), "{libraries:?}");
            assert!(libraries.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "the loader is included: {libraries:?}");
            assert!(libraries.iter().all(|l| l.is_file()));
        }
        let crun = shared_libraries(Path::new(OciRuntime::Crun.path())).unwrap();
        assert!(crun.iter().any(|l| l.to_string_lossy().contains("libseccomp")), "{crun:?}");
    }
}
