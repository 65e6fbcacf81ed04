//! Whole-message delivery on top of the chunk stream.

use bytes::{Bytes, BytesMut};

use crate::{DataChunk, OpCode};

/// A complete text or binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// [`OpCode::TEXT`] or [`OpCode::BINARY`] (or a reserved data opcode in lenient mode).
    pub opcode: OpCode,
    /// All fragments joined. A message that arrived as one chunk is not copied.
    pub payload: Bytes,
}

/// Joins data chunks into messages; control frames pass through untouched (the caller
/// sees them as chunks). What the ESP client's users keep asking for. It has no size
/// limit of its own: the [`crate::Connection`] that produced the chunks enforces
/// [`crate::ConnectionConfig::max_message_len`], as soon as a frame header announces too
/// much, so the bytes of a message too big never reach it.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    opcode: Option<OpCode>,
    parts: BytesMut,
    /// A first chunk kept without copying, in case it is the whole message.
    first: Option<Bytes>,
}

impl MessageAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next data chunk (control chunks are ignored); returns a message when one
    /// is complete.
    pub fn push(&mut self, chunk: &DataChunk) -> Option<Message> {
        if chunk.opcode.is_control() {
            return None;
        }
        if self.opcode.is_none() {
            self.opcode = Some(chunk.message_opcode.unwrap_or(chunk.opcode));
        }
        match (&self.first, self.parts.is_empty()) {
            (None, true) => self.first = Some(chunk.data.clone()),
            (Some(first), _) => {
                self.parts.reserve(first.len() + chunk.data.len());
                self.parts.extend_from_slice(first);
                self.parts.extend_from_slice(&chunk.data);
                self.first = None;
            }
            (None, false) => self.parts.extend_from_slice(&chunk.data),
        }
        if !chunk.ends_message() {
            return None;
        }
        let payload = match self.first.take() {
            Some(first) => first,
            None => self.parts.split().freeze(),
        };
        let opcode = self.opcode.take().unwrap_or(OpCode::BINARY);
        Some(Message { opcode, payload })
    }

    /// Forgets a partial message (after a reconnect).
    pub fn reset(&mut self) {
        self.opcode = None;
        self.parts.clear();
        self.first = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(op: OpCode, msg: OpCode, fin: bool, len: u64, off: u64, data: &'static [u8]) -> DataChunk {
        DataChunk {
            opcode: op,
            message_opcode: Some(msg),
            fin,
            payload_len: len,
            offset: off,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn joins_frames_and_chunks() {
        let mut a = MessageAssembler::new();
        assert_eq!(a.push(&chunk(OpCode::TEXT, OpCode::TEXT, false, 4, 0, b"ab")), None);
        assert_eq!(a.push(&chunk(OpCode::TEXT, OpCode::TEXT, false, 4, 2, b"cd")), None);
        assert_eq!(a.push(&chunk(OpCode::PING, OpCode::PING, true, 1, 0, b"p")), None);
        let m = a.push(&chunk(OpCode::CONTINUATION, OpCode::TEXT, true, 2, 0, b"ef"));
        assert_eq!(
            m,
            Some(Message {
                opcode: OpCode::TEXT,
                payload: Bytes::from_static(b"abcdef")
            })
        );
        let single = a.push(&chunk(OpCode::BINARY, OpCode::BINARY, true, 1, 0, b"z"));
        assert_eq!(single.map(|m| m.opcode), Some(OpCode::BINARY));
    }

    #[test]
    fn an_empty_message_and_a_reset() {
        let mut a = MessageAssembler::new();
        let m = a.push(&chunk(OpCode::TEXT, OpCode::TEXT, true, 0, 0, b""));
        assert_eq!(m.map(|m| m.payload.len()), Some(0));
        assert_eq!(
            a.push(&chunk(OpCode::BINARY, OpCode::BINARY, false, 4, 0, b"abcd")),
            None
        );
        a.reset();
        let m = a.push(&chunk(OpCode::BINARY, OpCode::BINARY, true, 1, 0, b"x"));
        assert_eq!(m.map(|m| m.payload), Some(Bytes::from_static(b"x")));
    }
}
