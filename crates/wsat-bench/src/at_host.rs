//! The host side of an AT port, as `wsat-bench --modem` drives it: the modem's output cut
//! into events, and the check that every echoed byte is the byte that was sent.
//!
//! Pure (no I/O, no clock) so that the driver's parsing is tested on its own; the driver
//! itself is in [`super::modem`]. The stream grammar is the firmware's
//! (shared/spec/esp-at-websocket.md §1.2, §1.7, §1.8, §8.5): result codes and URCs are
//! CR LF terminated lines, the data prompt is a bare `>` (no CR LF after it), and
//! `+WS_DATA:<link>,<len>,<bytes>\r\n` carries `len` raw bytes that may themselves contain
//! CR LF, `>` or anything else, so it is cut by its length, never by a terminator.

use std::collections::VecDeque;

use anyhow::{bail, ensure};

/// What the modem said, one piece at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtEvent {
    /// A CR LF terminated line without its CR LF (`OK`, `SEND OK`, `+WS_CONNECTED:0`,
    /// an echoed command…). Empty lines (the CR LF around result codes) are skipped.
    Line(String),
    /// The data prompt `>` of AT+WSSEND / AT+WSHEAD: the payload may be written now.
    Prompt,
    /// One `+WS_DATA` URC: a chunk of a message received on `link`.
    Data {
        /// The link id.
        link: usize,
        /// The chunk's bytes (`<data_len>` of them).
        bytes: Vec<u8>,
    },
}

/// The URC prefix of received data.
const DATA_PREFIX: &[u8] = b"+WS_DATA:";
/// `+WS_DATA:` + two decimal numbers and their commas never take more than this.
const MAX_DATA_HEAD: usize = DATA_PREFIX.len() + 24;
/// A longer line without CR LF means the stream is not what the firmware writes.
const MAX_LINE: usize = 64 * 1024;
/// The firmware never reports a chunk larger than its 8 KiB buffer (16 KiB on master).
const MAX_DATA_LEN: usize = 1 << 20;

/// Cuts the modem's output into [`AtEvent`]s. Feed arrivals with [`AtStream::push`] in
/// whatever pieces the transport delivers, take events with [`AtStream::next_event`].
#[derive(Debug, Default)]
pub struct AtStream {
    buf: Vec<u8>,
    pos: usize,
}

impl AtStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes that arrived from the modem.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed but not yet returned as an event.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete event, `Ok(None)` if more bytes are needed, or an error if the
    /// stream cannot be what a modem writes (a malformed `+WS_DATA` head, a huge line).
    pub fn next_event(&mut self) -> anyhow::Result<Option<AtEvent>> {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.is_empty() || rest == b"\r" {
                return Ok(None);
            }
            if rest.starts_with(b"\r\n") {
                self.pos += 2;
                continue;
            }
            if rest[0] == b'>' {
                self.pos += 1;
                return Ok(Some(AtEvent::Prompt));
            }
            if rest.len() < DATA_PREFIX.len() && DATA_PREFIX.starts_with(rest) {
                return Ok(None);
            }
            if rest.starts_with(DATA_PREFIX) {
                return self.data();
            }
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                ensure!(
                    rest.len() <= MAX_LINE,
                    "more than {MAX_LINE} bytes from the modem without CR LF"
                );
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&rest[..end]).into_owned();
            self.pos += end + 2;
            return Ok(Some(AtEvent::Line(line)));
        }
    }

    /// `+WS_DATA:<link>,<len>,<len bytes>\r\n` at the current position.
    fn data(&mut self) -> anyhow::Result<Option<AtEvent>> {
        let rest = &self.buf[self.pos..];
        let head = &rest[DATA_PREFIX.len()..rest.len().min(MAX_DATA_HEAD)];
        let mut commas = head.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i);
        let (Some(c1), Some(c2)) = (commas.next(), commas.next()) else {
            ensure!(
                rest.len() < MAX_DATA_HEAD,
                "malformed +WS_DATA head {:?}",
                String::from_utf8_lossy(head)
            );
            return Ok(None);
        };
        let number = |digits: &[u8]| -> Option<usize> {
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse().ok()
        };
        let (Some(link), Some(len)) = (number(&head[..c1]), number(&head[c1 + 1..c2])) else {
            bail!("malformed +WS_DATA head {:?}", String::from_utf8_lossy(&head[..=c2]));
        };
        ensure!(len <= MAX_DATA_LEN, "+WS_DATA announces {len} bytes");
        let start = DATA_PREFIX.len() + c2 + 1;
        if rest.len() < start + len + 2 {
            return Ok(None);
        }
        ensure!(
            &rest[start + len..start + len + 2] == b"\r\n",
            "+WS_DATA:{link},{len} is not followed by CR LF after its {len} bytes"
        );
        let bytes = rest[start..start + len].to_vec();
        self.pos += start + len + 2;
        Ok(Some(AtEvent::Data { link, bytes }))
    }
}

/// The bytes sent on one link and not yet echoed: every echoed chunk must be exactly the
/// next bytes sent (the echo server and the link keep order), so a lost, duplicated or
/// altered byte is an error, never a figure.
#[derive(Debug, Default)]
pub struct EchoCheck {
    pending: VecDeque<u8>,
    echoed: u64,
}

