//! The line between the host and the modem as a test bench shapes it: UART pacing at a
//! baud rate (both directions), added latency, and noise on the bytes to the host.
//!
//! Output waits here, in order, until it may leave; the modem loop writes what
//! [`Wire::next_slice`] offers and reports it with [`Wire::sent`]. With no shaping a piece
//! may leave at once and whole. The queue is bounded in bytes ([`Wire::has_room`]): while
//! it is full the modem loop takes no more input, so a host that does not read stalls on
//! its own writes.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Output bytes held before the modem loop stops taking input.
pub const OUTPUT_BOUND: usize = 64 * 1024;

/// Bits on the line per byte: 8N1 (a start bit, 8 data bits, a stop bit).
const BITS_PER_BYTE: u64 = 10;

/// How far behind its schedule the paced output line may fall (late timers) before it
/// counts as idle and starts anew.
const IDLE_LINE: Duration = Duration::from_millis(20);

/// How many received bytes a paced port hands the engine at once: the ESP UART driver's
/// receive FIFO threshold, so that a paced host gets the chip's `busy p...` pattern.
const RX_FIFO_THRESHOLD: usize = 120;

/// One output piece and when it may leave.
#[derive(Debug)]
struct Outgoing {
    due: Instant,
    bytes: Vec<u8>,
    sent: usize,
}

/// Input a paced port has read but the line has not delivered yet.
#[derive(Debug)]
struct Incoming {
    bytes: Vec<u8>,
    taken: usize,
    /// When the next byte starts on the line.
    line_at: Instant,
}

/// Drops or flips bytes with a probability, from a seeded generator.
#[derive(Debug, Clone, Copy)]
struct Noise {
    rate: f64,
    seed: u64,
    state: u64,
}

impl Noise {
    /// SplitMix64: written out rather than taken from `rand`, whose generators do not
    /// promise the same sequence across releases, and a seed must replay the same fault.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `bytes` as the host receives them.
    fn apply(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for b in bytes {
            let draw = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= self.rate {
                out.push(b);
                continue;
            }
            let how = self.next();
            if how & 1 == 0 {
                out.push(b ^ (1 << ((how >> 1) % 8)));
            } // else: dropped
        }
        out
    }
}

/// The shaped line; see the module documentation.
#[derive(Debug)]
pub struct Wire {
    baud: Option<u32>,
    latency: Duration,
    noise: Option<Noise>,
    out: VecDeque<Outgoing>,
    out_bytes: usize,
    /// When the output line is free for the next byte (pacing).
    out_line_at: Instant,
    incoming: Option<Incoming>,
}

impl Wire {
    /// A line paced at `baud` (8N1) in both directions, or unpaced.
    pub fn new(baud: Option<u32>) -> Self {
        Wire {
            baud: baud.filter(|b| *b > 0),
            latency: Duration::ZERO,
            noise: None,
            out: VecDeque::new(),
            out_bytes: 0,
            out_line_at: Instant::now(),
            incoming: None,
        }
    }

    /// The pacing baud rate, if paced.
    pub fn baud(&self) -> Option<u32> {
        self.baud
    }

    /// Every piece produced from now on leaves `latency` later (order is kept).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// From now on each byte to the host is dropped or has a bit flipped with probability
    /// `rate` (0 ends the noise), the same bytes for the same `seed`.
    pub fn set_noise(&mut self, rate: f64, seed: u64) {
        self.noise = (rate > 0.0).then_some(Noise {
            rate,
            seed,
            state: seed,
        });
    }

    /// The noise rate and seed, if noisy.
    pub fn noise(&self) -> Option<(f64, u64)> {
        self.noise.map(|n| (n.rate, n.seed))
    }

    /// Queues one output piece, produced `now`.
    pub fn push(&mut self, piece: Vec<u8>, now: Instant) {
        let bytes = match self.noise.as_mut() {
            Some(noise) => noise.apply(piece),
            None => piece,
        };
        if bytes.is_empty() {
            return;
        }
        self.out_bytes += bytes.len();
        self.out.push_back(Outgoing {
            due: now + self.latency,
            bytes,
            sent: 0,
        });
    }

