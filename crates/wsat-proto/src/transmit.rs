//! The bytes a connection has queued for the transport, in order.
//!
//! Frames are encoded into one buffer as they are sent, except the payload of a large
//! masked frame given as shared [`Bytes`]: that payload is kept by reference and masked a
//! chunk at a time as it is taken. A 16 MiB send then never needs a second 16 MiB buffer,
//! and each masked chunk is written to the socket while it is still in the CPU's cache
//! instead of being written out to memory and read back by the kernel.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::encode::encode_frame_rsv;
use crate::header::MAX_HEADER_LEN;
use crate::mask::apply_mask;
use crate::{FrameHeader, OpCode};

/// Masked payloads from this size on are masked as they are taken, not when sent.
pub(crate) const DEFER_MASK_MIN: usize = 64 * 1024;

/// How much of a deferred payload one take masks: small enough to stay in a core's cache
/// until the transport has copied it, large enough to keep system calls few.
pub(crate) const MASK_CHUNK: usize = 256 * 1024;

/// A run of the queue: encoded bytes, or a payload still to be masked.
#[derive(Debug)]
enum Segment {
    Encoded(BytesMut),
    Masked { payload: Bytes, key: [u8; 4], done: usize },
}

/// Bytes waiting for the transport (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct TransmitQueue {
    /// Runs before `tail`, oldest first; empty unless a deferred payload is waiting.
    segments: VecDeque<Segment>,
    /// Encoded bytes after every segment.
    tail: BytesMut,
    /// Bytes queued since the start: the stream offset just past the last one.
    end: u64,
    /// Where in `tail` the last frame starts, while that frame is a pong nothing has been
    /// queued after nor taken: a newer pong may replace it.
    replaceable_pong: Option<usize>,
}

impl TransmitQueue {
    /// Queues one frame with the RSV bits `rsv`. `shared`, when given, is `payload` itself:
    /// a large masked payload is then kept by reference (see [`DEFER_MASK_MIN`]).
    pub(crate) fn push_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        mask: Option<[u8; 4]>,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) {
        self.replaceable_pong = None;
        match (mask, shared) {
            (Some(key), Some(shared)) if shared.len() >= DEFER_MASK_MIN => {
                let mut header = [0u8; MAX_HEADER_LEN];
                let n = FrameHeader {
                    rsv,
                    ..FrameHeader::new(fin, opcode, Some(key), shared.len() as u64)
                }
                .encode_to_array(&mut header);
                self.tail.extend_from_slice(&header[..n]);
                self.segments.push_back(Segment::Encoded(self.tail.split()));
                self.segments.push_back(Segment::Masked {
                    payload: shared.clone(),
                    key,
                    done: 0,
                });
                self.end += (n + shared.len()) as u64;
            }
            _ => {
                let before = self.tail.len();
                self.tail.reserve(MAX_HEADER_LEN + payload.len());
                encode_frame_rsv(&mut self.tail, opcode, fin, rsv, mask, payload);
                self.end += (self.tail.len() - before) as u64;
            }
        }
    }

    /// Queues a pong. While the previous pong is still the last frame queued and nothing of
    /// it has been taken, this one replaces it (RFC 6455 §5.5.3 allows answering only the
    /// most recent ping): a peer that floods pings and never reads then cannot grow the
    /// queue. No offset any caller recorded moves, since nothing was queued after it.
    pub(crate) fn push_pong(&mut self, mask: Option<[u8; 4]>, payload: &[u8]) {
        if let Some(start) = self.replaceable_pong.take() {
            self.end -= (self.tail.len() - start) as u64;
            self.tail.truncate(start);
        }
        let start = self.tail.len();
        self.push_frame(OpCode::PONG, true, 0, mask, payload, None);
        self.replaceable_pong = Some(start);
    }

    /// Moves the next bytes to the end of `out`: everything encoded up to the next deferred
    /// payload and at most one chunk of that payload, or, with none waiting, all of it.
    /// When `out` is empty, encoded buffers are swapped in rather than copied.
    pub(crate) fn take_into(&mut self, out: &mut BytesMut) {
        while let Some(segment) = self.segments.front_mut() {
            match segment {
                Segment::Encoded(bytes) => {
                    append(out, bytes);
                    self.segments.pop_front();
                }
                Segment::Masked { payload, key, done } => {
                    let n = (payload.len() - *done).min(MASK_CHUNK);
                    let start = out.len();
                    out.extend_from_slice(&payload[*done..*done + n]);
                    apply_mask(&mut out[start..], *key, *done);
                    *done += n;
                    if *done == payload.len() {
                        self.segments.pop_front();
                    }
                    return;
                }
            }
        }
        append(out, &mut self.tail);
        self.replaceable_pong = None;
    }

    /// Nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.tail.is_empty()
    }

    /// How many bytes are waiting, deferred payloads included.
    pub(crate) fn len(&self) -> usize {
        let segments: usize = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Encoded(bytes) => bytes.len(),
                Segment::Masked { payload, done, .. } => payload.len() - done,
            })
            .sum();
        segments + self.tail.len()
    }

    /// The stream offset just past the last byte queued so far.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