impl EchoCheck {
    /// Nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records bytes written to the link (before the echo can arrive).
    pub fn sent(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
    }

    /// Checks an echoed chunk against what was sent and consumes it.
    pub fn received(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        ensure!(
            chunk.len() <= self.pending.len(),
            "{} bytes echoed but only {} in flight (after {} good bytes)",
            chunk.len(),
            self.pending.len(),
            self.echoed
        );
        if let Some(i) = self.pending.iter().zip(chunk).position(|(a, b)| a != b) {
            bail!(
                "echoed byte {} differs: sent {:#04x}, got {:#04x}",
                self.echoed + i as u64,
                self.pending[i],
                chunk[i]
            );
        }
        self.pending.drain(..chunk.len());
        self.echoed += chunk.len() as u64;
        Ok(())
    }

    /// Bytes sent and not echoed yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes echoed correctly so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }
}

/// The payload of message `seq`: `len` bytes covering all byte values (CR, LF, `>` and
/// `+WS_DATA:`-like text included, which the parsing must survive), different for
/// consecutive messages so that a stale or repeated echo does not match.
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let salt = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 | 1;
    (0..len)
        .map(|i| (i as u8).wrapping_mul(salt).wrapping_add((i >> 8) as u8 ^ seq as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(stream: &mut AtStream) -> Vec<AtEvent> {
        let mut out = Vec::new();
        while let Some(ev) = stream.next_event().expect("well formed") {
            out.push(ev);
        }
        out
    }

    fn line(s: &str) -> AtEvent {
        AtEvent::Line(s.to_owned())
    }

    #[test]
    fn a_send_transcript_in_one_piece() {
        let mut s = AtStream::new();
        s.push(b"\r\nready\r\nATE0\r\n\r\nOK\r\n\r\nOK\r\n\r\n>\r\nSEND OK\r\n+WS_DATA:0,4,te\r\n\r\n");
        assert_eq!(
            all(&mut s),
            [
                line("ready"),
                line("ATE0"),
                line("OK"),
                line("OK"),
                AtEvent::Prompt,
                line("SEND OK"),
                AtEvent::Data {
                    link: 0,
                    bytes: b"te\r\n".to_vec()
                },
            ]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let mut body = payload(7, 300);
        body.extend_from_slice(b"\r\n>+WS_DATA:9,9,");
        let mut wire = b"\r\nOK\r\n\r\n>+WS_DATA:2,".to_vec();
        wire.extend_from_slice(format!("{},", body.len()).as_bytes());
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"\r\n+WS_DISCONNECTED:1\r\n\r\nSEND OK\r\n");
        let expected = vec![
            line("OK"),
            AtEvent::Prompt,
            AtEvent::Data {
                link: 2,
                bytes: body.clone(),
            },
            line("+WS_DISCONNECTED:1"),
            line("SEND OK"),
        ];
        for cut in 0..=wire.len() {
            let mut s = AtStream::new();
            s.push(&wire[..cut]);
            let mut got = all(&mut s);
            s.push(&wire[cut..]);
            got.extend(all(&mut s));
            assert_eq!(got, expected, "cut at {cut}");
        }
        // Byte by byte.
        let mut s = AtStream::new();
        let mut got = Vec::new();
        for b in &wire {
            s.push(std::slice::from_ref(b));
            got.extend(all(&mut s));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn ws_disconnected_is_not_taken_for_data() {
        let mut s = AtStream::new();
        s.push(b"+WS_D");
        assert_eq!(s.next_event().unwrap(), None);
        s.push(b"ISCONNECTED:0\r\n+WS_DATA:1,0,\r\n");
        assert_eq!(
            all(&mut s),
            [
                line("+WS_DISCONNECTED:0"),
                AtEvent::Data {
                    link: 1,
                    bytes: Vec::new()
                }
            ]
        );
    }

    #[test]
    fn malformed_data_heads_are_errors() {
        for bad in [
            &b"+WS_DATA:x,4,abcd\r\n"[..],
            b"+WS_DATA:0,-4,abcd\r\n",
            b"+WS_DATA:0,4,abcdXY",
            b"+WS_DATA:0,99999999,",
            b"+WS_DATA:000000000000000000000000000000000",
        ] {
            let mut s = AtStream::new();
            s.push(bad);
            assert!(s.next_event().is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        let mut s = AtStream::new();
        s.push(&vec![b'x'; MAX_LINE + 1]);
        assert!(s.next_event().is_err());
    }

    #[test]
    fn echo_check_accepts_order_and_rejects_the_rest() {
        let mut c = EchoCheck::new();
        c.sent(b"hello");
        c.sent(b"world");
        c.received(b"hel").unwrap();
        c.received(b"lowo").unwrap();
        assert_eq!((c.in_flight(), c.echoed()), (3, 7));
        let e = c.received(b"rlX").unwrap_err().to_string();
        assert!(e.contains("byte 9"), "{e}");
        let mut c = EchoCheck::new();
        c.sent(b"ab");
        assert!(c.received(b"abc").is_err());
    }

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
}
