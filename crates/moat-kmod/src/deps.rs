//! Dependency resolution from `modules.dep`, and the names in `modules.builtin`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use crate::KmodError;

/// Deepest chain of dependencies followed. depmod lists each module's whole closure, so real
/// chains are a handful long; the bound keeps a malformed file from exhausting the stack.
pub const MAX_DEP_DEPTH: usize = 64;

/// Parsed `modules.dep`: module name to its path and its direct dependencies' paths.
pub struct ModuleDeps {
    by_name: BTreeMap<String, String>,
    deps: BTreeMap<String, Vec<String>>,
}

/// `kernel/fs/erofs/erofs.ko.xz` -> `erofs`; depmod names use `_` where files may use `-`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleDeps {
    pub fn parse(text: &str) -> Result<Self, KmodError> {
        let mut by_name = BTreeMap::new();
        let mut deps = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let malformed = KmodError::Malformed { file: "modules.dep", line: index + 1 };
            let (path, rest) = line.split_once(':').ok_or(malformed.clone())?;
            let needs: Vec<String> = rest.split_whitespace().map(String::from).collect();
            // Every path is joined under the modules directory: none may leave it.
            if !std::iter::once(path).chain(needs.iter().map(String::as_str)).all(is_plain_relative) {
                return Err(malformed);
            }
            by_name.insert(module_name(path), path.to_string());
            deps.insert(path.to_string(), needs);
        }
        Ok(Self { by_name, deps })
    }

    /// Paths (relative to the modules directory) of `names` and everything they need,
    /// dependencies before dependents, each once.
    pub fn load_order<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<String>, KmodError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let name = name.as_ref().replace('-', "_");
            let path = self.by_name.get(&name).ok_or(KmodError::Unknown(name.clone()))?;
            self.visit(path, 0, &mut seen, &mut order)?;
        }
        Ok(order)
    }

    /// Whether `name` (`-` and `_` alike) is a module in the file.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(&name.replace('-', "_"))
    }

    fn visit(&self, path: &str, depth: usize, seen: &mut BTreeSet<String>, order: &mut Vec<String>) -> Result<(), KmodError> {
        if depth > MAX_DEP_DEPTH {
            return Err(KmodError::TooDeep(module_name(path)));
        }
        if !seen.insert(path.to_string()) {
            return Ok(());
        }
        // depmod lists the full transitive closure, deepest last; visiting each first still
        // puts every dependency ahead of its dependents.
        for dep in self.deps.get(path).into_iter().flatten().rev() {
            self.visit(dep, depth + 1, seen, order)?;
        }
        order.push(path.to_string());
        Ok(())
    }
}

/// The module names in `modules.builtin` (one path per line): built into the kernel, so a
/// request for one is already met.
pub fn builtin_names(text: &str) -> BTreeSet<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(module_name).collect()
}

fn is_plain_relative(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/char/virtio-console.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    #[test]
    fn dependencies_come_first_and_once() {
        let deps = ModuleDeps::parse(DEP).unwrap();
        let order = deps.load_order(&["virtio_blk", "virtio_console", "overlay"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/drivers/char/virtio-console.ko.xz",
                "kernel/fs/overlayfs/overlay.ko",
            ]
        );
    }

    #[test]
    fn unknown_module_is_an_error() {
        let deps = ModuleDeps::parse(DEP).unwrap();
        assert_eq!(deps.load_order(&["nope"]), Err(KmodError::Unknown("nope".into())));
    }

    #[test]
    fn malformed_line() {
        assert!(matches!(ModuleDeps::parse("no colon here"), Err(KmodError::Malformed { line: 1, .. })));
    }

    #[test]
    fn paths_stay_inside_the_modules_directory() {
        for bad in ["/lib/x.ko:", "../x.ko:", "kernel/a.ko: ../../etc/b.ko", "kernel/a.ko: /b.ko"] {
            assert!(matches!(ModuleDeps::parse(bad), Err(KmodError::Malformed { line: 1, .. })), "{bad}");
        }
    }

    #[test]
    fn a_dependency_cycle_ends_and_a_long_chain_is_refused() {
        let deps = ModuleDeps::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        assert_eq!(deps.load_order(&["a"]).unwrap(), ["b.ko", "a.ko"]);
        let chain: String = (0..=MAX_DEP_DEPTH + 1).map(|i| format!("m{i}.ko: m{}.ko\n", i + 1)).collect();
        let deps = ModuleDeps::parse(&chain).unwrap();
        assert!(matches!(deps.load_order(&["m0"]), Err(KmodError::TooDeep(_))));
        assert!(deps.contains("m0") && !deps.contains("nope"));
    }

    #[test]
    fn builtin_names_are_module_names() {
        let names = builtin_names("kernel/fs/binfmt_script.ko\nkernel/arch/x86/events/amd/amd-uncore.ko\n\n");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["amd_uncore", "binfmt_script"]);
    }
}
