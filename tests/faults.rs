//! The fault matrix (docs/FAULTS.md): one scripted misbehaviour of a WebSocket server per row
//! (`wsat_testkit::fault`), each driven end to end twice:
//!
//! * `client_*`: wsat-client, asserting the exact event sequence the ESP client's semantics
//!   give (docs/ESP-CLIENT.md §4.1);
//! * `modem_*`: `wsat modem --tcp`, asserting the exact AT bytes of the firmware
//!   (docs/FIRMWARE.md §6–§10), with the short timings of [`MODEM_ARGS`].
//!
//! Loopback only; every wait has a deadline; nothing sleeps to synchronise.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use wsat_client::{
    Client, ClientConfig, ClientError, Delivery, Event, Events, LinkState, OpCode, Reconnect, StopOutcome,
};
use wsat_proto::handshake::HandshakeError;
use wsat_testkit::at_host::{ws_data, AtClient, ERROR, OK, PROMPT, SEND_OK};
use wsat_testkit::events::{next, until};
use wsat_testkit::fault::{
    huge_block, split_payload, Fault, FaultPeer, Seen, CLOSE_REASON, FRAGMENTS, HUGE_BLOCK, PINGS,
};
use wsat_testkit::modem_process::Modem;

/// The modem's options for every row: the firmware's timing shortened (docs/FAULTS.md says by
/// how much).
const MODEM_ARGS: &[&str] = &[
    "--reconnect-delay-ms",
    "300",
    "--open-error-delay-ms",
    "200",
    "--network-timeout-ms",
    "1500",
    // Exact bytes: the reproducible min(remaining, buffer_size) cuts (FIRMWARE.md §8.5).
    "--chunking",
    "full",
];

/// The deadline of one expected client event or peer report.
const STEP: Duration = wsat_testkit::events::STEP;

/// The close codes [`Fault::CloseWith`] is tried with.
const CLOSE_CODES: [Option<u16>; 6] = [Some(1000), Some(1001), Some(1002), Some(1011), Some(4000), None];

/// The size of the [`Fault::Huge`] frame: 64 MiB.
const HUGE_LEN: u64 = 64 << 20;

// ---------------------------------------------------------------------------------------------
// Client helpers

/// The ESP client's defaults with reconnect off, for `peer`.
fn config(peer: &FaultPeer) -> ClientConfig {
    let mut c = ClientConfig::new(peer.uri());
    c.reconnect = Reconnect::Disabled;
    c
}

/// A client event as one comparable line.
fn shape(ev: &Event) -> String {
    match ev {
        Event::BeforeConnect { .. } => "BeforeConnect".into(),
        Event::Connected(_) => "Connected".into(),
        Event::Data(d) => format!(
            "Data(op {}, fin {}, {}+{} of {})",
            d.opcode.value(),
            u8::from(d.fin),
            d.offset,
            d.data.len(),
            d.payload_len
        ),
        Event::Message(m) => format!(
            "Message(op {}, {:?})",
            m.opcode.value(),
            String::from_utf8_lossy(&m.payload)
        ),
        Event::Error(e) => format!("Error({})", error_shape(e)),
        Event::Disconnected(why) => format!("Disconnected({why:?})"),
        Event::Closed { code, .. } => format!("Closed({code:?})"),
        Event::Finish => "Finish".into(),
    }
}

fn error_shape(e: &ClientError) -> String {
    match e {
        ClientError::Io { step, source } => format!("Io({step}: {:?})", source.kind()),
        ClientError::Handshake(HandshakeError::Status { status, .. }) => format!("Handshake(Status {status})"),
        ClientError::Handshake(HandshakeError::WrongAccept { .. }) => "Handshake(WrongAccept)".into(),
        other => format!("{other:?}"),
    }
}

fn shapes(events: &[Event]) -> Vec<String> {
    events.iter().map(shape).collect()
}

/// Starts a client and collects its events up to `Finish`.
async fn run_to_finish(config: ClientConfig) -> Vec<Event> {
    let (_client, mut events) = Client::start(config).expect("valid config");
    until(&mut events, |e| matches!(e, Event::Finish)).await
}

