//! The guest end of the control channel: a virtio-serial port found by name.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_proto::frame::decode;
use moat_proto::{encode, FrameDecoder, GuestMessage, HostMessage};

use crate::Error;

pub const PORT_NAME: &str = "moat.ctl";
const PORTS_DIR: &str = "/sys/class/virtio-ports";
/// devtmpfs creates the node asynchronously after the driver binds.
const PORT_WAIT: Duration = Duration::from_secs(10);

pub struct Channel {
    path: PathBuf,
    file: File,
    decoder: FrameDecoder,
}

impl Channel {
    pub fn open() -> Result<Self, Error> {
        let deadline = Instant::now() + PORT_WAIT;
        loop {
            if let Some(path) = find_port()? {
                if let Ok(file) = File::options().read(true).write(true).open(&path) {
                    // Init keeps the port open; with its node gone, no path in the zone's
                    // /dev, which privileged containers see live, leads to it.
                    std::fs::remove_file(&path).map_err(|e| Error::Io("unlinking the channel's node", e))?;
                    return Ok(Self { path, file, decoder: FrameDecoder::new() });
                }
            }
            if Instant::now() > deadline {
                return Err(Error::NoChannel(PORT_NAME));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn send(&mut self, msg: &GuestMessage) -> Result<(), Error> {
        let frame = encode(msg)?;
        self.write_raw(&frame)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write_all(bytes).map_err(|e| Error::Io("writing the channel", e))
    }

    /// Read what the host has sent (one read; call when the port is readable) and return the
    /// whole messages it completed.
    pub fn receive(&mut self) -> Result<Vec<HostMessage>, Error> {
        let mut buf = [0u8; 16 * 1024];
        let n = loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Err(Error::HostGone),
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io("reading the channel", e)),
            }
        };
        let frames = moat_proto::frame::split_frames(&mut self.decoder, &buf[..n])?;
        frames.iter().map(|f| decode(f).map_err(Error::from)).collect()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn find_port() -> Result<Option<PathBuf>, Error> {
    let entries = match std::fs::read_dir(PORTS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io(PORTS_DIR, e)),
    };
    for entry in entries.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Ok(Some(Path::new("/dev").join(entry.file_name())));
        }
    }
    Ok(None)
}
