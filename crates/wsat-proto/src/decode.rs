//! The streaming frame decoder: header, payload chunks of a bounded size, end.

use bytes::{Buf, Bytes, BytesMut};

use crate::header::FrameHeader;
use crate::mask::apply_mask;
use crate::{OpCode, ProtocolError, Role};

/// When the decoder hands out a data frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkPolicy {
    /// Chunks of exactly `min(remaining, max_chunk)` bytes: deterministic, the canonical
    /// form of the firmware's `+WS_DATA` chunks. Buffers up to `max_chunk` bytes.
    Full,
    /// Whatever has arrived, up to `max_chunk`: lowest latency, and invalid text is seen
    /// as soon as its bytes arrive.
    Eager,
}

/// How strict the decoder is and how it cuts payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Which side we are: a client expects unmasked frames, a server masked ones.
    pub role: Role,
    /// RFC 6455 validation of every header (RSV bits, reserved opcodes, masking, 64-bit
    /// length, control payloads of at most 125 bytes). Off reproduces the ESP firmware,
    /// which accepts these; its control payloads are bounded by `max_chunk` instead
    /// ([`DecoderConfig::max_control_len`]).
    pub strict: bool,
    /// The largest payload chunk handed out (the ESP `buffer_size`); at least 1.
    pub max_chunk: usize,
    /// When chunks are handed out.
    pub chunk_policy: ChunkPolicy,
    /// Frames longer than this fail with 1009; `None` for no limit.
    pub max_frame_len: Option<u64>,
}

/// The longest control payload RFC 6455 allows (§5.5).
const RFC_MAX_CONTROL: u64 = 125;

impl DecoderConfig {
    /// The longest control payload accepted; a longer one fails with
    /// [`ProtocolError::ControlTooLong`] (1002) before any of it is read. Strict: 125 bytes
    /// (RFC 6455 §5.5). Lenient: `max_chunk`, but at least 125. The ESP client has no
    /// 125-byte check: it reads a control frame whole into its `buffer_size` receive buffer
    /// and aborts the connection when the frame does not fit, so a 200-byte ping is
    /// answered and a frame larger than the buffer drops the link. Control frames are
    /// delivered whole, so this is also what the decoder may hold of one.
    pub fn max_control_len(&self) -> u64 {
        if self.strict {
            RFC_MAX_CONTROL
        } else {
            // A usize always fits in a u64 on the platforms Rust supports.
            (self.max_chunk as u64).max(RFC_MAX_CONTROL)
        }
    }
}

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A frame begins.
    Start(FrameHeader),
    /// The next piece of its payload, unmasked. Control frames come as one piece.
    Payload(Bytes),
    /// The frame is complete.
    End,
}

#[derive(Debug)]
enum State {
    Header,
    Payload {
        mask: Option<[u8; 4]>,
        control: bool,
        remaining: u64,
        offset: u64,
    },
}

/// Decodes frames from a byte buffer one [`Item`] at a time, never holding more than one
/// chunk of payload (or one control frame, [`DecoderConfig::max_control_len`]), so memory
/// stays bounded whatever the frame length.
#[derive(Debug)]
pub struct FrameDecoder {
    config: DecoderConfig,
    state: State,
    /// RSV bits a negotiated extension gives a meaning (RSV1 for permessage-deflate).
    allowed_rsv: u8,
}