/// Starts a client and waits for `BeforeConnect, Connected`.
async fn connected(config: ClientConfig) -> (Client, Events) {
    let (client, mut events) = Client::start(config).expect("valid config");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    assert_eq!(shapes(&seen), ["BeforeConnect", "Connected"]);
    (client, events)
}

fn data(ev: &Event) -> &wsat_client::DataChunk {
    match ev {
        Event::Data(d) => d,
        other => panic!("expected Data, got {other:?}"),
    }
}

/// Sends `text` and expects it back from an echoing peer.
async fn echo_round_trip(client: &Client, events: &mut Events, text: &str) {
    client.send_text(text, STEP).await.expect("sent");
    let ev = next(events).await;
    assert_eq!(shape(&ev), format!("Data(op 1, fin 1, 0+{n} of {n})", n = text.len()));
    assert_eq!(&data(&ev).data[..], text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Modem helpers

fn modem() -> (Modem, AtClient) {
    let modem = common::modem_tcp(MODEM_ARGS);
    let at = modem.connect();
    (modem, at)
}

/// `AT+WSOPEN=0,"<uri>"` answered `+WS_CONNECTED:0`, then `urcs` in order with the `OK`
/// anywhere between them: what the server sends right after the upgrade may be reported
/// before the `OK` (FIRMWARE.md §6.1).
fn open_then(at: &mut AtClient, uri: &str, urcs: &[&[u8]]) {
    let cmd = format!("AT+WSOPEN=0,\"{uri}\"");
    at.send(format!("{cmd}\r\n"));
    at.expect(format!("{cmd}\r\n+WS_CONNECTED:0\r\n"));
    at.expect_with_floating(urcs, OK);
}

/// `AT+WSOPEN` on link 0 failing after the attempt: `+WS_DISCONNECTED:0`, then `ERROR`, and
/// the link is gone (FIRMWARE.md §6.1, §10).
fn open_fails(at: &mut AtClient, uri: &str) {
    at.open_fails(0, uri);
    at.at("AT+WSOPEN?", OK);
}

fn wsopen_line(state: u8, uri: &str) -> String {
    format!("+WSOPEN:0,{state},\"{uri}\"\r\n\r\nOK\r\n")
}

// ---------------------------------------------------------------------------------------------
// Refuse: nothing listens

#[tokio::test]
async fn client_refused_connect() {
    let peer = FaultPeer::start(&[Fault::Refuse]);
    let seen = run_to_finish(config(&peer)).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Error(Io(TCP connect: ConnectionRefused))",
            "Disconnected(ConnectFailed)",
            "Finish"
        ]
    );
}

#[test]
fn modem_refused_connect() {
    let peer = FaultPeer::start(&[Fault::Refuse]);
    let (_modem, mut at) = modem();
    open_fails(&mut at, &peer.uri());
    at.expect_silence(Duration::from_millis(500));
}

// ---------------------------------------------------------------------------------------------
// HangBefore101: the upgrade is never answered

#[tokio::test]
async fn client_hang_before_101() {
    let peer = FaultPeer::start(&[Fault::HangBefore101]);
    let mut c = config(&peer);
    c.network_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let seen = run_to_finish(c).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Error(Timeout(\"WebSocket upgrade\"))",
            "Disconnected(ConnectFailed)",
            "Finish"
        ]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn modem_hang_before_101_runs_the_attempt_to_the_network_timeout() {
    let peer = FaultPeer::start(&[Fault::HangBefore101]);
    let (_modem, mut at) = modem();
    let cmd = format!("AT+WSOPEN=0,\"{}\",,500", peer.uri());
    at.send(format!("{cmd}\r\n"));
    let sent = Instant::now();
    at.expect(format!("{cmd}\r\n"));
    // FIRMWARE.md §6.1: the 500 ms of AT+WSOPEN run out, but the attempt in progress runs to its end,
    // bounded by the network timeout (1500 ms here, 10 s on the chip); then the URC, then
    // ERROR after the open-error delay (200 ms here, ≈5 s on the chip).
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    let urc = sent.elapsed();
    at.expect(ERROR);
    let error = sent.elapsed();
    assert!(
        urc >= Duration::from_millis(1400) && urc < Duration::from_millis(3500),
        "+WS_DISCONNECTED after {urc:?}; the network timeout is 1500 ms"
    );
    assert!(
        error >= urc + Duration::from_millis(150),
        "ERROR {error:?}, +WS_DISCONNECTED {urc:?}: the open-error delay is 200 ms"
    );
    at.at("AT+WSOPEN?", OK);
    assert_eq!(peer.accepted(), 1, "no retry within AT+WSOPEN");
}

// ---------------------------------------------------------------------------------------------
// BadAccept: 101 with a wrong Sec-WebSocket-Accept

#[tokio::test]
async fn client_bad_accept() {
    let peer = FaultPeer::start(&[Fault::BadAccept]);
    let seen = run_to_finish(config(&peer)).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Error(Handshake(WrongAccept))",
            "Disconnected(ConnectFailed)",
            "Finish"
        ]
    );
}

