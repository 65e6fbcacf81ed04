//! IDLE-state line assembly (FIRMWARE.md §1.3): CR LF terminator, echo extent, NUL dropping and the
//! 255-byte discard; plus the busy-chunk test for the `AT+RST\r\n` override (FIRMWARE.md §1.6).

use crate::parser::MAX_LINE;

/// Bytes without a terminator beyond which the buffer is silently discarded.
pub(crate) const MAX_UNTERMINATED: usize = 255;

/// Bytes of a line kept: one more than the parser accepts, so a longer line still fails on its
/// length alone (`0x01030000`, FIRMWARE.md §1.3). The rest of an over-long line is counted, not stored,
/// so one huge arrival cannot grow the buffer (the chip's line buffer is fixed-size too).
const KEPT: usize = MAX_LINE + 1;

/// The receive task's line buffer while the port is IDLE.
#[derive(Debug, Default)]
pub(crate) struct LineAssembler {
    /// The first [`KEPT`] bytes of the line so far.
    buf: Vec<u8>,
    /// Length of the line so far (may exceed `buf` within one arrival).
    len: usize,
    /// Its last byte, if any: a CR there and an LF next end the line.
    last: Option<u8>,
}

/// What one IDLE arrival produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan<'a> {
    /// Bytes to echo (ATE1): the chunk up to and including the terminator, or all of it.
    pub echo: &'a [u8],
    /// A complete line including its CR LF, if a terminator was found. A line longer than
    /// [`MAX_LINE`] comes back cut to `MAX_LINE + 1` bytes: the parser refuses it by length.
    pub line: Option<Vec<u8>>,
    /// Chunk bytes after the terminator, to be processed in the port's next state.
    pub rest: &'a [u8],
}

impl LineAssembler {
    /// Number of bytes of an unterminated line held.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Forgets the partial line (command finished, or reset).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.len = 0;
        self.last = None;
    }

    /// Adds one arrival. A NUL drops everything up to and including it; the first CR LF ends a
    /// line (the buffer is then empty and the rest is returned unconsumed). Without a
    /// terminator, more than 255 buffered bytes are discarded, keeping a trailing CR.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Scan<'a> {
        for (idx, &byte) in chunk.iter().enumerate() {
            if byte == 0 {
                self.clear();
                continue;
            }
            let ends_line = byte == b'\n' && self.last == Some(b'\r');
            self.append(byte);
            if ends_line {
                let line = std::mem::take(&mut self.buf);
                self.clear();
                return Scan {
                    echo: &chunk[..=idx],
                    line: Some(line),
                    rest: &chunk[idx + 1..],
                };
            }
        }
        if self.len > MAX_UNTERMINATED {
            let keep_cr = self.last == Some(b'\r');
            self.clear();
            if keep_cr {
                self.append(b'\r');
            }
        }
        Scan {
            echo: chunk,
            line: None,
            rest: &[],
        }
    }

    /// One byte of the line: stored while the line is short enough to matter, always counted.
    fn append(&mut self, byte: u8) {
        if self.buf.len() < KEPT {
            self.buf.push(byte);
        }
        self.len += 1;
        self.last = Some(byte);
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
    fn an_over_long_line_in_one_arrival_keeps_only_what_the_parser_needs() {
        let mut la = LineAssembler::default();
        let mut data = vec![b'a'; 128 * 1024];
        data.extend_from_slice(b"\r\nAT");
        let s = la.push(&data);
        assert_eq!(s.echo.len(), 128 * 1024 + 2);
        assert_eq!(s.line.as_ref().map(Vec::len), Some(MAX_LINE + 1));
        assert_eq!(s.rest, b"AT");
        assert!(la.buf.capacity() <= 2 * KEPT, "{}", la.buf.capacity());
        // Without a terminator the same arrival is counted, then discarded whole.
        let s = la.push(&data[..128 * 1024]);
        assert!(s.line.is_none());
        assert_eq!(la.buffered(), 0);
        assert!(la.buf.capacity() <= 2 * KEPT, "{}", la.buf.capacity());
    }

    #[test]
    fn force_restart_detection() {
        assert!(contains_force_restart(b"xxAT+RST\r\nyy"));
        assert!(!contains_force_restart(b"AT+RST\r"));
        assert!(!contains_force_restart(b"at+rst\r\n"));
    }
}
