//! Framing: a 4-byte big-endian payload length, then the payload (one JSON message).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payload either side accepts, in bytes.
///
/// Threat: a compromised guest controls the length header. Checking it against this bound
/// *before* buffering means a guest can make the host hold at most one frame of this size.
pub const MAX_FRAME_LEN: usize = 1 << 20;

const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message of {len} bytes does not fit in a frame")]
    EncodeTooLarge { len: usize },
}

/// Serialize `msg` into one frame (header and payload).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::EncodeTooLarge { len: payload.len() });
    }
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::EncodeTooLarge { len: payload.len() })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parse one frame's payload into a message.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Incremental frame splitter, independent of any I/O: feed it bytes as they arrive and take
/// whole frames out. Its buffer never grows beyond one header plus [`MAX_FRAME_LEN`].
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many more bytes the decoder may accept before a frame must be taken out.
    pub fn room(&self) -> usize {
        match self.declared_len() {
            Some(len) if len <= MAX_FRAME_LEN => HEADER_LEN + len - self.buf.len(),
            Some(_) => 0,
            None => HEADER_LEN - self.buf.len(),
        }
    }

    /// Accept up to [`room`](Self::room) bytes of `data`; returns how many were taken.
    /// Callers loop: feed, then drain with [`next_frame`](Self::next_frame).
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        while taken < data.len() {
            let room = self.room();
            if room == 0 {
                break;
            }
            let n = room.min(data.len() - taken);
            self.buf.extend_from_slice(&data[taken..taken + n]);
            taken += n;
            if self.declared_len().is_some_and(|len| len > MAX_FRAME_LEN) {
                break;
            }
        }
        taken
    }

    /// Take out the next whole frame's payload, if one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.declared_len() else { return Ok(None) };
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.buf.split_off(HEADER_LEN);
        self.buf.clear();
        Ok(Some(payload))
    }

    /// True when a partial frame is buffered (used to tell a clean EOF from a truncated one).
    pub fn is_mid_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    fn declared_len(&self) -> Option<usize> {
        let header: [u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(u32::from_be_bytes(header) as usize)
    }
}

/// Feed all of `data` through `decoder`, collecting complete payloads. Stops at the first error.
pub fn split_frames(decoder: &mut FrameDecoder, mut data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut frames = Vec::new();
    loop {
        let taken = decoder.feed(data);
        data = &data[taken..];
        match decoder.next_frame()? {
            Some(frame) => frames.push(frame),
            None if data.is_empty() => return Ok(frames),
            None if taken == 0 => return Ok(frames),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_one_piece() {
        let bytes = encode(&"hello").unwrap();
        let frames = split_frames(&mut FrameDecoder::new(), &bytes).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(decode::<String>(&frames[0]).unwrap(), "hello");
    }

    #[test]
    fn byte_at_a_time_and_back_to_back() {
        let mut bytes = encode(&1u32).unwrap();
        bytes.extend(encode(&2u32).unwrap());
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in bytes {
            assert_eq!(d.feed(&[b]), 1);
            if let Some(f) = d.next_frame().unwrap() {
                got.push(decode::<u32>(&f).unwrap());
            }
        }
        assert_eq!(got, vec![1, 2]);
        assert!(!d.is_mid_frame());
    }

    #[test]
    fn oversized_header_is_rejected_before_buffering() {
        let mut d = FrameDecoder::new();
        let taken = d.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(taken, 4, "nothing past the bad header is buffered");
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 0xffff_ffff }));
        assert_eq!(d.room(), 0);
    }

    #[test]
    fn largest_allowed_frame_passes_and_one_more_byte_fails() {
        let mut d = FrameDecoder::new();
        let len = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
        d.feed(&len.to_be_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: MAX_FRAME_LEN + 1 }));

        let mut d = FrameDecoder::new();
        let len = u32::try_from(MAX_FRAME_LEN).unwrap();
        d.feed(&len.to_be_bytes());
        assert_eq!(d.room(), MAX_FRAME_LEN);
    }

    #[test]
    fn empty_frame_is_an_error() {
        let mut d = FrameDecoder::new();
        d.feed(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn garbage_payload_is_malformed() {
        let mut d = FrameDecoder::new();
        let frames = split_frames(&mut d, &[0, 0, 0, 3, b'{', b'{', b'x']).unwrap();
        assert!(matches!(decode::<u32>(&frames[0]), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn truncated_frame_is_visible() {
        let bytes = encode(&"truncated").unwrap();
        let mut d = FrameDecoder::new();
        assert!(split_frames(&mut d, &bytes[..bytes.len() - 1]).unwrap().is_empty());
        assert!(d.is_mid_frame());
    }
}
