//! The byte-exact transcripts of FIRMWARE.md §13 (and the seed examples), played against the engine with
//! a fake glue. H = host → device, D = device → host.

mod common;

use common::{esc, Glue};
use wsat_at::{Action, Completion, Firmware, LinkEvent};
use wsat_testkit::at_host::{ws_data, BUSY, ERROR, OK, PROMPT, READY, SEND_OK};
use wsat_testkit::data::{pattern, Rng};

/// Concatenates expected device pieces and escapes them.
fn d(parts: &[&[u8]]) -> String {
    esc(&parts.concat())
}

#[test]
fn t13_1_open_send_echo_query_close() {
    let mut g = Glue::new();
    g.host(b"AT+WSOPEN=0,\"ws://192.168.200.249:8765\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"ws://192.168.200.249:8765\"\r\n",
            b"+WS_CONNECTED:0\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSSEND=0,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n", b"\r\nOK\r\n\r\n>"]));
    g.host(b"test");
    assert_eq!(g.device(), d(&[b"\r\nSEND OK\r\n", b"+WS_DATA:0,4,test\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN?\r\n",
            b"+WSOPEN:0,2,\"ws://192.168.200.249:8765\"\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSCLOSE=0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSCLOSE=0\r\n", b"\r\nOK\r\n"]));
    assert!(g.links.is_empty());
}

#[test]
fn t13_2_surplus_payload() {
    for (syslog, busy) in [
        (false, &b"\r\nbusy p...\r\n"[..]),
        (true, b"ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n"),
    ] {
        let mut g = Glue::new();
        g.echo = false;
        if syslog {
            g.host(b"AT+SYSLOG=1\r\n");
        }
        g.host(b"AT+WSOPEN=0,\"ws://h:1\"\r\n");
        g.device();
        g.host(b"AT+WSSEND=0,4\r\n");
        assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n\r\nOK\r\n\r\n>"]));
        g.host(b"testXY");
        assert_eq!(g.device(), d(&[busy, b"\r\nSEND OK\r\n"]));
        assert_eq!(g.sent.last().map(|s| s.payload.as_slice()), Some(&b"test"[..]));
    }
}

#[test]
fn t13_3_headers() {
    let mut g = Glue::new();
    g.host(b"AT+WSHEAD=49\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD=49\r\n\r\nOK\r\n\r\n>"]));
    g.host(b"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=");
    assert_eq!(g.device(), d(&[b"\r\nOK\r\n"]));
    g.host(b"AT+WSHEAD?\r\n");
    assert_eq!(
        g.device(),
        d(&[b"AT+WSHEAD?\r\n+WSHEAD:0,\"AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=\"\r\n\r\nOK\r\n"])
    );
    g.host(b"AT+WSHEAD=0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD=0\r\n\r\nOK\r\n"]));
    g.host(b"AT+WSHEAD?\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSHEAD?\r\n\r\nOK\r\n"]));
}

#[test]
fn t13_4_failures() {
    let mut g = Glue::new();
    g.refuse.insert("ws://10.0.0.99:9".into());
    g.host(b"AT+WSOPEN=1,\"ws://10.0.0.99:9\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=1,\"ws://10.0.0.99:9\"\r\n",
            b"+WS_DISCONNECTED:1\r\n",
            b"\r\nERROR\r\n",
        ])
    );

    g.host(b"AT+WSOPEN=0,\"ws://host\"\r\n");
    g.device();
    g.host(b"AT+WSOPEN=0,\"ws://host\"\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSOPEN=0,\"ws://host\"\r\n\r\nERROR\r\n"]));

    g.host(b"AT+WSSEND=2,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=2,4\r\n\r\nERROR\r\n"]));

    g.drop_link(0);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.host(b"AT+WSSEND=0,4\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSSEND=0,4\r\n\r\nOK\r\n\r\n>"]));
    g.host(b"test");
    assert_eq!(g.device(), d(&[b"\r\nERROR\r\n"]));

    g.host(b"AT+WSCFG=0,10,120,1024,2,0,5\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSCFG=0,10,120,1024,2,0,5\r\n",
            b"NO CA FOUND\r\n",
            b"\r\nERROR\r\n"
        ])
    );
}

