//! WebSocket frames as a test peer writes and reads them: one builder (wsat-proto's encoder,
//! masked for a client's frame, unmasked for a server's) and one reader that decodes a frame
//! independently of wsat's own decoder.
//!
//! Opcodes are plain numbers (`0..=15`), so a peer can send reserved ones too.

use std::io::{self, Read};

use tokio::io::{AsyncRead, AsyncReadExt};
use wsat_proto::encode::encode_frame;
use wsat_proto::{FrameHeader, OpCode};

/// `opcode` (`0..=15`) as wsat-proto's type; panics on a number that does not fit in 4 bits.
fn op(opcode: u8) -> OpCode {
    OpCode::new(opcode).unwrap_or_else(|| panic!("opcode {opcode} is not 0..=15"))
}

/// One whole frame: `opcode` (`0..=15`), its FIN bit, masked with `mask` (a client's frame)
/// or not (`None`, a server's), and `payload`.
pub fn frame(opcode: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    encode_frame(&mut out, op(opcode), fin, mask, payload);
    out
}

/// An unmasked frame, as a server sends it.
pub fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, None, payload)
}

/// A frame masked with `key`, as a client sends it (key `[0; 4]` leaves the payload as is,
/// so large frames cost no masking in a test).
pub fn client_frame(opcode: u8, fin: bool, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, Some(key), payload)
}

/// The header alone of a frame announcing `len` payload bytes: for a frame a peer streams
/// in pieces, or starts and never finishes.
pub fn frame_header(opcode: u8, fin: bool, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    FrameHeader::new(fin, op(opcode), mask, len).encode(&mut out);
    out
}

/// A frame read back by [`read_frame`] or [`read_frame_blocking`], unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The first header byte as sent: FIN, the three RSV bits and the opcode.
    pub first: u8,
    /// The FIN bit.
    pub fin: bool,
    /// The opcode (`0..=15`).
    pub opcode: u8,
    /// Whether the frame was masked (every client frame must be, no server frame may be).
    pub masked: bool,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

/// The payload length and mask key of a frame whose first two header bytes are `head`,
/// reading the extended length and the key through `read_exact`.
fn rest_of_header(
    head: [u8; 2],
    mut read_exact: impl FnMut(&mut [u8]) -> io::Result<()>,
) -> io::Result<(usize, [u8; 4])> {
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if head[1] & 0x80 != 0 {
        read_exact(&mut key)?;
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("a frame larger than memory"))?;
    Ok((len, key))
}

fn finish(head: [u8; 2], key: [u8; 4], mut payload: Vec<u8>) -> Frame {
    let masked = head[1] & 0x80 != 0;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Frame {
        first: head[0],
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0f,
        masked,
        payload,
    }
}

/// Reads one frame from an async stream; `None` at end of stream or on a read error.
pub async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Frame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    // The header's rest is at most 12 bytes: read it first, then parse from memory.
    let mut ext = Vec::new();
    let need = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    } + if head[1] & 0x80 != 0 { 4 } else { 0 };
    ext.resize(need, 0);
    stream.read_exact(&mut ext).await.ok()?;
    let mut at = 0;
    let (len, key) = rest_of_header(head, |buf| {
        buf.copy_from_slice(&ext[at..at + buf.len()]);
        at += buf.len();
        Ok(())
    })
    .ok()?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some(finish(head, key, payload))
}

/// Reads one frame from a blocking stream.
pub fn read_frame_blocking(stream: &mut impl Read) -> io::Result<Frame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let (len, key) = rest_of_header(head, |buf| stream.read_exact(buf))?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok(finish(head, key, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_built() {
        for len in [0usize, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let bytes = frame(2, len % 2 == 0, mask, &payload);
                let f = read_frame_blocking(&mut &bytes[..]).expect("a whole frame");
                assert_eq!((f.opcode, f.fin, f.masked), (2, len % 2 == 0, mask.is_some()));
                assert_eq!(f.payload, payload);
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
                let g = rt.block_on(read_frame(&mut &bytes[..])).expect("a whole frame");
                assert_eq!(f, g);
            }
        }
        assert_eq!(server_frame(1, true, b"hi"), [0x81, 0x02, b'h', b'i']);
        assert_eq!(
            frame_header(2, true, None, 1 << 40),
            [0x82, 0x7f, 0, 0, 1, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            read_frame_blocking(&mut &server_frame(9, true, b"p")[..])
                .expect("frame")
                .first,
            0x89
        );
    }
}
