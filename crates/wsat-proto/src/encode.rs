//! Frame encoding: any opcode with any FIN, optional masking, and the ESP firmware's
//! fragmentation of long sends.

use bytes::BufMut;

use crate::header::MAX_HEADER_LEN;
use crate::mask::apply_mask;
use crate::{FrameHeader, OpCode};

/// Appends one frame to `out`. With `mask`, the payload is masked with that key (client
/// frames); without, it is copied as is (server frames). Nothing is validated: reserved
/// opcodes, lone continuations and long control frames go out as asked, on purpose.
/// `out` is a `Vec<u8>` or a `BytesMut`.
pub fn encode_frame<B: BufMut + AsMut<[u8]>>(
    out: &mut B,
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    encode_frame_rsv(out, opcode, fin, 0, mask, payload);
}

/// [`encode_frame`] with RSV bits (the low three bits of `rsv`, RSV1 = `0b100`; RSV1 marks
/// a permessage-deflate message's first frame).
pub fn encode_frame_rsv<B: BufMut + AsMut<[u8]>>(
    out: &mut B,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        rsv: rsv & 0b111,
        ..FrameHeader::new(fin, opcode, mask, payload.len() as u64)
    }
    .encode_to_array(&mut header);
    out.put_slice(&header[..n]);
    let start = out.as_mut().len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out.as_mut()[start..], key, 0);
    }
}

/// One frame of a message split the way the ESP client splits sends (see [`fragments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The caller's opcode on the first frame, continuation on the rest.
    pub opcode: OpCode,
    /// Set only on the last frame, and only if the caller asked for FIN.
    pub fin: bool,
    /// This frame's part of the payload.
    pub payload: &'a [u8],
}

/// Splits a send into frames of at most `frame_size` bytes as the ESP client does
/// (FIRMWARE.md §7.3): the first frame carries `opcode` without FIN, the others are continuations,
/// and the last one has FIN if `fin` is set. An empty payload still gives one frame.
/// A `frame_size` of 0 is treated as 1.
pub fn fragments(opcode: OpCode, payload: &[u8], fin: bool, frame_size: usize) -> impl Iterator<Item = Fragment<'_>> {
    let frame_size = frame_size.max(1);
    let count = payload.len().div_ceil(frame_size).max(1);
    (0..count).map(move |i| {
        let start = i * frame_size;
        let end = (start + frame_size).min(payload.len());
        Fragment {
            opcode: if i == 0 { opcode } else { OpCode::CONTINUATION },
            fin: fin && i + 1 == count,
            payload: &payload[start..end],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_fragmentation_of_4000_bytes_with_buffer_1024() {
        let payload = vec![7u8; 4000];
        let frames: Vec<_> = fragments(OpCode::TEXT, &payload, true, 1024)
            .map(|f| (f.opcode, f.fin, f.payload.len()))
            .collect();
        assert_eq!(
            frames,
            [
                (OpCode::TEXT, false, 1024),
                (OpCode::CONTINUATION, false, 1024),
                (OpCode::CONTINUATION, false, 1024),
                (OpCode::CONTINUATION, true, 928),
            ]
        );
    }

    #[test]
    fn exact_fit_and_empty_payload_are_one_frame() {
        let one: Vec<_> = fragments(OpCode::BINARY, &[1; 1024], true, 1024).collect();
        assert_eq!(one.len(), 1);
        assert!(one[0].fin);
        let empty: Vec<_> = fragments(OpCode::PING, &[], true, 1024).collect();
        assert_eq!(
            empty,
            [Fragment {
                opcode: OpCode::PING,
                fin: true,
                payload: &[]
            }]
        );
        let partial: Vec<_> = fragments(OpCode::TEXT, b"abc", false, 2).collect();
        assert!(partial.iter().all(|f| !f.fin));
    }

    #[test]
    fn masked_frame_round_trips_through_the_mask() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::TEXT, true, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello");
        assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let mut raw = Vec::new();
        encode_frame(&mut raw, OpCode::from_bits(0xB), false, None, b"x");
        assert_eq!(raw, [0x0B, 0x01, b'x']);
        let mut compressed = Vec::new();
        encode_frame_rsv(&mut compressed, OpCode::TEXT, true, 0b100, None, b"x");
        assert_eq!(compressed, [0xC1, 0x01, b'x']);
    }
}
