//! permessage-deflate (RFC 7692) on the client side, end to end: against the seed example's
//! Python `websockets` server (which accepts the offer as browsers' peers do), against
//! scripted servers that answer wrongly or send a compression bomb, and through
//! `wsat connect`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsat_client::{Client, ClientConfig, ClientError, DeflateConfig, Delivery, Event, Message, Reconnect, WebSocket};
use wsat_proto::handshake::accept_response_with_extensions;
use wsat_proto::{Connection, ConnectionConfig, OpCode, Role};
use wsat_testkit::events::{until, STEP};
use wsat_testkit::frames::read_frame;
use wsat_testkit::peer::{accept_upgrade, read_request, ScriptedPeer};
use wsat_testkit::{peer_or_skip, SeedServer};

mod common;

/// Bytes that crossed a [`Forwarder`], each way.
#[derive(Default)]
struct Wire {
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl Wire {
    fn total(&self) -> u64 {
        self.to_server.load(Ordering::Acquire) + self.to_client.load(Ordering::Acquire)
    }
}

/// A TCP forwarder on loopback in front of `target`, counting the bytes it carries: what the
/// connection costs on the wire, handshake included.
async fn forwarder(target: u16) -> (String, Arc<Wire>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let wire = Arc::new(Wire::default());
    let counts = wire.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(("127.0.0.1", target)).await.expect("connect target");
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = counts.clone();
            let down = counts.clone();
            tokio::spawn(pump(cr, sw, move |n| up.to_server.fetch_add(n, Ordering::AcqRel)));
            tokio::spawn(pump(sr, cw, move |n| down.to_client.fetch_add(n, Ordering::AcqRel)));
        }
    });
    (format!("ws://{addr}"), wire)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: impl Fn(u64) -> u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count(n as u64);
    }
    let _ = to.shutdown().await;
}

/// A compressible text of about `len` bytes: JSON-like records that differ in their numbers.
fn records(len: usize) -> String {
    let mut out = String::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.push_str(&format!(
            "{{\"id\":{i},\"sensor\":\"temp-{}\",\"value\":{}.{},\"ok\":true}}\n",
            i % 7,
            20 + i * 37 % 13,
            i * 11 % 10
        ));
        i += 1;
    }
    out
}

fn text_message(text: &str) -> Message {
    Message {
        opcode: OpCode::TEXT,
        payload: text.to_owned().into(),
    }
}

fn config(uri: &str, compression: Option<DeflateConfig>) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    c.reconnect = Reconnect::Disabled;
    c.delivery = Delivery::messages();
    c.compression = compression;
    c
}

/// Echoes `text` once through the seed server with `compression`; returns what came back,
/// the negotiated extension and the bytes on the wire.
async fn seed_echo(compression: Option<DeflateConfig>, text: &str) -> (Vec<u8>, Option<String>, u64) {
    let server = SeedServer::ws();
    let (uri, wire) = forwarder(server.port()).await;
    let (client, mut events) = Client::start(config(&uri, compression)).expect("config");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    let Some(Event::Connected(info)) = seen.last() else {
        panic!("not connected: {seen:?}")
    };
    let agreed = info.deflate.as_ref().map(|d| d.response());
    client.send_text(text, STEP).await.expect("sent");
    let seen = until(&mut events, |e| matches!(e, Event::Message(_) | Event::Finish)).await;
    let Some(Event::Message(m)) = seen.last() else {
        panic!("no echo: {seen:?}")
    };
    let echo = m.payload.to_vec();
    client.close(Some(1000), "", STEP).await.expect("closed");
    (echo, agreed, wire.total())
}

#[tokio::test]
async fn a_compressed_echo_through_the_seed_websockets_server_is_intact_and_small() {
    if !peer_or_skip("a_compressed_echo_through_the_seed_websockets_server_is_intact_and_small") {
        return;
    }
    let text = records(512 * 1024);
    let (echo, agreed, compressed_wire) = seed_echo(Some(DeflateConfig::default()), &text).await;
    assert_eq!(echo, text.as_bytes(), "the echo differs");
    let agreed = agreed.expect("websockets accepts permessage-deflate");
    assert!(agreed.starts_with("permessage-deflate"), "{agreed}");
    let (echo, agreed, plain_wire) = seed_echo(None, &text).await;
    assert_eq!(echo, text.as_bytes());
    assert_eq!(agreed, None, "nothing offered, nothing agreed");
    eprintln!(
        "{} bytes echoed: {plain_wire} bytes on the wire uncompressed, {compressed_wire} compressed",
        text.len()
    );
    assert!(plain_wire > 2 * text.len() as u64, "{plain_wire}");
    assert!(compressed_wire * 10 < plain_wire, "{compressed_wire} vs {plain_wire}");
}

