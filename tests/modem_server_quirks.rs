//! What a firmware tester's server does that real servers rarely do, through `wsat modem
//! --tcp`, answered as the chip answers it:
//!
//! * control frames over 125 bytes: the ESP client has no such check, so a 200-byte ping is
//!   answered (a pong echoing it), a 300-byte pong counts as a pong, neither prints a URC, and
//!   a close with 202 payload bytes gives `+WS_CLOSED` (FIRMWARE.md §8.5, §11.3); wsat-client
//!   in strict mode fails each with 1002;
//! * a frame the server leaves unfinished: the chip prints what each read returned (at most
//!   `buffer_size`), so every byte read is printed at once, and before `+WS_DISCONNECTED` when
//!   the connection drops (TCP end, reset, pong timeout). `--chunking full` keeps its
//!   reproducible `min(remaining, buffer_size)` cuts and still prints the rest at the drop;
//!   wsat-client does the same for an abort.
//!
//! Loopback only; every wait is bounded.

mod common;

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{modem_tcp, FAST};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use wsat_client::{Client, ClientConfig, ClientError, DisconnectReason, Event, OpCode, Reconnect};
use wsat_proto::{FrameHeader, ProtocolError};
use wsat_testkit::at_host::{ws_data, AtClient, AtEvent, OK, STEP};
use wsat_testkit::data::pattern;
use wsat_testkit::events::{next, until};
use wsat_testkit::frames::{frame_header, read_frame, server_frame, Frame};
use wsat_testkit::peer::{accept_upgrade, drain, ScriptedPeer};

/// A frame's payload length in these tests: 1,500 bytes arrive, 1,500 are missing.
const FRAME_LEN: usize = 3000;
/// What the server sends of it before it stops or drops.
const SENT: usize = 1500;
/// The default `buffer_size`.
const BUFFER: usize = 1024;
/// How soon bytes the modem has read must be printed.
const PROMPTLY: Duration = Duration::from_secs(2);

/// A close frame's payload: code 1000 and a 200-byte reason.
fn long_close_payload() -> Vec<u8> {
    [&1000u16.to_be_bytes()[..], &[b'r'; 200]].concat()
}

/// The 200-byte ping, the 300-byte pong and the 202-byte close, as the server sends them.
fn long_control_frames() -> [Vec<u8>; 3] {
    [
        server_frame(9, true, &[b'p'; 200]),
        server_frame(10, true, &[b'q'; 300]),
        server_frame(8, true, &long_close_payload()),
    ]
}

#[test]
fn control_frames_over_125_bytes_are_answered_and_ignored_as_on_the_chip() {
    let (tx, rx) = mpsc::channel::<Frame>();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            accept_upgrade(&mut tcp).await.head_only();
            let [ping, pong, close] = long_control_frames();
            tcp.write_all(&ping).await.expect("the ping");
            let Some(answer) = read_frame(&mut tcp).await else {
                return;
            };
            let _ = tx.send(answer);
            let script = [pong, server_frame(1, true, b"after"), close].concat();
            tcp.write_all(&script).await.expect("the pong, a text, the close");
            // The modem answers the close; then the server closes TCP.
            if let Some(answer) = read_frame(&mut tcp).await {
                let _ = tx.send(answer);
            }
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &peer.uri());
    // No URC for the ping or the pong; the text after them, then the close.
    at.expect(ws_data(0, b"after"));
    at.expect(b"+WS_CLOSED:0\r\n");
    at.at("AT+WSOPEN?", OK);

    let pong = rx.recv_timeout(STEP).expect("the modem answered the ping");
    assert_eq!(
        (pong.opcode, pong.fin, pong.masked, pong.payload),
        (10, true, true, vec![b'p'; 200]),
        "a pong echoing all 200 bytes"
    );
    let close = rx.recv_timeout(STEP).expect("the modem answered the close");
    assert_eq!(
        (close.opcode, close.payload.len()),
        (8, 0),
        "the firmware's empty close"
    );
    at.expect_silence(Duration::from_millis(500));
    assert_eq!(peer.accepted(), 1, "the link never dropped and reconnected");
}

