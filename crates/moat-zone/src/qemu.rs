//! The QEMU command line, built from typed values. Nothing here concatenates user text into an
//! option string without going through [`QemuArg`].

use std::ffi::OsString;
use std::path::PathBuf;

use crate::accel::Accel;

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
}

/// The virtio-serial port name the guest looks for.
pub const CONTROL_PORT_NAME: &str = "moat.ctl";

enum QemuArg {
    Flag(&'static str),
    Opt(&'static str, String),
    Path(&'static str, PathBuf),
    Chardev { id: &'static str, path: PathBuf },
    Device(Device),
}

enum Device {
    VirtioSerial,
    SerialPort { chardev: &'static str, name: &'static str },
    VirtioBlk { drive: String, serial: String },
}

impl Device {
    fn render(&self) -> String {
        match self {
            Device::VirtioSerial => "virtio-serial-device,max_ports=2".into(),
            Device::SerialPort { chardev, name } => format!("virtserialport,chardev={chardev},name={name}"),
            Device::VirtioBlk { drive, serial } => format!("virtio-blk-device,drive={drive},serial={serial}"),
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
            QemuArg::Opt("-M", "microvm,acpi=on,x-option-roms=off".into()),
            QemuArg::Opt("-accel", self.accel.qemu_option(self.cpus)),
            QemuArg::Opt("-cpu", self.accel.cpu_model().into()),
            QemuArg::Opt("-smp", self.cpus.to_string()),
            QemuArg::Opt("-m", format!("{}M", self.memory_mib)),
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
        ];
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
            sockets: Sockets { console: "/z/console.sock".into(), control: "/z/a,b/ctl.sock".into(), qmp: "/z/qmp.sock".into() },
            disks: vec![Disk { id: "rootfs".into(), path: "/i/x.erofs".into(), read_only: true, serial: "moat-rootfs".into() }],
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
}
