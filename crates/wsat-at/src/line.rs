//! IDLE-state line assembly (spec §1.3): CR LF terminator, echo extent, NUL dropping and the
//! 255-byte discard; plus the busy-chunk test for the `AT+RST\r\n` override (§1.6).

/// Bytes without a terminator beyond which the buffer is silently discarded.
pub(crate) const MAX_UNTERMINATED: usize = 255;

/// The receive task's line buffer while the port is IDLE.
#[derive(Debug, Default)]
pub(crate) struct LineAssembler {
    buf: Vec<u8>,
}

/// What one IDLE arrival produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan<'a> {
    /// Bytes to echo (ATE1): the chunk up to and including the terminator, or all of it.
    pub echo: &'a [u8],
    /// A complete line including its CR LF, if a terminator was found.
    pub line: Option<Vec<u8>>,
    /// Chunk bytes after the terminator, to be processed in the port's next state.
    pub rest: &'a [u8],
}

impl LineAssembler {
    /// Number of bytes of an unterminated line held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the partial line (command finished, or reset).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Adds one arrival. A NUL drops everything up to and including it; the first CR LF ends a
    /// line (the buffer is then empty and the rest is returned unconsumed). Without a
    /// terminator, more than 255 buffered bytes are discarded, keeping a trailing CR.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Scan<'a> {
        for (idx, &byte) in chunk.iter().enumerate() {
            if byte == 0 {
                self.buf.clear();
                continue;
            }
            self.buf.push(byte);
            if byte == b'\n' && self.buf.len() >= 2 && self.buf[self.buf.len() - 2] == b'\r' {
                let line = std::mem::take(&mut self.buf);
                return Scan {
                    echo: &chunk[..=idx],
                    line: Some(line),
                    rest: &chunk[idx + 1..],
                };
            }
        }
        if self.buf.len() > MAX_UNTERMINATED {
            let keep_cr = self.buf.last() == Some(&b'\r');
            self.buf.clear();
            if keep_cr {
                self.buf.push(b'\r');
            }
        }
        Scan {
            echo: chunk,
            line: None,
            rest: &[],
        }
    }
}

/// True if a chunk that arrives while BUSY contains `AT+RST\r\n` anywhere (forced restart).
pub(crate) fn contains_force_restart(chunk: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"AT+RST\r\n";
    chunk.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_in_one_chunk_with_rest() {
        let mut la = LineAssembler::default();
        let s = la.push(b"AT\r\nAT\r\n");
        assert_eq!(s.echo, b"AT\r\n");
        assert_eq!(s.line.as_deref(), Some(&b"AT\r\n"[..]));
        assert_eq!(s.rest, b"AT\r\n");
        assert_eq!(la.buffered(), 0);
    }

    #[test]
    fn terminator_split_across_chunks() {
        let mut la = LineAssembler::default();
        let s = la.push(b"AT\r");
        assert_eq!((s.echo, s.line.is_none()), (&b"AT\r"[..], true));
        let s = la.push(b"\nX");
        assert_eq!(s.echo, b"\n");
        assert_eq!(s.line.as_deref(), Some(&b"AT\r\n"[..]));
        assert_eq!(s.rest, b"X");
    }

    #[test]
    fn lone_cr_and_lf_do_not_terminate() {
        let mut la = LineAssembler::default();
        let s = la.push(b"A\rT\nX");
        assert!(s.line.is_none());
        assert_eq!(la.buffered(), 5);
        let s = la.push(b"\n\r\n");
        assert_eq!(s.line.as_deref(), Some(&b"A\rT\nX\n\r\n"[..]));
    }

    #[test]
    fn nul_drops_prefix() {
        let mut la = LineAssembler::default();
        let s = la.push(b"junk\0AT\r\n");
        assert_eq!(s.echo, b"junk\0AT\r\n");
        assert_eq!(s.line.as_deref(), Some(&b"AT\r\n"[..]));
        let s = la.push(b"AT\r\0\n");
        assert!(s.line.is_none());
        assert_eq!(la.buffered(), 1);
    }

    #[test]
    fn overlong_unterminated_is_discarded() {
        let mut la = LineAssembler::default();
        la.push(&[b'a'; 255]);
        assert_eq!(la.buffered(), 255);
        la.push(b"b");
        assert_eq!(la.buffered(), 0);
    }

    #[test]
    fn overlong_discard_keeps_trailing_cr() {
        let mut la = LineAssembler::default();
        let mut data = vec![b'a'; 300];
        data.push(b'\r');
        la.push(&data);
        assert_eq!(la.buffered(), 1);
        let s = la.push(b"\n");
        assert_eq!(s.line.as_deref(), Some(&b"\r\n"[..]));
    }

    #[test]
    fn force_restart_detection() {
        assert!(contains_force_restart(b"xxAT+RST\r\nyy"));
        assert!(!contains_force_restart(b"AT+RST\r"));
        assert!(!contains_force_restart(b"at+rst\r\n"));
    }
}
