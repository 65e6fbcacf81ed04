//! AT+WSCFG / WSHEAD / WSOPEN / WSSEND / WSDATAFMT / WSCLOSE rules (FIRMWARE.md §4–§9), exact bytes.

use crate::testutil::{esc, T};
use crate::{Action, Completion, LinkConfig, LinkEvent, LinkHandle, LinkStatus, OpenRequest, PortState};

/// Runs `cmd` with echo off and returns the output.
fn run(t: &mut T, cmd: &str) -> String {
    t.io(format!("{cmd}\r\n").as_bytes())
}

fn quiet() -> T {
    let mut t = T::new();
    t.io(b"ATE0\r\n");
    t
}

fn quiet_master() -> T {
    let mut t = T::master();
    t.io(b"ATE0\r\n");
    t
}

const OK: &str = "\\r\\nOK\\r\\n";
const ERR: &str = "\\r\\nERROR\\r\\n";
const PROMPT: &str = "\\r\\nOK\\r\\n\\r\\n>";

fn expect_open(t: &mut T) -> (LinkHandle, OpenRequest) {
    match t.action() {
        Some(Action::Open { link, request }) => (link, request),
        other => panic!("expected Open, got {other:?}"),
    }
}

/// Opens with `cmd`, completes successfully, returns the request.
fn open_with(t: &mut T, cmd: &str) -> (LinkHandle, OpenRequest) {
    run(t, cmd);
    let (link, req) = expect_open(t);
    t.e.handle_link_event(link, LinkEvent::Connected);
    t.e.complete(Completion::Open { link, ok: true });
    t.out();
    (link, req)
}

// ---------------------------------------------------------------- AT+WSCFG

#[test]
fn wscfg_valid_forms() {
    let mut t = quiet();
    for cmd in [
        "AT+WSCFG=0,10,120",
        "AT+WSCFG=1,1,7200,1",
        "AT+WSCFG=2,7200,1,8192",
        "AT+WSCFG=0,10,120,1024,0",
        "AT+WSCFG=0,30,60,4096,3,0,0",
        "AT+WSCFG=0,30,60,4096,1,1,9",
        "AT+WSCFG=0,30,60,4096,2,9,1",
        "AT+WSCFG=0x0,0xa,0x78",
    ] {
        assert_eq!(run(&mut t, cmd), OK, "{cmd}");
    }
}