#[test]
fn modem_bad_accept() {
    let peer = FaultPeer::start(&[Fault::BadAccept]);
    let (_modem, mut at) = modem();
    open_fails(&mut at, &peer.uri());
}

// ---------------------------------------------------------------------------------------------
// Status(404): the upgrade is refused

#[tokio::test]
async fn client_status_404() {
    let peer = FaultPeer::start(&[Fault::Status(404)]);
    let seen = run_to_finish(config(&peer)).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Error(Handshake(Status 404))",
            "Disconnected(ConnectFailed)",
            "Finish"
        ]
    );
    match &seen[1] {
        Event::Error(e) => assert_eq!(e.http_status(), Some(404)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn modem_status_404() {
    let peer = FaultPeer::start(&[Fault::Status(404)]);
    let (_modem, mut at) = modem();
    open_fails(&mut at, &peer.uri());
}

// ---------------------------------------------------------------------------------------------
// RedirectLoop: 302 to itself, forever

#[tokio::test]
async fn client_redirect_loop_stops_at_the_hop_limit() {
    let peer = FaultPeer::start(&[Fault::RedirectLoop]);
    let mut c = config(&peer);
    c.max_redirects = 3;
    let seen = run_to_finish(c).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "BeforeConnect",
            "BeforeConnect",
            "BeforeConnect",
            "Error(TooManyRedirects(3))",
            "Disconnected(ConnectFailed)",
            "Finish"
        ]
    );
    assert_eq!(peer.accepted(), 4, "the first attempt and 3 hops");
}

#[test]
fn modem_redirect_is_not_followed() {
    let peer = FaultPeer::start(&[Fault::RedirectLoop]);
    let (_modem, mut at) = modem();
    // The firmware's client (1.2.x) follows no redirect: a 302 has no Sec-WebSocket-Accept.
    open_fails(&mut at, &peer.uri());
    assert_eq!(peer.accepted(), 1);
}

// ---------------------------------------------------------------------------------------------
// CloseMidFrame: TCP ends in the middle of a frame

/// Events until the `n`-th `Connected` (included), each within [`STEP`].
async fn until_connected(events: &mut Events, n: usize) -> Vec<Event> {
    let mut seen = Vec::new();
    while seen.iter().filter(|e| matches!(e, Event::Connected(_))).count() < n {
        let ev = next(events).await;
        assert!(!matches!(ev, Event::Finish), "finished early: {:?}", shapes(&seen));
        seen.push(ev);
    }
    seen
}

#[tokio::test]
async fn client_close_mid_frame_then_reconnect() {
    let peer = FaultPeer::start(&[Fault::CloseMidFrame, Fault::Echo]);
    let mut c = config(&peer);
    c.reconnect = Reconnect::Fixed(Duration::from_millis(200));
    let (client, mut events) = Client::start(c).expect("valid config");
    // The 5 bytes of the half frame come as a last short chunk before the disconnect.
    let seen = until_connected(&mut events, 2).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Connected",
            "Data(op 1, fin 1, 0+5 of 10)",
            "Error(ConnectionClosed)",
            "Disconnected(ConnectionLost)",
            "BeforeConnect",
            "Connected"
        ]
    );
    echo_round_trip(&client, &mut events, "back").await;
    assert_eq!(client.stop(STEP).await, StopOutcome::Stopped);
}

