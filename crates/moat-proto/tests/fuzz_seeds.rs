//! The guest channel fuzz target's seeds that describe a valid session stay valid, so the
//! fuzzer starts from inputs that reach deep into the session checks.

use moat_proto::frame::{decode, split_frames};
use moat_proto::{ExecRequest, FrameDecoder, GuestMessage, HostSession, Request, SessionEvent};

/// The session the fuzz target sets up: request 1 is a ping, request 2 starts exec'd process 1.
fn session() -> HostSession {
    let mut session = HostSession::new();
    session.request(Request::Ping).expect("a ping");
    let exec = ExecRequest { process_json: "{}".into(), user: None, tty: false, stdin: false };
    session.request(Request::Exec { container: "c".into(), process: 1, exec: Box::new(exec) }).expect("an exec");
    session
}

/// Every message of a seed, through the session; the seed's first byte only tells the target
/// where to cut the input.
fn replay(seed: &str) -> Vec<SessionEvent> {
    let path = format!("{}/../../fuzz/corpus-seed/guest_channel/{seed}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let frames = split_frames(&mut FrameDecoder::new(), &bytes[1..]).expect("whole frames");
    let mut session = session();
    frames.iter().map(|f| session.accept(decode::<GuestMessage>(f).expect("a guest message")).expect("accepted in order")).collect()
}

#[test]
fn hello_pong_is_a_valid_session() {
    let events = replay("hello_pong");
    assert!(matches!(events[..], [SessionEvent::Ready { .. }, SessionEvent::Answered { id: 1, .. }]), "{events:?}");
}

#[test]
fn hello_exec_output_is_a_valid_session() {
    let events = replay("hello_exec_output");
    assert!(
        matches!(
            events[..],
            [SessionEvent::Ready { .. }, SessionEvent::Answered { id: 2, .. }, SessionEvent::Output { process: 1, .. }, SessionEvent::Output { process: 1, .. }, SessionEvent::Exited { process: 1, .. }]
        ),
        "{events:?}"
    );
}