#[test]
fn t13_5_unsolicited_lifecycle() {
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.drop_link(0);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"+WSOPEN:0,3,\"ws://h\"\r\n\r\nOK\r\n"]));
    g.engine.handle_link_event(g.links[&0].handle, LinkEvent::Connecting);
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"+WSOPEN:0,1,\"ws://h\"\r\n\r\nOK\r\n"]));
    g.reconnect(0, false);
    assert_eq!(g.device(), d(&[b"+WS_DISCONNECTED:0\r\n"]));
    g.reconnect(0, true);
    assert_eq!(g.device(), d(&[b"+WS_CONNECTED:0\r\n"]));
    assert_eq!(g.engine.link_status(0), Some(wsat_at::LinkStatus::Connected));
    g.server_close(0);
    assert_eq!(g.device(), d(&[b"+WS_CLOSED:0\r\n"]));
    g.host(b"AT+WSOPEN?\r\n");
    assert_eq!(g.device(), d(&[b"\r\nOK\r\n"]));
}

#[test]
fn t13_6_large_incoming_frame() {
    let mut g = Glue::new();
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.pieces.clear();
    let frame: Vec<u8> = (0..2500u32).map(|i| b'a' + (i % 26) as u8).collect();
    g.receive(0, 1, &frame);
    let expected = [
        b"+WS_DATA:0,1024,".as_slice(),
        &frame[..1024],
        b"\r\n",
        b"+WS_DATA:0,1024,",
        &frame[1024..2048],
        b"\r\n",
        b"+WS_DATA:0,452,",
        &frame[2048..],
        b"\r\n",
    ]
    .concat();
    assert_eq!(g.device(), esc(&expected));
    // One write per chunk.
    assert_eq!(g.pieces.len(), 3);
}

/// The seed's TCP example session end to end (bring-up commands included).
#[test]
fn seed_example_session() {
    let mut g = Glue::new();
    g.engine.boot();
    assert_eq!(g.device(), d(&[b"\r\nready\r\n"]));
    g.host(b"AT+CWMODE=1\r\n");
    assert_eq!(g.device(), d(&[b"AT+CWMODE=1\r\n\r\nOK\r\n"]));
    g.host(b"AT+CWJAP=\"espressif\",\"1234567890\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CWJAP=\"espressif\",\"1234567890\"\r\n",
            b"WIFI CONNECTED\r\n",
            b"WIFI GOT IP\r\n",
            b"\r\nOK\r\n",
        ])
    );
    g.now = 1_731_488_415;
    g.host(b"AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n",
            b"\r\nOK\r\n",
            b"+TIME_UPDATED\r\n",
        ])
    );
    g.host(b"AT+CIPSNTPTIME?\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+CIPSNTPTIME?\r\n",
            b"+CIPSNTPTIME:Wed Nov 13 17:00:15 2024",
            b"\r\nOK\r\n",
        ])
    );
    g.host(b"AT+WSCFG=0,30,60,4096,3,0,0\r\n");
    assert_eq!(g.device(), d(&[b"AT+WSCFG=0,30,60,4096,3,0,0\r\n\r\nOK\r\n"]));
    g.host(b"AT+WSOPEN=0,\"wss://127.0.0.1:8766\"\r\n");
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"wss://127.0.0.1:8766\"\r\n",
            b"+WS_CONNECTED:0\r\n",
            b"\r\nOK\r\n",
        ])
    );
    assert_eq!(g.links[&0].buffer_size, 4096);
}

/// Glue-timed flow: WSOPEN stays BUSY until the (delayed) completion; URCs still print.
#[test]
fn open_is_busy_until_completion_and_urcs_interleave() {
    let mut g = Glue::new();
    g.auto = false;
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    let Some(Action::Open { link, .. }) = g.take_action() else {
        panic!("no open")
    };
    g.host(b"AT\r\n");
    g.engine.handle_link_event(link, LinkEvent::Disconnected);
    g.host(b"AT\r\n");
    g.engine.complete(Completion::Open { link, ok: false });
    assert_eq!(
        g.device(),
        d(&[
            b"AT+WSOPEN=0,\"ws://h\"\r\n",
            b"\r\nbusy p...\r\n",
            b"+WS_DISCONNECTED:0\r\n",
            b"\r\nbusy p...\r\n",
            b"\r\nERROR\r\n",
        ])
    );
}

