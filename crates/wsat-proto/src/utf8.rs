//! Incremental UTF-8 validation across fragment and chunk boundaries.

/// Validates a text message piece by piece, failing at the first byte that cannot start
/// or continue a valid sequence (so a bad message is rejected as early as possible, as the
/// Autobahn 6.x cases require), and holding at most 3 bytes of an unfinished sequence.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// The input is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece of the message.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]);
            let take = (need - self.pending_len).min(input.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&input[..take]);
            self.pending_len += take;
            input = &input[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &input[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Checks that the message did not end inside a sequence, and resets for the next one.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// The length of the sequence a lead byte starts (1 for bytes that cannot lead, so that
/// they fail at once).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validate_split(data: &[u8], splits: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &s in splits {
            let s = s.clamp(start, data.len());
            v.feed(&data[start..s])?;
            start = s;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn every_split_of_multibyte_text_is_accepted() {
        let text = "κόσμε€𝄞a\u{10FFFF}".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(validate_split(text, &[i, j]), Ok(()), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefixes() {
        // 0xF4 0x90 already exceeds U+10FFFF: rejected without waiting for more bytes.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
        // An encoded surrogate (ED A0 80) fails at its second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xED, 0xA0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xC0]), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_sequence_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[b'a', 0xE2, 0x82]), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert_eq!(v.finish(), Ok(()), "finish resets");
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_bytes_and_splits(data in proptest::collection::vec(any::<u8>(), 0..64),
                                                    a in 0usize..64, b in 0usize..64) {
            let (a, b) = (a.min(b), a.max(b));
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_split(&data, &[a, b]).is_ok(), expected);
        }

        #[test]
        fn agrees_with_std_on_valid_text_split_bytewise(s in "\\PC{0,24}") {
            let bytes = s.as_bytes();
            let splits: Vec<usize> = (0..bytes.len()).collect();
            prop_assert_eq!(validate_split(bytes, &splits), Ok(()));
        }
    }
}
