//! The control channel's two directions as tasks: guest frames decoded (bounded by the frame
//! decoder) into messages for the main loop, and encoded frames written to the guest.

use moat_proto::frame::{decode, split_frames};
use moat_proto::{FrameDecoder, FrameError, GuestMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Decode guest frames until EOF or the first bad byte; the main loop decides what follows.
pub async fn read_guest(mut read: OwnedReadHalf, out: mpsc::Sender<Result<GuestMessage, FrameError>>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let frames = match split_frames(&mut decoder, &buf[..n]) {
            Ok(frames) => frames,
            Err(err) => {
                let _ = out.send(Err(err)).await;
                return;
            }
        };
        for frame in frames {
            let msg = decode::<GuestMessage>(&frame);
            let failed = msg.is_err();
            if out.send(msg).await.is_err() || failed {
                return;
            }
        }
    }
}

pub async fn write_guest(mut write: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        if write.write_all(&frame).await.is_err() {
            return;
        }
    }
}