#[tokio::test]
async fn a_websocket_compresses_against_the_seed_server_too() {
    if !peer_or_skip("a_websocket_compresses_against_the_seed_server_too") {
        return;
    }
    let server = SeedServer::ws();
    let (uri, wire) = forwarder(server.port()).await;
    let (mut ws, info) = WebSocket::connect_with(&config(&uri, Some(DeflateConfig::default())))
        .await
        .expect("connected");
    assert!(info.deflate.is_some(), "{:?}", info.headers);
    let text = records(256 * 1024);
    for _ in 0..3 {
        ws.send(text_message(&text)).await.expect("sent");
        let echo = tokio::time::timeout(STEP, ws.recv()).await.expect("in time");
        assert_eq!(echo.expect("open").expect("ok").payload, text.as_bytes());
    }
    ws.close(Some(1000), "").await.expect("closed");
    let total = wire.total();
    assert!(
        total * 10 < 6 * text.len() as u64,
        "{total} bytes for 6 × {}",
        text.len()
    );
}

/// A server that accepts the offer with `extensions` (as given, right or wrong), then sends
/// `frames` and reports every frame the client sends it.
fn deflate_server(
    extensions: &'static str,
    frames: Option<Vec<u8>>,
) -> (ScriptedPeer, mpsc::UnboundedReceiver<(u8, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        let frames = frames.clone();
        async move {
            let request = read_request(&mut tcp).await.expect("request");
            let upgrade = request.upgrade().expect("upgrade");
            let response = accept_response_with_extensions(&upgrade.key, None, Some(extensions));
            tcp.write_all(&response).await.expect("101");
            if let Some(frames) = frames {
                tcp.write_all(&frames).await.expect("frames");
            }
            while let Some(frame) = read_frame(&mut tcp).await {
                let _ = tx.send((frame.opcode, frame.payload));
            }
        }
    });
    (peer, rx)
}

/// 10 MiB of zeros as one permessage-deflate message (about 10 KiB on the wire).
fn bomb() -> Vec<u8> {
    let params = DeflateConfig::default()
        .accept_offers(["permessage-deflate; client_max_window_bits"])
        .expect("accepted");
    let mut server = Connection::with_deflate(ConnectionConfig::rfc(Role::Server), Some(params), Instant::now());
    server
        .send_frame(OpCode::BINARY, true, &vec![0u8; 10 << 20])
        .expect("queued");
    let mut out = BytesMut::new();
    server.transmit_into(&mut out);
    assert!(out.len() < 64 * 1024, "the bomb is {} bytes", out.len());
    out.to_vec()
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

async fn next_close(rx: &mut mpsc::UnboundedReceiver<(u8, Vec<u8>)>) -> Option<u16> {
    loop {
        let (opcode, payload) = tokio::time::timeout(STEP, rx.recv()).await.expect("in time")?;
        if opcode == 8 {
            return close_code(&payload);
        }
    }
}

#[tokio::test]
async fn a_compression_bomb_ends_with_1009_for_a_client() {
    let (peer, mut frames) = deflate_server("permessage-deflate", Some(bomb()));
    let mut c = config(&peer.uri(), Some(DeflateConfig::default()));
    c.delivery = Delivery::Messages { max_size: 1 << 20 };
    let (_client, mut events) = Client::start(c).expect("config");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Error(_) | Event::Message(_) | Event::Finish)
    })
    .await;
    match seen.last() {
        Some(Event::Error(ClientError::Protocol(e))) => assert_eq!(e.close_code(), 1009, "{e}"),
        other => panic!("expected a 1009 error, got {other:?} after {seen:?}"),
    }
    assert_eq!(next_close(&mut frames).await, Some(1009));
}