impl FrameDecoder {
    /// A decoder at a frame boundary.
    pub fn new(config: DecoderConfig) -> Self {
        FrameDecoder {
            config: DecoderConfig {
                max_chunk: config.max_chunk.max(1),
                ..config
            },
            state: State::Header,
            allowed_rsv: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Lets the RSV bits in `rsv` (the low three bits, RSV1 = `0b100`) through strict
    /// validation: a negotiated extension gives them a meaning, and its user checks where
    /// they may appear (permessage-deflate: RSV1 on the first frame of a data message only,
    /// which [`crate::Connection`] enforces). Other RSV bits still fail with
    /// [`ProtocolError::ReservedBits`].
    pub fn allow_rsv(&mut self, rsv: u8) {
        self.allowed_rsv = rsv & 0b111;
    }

    /// The RSV bits [`FrameDecoder::allow_rsv`] let through.
    pub fn allowed_rsv(&self) -> u8 {
        self.allowed_rsv
    }

    /// How many bytes the next item needs in `buf` before it can be decoded: the whole
    /// chunk in [`ChunkPolicy::Full`], one byte in [`ChunkPolicy::Eager`], the two bytes of
    /// a header's start at a frame boundary. A reader sizes its buffer with this so that a
    /// large chunk lands in one allocation instead of growing by doubling.
    pub fn next_item_len(&self) -> usize {
        match self.state {
            State::Header => 2,
            State::Payload { remaining: 0, .. } => 0,
            State::Payload { control, remaining, .. } => {
                if control {
                    // At most max_control_len, checked when the header was read: it fits.
                    remaining as usize
                } else if self.config.chunk_policy == ChunkPolicy::Eager {
                    1
                } else {
                    // At most max_chunk, which is a usize.
                    remaining.min(self.config.max_chunk as u64) as usize
                }
            }
        }
    }

    /// Takes the next item from the front of `buf`; `Ok(None)` means more bytes are needed.
    /// After an error the stream is unusable: the connection must be failed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        self.next(buf, false)
    }

    /// [`FrameDecoder::decode`] for when no more bytes will come (the transport ended):
    /// the bytes `buf` holds of a data frame's payload are handed out even when they are
    /// fewer than a [`ChunkPolicy::Full`] chunk, which would otherwise wait for ever, so
    /// that every payload byte received is delivered. `Ok(None)` means nothing more can be
    /// decoded; what is left in `buf` then is the start of a header or of a control
    /// frame, which cannot be completed.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        self.next(buf, true)
    }

    /// The fast path of [`FrameDecoder::decode`] for the common frame: at a frame boundary,
    /// `buf` starts with a whole text or binary frame with FIN and no RSV bits, whose payload
    /// is at most `max_chunk` and at most `max_len` bytes. It is taken (its payload
    /// unmasked) and returned with its header: exactly what `decode` would hand out as
    /// `Start`, one `Payload` and `End`. With `valid_text`, a text frame is taken only if
    /// its payload is UTF-8 (and only if unmasked). `None`, with nothing taken, for anything
    /// else, and for a frame that fails a check (`decode` then reports the error).
    pub(crate) fn decode_whole_frame(
        &mut self,
        buf: &mut BytesMut,
        max_len: u64,
        valid_text: bool,
    ) -> Option<(FrameHeader, Bytes)> {
        if !matches!(self.state, State::Header) {
            return None;
        }
        // FIN, no RSV bits, text or binary: anything else takes the general path.
        if !matches!(buf.first(), Some(0x81 | 0x82)) {
            return None;
        }
        let (header, len) = FrameHeader::parse(buf)?;
        if header.payload_len > max_len || header.payload_len > self.config.max_chunk as u64 {
            return None;
        }
        // At most max_chunk, so it fits in usize; and all of it is in `buf` (so it is far
        // below the 2^63 that `check` refuses).
        let payload_len = header.payload_len as usize;
        if buf.len() - len < payload_len {
            return None;
        }
        let payload = &buf[len..len + payload_len];
        if valid_text
            && header.opcode == OpCode::TEXT
            && (header.mask.is_some() || std::str::from_utf8(payload).is_err())
        {
            return None;
        }
        // What is left of `check` for this header (FIN, no RSV bits, a data opcode, a
        // length within max_chunk, in the buffer): the frame limit and the masking.
        if self.config.max_frame_len.is_some_and(|max| header.payload_len > max)
            || (self.config.strict && header.mask.is_some() != (self.config.role == Role::Server))
        {
            return None;
        }
        let mut frame = buf.split_to(len + payload_len);
        if let Some(key) = header.mask {
            apply_mask(&mut frame[len..], key, 0);
        }
        let mut payload = frame.freeze();
        payload.advance(len);
        Some((header, payload))
    }

