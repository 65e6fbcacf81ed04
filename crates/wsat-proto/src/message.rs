//! Whole-message delivery on top of the chunk stream, with a size limit.

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

/// Why a message could not be assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// The message grew past the limit; fail the connection with 1009.
    #[error("message exceeds the limit of {0} bytes")]
    TooBig(usize),
}

/// Joins data chunks into messages; control frames pass through untouched (the caller
/// sees them as chunks). What the ESP client's users keep asking for.
#[derive(Debug)]
pub struct MessageAssembler {
    max_size: usize,
    opcode: Option<OpCode>,
    parts: BytesMut,
    /// A first chunk kept without copying, in case it is the whole message.
    first: Option<Bytes>,
    len: usize,
}

impl MessageAssembler {
    /// An assembler that refuses messages longer than `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        MessageAssembler {
            max_size,
            opcode: None,
            parts: BytesMut::new(),
            first: None,
            len: 0,
        }
    }

    /// Takes the next data chunk (control chunks are ignored); returns a message when one
    /// is complete.
    pub fn push(&mut self, chunk: &DataChunk) -> Result<Option<Message>, AssembleError> {
        if chunk.opcode.is_control() {
            return Ok(None);
        }
        if self.opcode.is_none() {
            self.opcode = Some(chunk.message_opcode.unwrap_or(chunk.opcode));
        }
        self.len += chunk.data.len();
        if self.len > self.max_size {
            self.reset();
            return Err(AssembleError::TooBig(self.max_size));
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
            return Ok(None);
        }
        let payload = match self.first.take() {
            Some(first) => first,
            None => self.parts.split().freeze(),
        };
        let opcode = self.opcode.take().unwrap_or(OpCode::BINARY);
        self.len = 0;
        Ok(Some(Message { opcode, payload }))
    }

    /// Forgets a partial message (after a reconnect).
    pub fn reset(&mut self) {
        self.opcode = None;
        self.parts.clear();
        self.first = None;
        self.len = 0;
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
        let mut a = MessageAssembler::new(100);
        assert_eq!(a.push(&chunk(OpCode::TEXT, OpCode::TEXT, false, 4, 0, b"ab")), Ok(None));
        assert_eq!(a.push(&chunk(OpCode::TEXT, OpCode::TEXT, false, 4, 2, b"cd")), Ok(None));
        assert_eq!(a.push(&chunk(OpCode::PING, OpCode::PING, true, 1, 0, b"p")), Ok(None));
        let m = a
            .push(&chunk(OpCode::CONTINUATION, OpCode::TEXT, true, 2, 0, b"ef"))
            .expect("fits");
        assert_eq!(
            m,
            Some(Message {
                opcode: OpCode::TEXT,
                payload: Bytes::from_static(b"abcdef")
            })
        );
        let single = a
            .push(&chunk(OpCode::BINARY, OpCode::BINARY, true, 1, 0, b"z"))
            .expect("fits");
        assert_eq!(single.map(|m| m.opcode), Some(OpCode::BINARY));
    }

    #[test]
    fn empty_message_and_limit() {
        let mut a = MessageAssembler::new(3);
        let m = a
            .push(&chunk(OpCode::TEXT, OpCode::TEXT, true, 0, 0, b""))
            .expect("fits");
        assert_eq!(m.map(|m| m.payload.len()), Some(0));
        assert_eq!(
            a.push(&chunk(OpCode::BINARY, OpCode::BINARY, false, 4, 0, b"abcd")),
            Err(AssembleError::TooBig(3))
        );
        let m = a
            .push(&chunk(OpCode::BINARY, OpCode::BINARY, true, 1, 0, b"x"))
            .expect("reset after error");
        assert_eq!(m.map(|m| m.payload), Some(Bytes::from_static(b"x")));
    }
}
