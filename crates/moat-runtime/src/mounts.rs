//! A container's volumes, as the zone gets them: host directories (binds and named volumes)
//! go through the zone's share, read-only on the host's side when asked; tmpfs and the image's
//! declared volumes are the zone's.

use std::path::Path;

use moat_proto::layout::SHARE_DIR;
use moat_zone::api::Exposure;
use oci_spec::runtime::{Mount, MountBuilder};

use crate::error::{Result, RuntimeError};
use crate::volumes::{MountSource, VolumeMount, VolumeStore};

/// Where a container's host directories sit in the share: one directory per container.
fn share_name(container: &str, index: usize) -> String {
    format!("volumes/{container}/{index}")
}

/// What `mounts` need: the host directories to expose to the zone, and the spec's mounts.
/// Named volumes are created when missing (as Docker does) and marked as used by `container`;
/// a new one is handed to `owner`, the zone ids of a user-namespaced container's root, so that
/// root can write to it.
pub fn plan(store: &VolumeStore, container: &str, mounts: &[VolumeMount], owner: Option<(u32, u32)>) -> Result<(Vec<Exposure>, Vec<Mount>)> {
    let mut exposures = Vec::new();
    let mut spec_mounts = Vec::new();
    for (index, mount) in mounts.iter().enumerate() {
        let target = mount.target.as_str();
        let spec_mount = match &mount.source {
            MountSource::Bind(path) => expose(&mut exposures, path, share_name(container, index), mount.read_only, target)?,
            MountSource::Volume(name) => {
                let (volume, new) = store.get_or_create(name)?;
                store.acquire(name, container)?;
                if let (true, Some((uid, gid))) = (new, owner) {
                    std::os::unix::fs::chown(&volume.mountpoint, Some(uid), Some(gid)).map_err(|err| RuntimeError::Io { what: format!("handing volume {name} to the container's root"), err })?;
                }
                expose(&mut exposures, &volume.mountpoint, share_name(container, index), mount.read_only, target)?
            }
            MountSource::Tmpfs { size_bytes, mode } => {
                let mut options = vec!["noexec".to_string(), "nosuid".to_string(), "nodev".to_string()];
                options.extend(size_bytes.map(|s| format!("size={s}")));
                options.extend(mode.map(|m| format!("mode={m:o}")));
                if mount.read_only {
                    options.push("ro".into());
                }
                build(target, "tmpfs", Path::new("tmpfs"), options)?
            }
            MountSource::Image => moat_spec::mounts::image_volume(target)?,
        };
        spec_mounts.push(spec_mount);
    }
    Ok((exposures, spec_mounts))
}

/// Release what [`plan`] took for `container`: its marks on named volumes.
pub fn release(store: &VolumeStore, container: &str, mounts: &[VolumeMount]) {
    for mount in mounts {
        if let MountSource::Volume(name) = &mount.source {
            let _ = store.release(name, container);
        }
    }
}

fn expose(exposures: &mut Vec<Exposure>, source: &Path, name: String, read_only: bool, target: &str) -> Result<Mount> {
    let in_zone = Path::new(SHARE_DIR).join(&name);
    exposures.push(Exposure { source: source.to_path_buf(), name, read_only });
    // The share is mounted nosuid,nodev in the zone; a bind must keep those flags.
    let mut options = vec!["rbind".to_string(), "nosuid".to_string(), "nodev".to_string()];
    options.push(if read_only { "ro" } else { "rw" }.to_string());
    build(target, "bind", &in_zone, options)
}

fn build(target: &str, typ: &str, source: &Path, options: Vec<String>) -> Result<Mount> {
    MountBuilder::default()
        .destination(target)
        .typ(typ)
        .source(source)
        .options(options)
        .build()
        .map_err(|e| RuntimeError::Spec(moat_spec::SpecError::Oci(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::ContainerPath;

    fn mount(source: MountSource, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount { source, target: ContainerPath::parse(target).unwrap(), read_only }
    }

    #[test]
    fn host_directories_go_through_the_share_and_tmpfs_stays_in_the_zone() {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        let host = tempfile::tempdir().unwrap();
        let mounts = [
            mount(MountSource::Bind(host.path().to_path_buf()), "/data", true),
            mount(MountSource::Volume("cache".into()), "/cache", false),
            mount(MountSource::Tmpfs { size_bytes: Some(1 << 20), mode: Some(0o1777) }, "/scratch", false),
            mount(MountSource::Image, "/var/lib/docker", false),
        ];
        let (exposures, spec) = plan(&store, "c1", &mounts, None).unwrap();
        assert_eq!(exposures.len(), 2);
        assert_eq!(exposures[0], Exposure { source: host.path().to_path_buf(), name: "volumes/c1/0".into(), read_only: true });
        assert_eq!(exposures[1].source, store.inspect("cache").unwrap().mountpoint, "a named volume is created on first use");
        assert!(!exposures[1].read_only);
        assert_eq!(spec[0].source().as_deref(), Some(Path::new("/run/moat/share/volumes/c1/0")));
        assert!(spec[0].options().as_ref().unwrap().contains(&"ro".to_string()));
        assert_eq!(spec[2].typ().as_deref(), Some("tmpfs"));
        assert_eq!(spec[2].options().as_ref().unwrap(), &["noexec", "nosuid", "nodev", "size=1048576", "mode=1777"]);
        assert_eq!(spec[3].typ().as_deref(), Some(moat_spec::mounts::IMAGE_VOLUME_TYPE), "the zone makes an image's volume");
        assert_eq!(store.users("cache", |_| true).unwrap(), vec!["c1".to_string()]);
        release(&store, "c1", &mounts);
        assert!(store.users("cache", |_| true).unwrap().is_empty());
    }
}
