//! The QEMU command line, built from typed values. Nothing here concatenates user text into an
//! option string without going through [`QemuArg`].

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

use moat_proto::layout::SHARE_TAG;

use crate::accel::Accel;
use crate::network::Mac;

pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// One virtio-blk disk, on descriptors QEMU inherits: the jailed QEMU cannot open the store's
/// files by path.
#[derive(Debug, Clone)]
pub struct Disk {
    pub id: String,
    /// Opened read-only: QEMU opens every image read-only first.
    pub read_fd: RawFd,
    /// Opened read-write, for a writable disk: QEMU reopens it so once the guest's device
    /// attaches. QEMU picks from a disk's fd set by access mode.
    pub write_fd: Option<RawFd>,
    /// The guest finds its disks by this serial, never by probe order.
    pub serial: String,
}

/// Connected unix sockets QEMU inherits; the supervisor holds their other ends.
#[derive(Debug, Clone, Copy)]
pub struct Sockets {
    pub console: RawFd,
    pub control: RawFd,
    pub qmp: RawFd,
    /// A connection to virtiofsd's vhost-user socket, serving the zone's share under [`SHARE_TAG`].
    pub share: RawFd,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The zone's directory, as QEMU's name: QEMU opens no path of it, so this is what ties a
    /// QEMU process (in `ps`) to its zone.
    pub zone_dir: PathBuf,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    /// The kernel and initramfs as QEMU's jail shows them (see [`crate::jail`]).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kernel_cmdline: String,
    pub sockets: Sockets,
    pub disks: Vec<Disk>,
    /// The zone's virtio-net device; none for a zone without a network.
    pub network: Option<VmNetwork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmNetwork {
    pub backend: NetBackend,
    /// The device's Ethernet address; QEMU's default when none.
    pub mac: Option<Mac>,
    /// The backend's descriptor, which QEMU inherits.
    pub fd: RawFd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetBackend {
    /// A connected stream socket (passt's other end).
    Stream,
    /// A tap device's descriptor (QEMU reads whether it has virtio-net headers from it).
    Tap,
}

/// The virtio-serial port name the guest looks for.
pub const CONTROL_PORT_NAME: &str = "moat.ctl";

/// The id of the guest RAM backend: vhost-user (virtiofsd) maps guest memory, so it must be
/// a shareable memfd rather than QEMU's private anonymous memory.
const MEMORY_BACKEND: &str = "mem";

/// QEMU's seccomp filter, with every optional part denied: no obsolete system calls, no
/// setuid/setgid, no fork or exec, no changes of scheduling or affinity.
const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// What QEMU does when the guest reports a panic (pvpanic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicAction {
    /// Emit GUEST_PANICKED, then exit: a panicked zone ends without waiting on anyone.
    Shutdown,
}

enum QemuArg {
    Flag(&'static str),
    Opt(&'static str, String),
    Path(&'static str, PathBuf),
    /// `-chardev socket` on an inherited, connected socket.
    Chardev { id: &'static str, fd: RawFd },
    /// `-add-fd`: an inherited descriptor in fd set `set`, which options name `/dev/fdset/SET`.
    AddFd { fd: RawFd, set: u32 },
    /// `-drive` on fd set `set`.
    Drive { id: String, set: u32, read_only: bool },
    Sandbox,
    Action { panic: PanicAction },
    Device(Device),
    /// `-object memory-backend-memfd,share=on`: guest RAM that a vhost-user process can map.
    SharedMemory { id: &'static str, size_mib: u32 },
    /// `-global driver.property=value`.
    Global { driver: &'static str, property: &'static str, value: &'static str },
    /// `-netdev stream` on an inherited, connected socket.
    StreamNetdev { id: &'static str, fd: i32 },
    /// `-netdev tap` on an inherited tap descriptor.
    TapNetdev { id: &'static str, fd: i32 },
}

enum Device {
    VirtioSerial,
    SerialPort { chardev: &'static str, name: &'static str },
    VirtioBlk { drive: String, serial: String },
    VhostUserFs { chardev: &'static str, tag: &'static str },
    VirtioNet { netdev: &'static str, mac: Option<Mac> },
    /// Free page reporting hands the host back guest memory the guest's kernel freed, so a
    /// zone's footprint shrinks after a burst; deflate-on-oom lets the guest reclaim a balloon
    /// before its OOM killer runs.
    VirtioBalloon,
    /// The ISA pvpanic device (the one microvm takes): the guest's `pvpanic` driver, bound
    /// through ACPI, reports a panic to QEMU as GUEST_PANICKED.
    Pvpanic,
}

impl Device {
    fn render(&self) -> String {
        match self {
            Device::VirtioSerial => "virtio-serial-device,max_ports=2".into(),
            Device::SerialPort { chardev, name } => format!("virtserialport,chardev={chardev},name={name}"),
            Device::VirtioBlk { drive, serial } => format!("virtio-blk-device,drive={drive},serial={serial}"),
            Device::VhostUserFs { chardev, tag } => format!("vhost-user-fs-device,chardev={chardev},tag={tag}"),
            Device::VirtioNet { netdev, mac: None } => format!("virtio-net-device,netdev={netdev}"),
            Device::VirtioNet { netdev, mac: Some(mac) } => format!("virtio-net-device,netdev={netdev},mac={mac}"),
            Device::VirtioBalloon => "virtio-balloon-device,free-page-reporting=on,deflate-on-oom=on".into(),
            Device::Pvpanic => "pvpanic".into(),
        }
    }
}

impl VmConfig {
    /// Every descriptor the command line names, which QEMU must inherit.
    pub fn inherited_fds(&self) -> Vec<RawFd> {
        let s = self.sockets;
        let mut fds = vec![s.console, s.control, s.qmp, s.share];
        fds.extend(self.network.map(|n| n.fd));
        fds.extend(self.disks.iter().flat_map(|d| [Some(d.read_fd), d.write_fd]).flatten());
        fds
    }

    pub fn args(&self) -> Vec<OsString> {
        let mut list = vec![
            QemuArg::Sandbox,
            QemuArg::Flag("-nodefaults"),
            QemuArg::Flag("-no-user-config"),
            QemuArg::Flag("-no-reboot"),
            QemuArg::Action { panic: PanicAction::Shutdown },
            QemuArg::Opt("-name", format!("guest={}", escape(&self.zone_dir))),
            QemuArg::Opt("-display", "none".into()),
            QemuArg::Opt("-M", format!("microvm,acpi=on,x-option-roms=off,memory-backend={MEMORY_BACKEND}")),
            // libvhost-user (virtiofsd) refuses legacy virtio; this switches every virtio-mmio
            // device of the zone to virtio 1.0.
            QemuArg::Global { driver: "virtio-mmio", property: "force-legacy", value: "false" },
            QemuArg::Opt("-accel", self.accel.qemu_option(self.cpus)),
            QemuArg::Opt("-cpu", self.accel.cpu_model().into()),
            QemuArg::Opt("-smp", self.cpus.to_string()),
            QemuArg::Opt("-m", format!("{}M", self.memory_mib)),
            QemuArg::SharedMemory { id: MEMORY_BACKEND, size_mib: self.memory_mib },
            QemuArg::Path("-kernel", self.kernel.clone()),
            QemuArg::Path("-initrd", self.initrd.clone()),
            QemuArg::Opt("-append", self.kernel_cmdline.clone()),
            QemuArg::Device(Device::Pvpanic),
            QemuArg::Chardev { id: "console", fd: self.sockets.console },
            QemuArg::Opt("-serial", "chardev:console".into()),
            QemuArg::Chardev { id: "qmp", fd: self.sockets.qmp },
            QemuArg::Opt("-mon", "chardev=qmp,mode=control".into()),
            QemuArg::Device(Device::VirtioSerial),
            QemuArg::Chardev { id: "ctl", fd: self.sockets.control },
            QemuArg::Device(Device::SerialPort { chardev: "ctl", name: CONTROL_PORT_NAME }),
            QemuArg::Chardev { id: "share", fd: self.sockets.share },
            QemuArg::Device(Device::VhostUserFs { chardev: "share", tag: SHARE_TAG }),
            QemuArg::Device(Device::VirtioBalloon),
        ];
        if let Some(network) = self.network {
            list.push(match network.backend {
                NetBackend::Stream => QemuArg::StreamNetdev { id: "net", fd: network.fd },
                NetBackend::Tap => QemuArg::TapNetdev { id: "net", fd: network.fd },
            });
            list.push(QemuArg::Device(Device::VirtioNet { netdev: "net", mac: network.mac }));
        }
        for (set, disk) in (1..).zip(&self.disks) {
            list.push(QemuArg::AddFd { fd: disk.read_fd, set });
            if let Some(fd) = disk.write_fd {
                list.push(QemuArg::AddFd { fd, set });
            }
            list.push(QemuArg::Drive { id: disk.id.clone(), set, read_only: disk.write_fd.is_none() });
            list.push(QemuArg::Device(Device::VirtioBlk { drive: disk.id.clone(), serial: disk.serial.clone() }));
        }
        list.into_iter().flat_map(render).collect()
    }
}

/// QEMU splits option values on commas; a comma in a value is written twice.
fn escape(path: &std::path::Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

fn render(arg: QemuArg) -> Vec<OsString> {
    match arg {
        QemuArg::Flag(flag) => vec![flag.into()],
        QemuArg::Opt(name, value) => vec![name.into(), value.into()],
        QemuArg::Path(name, path) => vec![name.into(), path.into()],
        QemuArg::Chardev { id, fd } => vec!["-chardev".into(), format!("socket,id={id},fd={fd}").into()],
        QemuArg::AddFd { fd, set } => vec!["-add-fd".into(), format!("fd={fd},set={set}").into()],
        QemuArg::Drive { id, set, read_only } => {
            let ro = if read_only { "on" } else { "off" };
            // Errors go to the guest (EIO) rather than pausing the VM: QEMU's default stops a
            // zone for good when the host's file system fills under a sparse scratch disk.
            vec!["-drive".into(), format!("id={id},file=/dev/fdset/{set},format=raw,if=none,readonly={ro},cache=none,aio=threads,werror=report,rerror=report").into()]
        }
        QemuArg::Sandbox => vec!["-sandbox".into(), SANDBOX.into()],
        QemuArg::Action { panic } => {
            let action = match panic {
                PanicAction::Shutdown => "shutdown",
            };
            vec!["-action".into(), format!("panic={action}").into()]
        }
        QemuArg::Device(device) => vec!["-device".into(), device.render().into()],
        QemuArg::SharedMemory { id, size_mib } => {
            vec!["-object".into(), format!("memory-backend-memfd,id={id},size={size_mib}M,share=on").into()]
        }
        QemuArg::Global { driver, property, value } => vec!["-global".into(), format!("{driver}.{property}={value}").into()],
        QemuArg::StreamNetdev { id, fd } => vec!["-netdev".into(), format!("stream,id={id},server=off,addr.type=fd,addr.str={fd}").into()],
        QemuArg::TapNetdev { id, fd } => vec!["-netdev".into(), format!("tap,id={id},fd={fd}").into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            zone_dir: "/z/a,b".into(),
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 256,
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/init.cpio".into(),
            kernel_cmdline: "console=ttyS0".into(),
            sockets: Sockets { console: 10, control: 11, qmp: 12, share: 13 },
            disks: vec![
                Disk { id: "scratch".into(), read_fd: 14, write_fd: Some(16), serial: "moat-scratch".into() },
                Disk { id: "rootfs".into(), read_fd: 15, write_fd: None, serial: "moat-rootfs".into() },
            ],
            network: Some(VmNetwork { backend: NetBackend::Stream, mac: None, fd: 3 }),
        }
    }

    #[test]
    fn command_line_is_complete() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg,thread=multi,tb-size=128"));
        assert!(joined.contains("-smp 2 -m 256M"));
        assert!(joined.contains("-chardev socket,id=ctl,fd=11 -device virtserialport,chardev=ctl,name=moat.ctl"), "{joined}");
        assert!(joined.contains("-chardev socket,id=console,fd=10 -serial chardev:console"));
        assert!(joined.contains("-chardev socket,id=qmp,fd=12 -mon chardev=qmp,mode=control"));
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[append + 1], "console=ttyS0", "the kernel command line is one argument");
        assert!(joined.contains("-name guest=/z/a,,b "), "the zone's directory names QEMU, commas doubled: {joined}");
    }

    #[test]
    fn every_zone_has_the_share_on_shared_memory() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let value_of = |flag: &str, prefix: &str| args.windows(2).find(|w| w[0] == flag && w[1].starts_with(prefix)).map(|w| w[1].clone());
        assert_eq!(value_of("-M", "microvm").unwrap(), "microvm,acpi=on,x-option-roms=off,memory-backend=mem");
        assert_eq!(value_of("-object", "memory-backend-memfd").unwrap(), "memory-backend-memfd,id=mem,size=256M,share=on", "as large as -m");
        assert_eq!(value_of("-global", "virtio-mmio").unwrap(), "virtio-mmio.force-legacy=false");
        assert_eq!(value_of("-chardev", "socket,id=share").unwrap(), "socket,id=share,fd=13");
        assert_eq!(value_of("-device", "vhost-user-fs").unwrap(), "vhost-user-fs-device,chardev=share,tag=moat-share");
    }

    #[test]
    fn a_zone_with_a_network_has_one_virtio_net_on_passts_socket() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-netdev stream,id=net,server=off,addr.type=fd,addr.str=3 -device virtio-net-device,netdev=net"), "{joined}");
        let mut none = config();
        none.network = None;
        let joined: Vec<String> = none.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert!(!joined.iter().any(|a| a.contains("netdev")));
    }

    #[test]
    fn disks_are_inherited_descriptors_in_fd_sets() {
        let joined = config().args().into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ");
        assert!(joined.contains("-add-fd fd=14,set=1 -add-fd fd=16,set=1 -drive id=scratch,file=/dev/fdset/1,format=raw,if=none,readonly=off,cache=none,aio=threads,werror=report,rerror=report -device virtio-blk-device,drive=scratch,serial=moat-scratch"), "{joined}");
        assert!(joined.contains("-add-fd fd=15,set=2 -drive id=rootfs,file=/dev/fdset/2,format=raw,if=none,readonly=on,"), "{joined}");
        assert!(!joined.contains(".erofs") && !joined.contains(".sock"), "no store or zone path reaches QEMU: {joined}");
        let mut fds = config().inherited_fds();
        fds.sort_unstable();
        assert_eq!(fds, [3, 10, 11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn qemu_is_sandboxed_and_a_guest_panic_ends_it() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(args[..2], ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"], "the filter comes first");
        let joined = args.join(" ");
        assert!(joined.contains("-no-reboot -action panic=shutdown"), "{joined}");
        assert!(joined.contains("-device pvpanic"), "{joined}");
    }

    #[test]
    fn every_zone_reports_its_free_pages_to_the_host() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let balloons: Vec<&[String]> = args.windows(2).filter(|w| w[0] == "-device" && w[1].starts_with("virtio-balloon")).collect();
        assert_eq!(balloons.len(), 1, "{args:?}");
        assert_eq!(balloons[0][1], "virtio-balloon-device,free-page-reporting=on,deflate-on-oom=on", "on virtio-mmio like the other devices");
    }

    #[test]
    fn a_zone_on_a_tap_has_its_own_mac() {
        let mut tap = config();
        tap.network = Some(VmNetwork { backend: NetBackend::Tap, mac: Some(Mac([0x02, 0x42, 10, 89, 1, 2])), fd: 3 });
        let joined = tap.args().into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ");
        assert!(joined.contains("-netdev tap,id=net,fd=3 -device virtio-net-device,netdev=net,mac=02:42:0a:59:01:02"), "{joined}");
    }
}
