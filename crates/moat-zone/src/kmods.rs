//! Kernel module dependency resolution from a `modules.dep` file (as written by `depmod`).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmodError {
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("modules.dep line {line} is malformed")]
    Malformed { line: usize },
}

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
            let (path, rest) = line.split_once(':').ok_or(KmodError::Malformed { line: index + 1 })?;
            by_name.insert(module_name(path), path.to_string());
            deps.insert(path.to_string(), rest.split_whitespace().map(String::from).collect());
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
            self.visit(path, &mut seen, &mut order);
        }
        Ok(order)
    }

    fn visit(&self, path: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(path.to_string()) {
            return;
        }
        // depmod lists the full transitive closure, deepest last; visiting each first still
        // puts every dependency ahead of its dependents.
        for dep in self.deps.get(path).into_iter().flatten().rev() {
            self.visit(dep, seen, order);
        }
        order.push(path.to_string());
    }
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
        assert!(matches!(ModuleDeps::parse("no colon here"), Err(KmodError::Malformed { line: 1 })));
    }
}