    /// The next item; `at_eof` lets a data payload out in whatever pieces are there.
    fn next(&mut self, buf: &mut BytesMut, at_eof: bool) -> Result<Option<Item>, ProtocolError> {
        match self.state {
            State::Header => {
                let Some((header, len)) = FrameHeader::parse(buf) else {
                    return Ok(None);
                };
                self.check(&header)?;
                buf.advance(len);
                self.state = State::Payload {
                    mask: header.mask,
                    control: header.opcode.is_control(),
                    remaining: header.payload_len,
                    offset: 0,
                };
                Ok(Some(Item::Start(header)))
            }
            State::Payload { remaining: 0, .. } => {
                self.state = State::Header;
                Ok(Some(Item::End))
            }
            State::Payload {
                mask,
                control,
                ref mut remaining,
                ref mut offset,
            } => {
                // Control payloads go out whole (their length was checked).
                let want = if control {
                    *remaining
                } else {
                    (*remaining).min(self.config.max_chunk as u64)
                };
                // `want` is at most max(max_chunk, 125), so it fits in usize.
                let want = want as usize;
                let partial = at_eof || self.config.chunk_policy == ChunkPolicy::Eager;
                let take = if buf.len() >= want {
                    want
                } else if !control && partial && !buf.is_empty() {
                    buf.len()
                } else {
                    return Ok(None);
                };
                let mut chunk = buf.split_to(take);
                if let Some(key) = mask {
                    // The offset only matters modulo 4, so truncation is harmless.
                    apply_mask(&mut chunk, key, *offset as usize);
                }
                *remaining -= take as u64;
                *offset += take as u64;
                Ok(Some(Item::Payload(chunk.freeze())))
            }
        }
    }

    fn check(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.payload_len >> 63 != 0 {
            return Err(ProtocolError::InvalidLength(h.payload_len));
        }
        // Control frames are held whole, so their size is bounded in every mode.
        let max_control = self.config.max_control_len();
        if h.opcode.is_control() && h.payload_len > max_control {
            return Err(ProtocolError::ControlTooLong {
                len: h.payload_len,
                max: max_control,
            });
        }
        if let Some(max) = self.config.max_frame_len {
            if h.payload_len > max {
                return Err(ProtocolError::FrameTooBig(h.payload_len));
            }
        }
        if !self.config.strict {
            return Ok(());
        }
        if h.rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        if h.opcode.is_reserved() {
            return Err(ProtocolError::ReservedOpcode(h.opcode.value()));
        }
        if h.opcode.is_control() && !h.fin {
            return Err(ProtocolError::FragmentedControl(h.opcode));
        }
        match (self.config.role, h.mask.is_some()) {
            (Role::Client, true) => Err(ProtocolError::MaskedFrame),
            (Role::Server, false) => Err(ProtocolError::UnmaskedFrame),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::encode_frame;
    use crate::OpCode;
    use proptest::prelude::*;

    fn config(max_chunk: usize, policy: ChunkPolicy, strict: bool) -> DecoderConfig {
        DecoderConfig {
            role: Role::Client,
            strict,
            max_chunk,
            chunk_policy: policy,
            max_frame_len: None,
        }
    }

    #[test]
    fn next_item_len_says_how_much_the_next_decode_needs() {
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, OpCode::BINARY, true, None, &[9; 3000]);
        encode_frame(&mut frame, OpCode::PING, true, None, b"ping");
        for (policy, chunk_need) in [(ChunkPolicy::Full, 1024), (ChunkPolicy::Eager, 1)] {
            let mut dec = FrameDecoder::new(config(1024, policy, true));
            let mut buf = frame.clone();
            assert_eq!(dec.next_item_len(), 2, "a header starts with two bytes");
            assert!(matches!(dec.decode(&mut buf), Ok(Some(Item::Start(_)))));
            assert_eq!(dec.next_item_len(), chunk_need);
            let mut payload = 0;
            while payload < 3000 {
                match dec.decode(&mut buf) {
                    Ok(Some(Item::Payload(p))) => payload += p.len(),
                    other => panic!("{other:?}"),
                }
            }
            // 3000 = 1024 + 1024 + 952: the last chunk needs only what is left.
            assert_eq!(dec.next_item_len(), 0, "the frame's end needs no bytes");
            assert!(matches!(dec.decode(&mut buf), Ok(Some(Item::End))));
            assert!(matches!(dec.decode(&mut buf), Ok(Some(Item::Start(_)))));
            assert_eq!(dec.next_item_len(), 4, "a control payload comes whole");
        }
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
        let mut buf = frame.clone();
        buf.truncate(4 + 1024 + 1024 + 10);
        let _ = drain(&mut dec, &mut buf);
        assert_eq!(dec.next_item_len(), 952, "the last chunk is what remains of the frame");
    }

    fn drain(dec: &mut FrameDecoder, buf: &mut BytesMut) -> Result<Vec<Item>, ProtocolError> {
        let mut items = Vec::new();
        while let Some(item) = dec.decode(buf)? {
            items.push(item);
        }
        Ok(items)
    }

    fn frame(op: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::from_bits(op), fin, mask, payload);
        out
    }

