//! Fuzz target bodies, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and the corpus replay
//! test `tests/fuzz_corpus.rs`, so that every checked-in input is re-checked by `cargo test`.
//!
//! Not part of the API: each function takes raw fuzz bytes, decodes a scenario from them by hand
//! and panics when an invariant breaks.

use std::collections::HashMap;

use crate::params::{parse_int, parse_string, GetError, Params};
use crate::parser::{self, Kind, ParseError, MAX_LINE};
use crate::{Action, Completion, Engine, EngineConfig, Firmware, LinkEvent, LinkHandle, Pki, PortState};

/// Output one call may produce besides what its input justifies: the longest fixed answer
/// (AT+CMD?, AT+GMR, AT+WSOPEN? with three 256-byte URIs) with room to spare.
const FIXED_OUTPUT: usize = 8 * 1024;
/// Output per input byte: a line of two bytes (`\r\n`) can cost an echo, an `ERR CODE` line
/// and `ERROR`, 32 bytes.
const PER_BYTE: usize = 16;

/// A fake glue around the engine: records outstanding actions and counts output.
struct Glue {
    engine: Engine,
    /// Actions that await a completion, oldest first.
    outstanding: Vec<Action>,
    /// Latest generation handed out per link id.
    generations: HashMap<usize, u64>,
    /// Every input byte so far (fed bytes and link data): bounds stored state.
    input: usize,
    /// Everything written to the port since the last `take_output`.
    output: Vec<u8>,
}

impl Glue {
    fn new(firmware: Firmware) -> Self {
        let two = |tag: &str| vec![format!("{tag}0").into_bytes(), format!("{tag}1").into_bytes()];
        let mut engine = Engine::new(EngineConfig {
            firmware,
            pki: Pki {
                cas: two("ca"),
                client_certs: two("cert"),
                client_keys: vec![b"key0".to_vec(), Vec::new()],
            },
            version: "0.1.0".into(),
            ..EngineConfig::default()
        });
        engine.boot();
        let mut glue = Glue {
            engine,
            outstanding: Vec::new(),
            generations: HashMap::new(),
            input: 0,
            output: Vec::new(),
        };
        glue.poll();
        glue.output.clear();
        glue
    }

    /// Runs `call` (which consumed `input` bytes of fuzz data), polls everything and checks
    /// that the output it caused is bounded by that input and the state built so far.
    fn step(&mut self, input: usize, call: impl FnOnce(&mut Engine)) {
        self.input += input;
        let before = self.output.len();
        call(&mut self.engine);
        self.poll();
        let produced = self.output.len() - before;
        assert!(
            produced <= FIXED_OUTPUT + PER_BYTE * input + self.input,
            "{produced} bytes of output for {input} bytes of input ({} so far)",
            self.input
        );
    }

    fn poll(&mut self) {
        while let Some(piece) = self.engine.poll_output() {
            assert!(!piece.is_empty(), "empty output piece");
            self.output.extend_from_slice(&piece);
        }
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Open { link, .. } => {
                    let last = self.generations.insert(link.id, link.generation);
                    assert!(last.is_none_or(|g| g < link.generation), "generation reused: {link:?}");
                    self.outstanding.push(action);
                }
                Action::CloseAll => {}
                _ => self.outstanding.push(action),
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.step(bytes.len(), |e| e.feed(bytes));
    }

    /// Completes outstanding action `index` as the glue would: `event` reports the link's
    /// Connected/Disconnected before an open's completion.
    fn complete(&mut self, index: usize, ok: bool, event: bool, unix_seconds: i64) {
        let action = self.outstanding.remove(index);
        self.step(0, |e| match action {
            Action::Open { link, .. } => {
                if event {
                    let ev = if ok {
                        LinkEvent::Connected
                    } else {
                        LinkEvent::Disconnected
                    };
                    e.handle_link_event(link, ev);
                }
                e.complete(Completion::Open { link, ok });
            }
            Action::Send { link, .. } => e.complete(Completion::Send { link, ok }),
            Action::Close { link } => e.complete(Completion::Close { link }),
            Action::SntpSync => e.complete(Completion::SntpSynced),
            Action::QueryTime { .. } => e.complete(Completion::Time { unix_seconds }),
            Action::CloseAll => {}
        });
    }

