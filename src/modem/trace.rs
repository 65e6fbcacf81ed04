//! `--trace FILE`: every byte of the AT port, both directions, timestamped, with the
//! credentials that pass through it (the `auth` of AT+WSOPEN, a URI's password, the values
//! of AT+WSHEAD headers) replaced by `<redacted>` unless asked otherwise.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use wsat_at::PortState;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the host (the MCU) to the modem.
    In,
    /// From the modem to the host.
    Out,
}

/// A trace file: one line per record, `<seconds since start> <in|out> <len> "<escaped bytes>"`.
///
/// Input is held until the engine has consumed the whole command line (and its payload),
/// so that a secret split across reads is still recognised; it is then written as one
/// record with the time its first byte arrived.
#[derive(Debug)]
pub struct Trace {
    out: BufWriter<File>,
    start: Instant,
    redactor: Option<Redactor>,
    held: Vec<u8>,
    held_since: Option<f64>,
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
        })
    }

    /// Records bytes from the host, given the engine's state after it took them.
    pub fn record_in(&mut self, bytes: &[u8], after: PortState) {
        if self.held.is_empty() {
            self.held_since = Some(self.start.elapsed().as_secs_f64());
        }
        self.held.extend_from_slice(bytes);
        let line_pending = matches!(after, PortState::Idle { buffered } if buffered > 0);
        if line_pending || matches!(after, PortState::Data { .. }) {
            return;
        }
        let held = std::mem::take(&mut self.held);
        if let Some(r) = self.redactor.as_mut() {
            r.learn(&held);
        }
        let t = self.held_since.take().unwrap_or_default();
        self.write(t, Direction::In, &held);
    }

    /// Records bytes to the host.
    pub fn record_out(&mut self, bytes: &[u8]) {
        let t = self.start.elapsed().as_secs_f64();
        self.write(t, Direction::Out, bytes);
    }

    fn write(&mut self, t: f64, direction: Direction, bytes: &[u8]) {
        let shown = match &self.redactor {
            Some(r) => r.redact(bytes),
            None => bytes.to_vec(),
        };
        let dir = match direction {
            Direction::In => "in ",
            Direction::Out => "out",
        };
        let line = format!("{t:12.6} {dir} {:5} \"{}\"\n", bytes.len(), shown.escape_ascii());
        if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.flush()) {
            tracing::warn!("trace write failed: {e}");
        }
    }
}

/// Learns credentials from AT commands and hides every later occurrence of them.
#[derive(Debug, Default)]
struct Redactor {
    secrets: Vec<Vec<u8>>,
}

const REDACTED: &[u8] = b"<redacted>";

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
                self.learn_userinfo(uri);
            }
            if let Some(auth) = fields.get(4) {
                self.add(unquote(auth));
            }
        } else if upper.starts_with(b"AT+WSHEAD=") {
            let payload = &input[end + 2..];
            if let Some(colon) = payload.iter().position(|b| *b == b':') {
                let value = &payload[colon + 1..];
                self.add(value);
                self.add(value.trim_ascii());
            }
        }
    }

    fn learn_userinfo(&mut self, uri: &[u8]) {
        let uri = unquote(uri);
        let Some(scheme_end) = uri.windows(3).position(|w| w == b"://") else {
            return;
        };
        let rest = &uri[scheme_end + 3..];
        let authority_end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.iter().rposition(|b| *b == b'@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.iter().position(|b| *b == b':') {
                self.add(&userinfo[colon + 1..]);
            }
        }
    }

    /// Secrets shorter than 3 bytes would redact half the trace; they are not worth hiding.
    fn add(&mut self, secret: &[u8]) {
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_vec());
            // Longest first, so a secret that contains another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for secret in &self.secrets {
            let mut i = 0;
            while let Some(pos) = out[i..].windows(secret.len()).position(|w| w == secret.as_slice()) {
                let at = i + pos;
                out.splice(at..at + secret.len(), REDACTED.iter().copied());
                i = at + REDACTED.len();
            }
        }
        out
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
        let shown = String::from_utf8(r.redact(echo)).expect("ascii");
        assert_eq!(
            shown,
            "AT+WSOPEN=0,\"ws://user:<redacted>@h:80/x\",\"chat\",5000,\"<redacted>\"\r\n"
        );
        let query = b"+WSHEAD:0,\"AUTHORIZATION: Basic QTIzMzIy\"\r\n";
        assert_eq!(r.redact(query), b"+WSHEAD:0,\"AUTHORIZATION:<redacted>\"\r\n");
        assert_eq!(r.redact(b"+WS_DATA:0,4,test\r\n"), b"+WS_DATA:0,4,test\r\n");
    }

    #[test]
    fn held_input_is_written_once_the_line_is_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace");
        let mut t = Trace::create(&path, true).expect("create");
        t.record_in(b"AT+WSOPEN=0,\"ws://u:sec", PortState::Idle { buffered: 23 });
        t.record_in(b"ret@h\",,100,\"tok3n\"\r\n", PortState::Busy);
        t.record_out(b"AT+WSOPEN=0,\"ws://u:secret@h\",,100,\"tok3n\"\r\n");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("secret") && !text.contains("tok3n"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        let mut open = Trace::create(&path, false).expect("create");
        open.record_in(b"AT+WSOPEN=0,\"ws://u:secret@h\"\r\n", PortState::Busy);
        assert!(std::fs::read_to_string(&path).expect("read").contains("secret"));
    }
}