#[tokio::test]
async fn the_same_control_frames_fail_a_strict_client_with_1002() {
    for frame in long_control_frames() {
        let len = FrameHeader::parse(&frame).expect("a header").0.payload_len;
        let (tx, rx) = mpsc::channel::<Frame>();
        let peer = ScriptedPeer::start(move |mut tcp, _| {
            let (tx, frame) = (tx.clone(), frame.clone());
            async move {
                accept_upgrade(&mut tcp).await;
                tcp.write_all(&frame).await.expect("the control frame");
                if let Some(answer) = read_frame(&mut tcp).await {
                    let _ = tx.send(answer);
                }
            }
        });
        let mut config = ClientConfig::new(peer.uri());
        config.reconnect = Reconnect::Disabled;
        assert!(config.strict, "strict is the library's default");
        let (_client, mut events) = Client::start(config).expect("valid config");
        let seen = until(&mut events, |e| {
            matches!(e, Event::Disconnected(_) | Event::Closed { .. })
        })
        .await;
        assert!(
            seen.iter().any(|e| matches!(e,
                Event::Error(ClientError::Protocol(ProtocolError::ControlTooLong { len: l, max: 125 })) if *l == len)),
            "{seen:?}"
        );
        assert!(
            matches!(seen.last(), Some(Event::Disconnected(DisconnectReason::ProtocolError))),
            "{seen:?}"
        );
        let close = rx.recv_timeout(STEP).expect("the client's close");
        assert_eq!((close.opcode, &close.payload[..2]), (8, &1002u16.to_be_bytes()[..]));
    }
}

/// How the server ends the unfinished frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Closes TCP (FIN).
    Close,
    /// Resets TCP, once the modem had time to read the bytes.
    Reset,
    /// Keeps TCP open and answers no ping, until the pong timeout drops the link.
    Silence,
}

/// A server that sends the first [`SENT`] bytes of a [`FRAME_LEN`]-byte binary frame on its
/// first connection, in `pieces` writes 100 ms apart, then ends it as `ending` says; later
/// connections (reconnects) are held open.
fn cut_off_server(pieces: usize, ending: Ending) -> ScriptedPeer {
    ScriptedPeer::start(move |mut tcp, n| async move {
        accept_upgrade(&mut tcp).await;
        if n > 0 {
            return drain(&mut tcp).await;
        }
        let payload = pattern(FRAME_LEN);
        tcp.write_all(&frame_header(2, true, None, FRAME_LEN as u64))
            .await
            .expect("header");
        for piece in payload[..SENT].chunks(SENT.div_ceil(pieces)) {
            tcp.write_all(piece).await.expect("payload");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match ending {
            Ending::Close => {}
            Ending::Reset => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                // SO_LINGER 0 turns the close into an RST (deprecated in tokio because a
                // non-zero linger blocks on drop; zero does not).
                #[allow(deprecated)]
                let _ = tcp.set_linger(Some(Duration::ZERO));
            }
            Ending::Silence => drain(&mut tcp).await,
        }
    })
}

/// The `+WS_DATA` chunks of link 0 up to `+WS_DISCONNECTED:0`, within `within`.
fn chunks_until_disconnected(at: &mut AtClient, within: Duration) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    at.pump(Instant::now() + within, "+WS_DISCONNECTED:0", |ev| match ev {
        AtEvent::Data { link: 0, bytes } => {
            chunks.push(bytes);
            Ok(false)
        }
        AtEvent::Line(l) if l == "+WS_DISCONNECTED:0" => Ok(true),
        other => anyhow::bail!("unexpected {}", other.describe()),
    })
    .unwrap_or_else(|e| panic!("{e:#}; chunks so far: {:?}", sizes(&chunks)));
    chunks
}

fn sizes(chunks: &[Vec<u8>]) -> Vec<usize> {
    chunks.iter().map(Vec::len).collect()
}

/// What the chip guarantees of the chunks of a frame's first `total` bytes: all of them, in
/// order, none over `buffer_size`.
fn assert_chip_chunks(chunks: &[Vec<u8>], total: usize) {
    assert!(
        chunks.iter().all(|c| !c.is_empty() && c.len() <= BUFFER),
        "chunks {:?}",
        sizes(chunks)
    );
    assert!(
        chunks.concat() == pattern(FRAME_LEN)[..total],
        "chunks {:?}",
        sizes(chunks)
    );
}

/// Opens link 0 to a [`cut_off_server`] with `extra` modem options and returns the chunks
/// printed before `+WS_DISCONNECTED:0`.
fn cut_off(extra: &[&str], wscfg: Option<&str>, pieces: usize, ending: Ending) -> Vec<Vec<u8>> {
    let peer = cut_off_server(pieces, ending);
    let modem = modem_tcp(&[FAST, extra].concat());
    let mut at = modem.connect();
    if let Some(cfg) = wscfg {
        at.at(cfg, OK);
    }
    at.open(0, &peer.uri());
    chunks_until_disconnected(&mut at, STEP)
}

