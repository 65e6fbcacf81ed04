//! The permessage-deflate payload transformation (RFC 7692 §7.2): raw DEFLATE with a sync
//! flush per message, the trailing `00 00 ff ff` removed on send and put back on receive.
//! zlib-rs (through flate2) does the DEFLATE; this module frames it and bounds it.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::deflate::MIN_WINDOW_BITS;
use crate::ProtocolError;

/// What a sync flush ends with and what a sender strips from a message's end (RFC 7692
/// §7.2.1); the receiver appends it again before inflating the message's last bytes.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most one inflate step produces: the unit in which a message's decompressed size is
/// checked against its limit, so a compression bomb stops at most one step past it.
pub(crate) const INFLATE_STEP: usize = 32 * 1024;

/// The smallest output room of a step. A step's room starts near what its input likely
/// inflates to and doubles while the steps fill it, up to [`INFLATE_STEP`]: a 1 KiB message
/// does not zero 32 KiB of buffer to be inflated.
const FIRST_STEP_MIN: usize = 4 * 1024;

/// The RSV1 bit in [`crate::FrameHeader::rsv`]: "this message is compressed".
pub(crate) const RSV1: u8 = 0b100;

/// Compresses outgoing messages of one connection.
pub(crate) struct Deflater {
    /// Created at the first compressed message (zlib's state is a few hundred KiB).
    z: Option<Compress>,
    window_bits: u8,
    level: u32,
    /// A fresh context for every message (`*_no_context_takeover` for our direction).
    reset_per_message: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .field("reset_per_message", &self.reset_per_message)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    pub(crate) fn new(window_bits: u8, level: u32, reset_per_message: bool) -> Self {
        Deflater {
            z: None,
            window_bits,
            level: level.min(9),
            reset_per_message,
        }
    }

    /// Whether messages are compressed at all: zlib has no 256-byte window, so with 8
    /// window bits agreed they go out uncompressed (RSV1 clear), as RFC 7692 allows.
    pub(crate) fn compresses(&self) -> bool {
        self.window_bits > MIN_WINDOW_BITS
    }

    /// Compresses the next piece of a message; `last` ends it: the sync flush's `00 00 ff
    /// ff` is removed (or, when this piece added nothing after an earlier flush, the single
    /// `00` that RFC 7692 §7.2.1's appended empty block leaves), and the context is reset if
    /// it must not be taken over.
    pub(crate) fn compress(&mut self, data: &[u8], last: bool) -> Vec<u8> {
        let (level, bits) = (self.level, self.window_bits.clamp(9, 15));
        let z = self
            .z
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(level), false, bits));
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = z.total_in();
            // Compressing into a buffer with room cannot fail: there is no other error for
            // a raw stream in a valid state.
            let status = z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("raw deflate with output room");
            input = &input[(z.total_in() - before) as usize..];
            // The flush is complete once all input is in and the output was not filled.
            if input.is_empty() && (out.len() < out.capacity() || status == Status::BufError) {
                break;
            }
        }
        if last {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            } else {
                // A second flush in a row adds nothing: the stream is already byte-aligned
                // after the previous piece's flush; an empty stored block would be
                // `00 00 00 ff ff`, of which the `00` remains.
                debug_assert!(out.is_empty(), "a sync flush ends in 00 00 ff ff");
                out.push(0x00);
            }
            if self.reset_per_message {
                z.reset();
            }
        }
        out
    }
}

/// Inflates incoming messages of one connection, a bounded step at a time.
pub(crate) struct Inflater {
    z: Decompress,
    /// A fresh context for every message (`*_no_context_takeover` for the peer's direction).
    reset_per_message: bool,
    /// Compressed bytes handed over and not yet inflated.
    input: Bytes,
    /// The last step filled its output: there may be more without more input.
    more_output: bool,
    /// The output room of the next step (see [`FIRST_STEP_MIN`]).
    step_len: usize,
    /// A block with BFINAL ended the DEFLATE stream (RFC 7692 §7.2.3.4): the rest of the
    /// message is ignored and the next one starts a new stream.
    stream_ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_per_message", &self.reset_per_message)
            .field("input", &self.input.len())
            .field("more_output", &self.more_output)
            .field("stream_ended", &self.stream_ended)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Always a 32 KiB window: it decodes what any smaller window produced.
    pub(crate) fn new(reset_per_message: bool) -> Self {
        Inflater {
            z: Decompress::new(false),
            reset_per_message,
            input: Bytes::new(),
            more_output: false,
            step_len: FIRST_STEP_MIN,
            stream_ended: false,
        }
    }

    /// Work is left: input to inflate, or output held back by the last step.
    pub(crate) fn busy(&self) -> bool {
        !self.input.is_empty() || self.more_output
    }

    /// Hands over the next compressed bytes (only when not [`Inflater::busy`]).
    pub(crate) fn push(&mut self, data: Bytes) {
        debug_assert!(!self.busy(), "the previous input is inflated first");
        self.step_len = data.len().saturating_mul(4).clamp(FIRST_STEP_MIN, INFLATE_STEP);
        self.input = data;
    }