#[test]
fn modem_close_mid_frame_disconnects_and_reconnects() {
    let peer = FaultPeer::start(&[Fault::CloseMidFrame, Fault::Echo]);
    let (_modem, mut at) = modem();
    let uri = peer.uri();
    // FIRMWARE.md §8.3: EOF without a close frame; the bytes read of the half frame are printed
    // first, as a short +WS_DATA (FIRMWARE.md §8.5).
    open_then(&mut at, &uri, &[b"+WS_DATA:0,5,01234\r\n", b"+WS_DISCONNECTED:0\r\n"]);
    // FIRMWARE.md §10: after the reconnect delay the link comes back by itself.
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSOPEN?", wsopen_line(2, &uri));
    at.send_and_echo(0, b"back");
    at.at("AT+WSCLOSE=0", OK);
    assert_eq!(peer.accepted(), 2);
}

// ---------------------------------------------------------------------------------------------
// Reset: RST after the client's first frame

#[tokio::test]
async fn client_reset_then_reconnect() {
    let peer = FaultPeer::start(&[Fault::Reset, Fault::Echo]);
    let mut c = config(&peer);
    c.reconnect = Reconnect::Fixed(Duration::from_millis(200));
    let (client, mut events) = connected(c).await;
    client.send_text("hello", STEP).await.expect("handed to TCP");
    let got = peer.next_frame(STEP).await;
    assert_eq!((got.conn, got.opcode, &got.payload[..]), (0, 1, &b"hello"[..]));
    let seen = until_connected(&mut events, 1).await;
    assert_eq!(
        shapes(&seen),
        [
            "Error(Io(reading: ConnectionReset))",
            "Disconnected(ConnectionLost)",
            "BeforeConnect",
            "Connected"
        ]
    );
    echo_round_trip(&client, &mut events, "back").await;
    assert_eq!(client.stop(STEP).await, StopOutcome::Stopped);
}

#[test]
fn modem_reset_disconnects_and_reconnects() {
    let peer = FaultPeer::start(&[Fault::Reset, Fault::Echo]);
    let (_modem, mut at) = modem();
    at.open(0, &peer.uri());
    at.at("AT+WSSEND=0,5", PROMPT);
    at.send("hello");
    // SEND OK means handed to TCP (FIRMWARE.md §7.2); the RST comes after the peer read the frame.
    at.expect(SEND_OK);
    at.expect(b"+WS_DISCONNECTED:0\r\n");
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.send_and_echo(0, b"back");
    at.at("AT+WSCLOSE=0", OK);
    let got = peer.frame(STEP);
    assert_eq!((got.conn, got.opcode, &got.payload[..]), (0, 1, &b"hello"[..]));
}

// ---------------------------------------------------------------------------------------------
// StopReading: backpressure

#[tokio::test]
async fn client_stop_reading_times_the_send_out_and_keeps_the_link() {
    let peer = FaultPeer::start(&[Fault::StopReading]);
    let (client, _events) = connected(config(&peer)).await;
    let res = client
        .send_frame(
            OpCode::BINARY,
            true,
            Bytes::from(vec![7u8; 32 << 20]),
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(res, Err(ClientError::SendTimeout)), "{res:?}");
    // wsat-client's decision (ESP-CLIENT.md §4.12 item 2): unlike the ESP client (#942), a send
    // timeout does not tear the connection down.
    assert_eq!(client.state(), LinkState::Connected);
    assert_eq!(client.stop(STEP).await, StopOutcome::Stopped);
}

