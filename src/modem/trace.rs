//! `--trace FILE`: every byte of the AT port, both directions, timestamped, with the
//! credentials that pass through it (the `auth` of AT+WSOPEN, a URI's password, the values
//! of AT+WSHEAD headers) replaced by `<redacted>` unless asked otherwise.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use wsat_at::PortState;

use super::secrets::{render, Secrets};

/// Input held for one command is at most a line (the engine keeps no more than 256 bytes of
/// one) plus its payload; held input beyond this while a line is pending is a discarded
/// over-long line, which can carry no command, and is written out.
const MAX_HELD_LINE: usize = 256;
/// Output held while a command's input is held (its echo, URCs): written out beyond this,
/// so a host that never finishes its line cannot make the trace hold the links' data.
const MAX_HELD_OUT: usize = 64 * 1024;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the host (the MCU) to the modem.
    In,
    /// From the modem to the host.
    Out,
}

/// A piece of output held while the command it follows is incomplete.
#[derive(Debug)]
enum HeldOut {
    /// The echo of these bytes of the held input.
    Echo(Range<usize>),
    /// Anything else (URCs, responses).
    Other(Vec<u8>),
}

/// A trace file: one line per record, `<seconds since start> <in|out> <len> "<escaped bytes>"`.
///
/// Input is held until the engine has consumed the whole command line (and its payload),
/// so that a secret split across reads is still recognised; it is then written as one
/// record with the time its first byte arrived. Output meanwhile is held too and written
/// after it, each piece with its own time: the echo of a partial line carries pieces of the
/// secret, which are hidden by their place in the input.
#[derive(Debug)]
pub struct Trace {
    out: BufWriter<File>,
    start: Instant,
    redactor: Option<Redactor>,
    /// Input of the command in progress, or of the one just complete until the round ends
    /// (the rest of its echo is still to come).
    held: Vec<u8>,
    held_since: Option<f64>,
    /// Once the held command is complete: which of its bytes are secret.
    mask: Option<Vec<bool>>,
    /// How much of the held input has been echoed.
    echoed: usize,
    held_out: Vec<(f64, HeldOut)>,
    held_out_bytes: usize,
}

impl Trace {
    /// Creates (truncates) the file. `redact` keeps credentials out of it.
    pub fn create(path: &Path, redact: bool) -> io::Result<Self> {
        Ok(Trace {
            out: BufWriter::new(File::create(path)?),
            start: Instant::now(),
            redactor: redact.then(Redactor::default),
            held: Vec::new(),
            held_since: None,
            mask: None,
            echoed: 0,
            held_out: Vec::new(),
            held_out_bytes: 0,
        })
    }

    /// Records bytes from the host, given the engine's state after it took them.
    pub fn record_in(&mut self, bytes: &[u8], after: PortState) {
        self.end_round();
        if self.held.is_empty() {
            self.held_since = Some(self.now());
        }
        self.held.extend_from_slice(bytes);
        let hold = match after {
            PortState::Idle { buffered } => buffered > 0 && self.held.len() <= MAX_HELD_LINE,
            PortState::Data { .. } => true,
            PortState::Busy => false,
        };
        if !hold {
            self.complete();
        }
    }

    /// Records bytes to the host (before they are written to it).
    pub fn record_out(&mut self, bytes: &[u8]) {
        let t = self.now();
        if self.held.is_empty() {
            let shown = self.redacted(bytes);
            self.write(t, Direction::Out, bytes.len(), &shown);
            return;
        }
        let piece = if self.held[self.echoed..].starts_with(bytes) {
            self.echoed += bytes.len();
            HeldOut::Echo(self.echoed - bytes.len()..self.echoed)
        } else {
            HeldOut::Other(bytes.to_vec())
        };
        if self.mask.is_some() {
            self.write_out(t, piece);
            return;
        }
        self.held_out.push((t, piece));
        self.held_out_bytes += bytes.len();
        if self.held_out_bytes > MAX_HELD_OUT {
            self.complete();
            self.end_round();
        }
    }

