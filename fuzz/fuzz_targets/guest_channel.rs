//! Everything the host does with bytes from a guest's control channel: split frames, decode
//! messages, and run them through the session's order checks. Must never panic, and the
//! decoder must never hold more than one frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_proto::frame::{decode, split_frames};
use moat_proto::{ExecRequest, FrameDecoder, GuestMessage, HostSession, Request, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    let mut session = HostSession::new();
    // Request 1 is a ping; request 2 starts exec'd process 1; request 3 asks for statistics;
    // request 4 for a process list.
    let _ = session.request(Request::Ping);
    let exec = ExecRequest { process_json: "{}".into(), user: None, tty: false, stdin: false };
    let _ = session.request(Request::Exec { container: "c".into(), process: 1, exec: Box::new(exec) });
    let _ = session.request(Request::Stats { container: "c".into() });
    let _ = session.request(Request::Processes { container: "c".into() });
    let mut decoder = FrameDecoder::new();
    // The first byte says where to cut the rest, which is fed in two pieces so that partial
    // frames are exercised too.
    let Some((&cut, stream)) = data.split_first() else { return };
    let cut = usize::from(cut) % (stream.len() + 1);
    for piece in [&stream[..cut], &stream[cut..]] {
        let Ok(frames) = split_frames(&mut decoder, piece) else { return };
        for frame in frames {
            assert!(frame.len() <= MAX_FRAME_LEN);
            let Ok(msg) = decode::<GuestMessage>(&frame) else { return };
            if session.accept(msg).is_err() {
                return;
            }
        }
    }
    assert!(decoder.room() <= MAX_FRAME_LEN + 4);
});
