//! Frame opcodes, including the reserved ones the ESP firmware sends on purpose.

use std::fmt;

/// A frame opcode: any 4-bit value, not only the six RFC 6455 defines.
///
/// `AT+WSSEND` can put any opcode 0..15 on the wire, and a lenient peer may receive
/// reserved ones, so this is a transparent newtype rather than a closed enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpCode(u8);

impl OpCode {
    /// Continuation of a fragmented message (0x0).
    pub const CONTINUATION: OpCode = OpCode(0x0);
    /// Text message (0x1): the payload must be UTF-8.
    pub const TEXT: OpCode = OpCode(0x1);
    /// Binary message (0x2).
    pub const BINARY: OpCode = OpCode(0x2);
    /// Close frame (0x8).
    pub const CLOSE: OpCode = OpCode(0x8);
    /// Ping frame (0x9).
    pub const PING: OpCode = OpCode(0x9);
    /// Pong frame (0xA).
    pub const PONG: OpCode = OpCode(0xA);

    /// The opcode with this 4-bit value; `None` above 15.
    pub const fn new(value: u8) -> Option<OpCode> {
        if value <= 0x0F {
            Some(OpCode(value))
        } else {
            None
        }
    }

    /// The low 4 bits of `value` as an opcode (what a frame header carries).
    pub const fn from_bits(value: u8) -> OpCode {
        OpCode(value & 0x0F)
    }

    /// The numeric value 0..15.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// Control frames (close, ping, pong and the reserved 0xB..0xF) have the high bit set.
    pub const fn is_control(self) -> bool {
        self.0 & 0x08 != 0
    }

    /// Data frames: continuation, text, binary and the reserved 0x3..0x7.
    pub const fn is_data(self) -> bool {
        !self.is_control()
    }

    /// Opcodes RFC 6455 leaves reserved (0x3..0x7, 0xB..0xF).
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 0x3..=0x7 | 0xB..=0xF)
    }
}

impl fmt::Debug for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0x0 => "Continuation",
            0x1 => "Text",
            0x2 => "Binary",
            0x8 => "Close",
            0x9 => "Ping",
            0xA => "Pong",
            _ => return write!(f, "Reserved({:#x})", self.0),
        };
        f.write_str(name)
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_partition_all_sixteen_values() {
        for v in 0..16u8 {
            let op = OpCode::new(v).expect("4-bit value");
            assert_ne!(op.is_control(), op.is_data());
            let rfc = matches!(v, 0 | 1 | 2 | 8 | 9 | 10);
            assert_eq!(op.is_reserved(), !rfc, "opcode {v}");
        }
        assert_eq!(OpCode::new(16), None);
        assert_eq!(OpCode::from_bits(0x89), OpCode::PING);
    }
}