#[test]
fn master_send_length_zero_and_fragment_start() {
    let mut g = Glue::with(Firmware::Master);
    g.echo = false;
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.host(b"AT+WSSEND=0,0\r\n");
    assert_eq!(g.device(), d(&[b"\r\nSEND OK\r\n"]));
    g.host(b"AT+WSSEND=0,3,1,500,0\r\n");
    g.host(b"abc");
    g.host(b"AT+WSSEND=0,3,0,500,1\r\n");
    g.host(b"def");
    assert_eq!(
        g.device(),
        d(&[
            b"\r\nOK\r\n\r\n>",
            b"\r\nSEND OK\r\n",
            b"\r\nOK\r\n\r\n>",
            b"\r\nERROR\r\n",
        ])
    );
    let frames: Vec<(u8, bool, &[u8])> = g.sent.iter().map(|s| (s.opcode, s.fin, s.payload.as_slice())).collect();
    assert_eq!(frames, vec![(1, true, &b""[..]), (1, false, b"abc"), (0, true, b"")]);
}

#[test]
fn master_datafmt_frame_level_on_a_large_frame() {
    let mut g = Glue::with(Firmware::Master);
    g.host(b"ATE0\r\n");
    g.host(b"AT+WSDATAFMT=0,1,63\r\n");
    g.host(b"AT+WSCFG=0,10,120,4\r\n");
    g.host(b"AT+WSOPEN=0,\"ws://h\"\r\n");
    g.device();
    g.receive(0, 2, b"0123456789");
    assert_eq!(g.device(), d(&[b"+WS_DATA:0,2,1,10,0,4,0123", b"4567", b"89\r\n"]));
}

// ---------------------------------------------------------------------------------------------
// Engine-level cases that used to start a `wsat modem` process (tests/modem_tcp.rs): they only
// check the engine's answers, so the fake glue plays the link (and the echo server). Each keeps
// its name and its bytes; where the process test allowed `SEND OK` and an echo in either order,
// the fake gives one of those orders (`SEND OK` first) and that is asserted.

/// The URI the fake glue opens (any ws URI: nothing is dialled).
const URI: &str = "ws://127.0.0.1:8765";
/// A URI whose open the fake glue fails (nothing listens there).
const CLOSED: &str = "ws://127.0.0.1:9";

/// The host writes `bytes` in one write; the device answers exactly `expected`.
fn io(g: &mut Glue, bytes: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) {
    g.host(bytes.as_ref());
    assert_eq!(g.device(), esc(expected.as_ref()), "answer to {}", esc(bytes.as_ref()));
}

/// The host sends `cmd` + CR LF; the device echoes the line, then answers exactly `response`.
fn at(g: &mut Glue, cmd: &str, response: impl AsRef<[u8]>) {
    io(
        g,
        format!("{cmd}\r\n"),
        [format!("{cmd}\r\n").as_bytes(), response.as_ref()].concat(),
    );
}

/// `AT+WSOPEN=<link>,"<uri>"` answered `+WS_CONNECTED:<link>` then OK (FIRMWARE.md §6.1).
fn open(g: &mut Glue, link: usize, uri: &str) {
    at(
        g,
        &format!("AT+WSOPEN={link},\"{uri}\""),
        format!("+WS_CONNECTED:{link}\r\n\r\nOK\r\n"),
    );
}

/// `AT+WSOPEN` that fails after the connection attempt: `+WS_DISCONNECTED` then ERROR (FIRMWARE.md §6.1).
fn open_fails(g: &mut Glue, link: usize, uri: &str) {
    g.refuse.insert(uri.to_owned());
    at(
        g,
        &format!("AT+WSOPEN={link},\"{uri}\""),
        format!("+WS_DISCONNECTED:{link}\r\n\r\nERROR\r\n"),
    );
}

/// `AT+WSSEND=<link>,<n>`, the prompt, the payload, then `SEND OK` and the server's echo.
fn send_and_echo(g: &mut Glue, link: usize, payload: &[u8]) {
    at(g, &format!("AT+WSSEND={link},{}", payload.len()), PROMPT);
    io(g, payload, [SEND_OK, &ws_data(link, payload)].concat());
}

fn wsopen_line(link: usize, state: u8, uri: &str) -> String {
    format!("+WSOPEN:{link},{state},\"{uri}\"\r\n")
}

#[test]
fn surplus_payload_gives_busy_then_send_ok() {
    let mut g = Glue::new();
    open(&mut g, 0, URI);
    at(&mut g, "AT+WSSEND=0,4", PROMPT);
    // FIRMWARE.md §13.2: busy first, then SEND OK; only "test" is sent, so only "test" is echoed.
    io(&mut g, "testXY", [BUSY, SEND_OK, &ws_data(0, b"test")].concat());
    assert_eq!(g.sent.len(), 1);
    assert_eq!(g.sent[0].payload, b"test");
    at(&mut g, "AT", OK);
}

