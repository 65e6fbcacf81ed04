//! Typed protocol and send errors.

use crate::OpCode;

/// A violation of RFC 6455 by the peer, carrying the close code to fail the connection with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// RSV1..3 set although no extension was negotiated.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// An opcode RFC 6455 reserves (0x3..0x7, 0xB..0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented {0} frame")]
    FragmentedControl(OpCode),
    /// A control frame with a longer payload than accepted: 125 bytes, or in lenient mode
    /// the receive buffer (`DecoderConfig::max_control_len`).
    #[error("control frame payload of {len} bytes exceeds {max}")]
    ControlTooLong {
        /// The payload length the header announced.
        len: u64,
        /// The longest control payload accepted.
        max: u64,
    },
    /// A 64-bit payload length with the most significant bit set.
    #[error("payload length {0:#x} has the most significant bit set")]
    InvalidLength(u64),
    /// A masked frame sent by a server.
    #[error("frame from the server is masked")]
    MaskedFrame,
    /// An unmasked frame sent by a client.
    #[error("frame from the client is not masked")]
    UnmaskedFrame,
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    #[error("new {0} frame inside a fragmented message")]
    ExpectedContinuation(OpCode),
    /// Invalid UTF-8 in a text message.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose payload is a single byte.
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A close code that may not appear on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason that is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A frame longer than the configured limit.
    #[error("frame of {0} bytes exceeds the configured limit")]
    FrameTooBig(u64),
    /// A message longer than the configured limit. For a compressed message, its
    /// decompressed length, found while inflating.
    #[error("message exceeds the configured limit of {0} bytes")]
    MessageTooBig(u64),
    /// RSV1 (permessage-deflate's "compressed") on a control frame.
    #[error("{0} frame with RSV1 set")]
    CompressedControl(OpCode),
    /// RSV1 on a continuation frame: only a message's first frame carries it.
    #[error("continuation frame with RSV1 set")]
    CompressedContinuation,
    /// A compressed message whose data does not inflate.
    #[error("compressed message is not valid DEFLATE data: {0}")]
    InvalidCompressedData(String),
}

impl ProtocolError {
    /// The close code RFC 6455 §7.4.1 prescribes for this failure: 1007 for bad UTF-8 and
    /// for compressed data that does not inflate (data inconsistent with the message),
    /// 1009 for size limits, 1002 for everything else.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData(_) => 1007,
            ProtocolError::FrameTooBig(_) | ProtocolError::MessageTooBig(_) => 1009,
            _ => 1002,
        }
    }
}

/// Why a frame could not be queued for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A close frame was already sent or received, or the connection failed: no more frames.
    #[error("the connection is closing or closed")]
    NotOpen,
}
