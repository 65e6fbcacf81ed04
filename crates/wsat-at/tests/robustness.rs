//! Bad and random input: the engine never panics, never gets stuck BUSY once the glue has
//! answered every action, and always recovers to a clean `AT\r\n` → `AT\r\n\r\nOK\r\n`.
//!
//! Recovery is what a host would do against the firmware: finish an open data-mode read with
//! filler bytes (the firmware has no escape, FIRMWARE.md §1.7), terminate a partial line with CR LF
//! (which may itself start data mode, so repeat), and turn echo back on with ATE1.

mod common;

use common::{esc, Glue};
use proptest::collection::vec;
use proptest::prelude::*;
use wsat_at::{Action, Completion, Firmware, PortState};

/// Input fragments biased towards the grammar, so random runs reach deep states.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..8),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b"AT".to_vec()),
        2 => prop::sample::select(vec![
            "AT+WSSEND=0,", "AT+WSSEND=1,3,2,100", "AT+WSOPEN=0,\"ws://h\"", "AT+WSOPEN=1,\"wss://h:1\",\"p\",10,\"a\"",
            "AT+WSHEAD=", "AT+WSHEAD?", "AT+WSCFG=0,1,1", "AT+WSCFG=1,5,5,64,3,1,1", "AT+WSCLOSE=0",
            "AT+WSDATAFMT=0,1,63", "ATE0", "ATE1", "AT+SYSLOG=1", "AT+RST", "AT+CIPSNTPTIME?",
            "AT+CIPSNTPCFG=1,8", "AT+CMD?", "AT+WSOPEN?", "AT+GMR", "\"", ",", "\\", "\0", "0x", "-",
            "4294967295", "\r", "\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => (0u32..3000).prop_map(|n| n.to_string().into_bytes()),
    ]
}

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    vec(token(), 0..6).prop_map(|t| t.concat())
}

/// One step of a random session.
#[derive(Debug, Clone)]
enum Op {
    Feed(Vec<u8>),
    Drop(usize),
    Reconnect(usize, bool),
    ServerClose(usize),
    Receive(usize, u8, Vec<u8>),
    /// Stop (false) or resume (true) servicing actions at once.
    Auto(bool),
    /// A completion out of the blue (stale or mismatched).
    Stray(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => chunk().prop_map(Op::Feed),
        1 => (0usize..4).prop_map(Op::Drop),
        1 => (0usize..4, any::<bool>()).prop_map(|(i, ok)| Op::Reconnect(i, ok)),
        1 => (0usize..4).prop_map(Op::ServerClose),
        1 => (0usize..4, 0u8..16, vec(any::<u8>(), 0..40)).prop_map(|(i, o, p)| Op::Receive(i, o, p)),
        1 => any::<bool>().prop_map(Op::Auto),
        1 => (0u8..5).prop_map(Op::Stray),
    ]
}

fn play(g: &mut Glue, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Feed(bytes) => g.host(bytes),
            Op::Drop(i) => g.drop_link(*i),
            Op::Reconnect(i, ok) => g.reconnect(*i, *ok),
            Op::ServerClose(i) => g.server_close(*i),
            Op::Receive(i, opcode, p) => g.receive(*i, *opcode, p),
            Op::Auto(on) => {
                g.auto = *on;
                if *on {
                    release(g);
                }
            }
            Op::Stray(k) => {
                let link = wsat_at::LinkHandle {
                    id: usize::from(*k % 3),
                    generation: u64::from(*k),
                };
                let c = match k {
                    0 => Completion::Open { link, ok: true },
                    1 => Completion::Send { link, ok: true },
                    2 => Completion::Close { link },
                    3 => Completion::SntpSynced,
                    _ => Completion::Time { unix_seconds: -5 },
                };
                g.engine.complete(c);
            }
        }
        g.device();
    }
}

/// Performs every held action, in order.
fn release(g: &mut Glue) {
    g.auto = true;
    while let Some(a) = g.take_action() {
        g.perform(a);
    }
    g.service();
}