    /// One step: appends at most [`INFLATE_STEP`] decompressed bytes to `out` and returns
    /// how many. On an error, what was decompressed before the bad data is in `out` and its
    /// length is returned with the error, so that it can be delivered first.
    pub(crate) fn step(&mut self, out: &mut BytesMut) -> (usize, Result<(), ProtocolError>) {
        if self.stream_ended {
            self.input.clear();
            self.more_output = false;
            return (0, Ok(()));
        }
        let start = out.len();
        let room = self.step_len;
        out.resize(start + room, 0);
        let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
        let result = self.z.decompress(&self.input, &mut out[start..], FlushDecompress::None);
        let consumed = (self.z.total_in() - before_in) as usize;
        let produced = (self.z.total_out() - before_out) as usize;
        out.truncate(start + produced);
        self.input.advance(consumed);
        self.more_output = produced == room;
        if self.more_output {
            self.step_len = (room * 2).min(INFLATE_STEP);
        }
        let result = match result {
            Ok(Status::StreamEnd) => {
                self.stream_ended = true;
                self.input.clear();
                self.more_output = false;
                Ok(())
            }
            Ok(_) if consumed == 0 && produced == 0 && !self.input.is_empty() => {
                Err(ProtocolError::InvalidCompressedData("inflate made no progress".into()))
            }
            Ok(_) => Ok(()),
            Err(err) => Err(ProtocolError::InvalidCompressedData(err.to_string())),
        };
        if result.is_err() {
            self.clear();
        }
        (produced, result)
    }

    /// The message is complete: a new context if it must not be taken over, or if the
    /// stream ended.
    pub(crate) fn end_message(&mut self) {
        if self.reset_per_message || self.stream_ended {
            self.z.reset(false);
            self.stream_ended = false;
        }
    }

    /// Drops what is left (the connection failed or stops decoding).
    pub(crate) fn clear(&mut self) {
        self.input.clear();
        self.more_output = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates a whole message as the receiver does: its bytes, then the tail.
    fn inflate_message(inf: &mut Inflater, wire: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for piece in [Bytes::copy_from_slice(wire), Bytes::from_static(&TAIL)] {
            inf.push(piece);
            while inf.busy() {
                let (_, res) = inf.step(&mut out);
                res.expect("valid");
            }
        }
        inf.end_message();
        out.to_vec()
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
    #[test]
    fn the_rfc_example_both_ways() {
        let mut d = Deflater::new(15, 6, true);
        assert_eq!(d.compress(b"Hello", true), [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut inf = Inflater::new(false);
        assert_eq!(
            inflate_message(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        // §7.2.3.2: the same message again with context takeover is shorter.
        assert_eq!(inflate_message(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00]), b"Hello");
        // §7.2.3.3: an empty block with no compression in the message.
        let mut inf = Inflater::new(false);
        assert_eq!(
            inflate_message(
                &mut inf,
                &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00]
            ),
            b"Hello"
        );
        // §7.2.3.4: a block with BFINAL set; the next message starts a new stream.
        assert_eq!(
            inflate_message(&mut inf, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_message(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
    }

    #[test]
    fn pieces_of_a_message_and_an_empty_last_piece() {
        for window in 9..=15 {
            let mut d = Deflater::new(window, 6, false);
            let mut inf = Inflater::new(false);
            // Message 1 in three pieces, the last empty: one `00` ends it.
            let mut wire = d.compress(b"abcabcabc", false);
            assert!(wire.ends_with(&TAIL), "an unfinished message keeps its flush");
            wire.extend(d.compress(b"defdef", false));
            let last = d.compress(b"", true);
            assert_eq!(last, [0x00]);
            wire.extend(last);
            assert_eq!(inflate_message(&mut inf, &wire), b"abcabcabcdefdef");
            // Message 2 (context taken over) and an empty message 3.
            assert_eq!(inflate_message(&mut inf, &d.compress(b"abcabc", true)), b"abcabc");
            assert_eq!(inflate_message(&mut inf, &d.compress(b"", true)), b"");
        }
        // A fresh compressor's empty message.
        let mut d = Deflater::new(15, 6, true);
        let empty = d.compress(b"", true);
        assert_eq!(inflate_message(&mut Inflater::new(true), &empty), b"");
    }

    #[test]
    fn steps_are_bounded_and_corrupt_data_fails() {
        let mut d = Deflater::new(15, 9, true);
        let wire = d.compress(&vec![0u8; 1 << 20], true);
        assert!(wire.len() < 2048, "{}", wire.len());
        let mut inf = Inflater::new(true);
        inf.push(Bytes::from(wire));
        let mut out = BytesMut::new();
        let mut steps = 0;
        while inf.busy() {
            let before = out.len();
            let (n, res) = inf.step(&mut out);
            res.expect("valid");
            assert_eq!(out.len() - before, n);
            assert!(n <= INFLATE_STEP);
            steps += 1;
        }
        assert_eq!(out.len(), 1 << 20);
        assert!(steps >= (1 << 20) / INFLATE_STEP);

        let mut inf = Inflater::new(false);
        // A block type of 3 is invalid.
        inf.push(Bytes::from_static(&[0xff, 0xff, 0xff]));
        let (_, res) = inf.step(&mut BytesMut::new());
        assert!(matches!(res, Err(ProtocolError::InvalidCompressedData(_))), "{res:?}");
        assert!(!inf.busy());
    }
}