#[test]
fn modem_stop_reading_a_send_timeout_drops_the_link() {
    let peer = FaultPeer::start(&[Fault::StopReading, Fault::Echo]);
    let (_modem, mut at) = modem();
    let uri = peer.uri();
    at.open(0, &uri);
    let block = vec![b'x'; 8192];
    // Binary, 200 ms each: sends go out until TCP stops taking them.
    let mut answer = Vec::new();
    let mut sent = 0;
    while sent < 4000 {
        at.at("AT+WSSEND=0,8192,2,200", PROMPT);
        at.send(&block);
        answer = at.take(ERROR.len(), STEP);
        if answer[..] != SEND_OK[..ERROR.len()] {
            break;
        }
        at.expect(&SEND_OK[ERROR.len()..]);
        at.received.clear();
        sent += 1;
    }
    assert!(sent < 4000, "TCP never pushed back");
    // FIRMWARE.md §7.3, ESP-CLIENT.md §4.7 (#942): a write that cannot complete within the send's
    // timeout is a write error: the library aborts the connection inside the send, so the URC
    // precedes the ERROR, the link is in state 3, and it reconnects.
    let expected = b"+WS_DISCONNECTED:0\r\n\r\nERROR\r\n";
    if answer != ERROR {
        answer.extend(at.take(expected.len() - answer.len(), STEP));
    }
    assert_eq!(
        answer.escape_ascii().to_string(),
        expected.escape_ascii().to_string(),
        "after {sent} sends of 8192 bytes"
    );
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSOPEN?", wsopen_line(2, &uri));
    at.send_and_echo(0, b"back");
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// NeverPong: pings go unanswered

#[tokio::test]
async fn client_never_pong_times_out() {
    let peer = FaultPeer::start(&[Fault::NeverPong]);
    let mut c = config(&peer);
    c.ping_interval = Some(Duration::from_millis(100));
    c.pong_timeout = Some(Duration::from_millis(400));
    let started = Instant::now();
    let seen = run_to_finish(c).await;
    assert_eq!(
        shapes(&seen),
        [
            "BeforeConnect",
            "Connected",
            "Error(PongTimeout(0))",
            "Disconnected(PongTimeout)",
            "Finish"
        ]
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let ping = peer.next_frame(STEP).await;
    assert_eq!((ping.opcode, ping.fin, ping.payload.len()), (9, true, 0));
}

#[test]
fn modem_never_pong_drops_the_link_and_reconnects() {
    let peer = FaultPeer::start(&[Fault::NeverPong, Fault::Echo]);
    let (_modem, mut at) = modem();
    // Ping after 1 s without traffic, pong timeout 1 s (FIRMWARE.md §4.2 minimums).
    at.at("AT+WSCFG=0,1,1", OK);
    at.open(0, &peer.uri());
    let up = Instant::now();
    // FIRMWARE.md §10: no pong within the timeout ⇒ +WS_DISCONNECTED ⇒ reconnect (not a close, §15 #10).
    at.expect_within(b"+WS_DISCONNECTED:0\r\n", Duration::from_secs(6));
    assert!(up.elapsed() >= Duration::from_millis(1800), "{:?}", up.elapsed());
    at.expect(b"+WS_CONNECTED:0\r\n");
    at.at("AT+WSCLOSE=0", OK);
    let ping = peer.frame(STEP);
    assert_eq!((ping.conn, ping.opcode, ping.fin, ping.payload.len()), (0, 9, true, 0));
}

// ---------------------------------------------------------------------------------------------
// CloseWith(code): the server closes

/// The payload of the close frame [`Fault::CloseWith`] sends.
fn close_payload(code: Option<u16>) -> Vec<u8> {
    code.map(|c| wsat_proto::close::encode_payload(c, CLOSE_REASON))
        .unwrap_or_default()
}

#[tokio::test]
async fn client_close_frame_with_each_code() {
    let plan: Vec<Fault> = CLOSE_CODES.iter().map(|&c| Fault::CloseWith(c)).collect();
    let peer = FaultPeer::start(&plan);
    for code in CLOSE_CODES {
        let seen = run_to_finish(config(&peer)).await;
        let n = close_payload(code).len();
        assert_eq!(
            shapes(&seen),
            [
                "BeforeConnect".to_owned(),
                "Connected".to_owned(),
                format!("Data(op 8, fin 1, 0+{n} of {n})"),
                format!("Closed({code:?})"),
                "Finish".to_owned()
            ],
            "close code {code:?}"
        );
        assert_eq!(&data(&seen[2]).data[..], &close_payload(code)[..]);
        if let Event::Closed { reason, .. } = &seen[3] {
            assert_eq!(reason, if code.is_some() { CLOSE_REASON } else { "" });
        }
        // The client answers with a close frame echoing the code (RFC 6455 §5.5.1).
        let answer = peer.next_frame(STEP).await;
        let echoed = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        assert_eq!((answer.opcode, answer.fin, answer.payload), (8, true, echoed));
    }
}

#[test]
fn modem_close_frame_with_each_code_removes_the_link() {
    let plan: Vec<Fault> = CLOSE_CODES.iter().map(|&c| Fault::CloseWith(c)).collect();
    let peer = FaultPeer::start(&plan);
    let (_modem, mut at) = modem();
    for (i, code) in CLOSE_CODES.into_iter().enumerate() {
        // FIRMWARE.md §8.4: the close frame's code is not reported.
        open_then(&mut at, &peer.uri(), &[b"+WS_CLOSED:0\r\n"]);
        // The link is gone at once; the id is free again.
        at.at("AT+WSOPEN?", OK);
        at.at("AT+WSSEND=0,4", ERROR);
        // The library answers with an empty close frame (ESP-CLIENT.md §4.8: it does not echo the code).
        let answer = peer.frame(STEP);
        assert_eq!(
            (answer.conn, answer.opcode, answer.fin, answer.payload.len()),
            (i, 8, true, 0),
            "close code {code:?}"
        );
    }
    at.expect_silence(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------------------------
// SplitEveryByte: the 101 and a message one byte per TCP write

#[tokio::test]
async fn client_split_every_byte_gives_the_usual_chunks() {
    let peer = FaultPeer::start(&[Fault::SplitEveryByte(2000)]);
    let (client, mut events) = connected(config(&peer)).await;
    let (a, b) = (next(&mut events).await, next(&mut events).await);
    assert_eq!(
        [shape(&a), shape(&b)],
        [
            "Data(op 1, fin 1, 0+1024 of 2000)",
            "Data(op 1, fin 1, 1024+976 of 2000)"
        ]
    );
    assert_eq!([&data(&a).data[..], &data(&b).data[..]].concat(), split_payload(2000));
    echo_round_trip(&client, &mut events, "still in step").await;
}

#[test]
fn modem_split_every_byte_gives_the_usual_chunks() {
    let peer = FaultPeer::start(&[Fault::SplitEveryByte(2000)]);
    let (_modem, mut at) = modem();
    let payload = split_payload(2000);
    // As for a 2000-byte frame in one piece (FIRMWARE.md §8.5, buffer_size 1024).
    open_then(
        &mut at,
        &peer.uri(),
        &[&ws_data(0, &payload[..1024]), &ws_data(0, &payload[1024..])],
    );
    at.send_and_echo(0, b"still in step");
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// Huge: one 64 MiB frame

#[tokio::test]
async fn client_huge_frame_in_buffer_size_chunks() {
    let peer = FaultPeer::start(&[Fault::Huge(HUGE_LEN)]);
    let mut c = config(&peer);
    c.buffer_size = HUGE_BLOCK;
    let (client, mut events) = connected(c).await;
    client.send_text("go", STEP).await.expect("sent");
    let blocks = HUGE_LEN / HUGE_BLOCK as u64;
    for k in 0..blocks {
        let ev = next(&mut events).await;
        let d = data(&ev);
        assert_eq!(
            (d.opcode, d.fin, d.offset, d.data.len(), d.payload_len),
            (OpCode::BINARY, true, k * HUGE_BLOCK as u64, HUGE_BLOCK, HUGE_LEN),
            "chunk {k}"
        );
        assert!(d.data[..] == huge_block(k)[..], "chunk {k} differs");
    }
    echo_round_trip(&client, &mut events, "after the flood").await;
}

#[test]
fn modem_huge_frame_in_buffer_size_urcs() {
    let peer = FaultPeer::start(&[Fault::Huge(HUGE_LEN)]);
    let (_modem, mut at) = modem();
    at.at(&format!("AT+WSCFG=0,30,60,{HUGE_BLOCK}"), OK);
    at.open(0, &peer.uri());
    at.at("AT+WSSEND=0,2", PROMPT);
    at.send("go");
    at.expect(SEND_OK);
    // FIRMWARE.md §8.5: one URC per buffer_size chunk; parsed as it streams, nothing kept.
    let header = format!("+WS_DATA:0,{HUGE_BLOCK},");
    let blocks = HUGE_LEN / HUGE_BLOCK as u64;
    for k in 0..blocks {
        at.expect(&header);
        let chunk = at.take(HUGE_BLOCK, STEP);
        assert!(chunk == huge_block(k), "chunk {k} differs");
        at.expect(b"\r\n");
        at.received.clear();
    }
    at.send_and_echo(0, b"after the flood");
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// PingsInsideFragments: control frames between the fragments of a message

/// The client frames the peer saw on connection `conn`: its two pongs.
fn assert_pongs(frames: [Seen; 2], conn: usize) {
    for (f, ping) in frames.iter().zip(PINGS) {
        assert_eq!((f.conn, f.opcode, f.fin, &f.payload[..]), (conn, 10, true, ping));
    }
}

#[tokio::test]
async fn client_pings_inside_fragments_are_answered_while_the_message_assembles() {
    let peer = FaultPeer::start(&[Fault::PingsInsideFragments]);
    // Chunks: every frame is a DATA event, the pings included (ESP-CLIENT.md §4.2).
    let (_client, mut events) = connected(config(&peer)).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next(&mut events).await);
    }
    assert_eq!(
        shapes(&seen),
        [
            "Data(op 1, fin 0, 0+7 of 7)",
            "Data(op 9, fin 1, 0+2 of 2)",
            "Data(op 0, fin 0, 0+7 of 7)",
            "Data(op 9, fin 1, 0+2 of 2)",
            "Data(op 0, fin 1, 0+6 of 6)"
        ]
    );
    let payloads: Vec<&[u8]> = seen.iter().map(|e| &data(e).data[..]).collect();
    assert_eq!(payloads, [FRAGMENTS[0], PINGS[0], FRAGMENTS[1], PINGS[1], FRAGMENTS[2]]);
    // The peer sends each next fragment only after the pong: they left mid-message.
    assert_pongs([peer.next_frame(STEP).await, peer.next_frame(STEP).await], 0);

    // Whole messages: the pings are still answered while the message is incomplete.
    let mut c = config(&peer);
    c.delivery = Delivery::messages();
    let (client, mut events) = connected(c).await;
    let ev = next(&mut events).await;
    assert_eq!(shape(&ev), "Message(op 1, \"frag-1 frag-2 frag-3\")");
    assert_pongs([peer.next_frame(STEP).await, peer.next_frame(STEP).await], 1);
    client.send_text("next", STEP).await.expect("sent");
    assert_eq!(shape(&next(&mut events).await), "Message(op 1, \"next\")");
}

#[test]
fn modem_pings_inside_fragments_give_only_the_data() {
    let peer = FaultPeer::start(&[Fault::PingsInsideFragments]);
    let (_modem, mut at) = modem();
    // FIRMWARE.md §8.5: each fragment's data in order, no marker, no URC for the pings.
    open_then(
        &mut at,
        &peer.uri(),
        &[
            &ws_data(0, FRAGMENTS[0]),
            &ws_data(0, FRAGMENTS[1]),
            &ws_data(0, FRAGMENTS[2]),
        ],
    );
    at.expect_silence(Duration::from_millis(300));
    // The library answered each ping with a pong of the same payload (FIRMWARE.md §8.5).
    assert_pongs([peer.frame(STEP), peer.frame(STEP)], 0);
    at.at("AT+WSCLOSE=0", OK);
}

// ---------------------------------------------------------------------------------------------
// Echo: the baseline

#[tokio::test]
async fn client_echo_baseline() {
    let peer = FaultPeer::start(&[Fault::Echo]);
    let (client, mut events) = connected(config(&peer)).await;
    echo_round_trip(&client, &mut events, "hello").await;
    let got = peer.next_frame(STEP).await;
    assert_eq!((got.opcode, got.fin, &got.payload[..]), (1, true, &b"hello"[..]));
    client.close(Some(1000), "", STEP).await.expect("clean close");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert_eq!(
        shapes(&seen),
        ["Data(op 8, fin 1, 0+2 of 2)", "Closed(Some(1000))", "Finish"]
    );
}

#[test]
fn modem_echo_baseline() {
    let peer = FaultPeer::start(&[Fault::Echo]);
    let (_modem, mut at) = modem();
    at.open(0, &peer.uri());
    at.send_and_echo(0, b"hello");
    let got = peer.frame(STEP);
    assert_eq!((got.opcode, got.fin, &got.payload[..]), (1, true, &b"hello"[..]));
    at.at("AT+WSCLOSE=0", OK);
    at.at("AT+WSOPEN?", OK);
}