#[test]
fn payload_bytes_are_taken_verbatim_including_crlf_and_at_commands() {
    let mut g = Glue::new();
    open(&mut g, 0, URI);
    // FIRMWARE.md §1.7: CR LF, `AT…\r\n` and `+++` in the payload are data; it may arrive in pieces.
    let payload = b"AT\r\n+++\0AT+RST\r\n";
    at(&mut g, &format!("AT+WSSEND=0,{}", payload.len()), PROMPT);
    io(&mut g, &payload[..5], b"");
    io(&mut g, &payload[5..], [SEND_OK, &ws_data(0, payload)].concat());
}

#[test]
fn wshead_rejects_a_trailing_crlf_and_a_missing_colon() {
    let mut g = Glue::new();
    // FIRMWARE.md §5.1: the payload is read in full, then rejected.
    at(&mut g, "AT+WSHEAD=7", PROMPT);
    io(&mut g, "X: ab\r\n", ERROR);
    at(&mut g, "AT+WSHEAD=5", PROMPT);
    io(&mut g, "X:\0ab", ERROR);
    at(&mut g, "AT+WSHEAD=5", PROMPT);
    io(&mut g, "Xa b!", ERROR);
    at(&mut g, "AT+WSHEAD?", OK);
    // A key may be empty; the value is everything after the first colon.
    at(&mut g, "AT+WSHEAD=6", PROMPT);
    io(&mut g, ":a:b:c", OK);
    at(&mut g, "AT+WSHEAD?", b"+WSHEAD:0,\":a:b:c\"\r\n\r\nOK\r\n");
}

#[test]
fn open_on_an_open_link_and_send_on_a_closed_link_are_errors() {
    let mut g = Glue::new();
    open(&mut g, 0, URI);
    // FIRMWARE.md §13.4: link 0 already open.
    at(&mut g, "AT+WSOPEN=0,\"ws://host\"", ERROR);
    at(&mut g, "AT+WSOPEN=0,\"ws://host\"", ERROR);
    // FIRMWARE.md §13.4: link 2 not open: no prompt, and the payload that follows is command input (§1.7).
    at(&mut g, "AT+WSSEND=2,4", ERROR);
    io(&mut g, "test", b"test");
    io(&mut g, "\r\n", b"\r\n\r\nERROR\r\n");
    // The open link is untouched.
    at(&mut g, "AT+WSOPEN?", format!("{}\r\nOK\r\n", wsopen_line(0, 2, URI)));
    send_and_echo(&mut g, 0, b"still here");
    // AT+WSCLOSE of a link that is not open is still OK (FIRMWARE.md §8.1).
    at(&mut g, "AT+WSCLOSE=2", OK);
    at(&mut g, "AT+WSCLOSE=0", OK);
    at(&mut g, "AT+WSCLOSE=0", OK);
    at(&mut g, "AT+WSSEND=0,4", ERROR);
}

/// `AT+WSSEND=0,1500` of `payload`: `SEND OK`, then its echo in chunks of `chunk` bytes.
fn send_1500_in_chunks(g: &mut Glue, payload: &[u8], chunk: usize) {
    at(g, "AT+WSSEND=0,1500", PROMPT);
    let mut expected = SEND_OK.to_vec();
    for piece in payload.chunks(chunk) {
        expected.extend(ws_data(0, piece));
    }
    io(g, payload, expected);
}

#[test]
fn a_failed_open_forgets_the_link_configuration() {
    let mut g = Glue::new();
    let payload = pattern(1500);
    // Control: buffer_size 2048 is observable as one 1500-byte chunk.
    at(&mut g, "AT+WSCFG=0,30,60,2048", OK);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 2048);
    // AT+WSCLOSE frees the configuration (FIRMWARE.md §8.1) ...
    at(&mut g, "AT+WSCLOSE=0", OK);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 1024);
    at(&mut g, "AT+WSCLOSE=0", OK);
    // ... and so does a failed AT+WSOPEN (FIRMWARE.md §3, §4.2): the next open uses the defaults.
    at(&mut g, "AT+WSCFG=0,30,60,2048", OK);
    open_fails(&mut g, 0, CLOSED);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 1024);
    at(&mut g, "AT+WSCLOSE=0", OK);
}