    /// Whether the modem loop may take more input (the output queue is under its bound).
    pub fn has_room(&self) -> bool {
        self.out_bytes < OUTPUT_BOUND
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// When the next bytes may leave and which: the rest of the oldest piece, or under
    /// pacing about a hundredth of a second's worth of it.
    pub fn next_slice(&self) -> Option<(Instant, &[u8])> {
        let head = self.out.front()?;
        let rest = &head.bytes[head.sent..];
        match self.baud {
            None => Some((head.due, rest)),
            Some(baud) => {
                let per_tick = usize::try_from(baud / 1000).unwrap_or(usize::MAX).max(1);
                Some((head.due.max(self.out_line_at), &rest[..rest.len().min(per_tick)]))
            }
        }
    }

    /// `n` bytes of [`Wire::next_slice`] were written at `now`.
    pub fn sent(&mut self, n: usize, now: Instant) {
        if let Some(baud) = self.baud {
            // The line keeps its own schedule: a timer that wakes a little late must not
            // push every later byte back (that added 14 % at 9600 baud). Only a line that
            // was idle starts anew from now.
            let start = if now > self.out_line_at + IDLE_LINE {
                now
            } else {
                self.out_line_at
            };
            self.out_line_at = start + line_time(n, baud);
        }
        self.out_bytes -= n;
        if let Some(head) = self.out.front_mut() {
            head.sent += n;
            if head.sent >= head.bytes.len() {
                self.out.pop_front();
            }
        }
    }

    /// Drops everything queued both ways: the host is gone or replaced, the chip reset.
    pub fn clear(&mut self) {
        self.out.clear();
        self.out_bytes = 0;
        self.incoming = None;
    }

    /// Takes bytes the port read at `now`: unpaced they go to the engine at once (returned),
    /// paced they arrive as the line delivers them ([`Wire::next_input_at`], [`Wire::take_input`]).
    pub fn receive(&mut self, bytes: Vec<u8>, now: Instant) -> Option<Vec<u8>> {
        if self.baud.is_none() {
            return Some(bytes);
        }
        let line_at = self.incoming.as_ref().map_or(now, |i| i.line_at.max(now));
        self.incoming = Some(Incoming {
            bytes,
            taken: 0,
            line_at,
        });
        None
    }

    /// Whether paced input is still on the line (the port's next read must wait).
    pub fn input_pending(&self) -> bool {
        self.incoming.as_ref().is_some_and(|i| i.taken < i.bytes.len())
    }

    /// When the next slice of paced input has fully arrived.
    pub fn next_input_at(&self) -> Option<Instant> {
        let incoming = self.incoming.as_ref().filter(|i| i.taken < i.bytes.len())?;
        let len = (incoming.bytes.len() - incoming.taken).min(RX_FIFO_THRESHOLD);
        Some(incoming.line_at + line_time(len, self.baud?))
    }

    /// The next slice of paced input, once [`Wire::next_input_at`] has passed.
    pub fn take_input(&mut self) -> Option<Vec<u8>> {
        let at = self.next_input_at()?;
        let incoming = self.incoming.as_mut()?;
        let end = (incoming.taken + RX_FIFO_THRESHOLD).min(incoming.bytes.len());
        let slice = incoming.bytes[incoming.taken..end].to_vec();
        incoming.taken = end;
        incoming.line_at = at;
        Some(slice)
    }
}

/// How long `n` bytes take on a line at `baud`, 8N1.
fn line_time(n: usize, baud: u32) -> Duration {
    let bits = u64::try_from(n).unwrap_or(u64::MAX).saturating_mul(BITS_PER_BYTE);
    Duration::from_nanos(bits.saturating_mul(1_000_000_000) / u64::from(baud))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshaped_output_leaves_at_once_and_whole() {
        let mut wire = Wire::new(None);
        let now = Instant::now();
        wire.push(b"\r\nOK\r\n".to_vec(), now);
        let (at, slice) = wire.next_slice().expect("queued");
        assert_eq!((at, slice), (now, &b"\r\nOK\r\n"[..]));
        wire.sent(6, now);
        assert!(!wire.has_output());
    }

    #[test]
    fn latency_delays_and_keeps_order() {
        let mut wire = Wire::new(None);
        let now = Instant::now();
        wire.set_latency(Duration::from_millis(300));
        wire.push(b"first".to_vec(), now);
        wire.set_latency(Duration::ZERO);
        wire.push(b"second".to_vec(), now);
        let (at, slice) = wire.next_slice().expect("queued");
        assert_eq!((at, slice), (now + Duration::from_millis(300), &b"first"[..]));
    }

    #[test]
    fn pacing_spreads_960_bytes_at_9600_baud_over_a_second() {
        let mut wire = Wire::new(Some(9600));
        let start = Instant::now();
        wire.push(vec![b'x'; 960], start);
        let mut now = start;
        let mut last = start;
        while let Some((at, slice)) = wire.next_slice() {
            // Every timer wakes 1.3 ms late; the line must not drift by as much per slice.
            now = now.max(at) + Duration::from_micros(1300);
            last = now;
            let n = slice.len();
            assert!(n <= 9, "a slice of {n} bytes");
            wire.sent(n, now);
        }
        // The last slice starts when 951 bytes have left: 0.99 s.
        let took = last - start;
        assert!(
            took > Duration::from_millis(980) && took < Duration::from_millis(1000),
            "{took:?}"
        );
    }

    #[test]
    fn paced_input_arrives_by_fifo_threshold_at_the_line_rate() {
        let mut wire = Wire::new(Some(9600));
        let now = Instant::now();
        assert!(wire.receive(vec![b'a'; 200], now).is_none());
        assert_eq!(wire.next_input_at(), Some(now + line_time(120, 9600)));
        assert_eq!(wire.take_input().map(|s| s.len()), Some(120));
        assert_eq!(wire.next_input_at(), Some(now + line_time(200, 9600)));
        assert_eq!(wire.take_input().map(|s| s.len()), Some(80));
        assert!(!wire.input_pending());
    }

    #[test]
    fn noise_is_the_same_for_the_same_seed_and_changes_bytes_at_its_rate() {
        let data = vec![0x55u8; 10_000];
        let run = |seed| {
            let mut wire = Wire::new(None);
            wire.set_noise(0.1, seed);
            wire.push(data.clone(), Instant::now());
            wire.next_slice().expect("queued").1.to_vec()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let noisy = run(7);
        let dropped = data.len() - noisy.len();
        let flipped = noisy.iter().filter(|b| **b != 0x55).count();
        let changed = dropped + flipped;
        assert!((800..1200).contains(&changed), "{dropped} dropped, {flipped} flipped");
        assert!(dropped > 300 && flipped > 300, "{dropped} dropped, {flipped} flipped");
    }
}
