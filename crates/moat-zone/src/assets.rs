//! Guest assets: the kernel, its modules, moat-init, and the initramfs built from them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::initramfs::{self, Entry};
use crate::kmods::{KmodError, ModuleDeps};

/// Where `scripts/provision-kernel.sh` puts the kernel, unless `MOAT_ASSETS` says otherwise.
pub const DEFAULT_ASSETS_DIR: &str = "/var/lib/moat/assets";

/// Modules the zone needs before init can reach the host and its disks.
pub const BOOT_MODULES: &[&str] = &["virtio_mmio", "virtio_console", "virtio_blk", "erofs", "overlay"];

const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("no guest kernel in {dir}: run scripts/provision-kernel.sh (or scripts/setup.sh)")]
    NoKernel { dir: PathBuf },
    #[error("moat-init not found (looked in {searched}); build it with scripts/build-guest.sh")]
    NoInit { searched: String },
    #[error("{path} is not a static executable; build it with scripts/build-guest.sh")]
    InitNotStatic { path: PathBuf },
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
    pub kernel: PathBuf,
    pub kernel_release: String,
    pub modules_dir: PathBuf,
    pub init: PathBuf,
}

impl Assets {
    /// The assets directory: `MOAT_ASSETS`, else [`DEFAULT_ASSETS_DIR`].
    pub fn default_dir() -> PathBuf {
        std::env::var_os("MOAT_ASSETS").map_or_else(|| PathBuf::from(DEFAULT_ASSETS_DIR), PathBuf::from)
    }

    pub fn locate(dir: &Path) -> Result<Self, AssetError> {
        let kernel_release = kernel_release(dir)?;
        let kernel_dir = dir.join("kernel/current");
        let modules_dir = kernel_dir.join("lib/modules").join(&kernel_release);
        Ok(Self { dir: dir.to_path_buf(), kernel: kernel_dir.join("vmlinuz"), kernel_release, modules_dir, init: find_init(dir)? })
    }

    /// The initramfs for these assets, built on first use and cached by content.
    pub fn initramfs(&self) -> Result<PathBuf, AssetError> {
        let deps = ModuleDeps::parse(&read_text(&self.modules_dir.join("modules.dep"))?)?;
        let modules = deps.load_order(BOOT_MODULES)?;
        let init = read_bytes(&self.init)?;

        let mut key = Sha256::new();
        key.update(&init);
        key.update(self.kernel_release.as_bytes());
        modules.iter().for_each(|m| key.update(m.as_bytes()));
        let cached = self.dir.join("initramfs").join(format!("{}.cpio", &hex::encode(key.finalize())[..16]));
        if cached.is_file() {
            return Ok(cached);
        }

        let entries = initramfs_entries(init, &self.modules_dir, &self.kernel_release, &modules);
        let parent = cached.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|err| AssetError::Write { path: parent.to_path_buf(), err })?;
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|err| AssetError::Write { path: tmp.clone(), err })?;
        initramfs::write_archive(std::io::BufWriter::new(file), &entries)?;
        std::fs::rename(&tmp, &cached).map_err(|err| AssetError::Write { path: cached.clone(), err })?;
        Ok(cached)
    }
}

/// The release of the provisioned guest kernel in the assets directory `dir`.
pub fn kernel_release(dir: &Path) -> Result<String, AssetError> {
    let kernel_dir = dir.join("kernel/current");
    if !kernel_dir.join("vmlinuz").is_file() || !kernel_dir.join("release").is_file() {
        return Err(AssetError::NoKernel { dir: dir.to_path_buf() });
    }
    Ok(read_text(&kernel_dir.join("release"))?.trim().to_string())
}

fn initramfs_entries(init: Vec<u8>, modules_dir: &Path, release: &str, modules: &[String]) -> Vec<Entry> {
    let module_paths: Vec<String> = modules.iter().map(|m| format!("lib/modules/{release}/{m}")).collect();
    let order_file = module_paths.iter().map(|p| format!("/{p}\n")).collect::<String>();

    let mut entries: Vec<Entry> = ["dev", "proc", "sys", "run", "tmp", "etc", "etc/moat"]
        .into_iter()
        .map(|path| Entry::Dir { path: path.into() })
        .collect();
    entries.extend(initramfs::parent_dirs(module_paths.iter().map(String::as_str)).into_iter().map(|path| Entry::Dir { path }));
    entries.push(Entry::CharDevice { path: "dev/console".into(), major: 5, minor: 1, mode: 0o600 });
    entries.push(Entry::Bytes { path: "init".into(), data: init, mode: 0o755 });
    entries.push(Entry::Bytes { path: "etc/moat/modules".into(), data: order_file.into_bytes(), mode: 0o644 });
    for (module, path) in modules.iter().zip(module_paths) {
        entries.push(Entry::File { path, source: modules_dir.join(module), mode: 0o644 });
    }
    entries
}

/// Candidates for the moat-init binary, in the order they are tried.
fn init_candidates(assets_dir: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("MOAT_INIT").map(PathBuf::from).into_iter().collect();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(exe_dir.join("moat-init"));
        // A cargo build: target/<profile>/moat sits beside target/<triple>/<profile>/moat-init.
        if let (Some(target), Some(profile)) = (exe_dir.parent(), exe_dir.file_name()) {
            for profile in [profile, "release".as_ref()] {
                candidates.push(target.join(TARGET_TRIPLE).join(profile).join("moat-init"));
            }
        }
    }
    candidates.push(assets_dir.join("bin/moat-init"));
    candidates
}

/// The first candidate that is a static executable. A dynamic one (say, from a plain
/// `cargo build`) is skipped, and named in the error if nothing better is found.
fn find_init(assets_dir: &Path) -> Result<PathBuf, AssetError> {
    let candidates = init_candidates(assets_dir);
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.is_file()).collect();
    for path in &existing {
        if is_static_elf(&read_bytes(path)?) {
            return Ok(path.to_path_buf());
        }
    }
    match existing.first() {
        Some(dynamic) => Err(AssetError::InitNotStatic { path: dynamic.to_path_buf() }),
        None => Err(AssetError::NoInit { searched: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") }),
    }
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
    fn dynamic_executables_are_not_static() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me), "test binaries are dynamically linked");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&me[..64]), "truncated headers are not static executables");
    }
}
