//! The QEMU command line, built from typed values. Nothing here concatenates user text into an
//! option string without going through [`QemuArg`].

use std::ffi::OsString;
use std::path::PathBuf;

use moat_proto::layout::SHARE_TAG;

use crate::accel::Accel;
use crate::helper::INHERITED_FD;
use crate::network::Mac;

pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// One virtio-blk disk.
#[derive(Debug, Clone)]
pub struct Disk {
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// The guest finds its disks by this serial, never by probe order.
    pub serial: String,
}

/// Host-side unix sockets that QEMU connects to as a client.
#[derive(Debug, Clone)]
pub struct Sockets {
    pub console: PathBuf,
    pub control: PathBuf,
    pub qmp: PathBuf,
    /// virtiofsd's vhost-user socket, serving the zone's share under [`SHARE_TAG`].
    pub share: PathBuf,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kernel_cmdline: String,
    pub sockets: Sockets,
    pub disks: Vec<Disk>,
    /// The zone's virtio-net device, on what QEMU inherits as [`INHERITED_FD`]; none for a
    /// zone without a network.
    pub network: Option<VmNetwork>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmNetwork {
    pub backend: NetBackend,
    /// The device's Ethernet address; QEMU's default when none.
    pub mac: Option<Mac>,
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

enum QemuArg {
    Flag(&'static str),
    Opt(&'static str, String),
    Path(&'static str, PathBuf),
    Chardev { id: &'static str, path: PathBuf },
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
        }
    }
}

/// QEMU splits option values on commas; a comma in a path is written twice.
fn escape(path: &std::path::Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

impl VmConfig {
    pub fn args(&self) -> Vec<OsString> {
        let mut list = vec![
            QemuArg::Flag("-nodefaults"),
            QemuArg::Flag("-no-user-config"),
            QemuArg::Flag("-no-reboot"),
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
            QemuArg::Chardev { id: "console", path: self.sockets.console.clone() },
            QemuArg::Opt("-serial", "chardev:console".into()),
            QemuArg::Chardev { id: "qmp", path: self.sockets.qmp.clone() },
            QemuArg::Opt("-mon", "chardev=qmp,mode=control".into()),
            QemuArg::Device(Device::VirtioSerial),
            QemuArg::Chardev { id: "ctl", path: self.sockets.control.clone() },
            QemuArg::Device(Device::SerialPort { chardev: "ctl", name: CONTROL_PORT_NAME }),
            QemuArg::Chardev { id: "share", path: self.sockets.share.clone() },
            QemuArg::Device(Device::VhostUserFs { chardev: "share", tag: SHARE_TAG }),
        ];
        if let Some(network) = self.network {
            list.push(match network.backend {
                NetBackend::Stream => QemuArg::StreamNetdev { id: "net", fd: INHERITED_FD },
                NetBackend::Tap => QemuArg::TapNetdev { id: "net", fd: INHERITED_FD },
            });
            list.push(QemuArg::Device(Device::VirtioNet { netdev: "net", mac: network.mac }));
        }
        for disk in &self.disks {
            let ro = if disk.read_only { "on" } else { "off" };
            list.push(QemuArg::Opt(
                "-drive",
                format!("id={},file={},format=raw,if=none,readonly={ro},cache=none,aio=threads", disk.id, escape(&disk.path)),
            ));
            list.push(QemuArg::Device(Device::VirtioBlk { drive: disk.id.clone(), serial: disk.serial.clone() }));
        }
        list.into_iter().flat_map(render).collect()
    }
}

fn render(arg: QemuArg) -> Vec<OsString> {
    match arg {
        QemuArg::Flag(flag) => vec![flag.into()],
        QemuArg::Opt(name, value) => vec![name.into(), value.into()],
        QemuArg::Path(name, path) => vec![name.into(), path.into()],
        QemuArg::Chardev { id, path } => vec!["-chardev".into(), format!("socket,id={id},path={}", escape(&path)).into()],
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
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 256,
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/init.cpio".into(),
            kernel_cmdline: "console=ttyS0".into(),
            sockets: Sockets {
                console: "/z/console.sock".into(),
                control: "/z/a,b/ctl.sock".into(),
                qmp: "/z/qmp.sock".into(),
                share: "/z/vfs.sock".into(),
            },
            disks: vec![Disk { id: "rootfs".into(), path: "/i/x.erofs".into(), read_only: true, serial: "moat-rootfs".into() }],
            network: Some(VmNetwork { backend: NetBackend::Stream, mac: None }),
        }
    }

    #[test]
    fn command_line_is_complete() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg,thread=multi"));
        assert!(joined.contains("-smp 2 -m 256M"));
        assert!(joined.contains("-chardev socket,id=ctl,path=/z/a,,b/ctl.sock"), "commas are escaped: {joined}");
        assert!(joined.contains("virtserialport,chardev=ctl,name=moat.ctl"));
        assert!(joined.contains("readonly=on"));
        assert!(joined.contains("virtio-blk-device,drive=rootfs,serial=moat-rootfs"));
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[append + 1], "console=ttyS0", "the kernel command line is one argument");
    }

    #[test]
    fn every_zone_has_the_share_on_shared_memory() {
        let args: Vec<String> = config().args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let value_of = |flag: &str, prefix: &str| args.windows(2).find(|w| w[0] == flag && w[1].starts_with(prefix)).map(|w| w[1].clone());
        assert_eq!(value_of("-M", "microvm").unwrap(), "microvm,acpi=on,x-option-roms=off,memory-backend=mem");
        assert_eq!(value_of("-object", "memory-backend-memfd").unwrap(), "memory-backend-memfd,id=mem,size=256M,share=on", "as large as -m");
        assert_eq!(value_of("-global", "virtio-mmio").unwrap(), "virtio-mmio.force-legacy=false");
        assert_eq!(value_of("-chardev", "socket,id=share").unwrap(), "socket,id=share,path=/z/vfs.sock");
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
    fn a_zone_on_a_tap_has_its_own_mac() {
        let mut tap = config();
        tap.network = Some(VmNetwork { backend: NetBackend::Tap, mac: Some(Mac([0x02, 0x42, 10, 89, 1, 2])) });
        let joined = tap.args().into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ");
        assert!(joined.contains("-netdev tap,id=net,fd=3 -device virtio-net-device,netdev=net,mac=02:42:0a:59:01:02"), "{joined}");
    }
}
