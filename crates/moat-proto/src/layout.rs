//! Facts about a zone that the host and init must agree on: the serials of the disks the host
//! attaches (init finds disks by serial, never by order) and where the tools disk appears.

/// The ext4 scratch disk that holds the containers' writable layers.
pub const SCRATCH_SERIAL: &str = "moat-scratch";
/// The zone kernel's module tree (EROFS), mounted at `/lib/modules/<release>`.
pub const MODULES_SERIAL: &str = "moat-modules";
/// runc with its shared libraries, and moat-check when built (EROFS), mounted at [`TOOLS_DIR`].
/// They stay off the initramfs, which every zone boot must load and copy.
pub const TOOLS_SERIAL: &str = "moat-tools";

/// In the initramfs: the modules init loads before it opens the channel, one path per line,
/// dependencies first.
pub const BOOT_MODULES_FILE: &str = "/etc/moat/modules";
/// In the initramfs: the modules init loads only when a workload starts (the disks and the
/// overlay), so a zone answers sooner and a bare zone never loads them.
pub const WORKLOAD_MODULES_FILE: &str = "/etc/moat/modules.workload";
/// In the initramfs: the modules init loads from the modules disk for a privileged container,
/// before its devices are listed, so their device nodes (loop) are among them.
pub const PRIVILEGED_MODULES_FILE: &str = "/etc/moat/modules.privileged";

/// In the initramfs: a link to init, which acts as modprobe when called by this name. Init
/// names it in `/proc/sys/kernel/modprobe` once the zone holds a privileged container, so the
/// zone's kernel loads the modules it asks for from the zone's modules disk.
pub const MODPROBE_PATH: &str = "/usr/lib/moat/modprobe";

/// Where init mounts the tools disk. runc and its libraries keep their host paths below it,
/// and the initramfs links those paths here.
pub const TOOLS_DIR: &str = "/usr/lib/moat/tools";
/// The isolation checker on the tools disk, as the zone sees it.
pub const CHECK_PATH: &str = "/usr/lib/moat/tools/moat-check";
/// The checker's name at the root of the tools disk.
pub const CHECK_FILE: &str = "moat-check";

/// The virtio-fs tag of the zone's share: the one directory the host can put files into after
/// boot (container images, volumes), since a microvm has no hotplug.
pub const SHARE_TAG: &str = "moat-share";
/// Where init mounts the share (`nosuid,nodev`). The host names what it exposes relative to it.
pub const SHARE_DIR: &str = "/run/moat/share";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_is_on_the_tools_disk() {
        assert_eq!(CHECK_PATH, format!("{TOOLS_DIR}/{CHECK_FILE}"));
    }
}
