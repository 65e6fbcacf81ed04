//! The frame header (RFC 6455 §5.2): parsing and encoding.

use crate::OpCode;

/// One frame's header as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode, any 4-bit value.
    pub opcode: OpCode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// The longest possible header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// A header with no RSV bits.
    pub fn new(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> Self {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Parses a header from the start of `buf`; `None` until enough bytes are there.
    /// Returns the header and its length in bytes. Never fails: what a header may contain
    /// is the decoder's policy, not the format's.
    pub fn parse(buf: &[u8]) -> Option<(FrameHeader, usize)> {
        let (&b0, &b1) = (buf.first()?, buf.get(1)?);
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut pos) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)), 4),
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let key: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
            pos += 4;
            Some(key)
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: OpCode::from_bits(b0),
            mask,
            payload_len,
        };
        Some((header, pos))
    }

    /// The encoded length: 2, 4 or 10 bytes, plus 4 with a mask.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header in its shortest form (7-, 16- or 64-bit length).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = self.encode_to_array(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    /// Writes the header into `buf` and returns its length.
    pub fn encode_to_array(&self, buf: &mut [u8; MAX_HEADER_LEN]) -> usize {
        buf[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.value();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            // The match arms bound each length, so these narrowing casts are exact.
            n @ 0..=125 => {
                buf[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            buf[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_forms_at_their_boundaries() {
        for (len, form) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 32, 10),
            ((1 << 63) - 1, 10),
        ] {
            let h = FrameHeader::new(true, OpCode::BINARY, None, len);
            let mut out = Vec::new();
            h.encode(&mut out);
            assert_eq!(out.len(), form, "length {len}");
            assert_eq!(FrameHeader::parse(&out), Some((h, form)));
            for cut in 0..form {
                assert_eq!(FrameHeader::parse(&out[..cut]), None, "cut {cut}");
            }
        }
    }

    #[test]
    fn rfc_examples() {
        // Unmasked "Hello" and the masked one from RFC 6455 §5.7.
        let (h, n) = FrameHeader::parse(&[0x81, 0x05]).expect("complete");
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.mask, n),
            (true, OpCode::TEXT, 5, None, 2)
        );
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]).expect("complete");
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        let (h, _) = FrameHeader::parse(&[0x01, 0x03]).expect("complete");
        assert!(!h.fin);
    }

    proptest! {
        #[test]
        fn round_trip(fin in any::<bool>(), rsv in 0u8..8, op in 0u8..16,
                      mask in any::<Option<[u8; 4]>>(), len in any::<u64>()) {
            let h = FrameHeader { fin, rsv, opcode: OpCode::from_bits(op), mask, payload_len: len };
            let mut out = Vec::new();
            h.encode(&mut out);
            prop_assert_eq!(out.len(), h.encoded_len());
            prop_assert_eq!(FrameHeader::parse(&out), Some((h, out.len())));
        }
    }
}