/// Moves `from` to the end of `to`, swapping the buffers when `to` is empty.
fn append(to: &mut BytesMut, from: &mut BytesMut) {
    if to.is_empty() {
        std::mem::swap(to, from);
    } else {
        to.extend_from_slice(from);
        from.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::apply_mask_bytewise;

    /// Everything queued, and how many takes it needed; each take at most `bound` bytes.
    fn drain(q: &mut TransmitQueue, bound: usize) -> (Vec<u8>, usize) {
        let mut all = Vec::new();
        let mut takes = 0;
        while !q.is_empty() {
            let mut out = BytesMut::new();
            q.take_into(&mut out);
            assert!(out.len() <= bound, "a take of {} bytes", out.len());
            all.extend_from_slice(&out);
            takes += 1;
        }
        (all, takes)
    }

    /// Deferred or not, the bytes on the wire are the same frames in the same order.
    #[test]
    fn deferred_payloads_give_the_bytes_of_eagerly_encoded_frames() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let large = Bytes::from((0..DEFER_MASK_MIN * 5 + 3).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        let small = Bytes::from_static(b"ping!");
        let frames: [(OpCode, &Bytes); 4] = [
            (OpCode::TEXT, &small),
            (OpCode::BINARY, &large),
            (OpCode::PING, &small),
            (OpCode::BINARY, &large),
        ];
        let mut deferred = TransmitQueue::default();
        let mut eager = TransmitQueue::default();
        let mut expected = Vec::new();
        for (opcode, payload) in frames {
            deferred.push_frame(opcode, true, 0, Some(key), payload, Some(payload));
            eager.push_frame(opcode, true, 0, Some(key), payload, None);
            let mut masked = payload.to_vec();
            apply_mask_bytewise(&mut masked, key, 0);
            let header = FrameHeader::new(true, opcode, Some(key), payload.len() as u64);
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = header.encode_to_array(&mut h);
            expected.extend_from_slice(&h[..n]);
            expected.extend_from_slice(&masked);
        }
        assert_eq!(deferred.end(), expected.len() as u64);
        assert_eq!(eager.end(), expected.len() as u64);
        // At most a chunk, plus the small frames and headers queued before it.
        let (wire, takes) = drain(&mut deferred, MASK_CHUNK + 2 * (MAX_HEADER_LEN + small.len()));
        assert!(wire == expected, "deferred frames differ from the reference encoding");
        assert!(
            takes > 2 * (large.len() / MASK_CHUNK),
            "the large payloads went in chunks: {takes}"
        );
        let (wire, takes) = drain(&mut eager, usize::MAX);
        assert!(wire == expected, "eager frames differ from the reference encoding");
        assert_eq!(takes, 1);
    }

    /// Unmasked (server) frames and small payloads are encoded at once, even when shared.
    #[test]
    fn only_large_masked_payloads_are_deferred() {
        let large = Bytes::from(vec![1u8; DEFER_MASK_MIN]);
        let mut q = TransmitQueue::default();
        q.push_frame(OpCode::BINARY, true, 0, None, &large, Some(&large));
        let small = Bytes::from(vec![2u8; DEFER_MASK_MIN - 1]);
        q.push_frame(OpCode::BINARY, true, 0, Some([1, 2, 3, 4]), &small, Some(&small));
        assert!(q.segments.is_empty());
        q.push_frame(OpCode::BINARY, true, 0, Some([1, 2, 3, 4]), &large, Some(&large));
        assert_eq!(q.segments.len(), 2);
    }
}