    /// The modem has written everything its engine had to say: a command completed in this
    /// round can have no more echo.
    pub fn end_round(&mut self) {
        if self.mask.is_some() {
            self.held.clear();
            self.held_since = None;
            self.mask = None;
            self.echoed = 0;
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The held command is complete (or given up on): learns from it, writes it and the
    /// output held behind it.
    fn complete(&mut self) {
        if let Some(r) = self.redactor.as_mut() {
            r.learn(&self.held);
        }
        let mask = match &self.redactor {
            Some(r) => r.secrets.mask(&self.held),
            None => vec![false; self.held.len()],
        };
        let shown = render(&self.held, &mask);
        let t = self.held_since.unwrap_or_default();
        self.write(t, Direction::In, self.held.len(), &shown);
        self.mask = Some(mask);
        for (t, piece) in std::mem::take(&mut self.held_out) {
            self.write_out(t, piece);
        }
        self.held_out_bytes = 0;
    }

    /// Writes one output piece of a complete command: its echo hidden by the input's mask.
    fn write_out(&mut self, t: f64, piece: HeldOut) {
        let (len, shown) = match (piece, &self.mask) {
            (HeldOut::Echo(range), Some(mask)) => (range.len(), render(&self.held[range.clone()], &mask[range])),
            (HeldOut::Echo(range), None) => (range.len(), self.held[range].to_vec()),
            (HeldOut::Other(bytes), _) => (bytes.len(), self.redacted(&bytes)),
        };
        self.write(t, Direction::Out, len, &shown);
    }

    /// `bytes` as the trace shows them.
    fn redacted(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.redactor {
            Some(r) => r.secrets.redact(bytes),
            None => bytes.to_vec(),
        }
    }

    fn write(&mut self, t: f64, direction: Direction, len: usize, shown: &[u8]) {
        let dir = match direction {
            Direction::In => "in ",
            Direction::Out => "out",
        };
        let line = format!("{t:12.6} {dir} {len:5} \"{}\"\n", shown.escape_ascii());
        if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.flush()) {
            tracing::warn!("trace write failed: {e}");
        }
    }
}

impl Drop for Trace {
    /// What the modem took in and wrote before it stopped is recorded, even mid-command.
    fn drop(&mut self) {
        if !self.held.is_empty() && self.mask.is_none() {
            self.complete();
        }
    }
}

/// Learns credentials from AT commands and hides every later occurrence of them.
#[derive(Debug, Default)]
struct Redactor {
    secrets: Secrets,
}

impl Redactor {
    /// Learns from a complete command (line, and the payload that followed its prompt).
    fn learn(&mut self, input: &[u8]) {
        let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &input[..end];
        let upper = line.to_ascii_uppercase();
        if let Some(params) = upper.strip_prefix(b"AT+WSOPEN=").map(|_| &line[10..]) {
            let fields: Vec<&[u8]> = params.split(|b| *b == b',').collect();
            if let Some(uri) = fields.get(1) {
                self.secrets.add_uri_password(unquote(uri));
            }
            if let Some(auth) = fields.get(4) {
                self.secrets.add(unquote(auth));
            }
        } else if upper.starts_with(b"AT+WSHEAD=") {
            let payload = &input[end + 2..];
            if let Some(colon) = payload.iter().position(|b| *b == b':') {
                self.secrets.add_header_value(&payload[colon + 1..]);
            }
        }
    }
}

fn unquote(field: &[u8]) -> &[u8] {
    let field = field.strip_prefix(b"\"").unwrap_or(field);
    field.strip_suffix(b"\"").unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_learned_and_hidden_everywhere() {
        let mut r = Redactor::default();
        r.learn(b"AT+WSOPEN=0,\"ws://user:hunter2@h:80/x\",\"chat\",5000,\"Bearer tok3n\"\r\n");
        r.learn(b"at+wshead=30\r\nAUTHORIZATION: Basic QTIzMzIy");
        let echo = b"AT+WSOPEN=0,\"ws://user:hunter2@h:80/x\",\"chat\",5000,\"Bearer tok3n\"\r\n";
        let shown = String::from_utf8(r.secrets.redact(echo)).expect("ascii");
        assert_eq!(
            shown,
            "AT+WSOPEN=0,\"ws://user:<redacted>@h:80/x\",\"chat\",5000,\"<redacted>\"\r\n"
        );
        let query = b"+WSHEAD:0,\"AUTHORIZATION: Basic QTIzMzIy\"\r\n";
        assert_eq!(r.secrets.redact(query), b"+WSHEAD:0,\"AUTHORIZATION:<redacted>\"\r\n");
        assert_eq!(r.secrets.redact(b"+WS_DATA:0,4,test\r\n"), b"+WS_DATA:0,4,test\r\n");
    }

    #[test]
    fn held_input_is_written_once_the_line_is_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace");
        let mut t = Trace::create(&path, true).expect("create");
        t.record_in(b"AT+WSOPEN=0,\"ws://u:sec", PortState::Idle { buffered: 23 });
        t.record_in(b"ret@h\",,100,\"tok3n\"\r\n", PortState::Busy);
        t.record_out(b"AT+WSOPEN=0,\"ws://u:secret@h\",,100,\"tok3n\"\r\n");
        t.end_round();
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("secret") && !text.contains("tok3n"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        let mut open = Trace::create(&path, false).expect("create");
        open.record_in(b"AT+WSOPEN=0,\"ws://u:secret@h\"\r\n", PortState::Busy);
        assert!(std::fs::read_to_string(&path).expect("read").contains("secret"));
    }

    #[test]
    fn the_echo_of_a_line_split_across_reads_is_redacted_by_its_place_in_the_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace");
        let mut t = Trace::create(&path, true).expect("create");
        // As the modem loop does: each arrival, then its echo.
        t.record_in(b"AT+WSOPEN=0,\"ws://u:sec", PortState::Idle { buffered: 23 });
        t.record_out(b"AT+WSOPEN=0,\"ws://u:sec");
        t.record_out(b"+WS_DATA:1,4,data\r\n");
        t.record_in(b"ret@h\"\r\n", PortState::Busy);
        t.record_out(b"ret@h\"\r\n");
        t.record_out(b"\r\nERROR\r\n");
        t.end_round();
        t.record_out(b"+WS_DATA:1,4,next\r\n");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("sec") && !text.contains("ret@"), "{text}");
        let shown: Vec<&str> = text.lines().map(|l| l.split_once('"').map_or(l, |(_, b)| b)).collect();
        assert_eq!(
            shown,
            [
                r#"AT+WSOPEN=0,\"ws://u:<redacted>@h\"\r\n""#,
                r#"AT+WSOPEN=0,\"ws://u:<redacted>""#,
                r#"+WS_DATA:1,4,data\r\n""#,
                r#"<redacted>@h\"\r\n""#,
                r#"\r\nERROR\r\n""#,
                r#"+WS_DATA:1,4,next\r\n""#,
            ],
            "{text}"
        );
    }

    #[test]
    fn held_bytes_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace");
        let mut t = Trace::create(&path, true).expect("create");
        // Over-long lines ending in CR keep a line pending for ever (FIRMWARE.md §1.3).
        let mut junk = vec![b'x'; 4095];
        junk.push(b'\r');
        for _ in 0..4 {
            t.record_in(&junk, PortState::Idle { buffered: 1 });
        }
        assert!(t.held.len() <= junk.len(), "{}", t.held.len());
        // A payload that never comes while a link keeps talking.
        t.record_in(b"AT+WSHEAD=10\r\n", PortState::Data { remaining: 10 });
        for _ in 0..1000 {
            t.record_out(&[b'd'; 1000]);
        }
        assert!(t.held_out_bytes <= MAX_HELD_OUT, "{}", t.held_out_bytes);
    }

    #[test]
    fn an_untraced_session_keeps_its_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace");
        let mut open = Trace::create(&path, false).expect("create");
        open.record_in(b"AT+WSOPEN=0,\"ws://u:secret@h\"\r\n", PortState::Busy);
        assert!(std::fs::read_to_string(&path).expect("read").contains("secret"));
    }
}
