//! Property tests: every message survives encode -> arbitrary split -> decode, and arbitrary bytes
//! never panic the decoder or grow its buffer past one frame.

use moat_proto::frame::{decode, split_frames};
use moat_proto::{encode, DebugRequest, ExecRequest, FrameDecoder, GuestMessage, HostMessage, Request, Response, MAX_FRAME_LEN};
use proptest::prelude::*;

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping),
        Just(Request::Shutdown),
        Just(Request::Debug(DebugRequest::KernelPanic)),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Request::Debug(DebugRequest::WriteRaw { bytes })),
        (any::<u32>(), ".*", proptest::option::of(".*"), any::<bool>(), any::<bool>()).prop_map(|(process, process_json, user, tty, stdin)| Request::Exec {
            container: "c".into(),
            process,
            exec: Box::new(ExecRequest { process_json, user, tty, stdin })
        }),
        ("[a-z0-9]{1,12}", any::<u32>(), ".*", ".*", any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(container, process, spec_json, image, tty, stdin, start)| {
            Request::CreateContainer(Box::new(moat_proto::CreateContainer { container, process, spec_json, image, tty, stdin, name_files: None, start }))
        }),
        ("[a-z0-9]{1,12}", any::<bool>()).prop_map(|(container, force)| Request::RemoveContainer { container, force }),
    ]
}

fn host_stream_message() -> impl Strategy<Value = HostMessage> {
    prop_oneof![
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(process, data)| HostMessage::Stdin { process, data }),
        (any::<u32>(), any::<i32>()).prop_map(|(process, signal)| HostMessage::Signal { process, signal }),
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(process, rows, cols)| HostMessage::Resize { process, rows, cols }),
    ]
}

fn guest_message() -> impl Strategy<Value = GuestMessage> {
    prop_oneof![
        (any::<u32>(), ".*", ".*").prop_map(|(version, kernel_release, init_version)| GuestMessage::Hello {
            version,
            kernel_release,
            init_version
        }),
        (any::<u64>(), prop_oneof![Just(Response::Pong), Just(Response::Done), ".*".prop_map(|message| Response::Failed { kind: moat_proto::FailureKind::Internal, message })])
            .prop_map(|(id, response)| GuestMessage::Response { id, response }),
        ".*".prop_map(|message| GuestMessage::Fatal { message }),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(process, data)| GuestMessage::Output { process, stream: moat_proto::Stream::Stderr, data }),
        (any::<u32>(), any::<i32>()).prop_map(|(process, code)| GuestMessage::Exited { process, status: moat_proto::ExitStatus::Code { code } }),
    ]
}

proptest! {
    #[test]
    fn host_messages_round_trip(reqs in proptest::collection::vec((any::<u64>(), request()), 1..8), cut in any::<prop::sample::Index>()) {
        let msgs: Vec<HostMessage> = reqs.into_iter().map(|(id, request)| HostMessage::Request { id, request }).collect();
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
        let at = cut.index(bytes.len());
        let mut d = FrameDecoder::new();
        let mut frames = split_frames(&mut d, &bytes[..at]).unwrap();
        frames.extend(split_frames(&mut d, &bytes[at..]).unwrap());
        let back: Vec<HostMessage> = frames.iter().map(|f| decode(f).unwrap()).collect();
        prop_assert_eq!(back, msgs);
    }

    #[test]
    fn host_stream_messages_round_trip(msg in host_stream_message()) {
        let bytes = encode(&msg).unwrap();
        let frames = split_frames(&mut FrameDecoder::new(), &bytes).unwrap();
        prop_assert_eq!(decode::<HostMessage>(&frames[0]).unwrap(), msg);
    }

    #[test]
    fn guest_messages_round_trip(msg in guest_message()) {
        let bytes = encode(&msg).unwrap();
        let frames = split_frames(&mut FrameDecoder::new(), &bytes).unwrap();
        prop_assert_eq!(decode::<GuestMessage>(&frames[0]).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut d = FrameDecoder::new();
        if let Ok(frames) = split_frames(&mut d, &data) {
            for f in frames {
                prop_assert!(f.len() <= MAX_FRAME_LEN);
                let _ = decode::<GuestMessage>(&f);
            }
        }
        prop_assert!(d.room() <= MAX_FRAME_LEN + 4);
    }
}