#[test]
fn a_frame_cut_off_by_the_server_is_printed_to_its_last_byte_before_disconnected() {
    // The chip's chunking: what each read returned, at most buffer_size.
    for pieces in [1, 3] {
        let chunks = cut_off(&[], None, pieces, Ending::Close);
        assert_chip_chunks(&chunks, SENT);
    }
    // Full chunks: 1,024, then the 476 held for a full chunk, at the drop.
    for ending in [Ending::Close, Ending::Reset] {
        let chunks = cut_off(&["--chunking", "full"], None, 1, ending);
        assert_eq!(sizes(&chunks), [BUFFER, SENT - BUFFER], "{ending:?}");
        assert!(chunks.concat() == pattern(FRAME_LEN)[..SENT]);
    }
}

#[test]
fn a_pong_timeout_prints_the_bytes_of_an_unfinished_frame_first() {
    // Pings every second, dropped after 2 s without a pong.
    let wscfg = Some("AT+WSCFG=0,1,2");
    let chunks = cut_off(&["--chunking", "full"], wscfg, 1, Ending::Silence);
    assert_eq!(sizes(&chunks), [BUFFER, SENT - BUFFER]);
    assert!(chunks.concat() == pattern(FRAME_LEN)[..SENT]);
    let chunks = cut_off(&[], wscfg, 3, Ending::Silence);
    assert_chip_chunks(&chunks, SENT);
}

#[test]
fn an_unfinished_frame_is_printed_as_it_arrives_with_chip_chunking() {
    let rest = Arc::new(Notify::new());
    let send_rest = rest.clone();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let rest = send_rest.clone();
        async move {
            accept_upgrade(&mut tcp).await;
            let payload = pattern(FRAME_LEN);
            let first = [frame_header(2, true, None, FRAME_LEN as u64), payload[..SENT].to_vec()].concat();
            tcp.write_all(&first).await.expect("the first half");
            rest.notified().await;
            tcp.write_all(&payload[SENT..]).await.expect("the second half");
            drain(&mut tcp).await;
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.open(0, &peer.uri());
    let mut chunks = Vec::new();
    let mut printed = |at: &mut AtClient, total: usize, within: Duration| {
        at.pump(
            Instant::now() + within,
            &format!("{total} bytes of +WS_DATA"),
            |ev| match ev {
                AtEvent::Data { link: 0, bytes } => {
                    chunks.push(bytes);
                    Ok(chunks.iter().map(Vec::len).sum::<usize>() >= total)
                }
                other => anyhow::bail!("unexpected {}", other.describe()),
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}; chunks so far: {:?}", sizes(&chunks)));
        assert_chip_chunks(&chunks, total);
    };
    // The server waits: every byte it sent is printed, without waiting for the rest.
    printed(&mut at, SENT, PROMPTLY);
    rest.notify_one();
    printed(&mut at, FRAME_LEN, PROMPTLY);
    at.expect_silence(Duration::from_millis(300));
    at.at("AT+WSCLOSE=0", OK);
}

#[tokio::test]
async fn an_abort_hands_out_the_bytes_of_an_unfinished_frame_first() {
    let peer = cut_off_server(1, Ending::Silence);
    let mut config = ClientConfig::new(peer.uri());
    config.reconnect = Reconnect::Disabled;
    let (client, mut events) = Client::start(config).expect("valid config");
    let mut got = Vec::new();
    while got.len() < BUFFER {
        if let Event::Data(d) = next(&mut events).await {
            assert_eq!((d.opcode, d.offset), (OpCode::BINARY, got.len() as u64));
            got.extend_from_slice(&d.data);
        }
    }
    // Full chunks (the library's default): the other 476 bytes, read by now, wait for a
    // full chunk.
    assert_eq!(got.len(), BUFFER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.abort().await;
    let seen = until(&mut events, |e| matches!(e, Event::Disconnected(_))).await;
    let Some(Event::Data(rest)) = seen.first() else {
        panic!("{seen:?}")
    };
    assert_eq!(
        (rest.offset, rest.data.len(), rest.ends_frame()),
        (BUFFER as u64, SENT - BUFFER, false)
    );
    assert!(matches!(
        &seen[1..],
        [
            Event::Error(ClientError::Aborted),
            Event::Disconnected(DisconnectReason::Aborted)
        ]
    ));
}