/// Brings the port back to IDLE with an empty line buffer, as a host would.
fn recover(g: &mut Glue) {
    release(g);
    for _ in 0..16 {
        match g.engine.port_state() {
            PortState::Idle { buffered: 0 } => break,
            PortState::Idle { .. } => g.host(b"\r\n"),
            PortState::Data { remaining } => g.host(&vec![b'x'; remaining]),
            PortState::Busy => panic!("stuck BUSY with every action answered"),
        }
    }
    assert_eq!(g.engine.port_state(), PortState::Idle { buffered: 0 });
    g.host(b"ATE1\r\n");
    g.device();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_never_panic_and_recover(ops in vec(op(), 0..40), master in any::<bool>()) {
        let mut g = Glue::with(if master { Firmware::Master } else { Firmware::V5 });
        play(&mut g, &ops);
        recover(&mut g);
        g.host(b"AT\r\n");
        prop_assert_eq!(g.device(), esc(b"AT\r\n\r\nOK\r\n"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in vec(vec(any::<u8>(), 0..300), 0..30)) {
        let mut g = Glue::new();
        for c in &chunks {
            g.host(c);
        }
        recover(&mut g);
        g.host(b"AT\r\n");
        prop_assert_eq!(g.device(), esc(b"AT\r\n\r\nOK\r\n"));
    }

    /// Without a LF (so no terminator) and without NUL, IDLE input is only echoed, byte for byte.
    #[test]
    fn unterminated_input_is_only_echoed(chunks in vec(vec(any::<u8>().prop_filter("no LF/NUL", |b| *b != b'\n' && *b != 0), 0..100), 0..20)) {
        let mut g = Glue::new();
        for c in &chunks {
            g.host(c);
        }
        prop_assert_eq!(g.device(), esc(&chunks.concat()));
        prop_assert!(g.take_action().is_none());
        let idle = matches!(g.engine.port_state(), PortState::Idle { .. });
        prop_assert!(idle);
    }

    /// Data mode takes exactly N bytes however they are split; any surplus gives one busy.
    #[test]
    fn data_mode_is_exact(len in 1usize..400, data in vec(any::<u8>(), 0..500), cuts in vec(any::<prop::sample::Index>(), 0..6)) {
        prop_assume!(data.len() >= len);
        let mut g = Glue::new();
        g.echo = false;
        g.host(b"ATE0\r\n");
        g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
        g.host(format!("AT+WSSEND=0,{len}\r\n").as_bytes());
        g.device();
        // Payload in pieces; the last one carries the final payload bytes plus any surplus
        // (surplus in a later write would arrive after SEND OK, in IDLE).
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
        points.sort_unstable();
        let mut start = 0;
        for p in points {
            g.host(&data[start..p]);
            start = p;
        }
        g.host(&data[start..]);
        let surplus = &data[len..];
        let busy: &[u8] = if surplus.is_empty() { b"" } else { b"\r\nbusy p...\r\n" };
        prop_assert_eq!(g.device(), esc(&[busy, b"\r\nSEND OK\r\n"].concat()));
        prop_assert_eq!(g.sent.last().map(|s| s.payload.clone()), Some(data[..len].to_vec()));
    }
}

#[test]
fn unterminated_quote_and_overlong_lines() {
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.device();
    g.host(b"AT+WSOPEN=0,\"ws://h\r\n");
    assert_eq!(g.device(), esc(b"\r\nERROR\r\n"));
    let mut line = b"AT+WSHEAD?".to_vec();
    line.resize(300, b' ');
    line.extend_from_slice(b"\r\n");
    g.host(&line);
    assert_eq!(g.device(), esc(b"\r\nERROR\r\n"));
    // 255 unterminated bytes stay; the 256th discards them all.
    g.host(&[b'A'; 255]);
    g.host(b"T");
    g.host(b"AT\r\n");
    assert_eq!(g.device(), esc(b"\r\nOK\r\n"));
}

#[test]
fn payload_shorter_than_announced_waits_forever() {
    let mut g = Glue::new();
    g.echo = false;
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.host(b"AT+WSSEND=0,10\r\n");
    g.device();
    g.host(b"short");
    g.host(b"AT\r\n");
    assert_eq!(g.device(), "");
    assert_eq!(g.engine.port_state(), PortState::Data { remaining: 1 });
    assert!(g.take_action().is_none());
    g.host(b"!");
    assert_eq!(g.device(), esc(b"\r\nSEND OK\r\n"));
    assert_eq!(g.sent[0].payload, b"shortAT\r\n!");
}

#[test]
fn failed_prompt_leaves_payload_as_command_input() {
    // FIRMWARE.md §1.7 item 7: payload sent after an ERROR sits in the line buffer.
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.device();
    g.host(b"AT+WSSEND=2,4\r\n");
    g.host(b"test");
    g.host(b"AT\r\n");
    assert_eq!(g.device(), esc(b"\r\nERROR\r\n\r\nERROR\r\n"));
    assert_eq!(g.take_action(), None::<Action>);
}
