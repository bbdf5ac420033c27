//! The host side of a zone: guest assets, the QEMU command line, QMP, the per-zone supervisor,
//! and the zone records on disk.

pub mod accel;
pub mod api;
pub mod asset_cache;
pub mod assets;
pub mod cgroup;
pub mod clients;
pub mod console;
pub mod events;
pub mod guest_disks;
pub mod helper;
pub mod host_net;
pub mod initramfs;
pub mod jail;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod ops;
pub mod passt;
pub mod qemu;
pub mod qmp;
pub mod share;
pub mod staging;
pub mod start_slots;
pub mod state;
pub mod supervisor;
pub mod tap;
pub mod virtiofsd;
