//! A container's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, as the host wrote them:
//! files next to the container's writable layer, bound over the image's own, writable even on a
//! read-only root, as Docker does. They are taken through the container's layer mount, which is
//! idmapped for a user-namespaced container, so its root owns them. A mount the user asked for
//! at one of these paths wins.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use moat_proto::NameFiles;
use oci_spec::runtime::{Mount, MountBuilder, Spec};

use crate::disks::RootfsDirs;

#[derive(Debug, thiserror::Error)]
pub enum NameFilesError {
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("the bind of {0}: {1}")]
    Mount(&'static str, oci_spec::OciSpecError),
    #[error("the container has no /etc/hosts of the host's (it was created without one, or a mount replaced it)")]
    NoHostsFile,
}

/// The file [`bind`] wrote for `container`'s `/etc/hosts`, if it did.
fn hosts_file(container: &str) -> PathBuf {
    RootfsDirs::of(container).scratch.join("etc").join("hosts")
}

/// Give `container`'s `/etc/hosts` new content. Written in place, into the same inode, so the
/// container's bind of it sees the change.
pub fn rewrite_hosts(container: &str, hosts: &str) -> Result<(), NameFilesError> {
    let path = hosts_file(container);
    // Never create it: without the file, /etc/hosts is the image's or the user's mount.
    let file = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => NameFilesError::NoHostsFile,
        _ => NameFilesError::Write { path: path.clone(), err },
    })?;
    std::io::Write::write_all(&mut &file, hosts.as_bytes()).map_err(|err| NameFilesError::Write { path, err })
}

/// Write `files` for `container` and add their binds to `spec`.
pub fn bind(spec: &mut Spec, container: &str, files: &NameFiles) -> Result<(), NameFilesError> {
    let dirs = RootfsDirs::of(container);
    let written = dirs.scratch.join("etc");
    std::fs::create_dir_all(&written).map_err(|err| NameFilesError::Write { path: written.clone(), err })?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let entries = [("hosts", "/etc/hosts", &files.hosts), ("resolv.conf", "/etc/resolv.conf", &files.resolv_conf), ("hostname", "/etc/hostname", &files.hostname)];
    for (name, destination, content) in entries {
        if mounts.iter().any(|m| m.destination().as_os_str() == destination) {
            continue;
        }
        let path = written.join(name);
        std::fs::write(&path, content)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
            .map_err(|err| NameFilesError::Write { path: path.clone(), err })?;
        mounts.push(file_bind(dirs.layer.join("etc").join(name), destination)?);
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

fn file_bind(source: PathBuf, destination: &'static str) -> Result<Mount, NameFilesError> {
    let options = ["rbind", "nosuid", "nodev"].map(String::from).to_vec();
    MountBuilder::default().destination(destination).typ("bind").source(source).options(options).build().map_err(|err| NameFilesError::Mount(destination, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_writable_files_from_the_containers_layer() {
        let bind = file_bind(RootfsDirs::of("c1").layer.join("etc/hosts"), "/etc/hosts").unwrap();
        assert_eq!(bind.source().as_deref(), Some(RootfsDirs::of("c1").layer.join("etc/hosts").as_path()));
        assert_eq!(bind.options().as_deref(), Some(&["rbind".to_string(), "nosuid".into(), "nodev".into()][..]));
    }
}