#[tokio::test]
async fn a_compression_bomb_ends_with_1009_for_a_websocket() {
    let (peer, mut frames) = deflate_server("permessage-deflate", Some(bomb()));
    let mut c = config(&peer.uri(), Some(DeflateConfig::default()));
    c.delivery = Delivery::Messages { max_size: 1 << 20 };
    let (mut ws, _) = WebSocket::connect_with(&c).await.expect("connected");
    let got = tokio::time::timeout(STEP, ws.recv()).await.expect("in time");
    match got {
        Some(Err(ClientError::Protocol(e))) => assert_eq!(e.close_code(), 1009, "{e}"),
        other => panic!("expected a 1009 error, got {other:?}"),
    }
    assert_eq!(next_close(&mut frames).await, Some(1009));
}

/// Answers RFC 7692 §5 says a client must refuse.
const BAD_ANSWERS: [&str; 4] = [
    "x-webkit-deflate-frame",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; unknown_parameter",
    "permessage-deflate, permessage-deflate",
];

#[tokio::test]
async fn a_bad_extension_answer_fails_the_upgrade_with_1010() {
    for answer in BAD_ANSWERS {
        let (peer, mut frames) = deflate_server(answer, None);
        let c = config(&peer.uri(), Some(DeflateConfig::default()));
        let (_client, mut events) = Client::start(c).expect("config");
        let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::Error(ClientError::Handshake(_)))),
            "{answer}: {seen:?}"
        );
        assert!(
            !seen.iter().any(|e| matches!(e, Event::Connected(_))),
            "{answer}: {seen:?}"
        );
        assert_eq!(next_close(&mut frames).await, Some(1010), "{answer}");

        let (peer, mut frames) = deflate_server(answer, None);
        let c = config(&peer.uri(), Some(DeflateConfig::default()));
        match WebSocket::connect_with(&c).await {
            Err(ClientError::Handshake(e)) => assert_eq!(e.close_code(), Some(1010), "{answer}: {e}"),
            Err(e) => panic!("{answer}: {e}"),
            Ok(_) => panic!("{answer}: accepted"),
        }
        assert_eq!(next_close(&mut frames).await, Some(1010), "{answer}");
    }
}

#[tokio::test]
async fn a_declined_offer_leaves_the_connection_uncompressed() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            let request = accept_upgrade(&mut tcp).await;
            let frame = read_frame(&mut tcp).await.expect("a frame");
            let _ = tx.send((request.head_text(), frame.first, frame.payload));
        }
    });
    let (mut ws, info) = WebSocket::connect_with(&config(&peer.uri(), Some(DeflateConfig::default())))
        .await
        .expect("connected");
    assert_eq!(info.deflate, None);
    ws.send(text_message(&records(4096))).await.expect("sent");
    let (head, first, payload) = tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("in time")
        .expect("frame");
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
        "{head}"
    );
    assert_eq!(first & 0x40, 0, "RSV1 set on an uncompressed connection");
    assert_eq!(payload, records(4096).as_bytes());
}

/// `wsat connect` offers permessage-deflate unless `--no-deflate`; the request head the server saw.
fn connect_request(extra: &[&str]) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            let request = accept_upgrade(&mut tcp).await;
            let _ = tx.send(request.head_text());
            // Close at once: 1000, so that `wsat connect` ends.
            let _ = tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).await;
            wsat_testkit::peer::drain(&mut tcp).await;
        }
    });
    let out = common::wsat()
        .arg("connect")
        .args(extra)
        .arg(peer.uri())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wsat connect");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rx.recv_timeout(STEP).expect("the request")
}

#[test]
fn wsat_connect_offers_deflate_unless_told_not_to() {
    let head = connect_request(&[]);
    assert!(head.contains("Sec-WebSocket-Extensions: permessage-deflate"), "{head}");
    let head = connect_request(&["--no-deflate"]);
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-extensions"),
        "{head}"
    );
}

#[test]
fn wsat_connect_prints_what_the_seed_server_agreed() {
    if !peer_or_skip("wsat_connect_prints_what_the_seed_server_agreed") {
        return;
    }
    let server = SeedServer::ws();
    let text = records(64 * 1024).replace('\n', " ");
    let mut child = common::wsat()
        .args(["connect", &server.uri()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wsat connect");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{text}").expect("line");
    }
    let out = child.wait_with_output().expect("exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("extensions: permessage-deflate"), "{stderr}");
    let expected = format!("{text}\n");
    assert!(
        out.stdout == expected.as_bytes(),
        "stdout: {} bytes, expected the {}-byte line back",
        out.stdout.len(),
        expected.len()
    );
}