    /// Completes every outstanding action successfully, including those they lead to.
    fn service(&mut self) {
        while !self.outstanding.is_empty() {
            self.complete(0, true, true, 1_700_000_000);
        }
    }

    /// Brings the port back to IDLE with an empty line buffer and echo on, as a host would
    /// (FIRMWARE.md §1.7: data mode has no escape, so it is filled), then checks that `AT` answers.
    fn recover_and_check(&mut self) {
        for _ in 0..64 {
            self.service();
            match self.engine.port_state() {
                PortState::Idle { buffered: 0 } => break,
                PortState::Idle { .. } => self.feed(b"\r\n"),
                PortState::Data { remaining } => self.feed(&vec![b'x'; remaining]),
                PortState::Busy => panic!("stuck BUSY with every action completed"),
            }
        }
        assert_eq!(self.engine.port_state(), PortState::Idle { buffered: 0 });
        self.feed(b"ATE1\r\n");
        self.service();
        self.take_output();
        self.feed(b"AT\r\n");
        let out = self.take_output();
        assert_eq!(out.escape_ascii().to_string(), "AT\\r\\n\\r\\nOK\\r\\n");
        assert!(self.outstanding.is_empty() && self.engine.poll_action().is_none());
    }
}

/// A little-endian integer from up to `N` bytes at the front of `bytes`.
fn le<const N: usize>(bytes: &[u8]) -> u64 {
    bytes.iter().take(N).rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// `at_engine` target: an arbitrary session against the engine, then recovery.
///
/// Input: a config byte (bit 0: master firmware), then operations separated by `0xFF`. An
/// operation whose first byte is not 1..=7 is fed as one chunk; otherwise the first byte says:
/// * `1`: complete every outstanding action successfully (Connected before an open's OK);
/// * `2 k f t...`: complete outstanding action `k` (mod count); `f` bit 0 = ok, bit 1 = report
///   the link's (dis)connection first; `t` = little-endian Unix seconds for a time query;
/// * `3 id g e [op s p... data]`: link event `e % 5` (connecting, connected, disconnected,
///   closed, data) for link `id`, generation = the latest one minus `g` (`g < 0x80`) or `g`
///   itself; data events take opcode `op`, `s` (bit 0 fin; bits 1-2: one whole frame, the first
///   chunk of a longer frame, a later chunk at offset `p`, or 16 bytes of `payload_len` and
///   `offset`) and the rest as chunk;
/// * `4 k id g t...`: a stray completion (kind `k % 5`) for an arbitrary handle;
/// * `5`: `boot()` (a new AT client);
/// * `6 bytes...`: feed the bytes XOR 0x80 (to feed `0xFF`); `7 bytes...`: feed them as they are.
///
/// Checked: no panic; no empty output pieces; each call's output is bounded by its input
/// (16 bytes per input byte plus a fixed 8 KiB plus all input so far, which bounds stored
/// headers); generations never repeat; once every action is completed the port is never stuck
/// BUSY and, after filling data mode, CR LF until idle and `ATE1`, `AT\r\n` answers exactly
/// `AT\r\n\r\nOK\r\n`.
pub fn engine(data: &[u8]) {
    let Some((&config, ops)) = data.split_first() else {
        return;
    };
    let firmware = if config & 1 != 0 {
        Firmware::Master
    } else {
        Firmware::V5
    };
    let mut g = Glue::new(firmware);
    for op in ops.split(|&b| b == 0xFF) {
        match op {
            [1] => g.service(),
            [2, k, rest @ ..] if !g.outstanding.is_empty() => {
                let f = rest.first().copied().unwrap_or(1);
                let t = rest.get(1..).map_or(0, le::<8>) as i64;
                g.complete(usize::from(*k) % g.outstanding.len(), f & 1 != 0, f & 2 != 0, t);
            }
            [3, id, gen, e, rest @ ..] => {
                let id = usize::from(*id);
                let latest = g.generations.get(&id).copied().unwrap_or(0);
                let generation = if *gen < 0x80 {
                    latest.saturating_sub(u64::from(*gen))
                } else {
                    u64::from(gen & 0x7F)
                };
                let link = LinkHandle { id, generation };
                let event = match e % 5 {
                    0 => LinkEvent::Connecting,
                    1 => LinkEvent::Connected,
                    2 => LinkEvent::Disconnected,
                    3 => LinkEvent::Closed,
                    _ => data_event(rest),
                };
                g.step(rest.len(), |en| en.handle_link_event(link, event));
            }
            [4, k, id, gen, rest @ ..] => {
                let link = LinkHandle {
                    id: usize::from(*id),
                    generation: u64::from(*gen),
                };
                let c = match k % 5 {
                    0 => Completion::Open { link, ok: gen & 1 != 0 },
                    1 => Completion::Send { link, ok: gen & 1 != 0 },
                    2 => Completion::Close { link },
                    3 => Completion::SntpSynced,
                    _ => Completion::Time {
                        unix_seconds: le::<8>(rest) as i64,
                    },
                };
                g.step(0, |e| e.complete(c));
            }
            [5] => g.step(0, Engine::boot),
            [6, bytes @ ..] => g.feed(&bytes.iter().map(|b| b ^ 0x80).collect::<Vec<_>>()),
            [7, bytes @ ..] => g.feed(bytes),
            [1..=7, ..] => {}
            bytes => g.feed(bytes),
        }
    }
    g.recover_and_check();
}

/// A data event from `[opcode, shape, ...]` (see [`engine`]).
fn data_event(rest: &[u8]) -> LinkEvent {
    let [opcode, shape, tail @ ..] = rest else {
        return LinkEvent::Data {
            opcode: 1,
            fin: true,
            payload_len: 0,
            offset: 0,
            chunk: Vec::new(),
        };
    };
    let (payload_len, offset, chunk) = match (shape >> 1) & 3 {
        0 => (tail.len() as u64, 0, tail),
        1 => (tail.len() as u64 * 3, 0, tail),
        2 => {
            let (p, chunk) = tail.split_first().map_or((0, tail), |(p, c)| (u64::from(*p), c));
            (p + chunk.len() as u64, p, chunk)
        }
        _ => {
            let (nums, chunk) = tail.split_at(tail.len().min(16));
            (le::<8>(nums), le::<8>(nums.get(8..).unwrap_or(&[])), chunk)
        }
    };
    LinkEvent::Data {
        opcode: *opcode,
        fin: shape & 1 != 0,
        payload_len,
        offset,
        chunk: chunk.to_vec(),
    }
}

/// Commands whose set form the `at_params` target exercises, by the first input byte.
const SET_COMMANDS: [&str; 12] = [
    "+WSCFG",
    "+WSOPEN",
    "+WSSEND",
    "+WSHEAD",
    "+WSCLOSE",
    "+WSDATAFMT",
    "+CIPSNTPCFG",
    "+SYSLOG",
    "+SYSMSG",
    "+CWMODE",
    "+CWJAP",
    "+X",
];

/// `at_params` target: the parameter splitter and getters (FIRMWARE.md §1.4, §1.5) on an arbitrary
/// parameter text, then the same text as `AT<cmd>=<text>\r\n` through the engine.
///
/// Input: a selector byte (low bits: command from [`SET_COMMANDS`]; bit 7: master firmware),
/// then the parameter text.
///
/// Checked: the split parameters joined with commas give the text back and none holds an
/// unescaped comma; the integer getter agrees with a reference (u128 arithmetic) on value,
/// overflow and malformed text; a string the string getter accepts, escaped and quoted again,
/// reads back the same; the line parser yields exactly these parameters (or the test form,
/// the `?` error, the length error); in the engine (echo off, link 0 open) the command ends
/// with a result code and the port recovers so that `AT\r\n` answers `\r\nOK\r\n`.
pub fn params(data: &[u8]) {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let params = Params::split(text);
    let mut joined = Vec::new();
    for i in 0..params.count() {
        let item = params.string_raw(i);
        assert!(!has_unescaped_comma(item), "item {i} {item:?} holds a separator");
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(item);
        check_int(item, params.int(i));
        check_string(item, params.string(i));
    }
    assert_eq!(joined, text, "split lost bytes");
    assert_eq!(params.int(params.count()), Err(GetError::Parse), "missing parameter");

    let name = SET_COMMANDS[usize::from(selector & 0x7F) % SET_COMMANDS.len()];
    let line = [b"AT", name.as_bytes(), b"=", text, b"\r\n"].concat();
    check_line(&line, text);

    let firmware = if selector & 0x80 != 0 {
        Firmware::Master
    } else {
        Firmware::V5
    };
    let mut g = Glue::new(firmware);
    g.feed(b"ATE0\r\nAT+WSOPEN=0,\"ws://h\"\r\n");
    g.service();
    g.take_output();
    g.feed(&line);
    g.service();
    let out = g.take_output();
    let out = out.strip_suffix(b"+TIME_UPDATED\r\n").unwrap_or(&out);
    let ends = [&b"\r\nOK\r\n"[..], b"\r\nERROR\r\n", b"\r\nOK\r\n\r\n>"];
    // Unless the text makes a different command: a CR LF in it ends the line early (the rest
    // is a second command or busy), a NUL drops the line up to it.
    if !text.contains(&0) && !line[..line.len() - 2].windows(2).any(|w| w == b"\r\n") {
        assert!(
            ends.iter().any(|e| out.ends_with(e)),
            "no result code: {}",
            out.escape_ascii()
        );
    }
    g.recover_and_check();
}

/// Whether `item` contains a comma the splitter would cut at (one not skipped by a backslash).
fn has_unescaped_comma(item: &[u8]) -> bool {
    let mut i = 0;
    while i < item.len() {
        match item[i] {
            b'\\' => i += 2,
            b',' => return true,
            _ => i += 1,
        }
    }
    false
}

/// The integer getter against a reference computed with u128 arithmetic.
fn check_int(text: &[u8], got: Result<Option<i32>, GetError>) {
    assert_eq!(got, parse_int(text));
    if text.is_empty() {
        assert_eq!(got, Ok(None));
        return;
    }
    let (negative, body) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let (radix, digits) = match body {
        [b'0', b'x' | b'X', rest @ ..] if !negative => (16, rest),
        _ => (10, body),
    };
    // The value of the digits before the first bad one, saturated far above u32::MAX.
    let mut value: u128 = 0;
    let mut bad = None;
    for (i, &b) in digits.iter().enumerate() {
        match (b as char).to_digit(radix) {
            Some(d) => value = (value * u128::from(radix) + u128::from(d)).min(1 << 40),
            None => {
                bad = Some(i);
                break;
            }
        }
    }
    match got {
        Ok(Some(v)) => {
            assert!(bad.is_none() && value <= u128::from(u32::MAX), "{text:?} ⇒ {v}");
            let expect = value as u32 as i32;
            assert_eq!(v, if negative { expect.wrapping_neg() } else { expect });
        }
        Ok(None) => panic!("non-empty {text:?} omitted"),
        Err(GetError::Overflow) => assert!(value > u128::from(u32::MAX), "{text:?} overflowed"),
        Err(GetError::Parse) => assert!(bad.is_some() && value <= u128::from(u32::MAX), "{text:?}"),
    }
}

/// The string getter: what it accepts, quoted and escaped again, reads back the same.
fn check_string(text: &[u8], got: Result<Option<Vec<u8>>, GetError>) {
    assert_eq!(got, parse_string(text));
    match got {
        Ok(None) => assert!(text.is_empty()),
        Ok(Some(s)) => {
            assert!(s.len() < text.len());
            let mut quoted = vec![b'"'];
            for &b in &s {
                if matches!(b, b'"' | b'\\' | b',') {
                    quoted.push(b'\\');
                }
                quoted.push(b);
            }
            quoted.push(b'"');
            assert_eq!(Params::split(&quoted).count(), 1);
            assert_eq!(parse_string(&quoted), Ok(Some(s)));
        }
        Err(e) => assert_eq!(e, GetError::Parse),
    }
}

/// The line parser on `AT<name>=<text>\r\n`.
fn check_line(line: &[u8], text: &[u8]) {
    let expect = if line.len() > MAX_LINE {
        Err(ParseError::NoAt)
    } else if text == b"?" {
        Ok(Kind::Test)
    } else if text.first() == Some(&b'?') {
        Err(ParseError::Unsupported)
    } else {
        Ok(Kind::Set(Params::split(text)))
    };
    assert_eq!(parser::parse(line).map(|p| p.kind), expect);
}