#[test]
fn wscfg_on_an_open_link_does_not_touch_it_and_is_freed_by_wsclose() {
    let mut g = Glue::new();
    let payload = pattern(1500);
    open(&mut g, 0, URI);
    // FIRMWARE.md §4.2 note / §15 item 20: accepted, applies only to a next open ...
    at(&mut g, "AT+WSCFG=0,30,60,4096", OK);
    send_1500_in_chunks(&mut g, &payload, 1024);
    // ... but AT+WSCLOSE frees it, so the next open has the defaults again.
    at(&mut g, "AT+WSCLOSE=0", OK);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 1024);
    at(&mut g, "AT+WSCLOSE=0", OK);
}

#[test]
fn an_unparsable_uri_keeps_the_configuration_a_bad_scheme_does_not() {
    let mut g = Glue::new();
    let payload = pattern(1500);
    // FIRMWARE.md §6.1 step 3: client creation fails ⇒ ERROR, config kept.
    at(&mut g, "AT+WSCFG=0,30,60,2048", OK);
    at(&mut g, "AT+WSOPEN=0,\"\"", ERROR);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 2048);
    at(&mut g, "AT+WSCLOSE=0", OK);
    // FIRMWARE.md §6.1 step 5: the start fails on a scheme other than ws/wss ⇒ clean(L), config lost.
    at(&mut g, "AT+WSCFG=0,30,60,2048", OK);
    at(&mut g, "AT+WSOPEN=0,\"http://127.0.0.1:1\"", ERROR);
    open(&mut g, 0, URI);
    send_1500_in_chunks(&mut g, &payload, 1024);
    at(&mut g, "AT+WSCLOSE=0", OK);
}

#[test]
fn random_junk_leaves_the_port_usable() {
    let mut g = Glue::new();
    let mut rng = Rng::new(0x5eed_0001);
    // Printable junk without CR, LF or NUL: echoed byte for byte (FIRMWARE.md §1.3), never answered
    // (every 256 bytes without a terminator are discarded silently).
    let junk: Vec<u8> = (0..4096)
        .map(|_| b' ' + u8::try_from(rng.below(95)).expect("< 95"))
        .collect();
    io(&mut g, &junk, &junk);
    // Whatever is left (or nothing) plus CR LF is a line that does not start with AT.
    io(&mut g, "\r\n", b"\r\n\r\nERROR\r\n");
    at(&mut g, "AT", OK);

    // Any bytes at all, in odd pieces.
    let junk = rng.bytes(4096);
    let mut rest = &junk[..];
    while !rest.is_empty() {
        let n = usize::try_from(1 + rng.below(200)).expect("small").min(rest.len());
        g.host(&rest[..n]);
        rest = &rest[n..];
    }
    assert!(!g.device().is_empty(), "not even an echo");
    io(&mut g, "\r\n", b"\r\n\r\nERROR\r\n");
    at(&mut g, "AT", OK);
}

#[test]
fn over_long_lines() {
    let mut g = Glue::new();
    // FIRMWARE.md §1.3: a line longer than 256 bytes including CR LF is an error, even if it starts with AT.
    let long = format!("AT+{}", "X".repeat(297));
    at(&mut g, &long, ERROR);
    // 254 characters + CR LF is the longest accepted line; one more is too long.
    let longest = format!("AT+WSHEAD={}", "0".repeat(244));
    assert_eq!(longest.len(), 254);
    at(&mut g, &longest, OK);
    at(&mut g, &format!("{longest}0"), ERROR);
    // 300 bytes without a terminator: echoed, then silently discarded, so a following AT is clean.
    let junk = "A".repeat(300);
    io(&mut g, &junk, &junk);
    at(&mut g, "AT", OK);
    // Special case: a discarded buffer ending in CR keeps the CR, so a lone LF ends an empty
    // line (⇒ ERROR).
    let junk = format!("{}\r", "B".repeat(299));
    io(&mut g, &junk, &junk);
    io(&mut g, "\n", b"\n\r\nERROR\r\n");
    at(&mut g, "AT", OK);
}