    #[test]
    fn a_2000_byte_frame_arrives_as_1024_then_976() {
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
        let mut buf = BytesMut::from(&frame(1, true, None, &[b'a'; 2000])[..]);
        let items = drain(&mut dec, &mut buf).expect("valid");
        let sizes: Vec<_> = items
            .iter()
            .map(|i| match i {
                Item::Payload(b) => b.len() as i64,
                Item::Start(_) => -1,
                Item::End => -2,
            })
            .collect();
        assert_eq!(sizes, [-1, 1024, 976, -2]);
    }

    #[test]
    fn full_policy_waits_for_a_whole_chunk_eager_does_not() {
        let bytes = frame(2, true, None, &[1; 10]);
        for (policy, expect_partial) in [(ChunkPolicy::Full, false), (ChunkPolicy::Eager, true)] {
            let mut dec = FrameDecoder::new(config(8, policy, true));
            let mut buf = BytesMut::from(&bytes[..5]);
            let items = drain(&mut dec, &mut buf).expect("valid");
            assert_eq!(items.len() == 2, expect_partial, "{policy:?}: {items:?}");
        }
    }

    #[test]
    fn strict_header_errors_and_their_close_codes() {
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (vec![0xC1, 0x00], ProtocolError::ReservedBits(0b100)),
            (vec![0x83, 0x00], ProtocolError::ReservedOpcode(3)),
            (vec![0x8B, 0x00], ProtocolError::ReservedOpcode(0xB)),
            (vec![0x09, 0x00], ProtocolError::FragmentedControl(OpCode::PING)),
            (
                vec![0x89, 0x7E, 0x00, 0x7E],
                ProtocolError::ControlTooLong { len: 126, max: 125 },
            ),
            (
                vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::InvalidLength(1 << 63),
            ),
            (vec![0x81, 0x80, 1, 2, 3, 4], ProtocolError::MaskedFrame),
        ];
        for (bytes, err) in cases {
            let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
            let got = dec.decode(&mut BytesMut::from(&bytes[..]));
            assert_eq!(got, Err(err.clone()), "{bytes:02x?}");
            assert_eq!(err.close_code(), 1002);
        }
    }

    /// A negotiated extension's RSV bits pass strict validation; the others still fail.
    #[test]
    fn allowed_rsv_bits_pass_strict_validation() {
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
        dec.allow_rsv(0b100);
        assert_eq!(dec.allowed_rsv(), 0b100);
        let mut buf = BytesMut::from(&[0xC1, 0x01, b'x', 0xC9, 0x00][..]);
        let items = drain(&mut dec, &mut buf).expect("RSV1 allowed");
        assert!(matches!(items[0], Item::Start(FrameHeader { rsv: 0b100, .. })));
        assert!(
            matches!(items[3], Item::Start(FrameHeader { rsv: 0b100, .. })),
            "checked by its user"
        );
        for bad in [0xE1u8, 0xD1, 0xA1] {
            let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
            dec.allow_rsv(0b100);
            let err = dec.decode(&mut BytesMut::from(&[bad, 0x00][..]));
            assert_eq!(err, Err(ProtocolError::ReservedBits((bad >> 4) & 0b111)), "{bad:#x}");
        }
    }

    #[test]
    fn lenient_accepts_what_the_firmware_accepts_and_unmasks() {
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, false));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0xC3, 0x00]); // RSV1 + reserved opcode
        buf.extend_from_slice(&frame(1, true, Some([9, 8, 7, 6]), b"masked"));
        let items = drain(&mut dec, &mut buf).expect("lenient");
        assert_eq!(items[3], Item::Payload(Bytes::from_static(b"masked")));
    }

    /// The ESP client has no 125-byte check on control frames: a 200-byte ping, a 300-byte
    /// pong and a close with 202 payload bytes pass in lenient mode, whole, as long as they
    /// fit the buffer; strict mode fails each with 1002 at its header.
    #[test]
    fn control_frames_over_125_bytes_pass_lenient_up_to_the_buffer_and_fail_strict() {
        let frames = [
            frame(0x9, true, None, &[b'p'; 200]),
            frame(0xA, true, None, &[b'q'; 300]),
            frame(0x8, true, None, &[[0x03, 0xE8].as_slice(), &[b'r'; 200]].concat()),
        ];
        for wire in &frames {
            let len = FrameHeader::parse(wire).expect("a header").0.payload_len;
            let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, false));
            let items = drain(&mut dec, &mut BytesMut::from(&wire[..])).expect("lenient");
            assert!(
                matches!(&items[..], [Item::Start(_), Item::Payload(p), Item::End] if p.len() as u64 == len),
                "{len}: {items:?}"
            );
            let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
            let err = dec.decode(&mut BytesMut::from(&wire[..])).expect_err("strict");
            assert_eq!(err, ProtocolError::ControlTooLong { len, max: 125 });
            assert_eq!(err.close_code(), 1002);
        }
        // The bound is the buffer (max_chunk), never less than RFC 6455's 125.
        for (max_chunk, max) in [(1024, 1024), (64, 125)] {
            let mut dec = FrameDecoder::new(config(max_chunk, ChunkPolicy::Eager, false));
            let ok = frame(0x9, true, None, &vec![0; max as usize]);
            assert_eq!(drain(&mut dec, &mut BytesMut::from(&ok[..])).expect("fits").len(), 3);
            let too_long = frame(0x9, true, None, &vec![0; max as usize + 1]);
            assert_eq!(
                dec.decode(&mut BytesMut::from(&too_long[..])),
                Err(ProtocolError::ControlTooLong { len: max + 1, max })
            );
        }
    }

    /// At the end of the input, a full-chunk decoder hands out what it holds of a data
    /// frame (1,500 bytes of 3,000: 1,024 at once, 476 only at the end); an unfinished
    /// header or control frame gives nothing.
    #[test]
    fn decode_eof_hands_out_the_partial_chunk_of_an_unfinished_frame() {
        let wire = frame(2, true, None, &[7; 3000]);
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
        let mut buf = BytesMut::from(&wire[..4 + 1500]);
        let items = drain(&mut dec, &mut buf).expect("valid");
        assert!(matches!(&items[..], [Item::Start(_), Item::Payload(p)] if p.len() == 1024));
        assert_eq!(buf.len(), 476, "held for a full chunk");
        assert_eq!(
            dec.decode_eof(&mut buf),
            Ok(Some(Item::Payload(Bytes::from(vec![7; 476]))))
        );
        assert_eq!(dec.decode_eof(&mut buf), Ok(None));
        assert!(buf.is_empty());

        for unfinished in [&wire[..3], &frame(0x9, true, None, b"ping")[..5]] {
            let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
            let mut buf = BytesMut::from(unfinished);
            while let Ok(Some(Item::Start(_))) = dec.decode_eof(&mut buf) {}
            assert_eq!(dec.decode_eof(&mut buf), Ok(None), "{unfinished:02x?}");
        }
    }

    #[test]
    fn server_role_requires_masks() {
        let mut dec = FrameDecoder::new(DecoderConfig {
            role: Role::Server,
            ..config(1024, ChunkPolicy::Full, true)
        });
        assert_eq!(
            dec.decode(&mut BytesMut::from(&frame(1, true, None, b"x")[..])),
            Err(ProtocolError::UnmaskedFrame)
        );
    }

    #[test]
    fn frame_limit_gives_1009() {
        let mut dec = FrameDecoder::new(DecoderConfig {
            max_frame_len: Some(10),
            ..config(4, ChunkPolicy::Full, true)
        });
        let err = dec
            .decode(&mut BytesMut::from(&frame(2, true, None, &[0; 11])[..]))
            .unwrap_err();
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn a_huge_frame_header_needs_no_huge_buffer() {
        // A header announcing 2^40 bytes: the decoder starts it and waits for payload.
        let mut dec = FrameDecoder::new(config(1024, ChunkPolicy::Full, true));
        let mut buf = BytesMut::from(&[0x82u8, 0x7F, 0, 0, 1, 0, 0, 0, 0, 0][..]);
        let Ok(Some(Item::Start(h))) = dec.decode(&mut buf) else {
            panic!("header")
        };
        assert_eq!(h.payload_len, 1 << 40);
        buf.extend_from_slice(&[0; 1000]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    #[test]
    fn payloads_at_every_length_boundary_round_trip_in_any_chunk_size() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 65537] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let wire = frame(2, true, mask, &payload);
                for max_chunk in [1, 7, 1024, 70_000] {
                    let mut dec = FrameDecoder::new(config(max_chunk, ChunkPolicy::Full, false));
                    let mut buf = BytesMut::from(&wire[..]);
                    let items = drain(&mut dec, &mut buf).expect("valid");
                    let mut got = Vec::new();
                    for item in &items[1..items.len() - 1] {
                        let Item::Payload(p) = item else { panic!("payload") };
                        assert!(p.len() <= max_chunk);
                        got.extend_from_slice(p);
                    }
                    assert_eq!(got, payload, "len {len} chunk {max_chunk}");
                    assert_eq!(items.len(), 2 + len.div_ceil(max_chunk), "len {len} chunk {max_chunk}");
                }
            }
        }
    }

    proptest! {
        /// Any sequence of frames, fed in arbitrary pieces with any chunk size and either
        /// policy, decodes to the same headers and payload bytes.
        #[test]
        fn round_trip_any_split(frames in proptest::collection::vec(
                                    (0u8..3, any::<bool>(), any::<Option<[u8; 4]>>(),
                                     proptest::collection::vec(any::<u8>(), 0..300)), 1..6),
                                max_chunk in 1usize..200, eager in any::<bool>(),
                                piece in 1usize..64) {
            let mut wire = Vec::new();
            for (op, fin, mask, payload) in &frames {
                encode_frame(&mut wire, OpCode::from_bits(*op), *fin, *mask, payload);
            }
            let policy = if eager { ChunkPolicy::Eager } else { ChunkPolicy::Full };
            let mut dec = FrameDecoder::new(config(max_chunk, policy, false));
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            for part in wire.chunks(piece) {
                buf.extend_from_slice(part);
                items.extend(drain(&mut dec, &mut buf).expect("valid"));
            }
            prop_assert!(buf.is_empty());
            let mut it = items.into_iter();
            for (op, fin, mask, payload) in frames {
                let Some(Item::Start(h)) = it.next() else { panic!("start") };
                prop_assert_eq!((h.opcode.value(), h.fin, h.mask, h.payload_len), (op, fin, mask, payload.len() as u64));
                let mut got = Vec::new();
                loop {
                    match it.next() {
                        Some(Item::Payload(b)) => {
                            prop_assert!(!b.is_empty() && b.len() <= max_chunk);
                            if !eager {
                                let remaining = payload.len() - got.len();
                                prop_assert_eq!(b.len(), remaining.min(max_chunk));
                            }
                            got.extend_from_slice(&b);
                        }
                        Some(Item::End) => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                prop_assert_eq!(got, payload);
            }
        }
    }
}