#[test]
fn wscfg_invalid_forms() {
    let mut t = quiet();
    for cmd in [
        "AT+WSCFG=3,10,120",
        "AT+WSCFG=-1,10,120",
        "AT+WSCFG=,10,120",
        "AT+WSCFG=0,0,120",
        "AT+WSCFG=0,7201,120",
        "AT+WSCFG=0,10,0",
        "AT+WSCFG=0,10,7201",
        "AT+WSCFG=0,10",
        "AT+WSCFG=0,10,120,",
        "AT+WSCFG=0,10,120,0",
        "AT+WSCFG=0,10,120,8193",
        "AT+WSCFG=0,10,120,,0",
        "AT+WSCFG=0,10,120,1024,4",
        "AT+WSCFG=0,10,120,1024,-1",
        "AT+WSCFG=0,10,120,1024,0,0,0",
        "AT+WSCFG=0,10,120,1024,0,0",
        "AT+WSCFG=0,10,120,1024,1,0",
        "AT+WSCFG=0,10,120,1024,1,-1,0",
        "AT+WSCFG=0,10,120,1024,2,0,-1",
        "AT+WSCFG=0,10,120,1024,3,0,0,1",
        "AT+WSCFG=0,10,120,1024,,0,0",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
}

#[test]
fn wscfg_missing_pki_lines() {
    let mut t = quiet();
    assert_eq!(
        run(&mut t, "AT+WSCFG=0,10,120,1024,2,0,5"),
        esc(b"NO CA FOUND\r\n\r\nERROR\r\n")
    );
    assert_eq!(
        run(&mut t, "AT+WSCFG=0,10,120,1024,1,2,0"),
        esc(b"NO CERT FOUND\r\n\r\nERROR\r\n")
    );
    // Cert is checked before CA.
    assert_eq!(
        run(&mut t, "AT+WSCFG=0,10,120,1024,3,2,5"),
        esc(b"NO CERT FOUND\r\n\r\nERROR\r\n")
    );
    // Mode 1 ignores ca_number, mode 2 ignores pki_number.
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,1024,1,1,99"), OK);
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,1024,2,99,1"), OK);
}

#[test]
fn wscfg_missing_key_and_empty_entries() {
    let mut t = T::with(crate::Firmware::V5);
    t.e = crate::Engine::new(crate::EngineConfig {
        pki: crate::Pki {
            cas: vec![Vec::new(), b"ca1".to_vec()],
            client_certs: vec![b"c0".to_vec(), b"c1".to_vec()],
            client_keys: vec![Vec::new()],
        },
        ..crate::EngineConfig::default()
    });
    t.io(b"ATE0\r\n");
    assert_eq!(
        run(&mut t, "AT+WSCFG=0,10,120,1024,1,1,0"),
        esc(b"NO PRVT_KEY FOUND\r\n\r\nERROR\r\n")
    );
    // Present but empty: a failed load, bare ERROR.
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,1024,1,0,0"), ERR);
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,1024,2,0,0"), ERR);
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,1024,2,0,1"), OK);
}

#[test]
fn wscfg_failed_load_loses_the_previous_config() {
    let mut t = quiet();
    t.e = crate::Engine::new(crate::EngineConfig {
        pki: crate::Pki {
            cas: vec![Vec::new()],
            ..crate::Pki::default()
        },
        ..crate::EngineConfig::default()
    });
    t.io(b"ATE0\r\n");
    assert_eq!(run(&mut t, "AT+WSCFG=0,30,60,2048"), OK);
    assert_eq!(run(&mut t, "AT+WSCFG=0,30,60,2048,2,0,0"), ERR);
    let (_, req) = open_with(&mut t, "AT+WSOPEN=0,\"ws://h\"");
    assert_eq!(req.config, LinkConfig::default());
}

#[test]
fn wscfg_applies_to_the_next_open_with_pems() {
    let mut t = quiet();
    assert_eq!(run(&mut t, "AT+WSCFG=1,30,60,4096,3,1,0"), OK);
    let (_, req) = open_with(&mut t, "AT+WSOPEN=1,\"wss://h\"");
    assert_eq!(
        req.config,
        LinkConfig {
            ping_interval_s: 30,
            pong_timeout_s: 60,
            buffer_size: 4096,
            auth_mode: 3,
            ca_pem: Some(b"ca0".to_vec()),
            client_cert_pem: Some(b"cert1".to_vec()),
            client_key_pem: Some(b"key1".to_vec()),
        }
    );
    // Accepted while the link is open; the live link is untouched (no action).
    assert_eq!(run(&mut t, "AT+WSCFG=1,10,10"), OK);
    assert_eq!(t.action(), None);
}

#[test]
fn wscfg_buffer_limit_master() {
    let mut t = quiet_master();
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,16384"), OK);
    assert_eq!(run(&mut t, "AT+WSCFG=0,10,120,16385"), ERR);
}

// ---------------------------------------------------------------- AT+WSHEAD

#[test]
fn wshead_store_query_clear() {
    let mut t = quiet();
    assert_eq!(run(&mut t, "AT+WSHEAD=49"), PROMPT);
    assert_eq!(t.io(b"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg="), OK);
    assert_eq!(run(&mut t, "AT+WSHEAD=4"), PROMPT);
    assert_eq!(t.io(b":a:b"), OK);
    assert_eq!(run(&mut t, "AT+WSHEAD=6"), PROMPT);
    assert_eq!(t.io(b"X\r\nY:z"), OK);
    assert_eq!(
        run(&mut t, "AT+WSHEAD?"),
        esc(b"+WSHEAD:0,\"X\r\nY:z\"\r\n+WSHEAD:1,\":a:b\"\r\n+WSHEAD:2,\"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=\"\r\n\r\nOK\r\n")
    );
    let (_, req) = open_with(&mut t, "AT+WSOPEN=0,\"ws://h\"");
    assert_eq!(
        req.headers,
        vec![
            ("X\r\nY".to_string(), "z".to_string()),
            (String::new(), "a:b".to_string()),
            (
                "AUTHORIZATION".to_string(),
                " Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=".to_string()
            ),
        ]
    );
    assert_eq!(run(&mut t, "AT+WSHEAD=0"), OK);
    assert_eq!(run(&mut t, "AT+WSHEAD?"), OK);
}

#[test]
fn wshead_rejects_bad_payloads() {
    let mut t = quiet();
    for payload in [&b"a:b\r\n"[..], b"no colon", b"a:\0b"] {
        let n = payload.len();
        assert_eq!(run(&mut t, &format!("AT+WSHEAD={n}")), PROMPT);
        assert_eq!(t.io(payload), ERR, "{}", esc(payload));
    }
    assert_eq!(run(&mut t, "AT+WSHEAD?"), OK);
}

#[test]
fn wshead_duplicates_kept_and_surplus_busy() {
    let mut t = quiet();
    run(&mut t, "AT+WSHEAD=3");
    t.io(b"k:1");
    run(&mut t, "AT+WSHEAD=3");
    assert_eq!(t.io(b"k:2EXTRA"), esc(b"\r\nbusy p...\r\n\r\nOK\r\n"));
    assert_eq!(
        run(&mut t, "AT+WSHEAD?"),
        esc(b"+WSHEAD:0,\"k:2\"\r\n+WSHEAD:1,\"k:1\"\r\n\r\nOK\r\n")
    );
}

/// `AT+WSHEAD=<len>`, its prompt and `header`; returns the result.
fn store_header(t: &mut T, header: &[u8]) -> String {
    assert_eq!(run(t, &format!("AT+WSHEAD={}", header.len())), PROMPT);
    t.io(header)
}

#[test]
fn wshead_keeps_at_most_max_header_bytes_in_total() {
    use crate::MAX_HEADER_BYTES;
    let mut t = quiet();
    // Exactly the bound, in two headers: kept.
    let first = [b"K:".as_slice(), &[b'a'; 1000]].concat();
    let second = [b"L:".as_slice(), &vec![b'b'; MAX_HEADER_BYTES - first.len() - 2]].concat();
    assert_eq!(store_header(&mut t, &first), OK);
    assert_eq!(store_header(&mut t, &second), OK);
    // One byte more is refused after its payload, as when the chip's heap runs out.
    assert_eq!(store_header(&mut t, b":"), ERR);
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 0 });
    let listed = [
        b"+WSHEAD:0,\"".as_slice(),
        &second,
        b"\"\r\n+WSHEAD:1,\"",
        &first,
        b"\"\r\n\r\nOK\r\n",
    ]
    .concat();
    assert_eq!(run(&mut t, "AT+WSHEAD?"), esc(&listed));
    // Clearing makes room again.
    assert_eq!(run(&mut t, "AT+WSHEAD=0"), OK);
    assert_eq!(store_header(&mut t, &second), OK);
}

