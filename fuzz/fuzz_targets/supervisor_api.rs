//! The supervisor's API socket: frames from a client, decoded as requests, and the replies a
//! front-end decodes (they relay guest output). Must never panic, and the decoder must never
//! hold more than one frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_proto::frame::{decode, split_frames};
use moat_proto::{FrameDecoder, MAX_FRAME_LEN};
use moat_zone::api::{ApiRequest, ApiResponse};

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    // The first byte says where to cut the rest, which is fed in two pieces so that partial
    // frames are exercised too.
    let Some((&cut, stream)) = data.split_first() else { return };
    let cut = usize::from(cut) % (stream.len() + 1);
    for piece in [&stream[..cut], &stream[cut..]] {
        let Ok(frames) = split_frames(&mut decoder, piece) else { return };
        for frame in frames {
            assert!(frame.len() <= MAX_FRAME_LEN);
            let _ = decode::<ApiRequest>(&frame);
            let _ = decode::<ApiResponse>(&frame);
        }
    }
    assert!(decoder.room() <= MAX_FRAME_LEN + 4);
});
