//! Deterministic test data: payloads whose misordered, lost or repeated pieces show, and a
//! small generator for reproducible junk.

/// `n` payload bytes with a recognisable, position-dependent pattern (`a`..`z`, then `A`..`Z`,
/// then digits, cycling), so misordered chunks show.
pub fn pattern(n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|i| ALPHABET[(i * 7 + i / 61) % ALPHABET.len()]).collect()
}

/// The payload of message `seq`: `len` bytes covering all byte values (CR, LF, `>` and
/// `+WS_DATA:`-like text included, which an AT host's parsing must survive), different for
/// consecutive messages so that a stale or repeated echo does not match.
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let salt = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 | 1;
    (0..len)
        .map(|i| (i as u8).wrapping_mul(salt).wrapping_add((i >> 8) as u8 ^ seq as u8))
        .collect()
}

/// A small deterministic generator (xorshift64*), for reproducible junk input.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 counts as 1).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[3]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_and_cover_all_bytes() {
        let a = payload(0, 4096);
        let b = payload(1, 4096);
        assert_eq!(a.len(), 4096);
        assert_ne!(a, b);
        assert_ne!(payload(2, 20), payload(3, 20));
        let mut seen = [false; 256];
        a.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn the_generator_is_reproducible() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.bytes(64), b.bytes(64));
        assert!((0..1000).all(|_| a.below(95) < 95));
        assert_eq!(&pattern(3), b"aho");
    }
}