#[test]
fn wshead_of_128_kib_is_read_and_refused() {
    let mut t = quiet();
    let big = [b"X-Big:".as_slice(), &vec![b'v'; 128 * 1024 - 6]].concat();
    for _ in 0..3 {
        assert_eq!(store_header(&mut t, &big), ERR);
    }
    assert_eq!(run(&mut t, "AT+WSHEAD?"), OK);
}

#[test]
fn wshead_parameter_errors() {
    let mut t = quiet();
    for cmd in [
        "AT+WSHEAD=",
        "AT+WSHEAD=-1",
        "AT+WSHEAD=1,2",
        "AT+WSHEAD=\"3\"",
        "AT+WSHEAD=131073",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(t.e.port_state(), PortState::Idle { buffered: 0 });
}

// ---------------------------------------------------------------- AT+WSOPEN

#[test]
fn wsopen_request_fields() {
    let mut t = quiet();
    run(&mut t, "AT+WSOPEN=0,\"ws://u:p@h:80/a\\,\\\"b\"");
    let (link, req) = expect_open(&mut t);
    assert_eq!(link, LinkHandle { id: 0, generation: 1 });
    assert_eq!(
        req,
        OpenRequest {
            uri: "ws://u:p@h:80/a,\"b".into(),
            subprotocol: None,
            timeout_ms: 15_000,
            authorization: None,
            headers: vec![],
            config: LinkConfig::default(),
        }
    );
    t.e.complete(Completion::Open { link, ok: false });
    assert_eq!(t.out(), ERR);

    run(&mut t, "AT+WSOPEN=2,\"WS://h:9/x?y\",\"\",1,\"Basic a\"");
    let (_, req) = expect_open(&mut t);
    assert_eq!(req.uri, "WS://h:9/x?y");
    assert_eq!(req.subprotocol.as_deref(), Some(""));
    assert_eq!(req.timeout_ms, 1);
    assert_eq!(req.authorization.as_deref(), Some("Basic a"));
}

#[test]
fn wsopen_parameter_rules() {
    let mut t = quiet();
    for cmd in [
        "AT+WSOPEN=3,\"ws://h\"",
        "AT+WSOPEN=0",
        "AT+WSOPEN=0,",
        "AT+WSOPEN=0,ws://h",
        "AT+WSOPEN=0,\"ws://h\",proto",
        "AT+WSOPEN=0,\"ws://h\",,",
        "AT+WSOPEN=0,\"ws://h\",,0",
        "AT+WSOPEN=0,\"ws://h\",,180001",
        "AT+WSOPEN=0,\"ws://h\",,,\"Basic xyz\"",
        "AT+WSOPEN=0,\"ws://h\",,5000,Basic",
        "AT+WSOPEN=0,\"ws://h\",,5000,\"a\",",
        "AT+WSOPEN=0,\"ws://h\",\"a,b\"",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
        assert_eq!(t.action(), None, "{cmd}");
    }
    run(&mut t, "AT+WSOPEN=0,\"ws://h\",,5000");
    let (_, req) = expect_open(&mut t);
    assert_eq!((req.subprotocol, req.timeout_ms), (None, 5000));
}

#[test]
fn wsopen_180000_and_auth_omitted() {
    let mut t = quiet();
    run(&mut t, "AT+WSOPEN=1,\"ws://h\",\"chat\",180000,");
    let (_, req) = expect_open(&mut t);
    assert_eq!(req.subprotocol.as_deref(), Some("chat"));
    assert_eq!(req.timeout_ms, 180_000);
    assert_eq!(req.authorization, None);
}

#[test]
fn wsopen_already_open_even_when_reconnecting() {
    let mut t = quiet();
    let link = t.open(0);
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    t.out();
    assert_eq!(run(&mut t, "AT+WSOPEN=0,\"ws://host\""), ERR);
    assert_eq!(t.action(), None);
}

#[test]
fn wsopen_uri_failures_engine_side() {
    let mut t = quiet();
    // Unparsable: ERROR, config kept.
    assert_eq!(run(&mut t, "AT+WSCFG=0,30,60,2048"), OK);
    assert_eq!(run(&mut t, "AT+WSOPEN=0,\"\""), ERR);
    assert_eq!(run(&mut t, "AT+WSOPEN=0,\"ws://h:99999\""), ERR);
    assert_eq!(run(&mut t, "AT+WSOPEN=0,\"//h\""), ERR);
    assert_eq!(t.action(), None);
    let (link, req) = open_with(&mut t, "AT+WSOPEN=0,\"ws://h\"");
    assert_eq!(req.config.buffer_size, 2048);
    run(&mut t, "AT+WSCLOSE=0");
    assert_eq!(t.action(), Some(Action::Close { link }));
    t.e.complete(Completion::Close { link });
    assert_eq!(t.out(), OK);

    // Wrong scheme: clean(L), config lost.
    assert_eq!(run(&mut t, "AT+WSCFG=1,30,60,2048"), OK);
    assert_eq!(run(&mut t, "AT+WSOPEN=1,\"http://h\""), ERR);
    assert_eq!(run(&mut t, "AT+WSOPEN?"), OK);
    let (_, req) = open_with(&mut t, "AT+WSOPEN=1,\"ws://h\"");
    assert_eq!(req.config, LinkConfig::default());
}

#[test]
fn wsopen_failure_cleans_the_link_and_config() {
    let mut t = quiet();
    assert_eq!(run(&mut t, "AT+WSCFG=1,30,60,2048"), OK);
    run(&mut t, "AT+WSOPEN=1,\"ws://10.0.0.99:9\"");
    let (link, req) = expect_open(&mut t);
    assert_eq!(req.config.buffer_size, 2048);
    assert_eq!(t.e.link_status(1), Some(LinkStatus::Connecting));
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    t.e.complete(Completion::Open { link, ok: false });
    assert_eq!(t.out(), esc(b"+WS_DISCONNECTED:1\r\n\r\nERROR\r\n"));
    assert_eq!(t.e.link_status(1), None);
    // A late event of the failed attempt is ignored.
    t.e.handle_link_event(link, LinkEvent::Connected);
    assert_eq!(t.out(), "");
    let (link2, req) = open_with(&mut t, "AT+WSOPEN=1,\"ws://h\"");
    assert_eq!(req.config, LinkConfig::default());
    assert_eq!(link2.generation, link.generation + 1);
}

#[test]
fn wsopen_late_connected_then_error() {
    let mut t = quiet();
    run(&mut t, "AT+WSOPEN=0,\"ws://slow\",,1");
    let (link, _) = expect_open(&mut t);
    t.e.handle_link_event(link, LinkEvent::Connected);
    t.e.complete(Completion::Open { link, ok: false });
    assert_eq!(t.out(), esc(b"+WS_CONNECTED:0\r\n\r\nERROR\r\n"));
    assert_eq!(t.e.link_status(0), None);
}

#[test]
fn wsopen_query_lists_open_links_verbatim() {
    let mut t = quiet();
    open_with(&mut t, "AT+WSOPEN=2,\"wss://H:443/?a=\\\"b\\\"\"");
    let l0 = t.open(0);
    t.e.handle_link_event(l0, LinkEvent::Disconnected);
    t.out();
    assert_eq!(
        run(&mut t, "AT+WSOPEN?"),
        esc(b"+WSOPEN:0,3,\"ws://h:1/p\"\r\n+WSOPEN:2,2,\"wss://H:443/?a=\"b\"\"\r\n\r\nOK\r\n")
    );
    t.e.handle_link_event(l0, LinkEvent::Connecting);
    assert_eq!(t.e.link_status(0), Some(LinkStatus::Connecting));
}

// ---------------------------------------------------------------- AT+WSSEND

#[test]
fn wssend_validation() {
    let mut t = quiet();
    t.open(0);
    for cmd in [
        "AT+WSSEND=3,4",
        "AT+WSSEND=,4",
        "AT+WSSEND=0",
        "AT+WSSEND=0,",
        "AT+WSSEND=0,-1",
        "AT+WSSEND=0,8193",
        "AT+WSSEND=0,0",
        "AT+WSSEND=0,4,",
        "AT+WSSEND=0,4,16",
        "AT+WSSEND=0,4,-1",
        "AT+WSSEND=0,4,,1000",
        "AT+WSSEND=0,4,1,",
        "AT+WSSEND=0,4,1,60001",
        "AT+WSSEND=0,4,1,-1",
        "AT+WSSEND=0,4,1,1000,1",
        "AT+WSSEND=1,4",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(run(&mut t, "AT+WSSEND=0,8192,0x9,60000"), PROMPT);
    t.io(&vec![b'p'; 8192]);
    match t.action() {
        Some(Action::Send {
            opcode,
            fin,
            payload,
            timeout_ms,
            ..
        }) => {
            assert_eq!((opcode, fin, payload.len(), timeout_ms), (9, true, 8192, 60_000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wssend_close_opcode_is_sent_raw_and_keeps_the_link() {
    let mut t = quiet();
    let link = t.open(0);
    assert_eq!(run(&mut t, "AT+WSSEND=0,2,8"), PROMPT);
    t.io(&[0x03, 0xe8]);
    assert_eq!(
        t.action(),
        Some(Action::Send {
            link,
            opcode: 8,
            fin: true,
            payload: vec![0x03, 0xe8],
            timeout_ms: 10_000
        })
    );
    t.e.complete(Completion::Send { link, ok: true });
    assert_eq!(t.out(), esc(b"\r\nSEND OK\r\n"));
    assert_eq!(t.e.link_status(0), Some(LinkStatus::Connected));
}

#[test]
fn wssend_on_a_disconnected_link_prompts_then_errors() {
    let mut t = quiet();
    let link = t.open(0);
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    t.out();
    assert_eq!(run(&mut t, "AT+WSSEND=0,4"), PROMPT);
    t.io(b"test");
    assert!(matches!(t.action(), Some(Action::Send { .. })));
    t.e.complete(Completion::Send { link, ok: false });
    assert_eq!(t.out(), ERR);
}

#[test]
fn wssend_link_closed_during_data_mode() {
    let mut t = quiet();
    let link = t.open(0);
    assert_eq!(run(&mut t, "AT+WSSEND=0,4"), PROMPT);
    t.e.handle_link_event(link, LinkEvent::Closed);
    assert_eq!(t.io(b"test"), esc(b"+WS_CLOSED:0\r\n\r\nERROR\r\n"));
    assert_eq!(t.action(), None);
}

#[test]
fn master_wssend_length_zero_and_limits() {
    let mut t = quiet_master();
    let link = t.open(0);
    assert_eq!(run(&mut t, "AT+WSSEND=0,0"), "");
    assert_eq!(
        t.action(),
        Some(Action::Send {
            link,
            opcode: 1,
            fin: true,
            payload: vec![],
            timeout_ms: 10_000
        })
    );
    t.e.complete(Completion::Send { link, ok: true });
    assert_eq!(t.out(), esc(b"\r\nSEND OK\r\n"));
    assert_eq!(run(&mut t, "AT+WSSEND=0,16385"), ERR);
    assert_eq!(run(&mut t, "AT+WSSEND=0,16384"), PROMPT);
    t.io(&vec![0u8; 16384]);
    assert!(matches!(t.action(), Some(Action::Send { .. })));
    t.e.complete(Completion::Send { link, ok: true });
    t.out();
    for cmd in [
        "AT+WSSEND=0,4,1,1000,2",
        "AT+WSSEND=0,4,1,1000,",
        "AT+WSSEND=0,4,1,,1",
        "AT+WSSEND=0,4,1,1000,1,1",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
}

/// Sends `len` bytes with opcode/fin in master mode; returns (output, action).
fn master_send(t: &mut T, link: LinkHandle, opcode: u8, fin: u8, len: usize) -> (String, Option<Action>) {
    let mut out = run(t, &format!("AT+WSSEND=0,{len},{opcode},1000,{fin}"));
    if len > 0 {
        out.push_str(&t.io(&vec![b'd'; len]));
    }
    let action = t.action();
    if action.is_some() {
        t.e.complete(Completion::Send { link, ok: true });
    }
    out.push_str(&t.out());
    (out, action)
}

#[test]
fn master_fin_dispatch_table() {
    let mut t = quiet_master();
    let link = t.open(0);
    let send = |opcode, fin, payload: &[u8]| Action::Send {
        link,
        opcode,
        fin,
        payload: payload.to_vec(),
        timeout_ms: 1000,
    };
    let sok = format!("{PROMPT}{}", esc(b"\r\nSEND OK\r\n"));
    let perr = format!("{PROMPT}{ERR}");
    // opcode 0, fin 1: empty CONT+FIN sent, payload ignored, ERROR unless len 0.
    assert_eq!(
        master_send(&mut t, link, 0, 1, 3),
        (perr.clone(), Some(send(0, true, b"")))
    );
    assert_eq!(
        master_send(&mut t, link, 0, 1, 0),
        (esc(b"\r\nSEND OK\r\n"), Some(send(0, true, b"")))
    );
    assert_eq!(
        master_send(&mut t, link, 0, 0, 2),
        (sok.clone(), Some(send(0, false, b"dd")))
    );
    assert_eq!(
        master_send(&mut t, link, 1, 0, 2),
        (sok.clone(), Some(send(1, false, b"dd")))
    );
    assert_eq!(
        master_send(&mut t, link, 2, 0, 2),
        (sok.clone(), Some(send(2, false, b"dd")))
    );
    assert_eq!(
        master_send(&mut t, link, 2, 1, 2),
        (sok.clone(), Some(send(2, true, b"dd")))
    );
    assert_eq!(master_send(&mut t, link, 9, 1, 2), (sok, Some(send(9, true, b"dd"))));
    // Other opcodes with fin 0: rejected after the payload was read.
    assert_eq!(master_send(&mut t, link, 9, 0, 2), (perr, None));
    assert_eq!(master_send(&mut t, link, 8, 0, 0), (ERR.to_string(), None));
}

// ---------------------------------------------------------------- AT+WSCLOSE

#[test]
fn wsclose_not_open_is_ok_and_frees_config() {
    let mut t = quiet();
    assert_eq!(run(&mut t, "AT+WSCFG=2,30,60,2048"), OK);
    assert_eq!(run(&mut t, "AT+WSCLOSE=2"), OK);
    assert_eq!(t.action(), None);
    let (_, req) = open_with(&mut t, "AT+WSOPEN=2,\"ws://h\"");
    assert_eq!(req.config, LinkConfig::default());
    for cmd in ["AT+WSCLOSE=3", "AT+WSCLOSE=0,1", "AT+WSCLOSE=", "AT+WSCLOSE=-1"] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
}

#[test]
fn wsclose_open_link_waits_for_completion() {
    let mut t = quiet();
    let link = t.open(1);
    assert_eq!(run(&mut t, "AT+WSCLOSE=1"), "");
    assert_eq!(t.action(), Some(Action::Close { link }));
    // Data in the shutdown window still prints before OK.
    t.e.handle_link_event(
        link,
        LinkEvent::Data {
            opcode: 2,
            fin: true,
            payload_len: 1,
            offset: 0,
            chunk: vec![7],
        },
    );
    t.e.complete(Completion::Close { link });
    assert_eq!(t.out(), esc(b"+WS_DATA:1,1,\x07\r\n\r\nOK\r\n"));
    assert_eq!(t.e.link_status(1), None);
    t.e.handle_link_event(link, LinkEvent::Disconnected);
    assert_eq!(t.out(), "");
    assert_eq!(run(&mut t, "AT+WSSEND=1,4"), ERR);
}

// ---------------------------------------------------------------- events

#[test]
fn closed_event_frees_link_and_config() {
    let mut t = quiet();
    assert_eq!(run(&mut t, "AT+WSCFG=0,30,60,2048"), OK);
    let (link, req) = open_with(&mut t, "AT+WSOPEN=0,\"ws://h\"");
    assert_eq!(req.config.buffer_size, 2048);
    t.e.handle_link_event(link, LinkEvent::Closed);
    assert_eq!(t.out(), esc(b"+WS_CLOSED:0\r\n"));
    assert_eq!(run(&mut t, "AT+WSOPEN?"), OK);
    assert_eq!(run(&mut t, "AT+WSSEND=0,4"), ERR);
    let (_, req) = open_with(&mut t, "AT+WSOPEN=0,\"ws://h\"");
    assert_eq!(req.config, LinkConfig::default());
}

#[test]
fn data_events_only_for_data_opcodes() {
    let mut t = quiet();
    let link = t.open(0);
    for opcode in 0..=15u8 {
        t.e.handle_link_event(
            link,
            LinkEvent::Data {
                opcode,
                fin: true,
                payload_len: 1,
                offset: 0,
                chunk: b"x".to_vec(),
            },
        );
    }
    assert_eq!(t.out(), esc(b"+WS_DATA:0,1,x\r\n+WS_DATA:0,1,x\r\n+WS_DATA:0,1,x\r\n"));
}

// ---------------------------------------------------------------- AT+WSDATAFMT

#[test]
fn wsdatafmt_is_master_only() {
    let mut t = quiet();
    t.io(b"AT+SYSLOG=1\r\n");
    assert_eq!(
        run(&mut t, "AT+WSDATAFMT=0,1,48"),
        esc(b"ERR CODE:0x01090000\r\n\r\nERROR\r\n")
    );
}

#[test]
fn wsdatafmt_rules_and_output() {
    let mut t = quiet_master();
    for cmd in [
        "AT+WSDATAFMT=0",
        "AT+WSDATAFMT=0,1",
        "AT+WSDATAFMT=3,1,48",
        "AT+WSDATAFMT=0,3,48",
        "AT+WSDATAFMT=0,1,0",
        "AT+WSDATAFMT=0,1,64",
        "AT+WSDATAFMT=0,1,48,1",
    ] {
        assert_eq!(run(&mut t, cmd), ERR, "{cmd}");
    }
    assert_eq!(run(&mut t, "AT+WSDATAFMT=0,,"), OK);
    assert_eq!(run(&mut t, "AT+WSDATAFMT=0,2,4"), OK);
    let link = t.open(0);
    let data = |opcode, fin, payload_len, offset, chunk: &[u8]| LinkEvent::Data {
        opcode,
        fin,
        payload_len,
        offset,
        chunk: chunk.to_vec(),
    };
    t.e.handle_link_event(link, data(1, false, 4, 0, b"ab"));
    t.e.handle_link_event(link, data(1, false, 4, 2, b"cd"));
    t.e.handle_link_event(link, data(0, true, 2, 0, b"ef"));
    // Mask 4: payload_len only, no trailer.
    assert_eq!(t.out(), esc(b"+WS_DATA:0,4,abcdef"));
    // Survives WSCLOSE; AT+RST resets it.
    run(&mut t, "AT+WSCLOSE=0");
    t.action();
    t.e.complete(Completion::Close { link });
    t.out();
    let link = t.open(0);
    t.e.handle_link_event(link, data(2, true, 1, 0, b"z"));
    assert_eq!(t.out(), esc(b"+WS_DATA:0,1,z"));
    t.io(b"AT+RST\r\n");
    t.action();
    t.io(b"ATE0\r\n");
    let link = t.open(0);
    t.e.handle_link_event(link, data(2, true, 1, 0, b"z"));
    assert_eq!(t.out(), esc(b"+WS_DATA:0,1,z\r\n"));
}