#[test]
fn malformed_commands_get_the_firmware_answers() {
    let mut g = Glue::new();
    let cases: &[(&str, &[u8])] = &[
        // Line level (FIRMWARE.md §1.3, §1.4).
        ("", ERROR),
        ("at", OK),
        ("At", OK),
        ("ATE", ERROR),
        ("AT+UNKNOWN", ERROR),
        ("AT+GMR ", ERROR),
        ("AT+WSOPEN? ", ERROR),
        ("AT+WSOPEN=?", ERROR),
        ("AT+WSOPEN", ERROR),
        ("AT+WSCFG?", ERROR),
        ("AT+WSCFG=?", ERROR),
        ("AT+WSCFG", ERROR),
        ("AT+WSSEND", ERROR),
        ("AT+WSHEAD", ERROR),
        ("AT+WSHEAD=?", ERROR),
        // v5 has no AT+WSDATAFMT (FIRMWARE.md §9).
        ("AT+WSDATAFMT=0,1,63", ERROR),
        // AT+WSCFG (FIRMWARE.md §4.2).
        ("AT+WSCFG=3,10,120", ERROR),
        ("AT+WSCFG=-1,10,120", ERROR),
        ("AT+WSCFG=,10,120", ERROR),
        ("AT+WSCFG=0,0,120", ERROR),
        ("AT+WSCFG=0,7201,120", ERROR),
        ("AT+WSCFG=0,10,0", ERROR),
        ("AT+WSCFG=0,10,7201", ERROR),
        ("AT+WSCFG=0,10,120,0", ERROR),
        ("AT+WSCFG=0,10,120,8193", ERROR),
        ("AT+WSCFG=0,10,120,", ERROR),
        ("AT+WSCFG=0,10,120,1024,4", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,0,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,1,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,1,-1,0", ERROR),
        ("AT+WSCFG=0,10,120,1024,0,", ERROR),
        ("AT+WSCFG=0,10,\"120\"", ERROR),
        ("AT+WSCFG=0,10, 120", ERROR),
        ("AT+WSCFG=0,10,+120", ERROR),
        ("AT+WSCFG=0,10,4294967417", ERROR),
        ("AT+WSCFG=0x2,0x1,7200,8192", OK),
        ("at+wscfg=1,7200,1", OK),
        ("AT+WSCFG=0,10,120,1024,0", OK),
        ("AT+WSCFG=0,10,120,010", OK),
        // AT+WSOPEN parameters (FIRMWARE.md §6.1): quotes, commas, ranges.
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1", ERROR),
        ("AT+WSOPEN=0,ws://127.0.0.1:1", ERROR),
        ("AT+WSOPEN=0,\"ws://a,b\"", ERROR),
        ("AT+WSOPEN=0,\"ws://a\"b\"", ERROR),
        ("AT+WSOPEN=0,\"ws://a\\", ERROR),
        ("AT+WSOPEN=0", ERROR),
        ("AT+WSOPEN=0,", ERROR),
        ("AT+WSOPEN=3,\"ws://127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=-1,\"ws://127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,0", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,180001", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",,,\"Basic x\"", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",\"p\",1000,\"a\",1", ERROR),
        ("AT+WSOPEN=0,\"ws://127.0.0.1:1\",p", ERROR),
        // The URI does not parse, or the scheme is not ws/wss: ERROR without a URC.
        ("AT+WSOPEN=0,\"\"", ERROR),
        ("AT+WSOPEN=0,\"127.0.0.1:1\"", ERROR),
        ("AT+WSOPEN=0,\"http://127.0.0.1:1\"", ERROR),
        // AT+WSSEND (FIRMWARE.md §7.2): checked before the link is looked up, and no link is open.
        ("AT+WSSEND=0,8193", ERROR),
        ("AT+WSSEND=0,-1", ERROR),
        ("AT+WSSEND=0,abc", ERROR),
        ("AT+WSSEND=0,", ERROR),
        ("AT+WSSEND=3,4", ERROR),
        ("AT+WSSEND=0,4,16", ERROR),
        ("AT+WSSEND=0,4,,100", ERROR),
        ("AT+WSSEND=0,4,1,60001", ERROR),
        ("AT+WSSEND=0,4,1,100,1", ERROR),
        ("AT+WSSEND=0,0", ERROR),
        ("AT+WSSEND=0,4", ERROR),
        // AT+WSCLOSE (FIRMWARE.md §8.1) and AT+WSHEAD (§5.1).
        ("AT+WSCLOSE=3", ERROR),
        ("AT+WSCLOSE=0,1", ERROR),
        ("AT+WSCLOSE=", ERROR),
        ("AT+WSCLOSE=0", OK),
        ("AT+WSHEAD=-1", ERROR),
        ("AT+WSHEAD=0,1", ERROR),
        ("AT+WSHEAD=", ERROR),
    ];
    for (cmd, answer) in cases {
        at(&mut g, cmd, answer);
    }
    // No link was opened by any of them.
    assert!(g.links.is_empty());
    // FIRMWARE.md §1.3: two commands in one write: the second is answered busy and dropped.
    io(&mut g, "AT\r\nAT\r\n", b"AT\r\n\r\nbusy p...\r\n\r\nOK\r\n");
    // ATE0 (the line itself still echoed), then nothing is echoed (FIRMWARE.md §12).
    at(&mut g, "ATE0", OK);
    io(&mut g, "AT\r\n", OK);
    io(&mut g, "AT+WSOPEN?\r\n", OK);
    io(&mut g, "ATE1\r\n", OK);
    at(&mut g, "AT", OK);
}

/// `AT+WSSEND=0,<len>`, the payload; `SEND OK` and the echo in the pieces `expected`.
fn send_meta(g: &mut Glue, payload: &[u8], expected: &[&[u8]]) {
    at(g, &format!("AT+WSSEND=0,{}", payload.len()), PROMPT);
    io(g, payload, [&[SEND_OK][..], expected].concat().concat());
}

#[test]
fn master_firmware_sends_empty_messages_and_formats_data_with_metadata() {
    let mut g = Glue::with(Firmware::Master);
    open(&mut g, 0, URI);
    // FIRMWARE.md §9.1: length 0 sends an empty frame at once, without a prompt; the echo is an empty chunk.
    io(
        &mut g,
        "AT+WSSEND=0,0\r\n",
        [&b"AT+WSSEND=0,0\r\n"[..], SEND_OK, b"+WS_DATA:0,0,\r\n"].concat(),
    );
    assert_eq!((g.sent[0].opcode, g.sent[0].fin, g.sent[0].payload.len()), (1, true, 0));
    // FIRMWARE.md §9.2: exactly three parameters.
    at(&mut g, "AT+WSDATAFMT=0", ERROR);
    at(&mut g, "AT+WSDATAFMT=0,3,63", ERROR);
    at(&mut g, "AT+WSDATAFMT=0,1,64", ERROR);
    at(&mut g, "AT+WSDATAFMT=0,1,0", ERROR);
    // Level 1 (frame), mask 63: opcode, fin, payload_len, payload_offset, data_len, trailer.
    at(&mut g, "AT+WSDATAFMT=0,1,63", OK);
    send_meta(&mut g, b"test", &[b"+WS_DATA:0,1,1,4,0,4,test\r\n"]);
    // A 2500-byte frame in 1024-byte chunks: header on the first, trailer on the last only.
    let p = pattern(2500);
    let first = [&b"+WS_DATA:0,1,1,2500,0,1024,"[..], &p[..1024]].concat();
    let last = [&p[2048..], &b"\r\n"[..]].concat();
    send_meta(&mut g, &p, &[&first, &p[1024..2048], &last]);
    // Level 0 with the default mask 48 is the v5 format again.
    at(&mut g, "AT+WSDATAFMT=0,,", OK);
    send_meta(&mut g, b"plain", &[b"+WS_DATA:0,5,plain\r\n"]);
    // Level 0, mask 4: only payload_len, no data_len, no trailer.
    at(&mut g, "AT+WSDATAFMT=0,0,4", OK);
    send_meta(&mut g, b"xyz", &[b"+WS_DATA:0,3,xyz"]);
    at(&mut g, "AT+WSCLOSE=0", OK);
}

#[test]
fn syslog_adds_error_codes_from_the_core_only() {
    let mut g = Glue::new();
    at(&mut g, "AT+SYSLOG=1", OK);
    // FIRMWARE.md §2 examples.
    at(&mut g, "AT+WSSEND=0,abc", b"ERR CODE:0x01080001\r\n\r\nERROR\r\n");
    at(&mut g, "AT+WSSEND=5,4", ERROR);
    at(&mut g, "AT+NOPE", b"ERR CODE:0x01090000\r\n\r\nERROR\r\n");
    at(&mut g, "", b"ERR CODE:0x01030000\r\n\r\nERROR\r\n");
    at(&mut g, "AT+WSOPEN? ", b"ERR CODE:0x01090000\r\n\r\nERROR\r\n");
    // A missing trailing parameter is a FAIL with the index (FIRMWARE.md §1.5); overflow prints nothing.
    at(&mut g, "AT+WSCFG=0,10", b"ERR CODE:0x01080002\r\n\r\nERROR\r\n");
    at(&mut g, "AT+WSCFG=0,10,4294967417", ERROR);
    at(&mut g, "AT+WSCFG=,10,120", ERROR);
    // No handler for the type: no code even with SYSLOG=1 (FIRMWARE.md §1.4).
    at(&mut g, "AT+WSCFG?", ERROR);
    // Busy input and surplus payload (FIRMWARE.md §1.6, §13.2).
    io(
        &mut g,
        "AT\r\nAT\r\n",
        b"AT\r\nERR CODE:0x010b0000\r\n\r\nbusy p...\r\n\r\nOK\r\n",
    );
    open(&mut g, 0, URI);
    at(&mut g, "AT+WSSEND=0,4", PROMPT);
    io(
        &mut g,
        "testXY",
        [&b"ERR CODE:0x010b0000\r\n"[..], BUSY, SEND_OK, &ws_data(0, b"test")].concat(),
    );
    at(&mut g, "AT+SYSLOG=0", OK);
    at(&mut g, "AT+NOPE", ERROR);
}

#[test]
fn a_nul_byte_drops_the_line_so_far() {
    let mut g = Glue::new();
    // FIRMWARE.md §1.3: everything up to and including the NUL is dropped after the echo.
    io(&mut g, b"XX\0AT\r\n", b"XX\0AT\r\n\r\nOK\r\n");
}

#[test]
fn at_rst_forgets_links_headers_and_configuration() {
    let mut g = Glue::new();
    at(&mut g, "AT+WSHEAD=4", PROMPT);
    io(&mut g, "A: b", OK);
    open(&mut g, 0, URI);
    at(&mut g, "ATE0", OK);
    // FIRMWARE.md §12: OK, then the reboot's banner; all WS state lost (the glue drops every link), echo
    // back on.
    io(&mut g, "AT+RST\r\n", [OK, READY].concat());
    assert!(
        g.links.is_empty(),
        "AT+RST leaves links to the glue: {:?}",
        g.links.keys()
    );
    at(&mut g, "AT+WSOPEN?", OK);
    at(&mut g, "AT+WSHEAD?", OK);
    open(&mut g, 0, URI);
    // AT+RST inside busy input forces a restart (FIRMWARE.md §1.6): link 1's open has failed, its ERROR is
    // still to come (the glue's delay) when the host types it.
    g.auto = false;
    let cmd = format!("AT+WSOPEN=1,\"{CLOSED}\"\r\n");
    g.host(cmd.as_bytes());
    let Some(Action::Open { link, .. }) = g.take_action() else {
        panic!("no open")
    };
    g.engine.handle_link_event(link, LinkEvent::Disconnected);
    assert_eq!(g.device(), d(&[cmd.as_bytes(), b"+WS_DISCONNECTED:1\r\n"]));
    io(
        &mut g,
        "xxAT+RST\r\nyy",
        b"\r\nWill force to restart!!!\r\n\r\nOK\r\n\r\nready\r\n",
    );
    // The glue drops every link; the late end of the open is ignored.
    while let Some(action) = g.take_action() {
        g.perform(action);
    }
    g.engine.complete(Completion::Open { link, ok: false });
    g.auto = true;
    assert_eq!(g.device(), "", "nothing follows the restart");
    assert!(g.links.is_empty());
    at(&mut g, "AT+WSOPEN?", OK);
}

#[test]
fn bytes_sent_before_the_prompt_are_busy_input_and_lost() {
    let mut g = Glue::new();
    open(&mut g, 0, URI);
    // FIRMWARE.md §1.7 item 6: the payload must wait for `>`; sent with the command it is discarded.
    io(
        &mut g,
        "AT+WSSEND=0,4\r\ntest",
        [&b"AT+WSSEND=0,4\r\n"[..], BUSY, PROMPT].concat(),
    );
    io(&mut g, "abcd", [SEND_OK, b"+WS_DATA:0,4,abcd\r\n"].concat());
}

#[test]
fn line_assembly_across_writes() {
    let mut g = Glue::new();
    // The longest accepted line in two pieces.
    let longest = format!("AT+WSHEAD={}", "0".repeat(244));
    io(&mut g, &longest[..200], &longest[..200]);
    io(
        &mut g,
        format!("{}\r\n", &longest[200..]),
        format!("{}\r\n\r\nOK\r\n", &longest[200..]),
    );
    // 200 + 100 bytes without a terminator: discarded once more than 255 have accumulated.
    io(&mut g, "C".repeat(200), "C".repeat(200));
    io(&mut g, "C".repeat(100), "C".repeat(100));
    at(&mut g, "AT", OK);
    // A terminator split between two writes still ends the line.
    io(&mut g, "AT\r", b"AT\r");
    io(&mut g, "\n", b"\n\r\nOK\r\n");
    // A lone CR or LF does not end a line (FIRMWARE.md §1.3).
    io(&mut g, "AT\rX\nY\r\n", b"AT\rX\nY\r\n\r\nERROR\r\n");
}
