//! permessage-deflate (RFC 7692) in `wsat echo-server`, end to end against the binary: an
//! offer is accepted and a compressible message echoes compressed both ways; `--no-deflate`
//! declines; a malformed offer is declined and the connection works uncompressed; a
//! compression bomb ends with 1009 at `--max-message` without growing the server, which
//! then serves the next client. The client side is wsat-proto's own handshake and
//! `Connection`, over a blocking TCP socket on 127.0.0.1.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wsat_proto::handshake::{ClientHandshake, HandshakeRequest, HandshakeResponse};
use wsat_proto::uri::WsUri;
use wsat_proto::{
    Connection, ConnectionConfig, DeflateConfig, Event, Message, MessageAssembler, NegotiatedDeflate, OpCode, Role,
};
use wsat_testkit::process::{hwm_kib, rss_kib, Killed};

/// `wsat echo-server EXTRA…` on a free port.
fn server(extra: &[&str]) -> (Killed, u16) {
    common::echo_server(extra, Stdio::null())
}

/// What the server sent back next.
#[derive(Debug)]
enum Got {
    Message(Message),
    /// Its close frame, with the code.
    Close(Option<u16>),
    /// End of stream without a close frame.
    Eof,
}

/// A client on an upgraded connection, counting the bytes on the wire.
struct Peer {
    tcp: TcpStream,
    conn: Connection,
    assembler: MessageAssembler,
    /// The response's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
    /// Bytes received after the response head.
    received: u64,
    /// The first bytes received after the response head (the first frame's header).
    head: Vec<u8>,
}

impl Peer {
    /// Upgrades a connection to `port`, offering `deflate` (through the handshake, which
    /// checks the answer) and sending the `extra` headers verbatim.
    fn open(port: u16, deflate: Option<DeflateConfig>, extra: &[(&str, &str)]) -> Peer {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        tcp.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let uri = WsUri::parse(&format!("ws://127.0.0.1:{port}/")).expect("a ws URI");
        let request = HandshakeRequest {
            deflate,
            headers: extra.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ..HandshakeRequest::for_uri(&uri)
        };
        let handshake = ClientHandshake::new(&request);
        tcp.write_all(handshake.request()).expect("send the request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (headers, head_len) = loop {
            let n = tcp.read(&mut chunk).expect("read the response");
            assert!(n > 0, "closed before a response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            match handshake.parse_response(&buf, true).expect("an acceptable response") {
                None => {}
                Some(HandshakeResponse::Accepted { headers, head_len, .. }) => break (headers, head_len),
                Some(other) => panic!("not a 101: {other:?}"),
            }
        };
        let extensions = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|(_, value)| value.clone());
        let negotiated = handshake
            .negotiated_deflate(&headers)
            .expect("checked by parse_response");
        let mut peer = Peer {
            tcp,
            conn: Connection::with_deflate(ConnectionConfig::rfc(Role::Client), negotiated, Instant::now()),
            assembler: MessageAssembler::new(),
            extensions,
            received: 0,
            head: Vec::new(),
        };
        peer.take_in(&buf[head_len..]);
        peer
    }

    fn negotiated(&self) -> Option<&NegotiatedDeflate> {
        self.conn.deflate()
    }

    fn take_in(&mut self, bytes: &[u8]) {
        self.received += bytes.len() as u64;
        let room = 2usize.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.conn.handle_bytes(bytes, Instant::now());
    }

    /// Writes whatever the connection has queued; returns how many bytes.
    fn flush(&mut self) -> io::Result<u64> {
        let mut sent = 0;
        while let Some(bytes) = self.conn.poll_transmit() {
            self.tcp.write_all(&bytes)?;
            sent += bytes.len() as u64;
        }
        Ok(sent)
    }

    /// Sends one message; returns its bytes on the wire.
    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<u64> {
        self.conn.send_frame(opcode, true, payload).expect("open");
        self.flush()
    }

    /// The next message or close from the server.
    fn next(&mut self) -> io::Result<Got> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some(ev) = self.conn.poll_event() {
                match ev {
                    Event::Data(data) => {
                        if let Some(msg) = self.assembler.push(&data) {
                            return Ok(Got::Message(msg));
                        }
                    }
                    Event::CloseReceived(close) => {
                        let _ = self.flush();
                        return Ok(Got::Close(close.map(|c| c.code)));
                    }
                    Event::ProtocolError(e) => panic!("the server broke the protocol: {e}"),
                    _ => {}
                }
            }
            self.flush()?;
            let n = self.tcp.read(&mut chunk)?;
            if n == 0 {
                return Ok(Got::Eof);
            }
            self.take_in(&chunk[..n]);
        }
    }

    /// Sends `payload` and checks that its echo comes back intact; returns the bytes sent
    /// and received on the wire for it.
    fn echo(&mut self, opcode: OpCode, payload: &[u8]) -> (u64, u64) {
        let before = self.received;
        let sent = self.send(opcode, payload).expect("send");
        match self.next().expect("read the echo") {
            Got::Message(msg) => {
                assert_eq!(msg.opcode, opcode, "the echo keeps its type");
                assert!(
                    msg.payload[..] == payload[..],
                    "the echo of {} bytes differs",
                    payload.len()
                );
            }
            other => panic!("no echo: {other:?}"),
        }
        (sent, self.received - before)
    }
}

/// `len` bytes of text that compresses well, like a log or a JSON dump.
fn compressible(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while text.len() < len {
        text.extend_from_slice(format!("{{\"seq\":{i},\"status\":\"ok\",\"note\":\"echo me\"}}\n").as_bytes());
        i += 1;
    }
    text.truncate(len);
    text
}

/// The usual offer (`permessage-deflate; client_max_window_bits`) is accepted as it stands,
/// and a 4 MiB compressible message goes out and comes back compressed (RSV1 on the echo),
/// intact, in a tenth of its length or less on the wire each way.
#[test]
fn an_offer_is_accepted_and_a_large_message_echoes_compressed() {
    let (_server, port) = server(&[]);
    let mut peer = Peer::open(port, Some(DeflateConfig::default()), &[]);
    assert_eq!(peer.extensions.as_deref(), Some("permessage-deflate"));
    assert!(peer.negotiated().is_some());

    let message = compressible(4 << 20);
    let (sent, received) = peer.echo(OpCode::TEXT, &message);
    eprintln!(
        "{} bytes of text echoed with permessage-deflate: {sent} bytes sent, {received} received",
        message.len()
    );
    assert_eq!(
        peer.head[0], 0xc1,
        "the echo is a final text frame with RSV1 (compressed)"
    );
    let len = message.len() as u64;
    assert!(sent < len / 10, "sent {sent} bytes for {len}");
    assert!(received < len / 10, "received {received} bytes for {len}");

    // The compressors keep their context: later messages still round-trip, binary too.
    for i in 0..3u8 {
        let mut binary = compressible(100_000);
        binary[0] = i;
        let (sent, received) = peer.echo(OpCode::BINARY, &binary);
        assert!(
            sent < 20_000 && received < 20_000,
            "{sent} / {received} bytes for 100000"
        );
    }
    let (_, received) = peer.echo(OpCode::TEXT, b"");
    assert!(received > 0, "an empty message echoes too");
}

/// `--no-deflate` answers without `Sec-WebSocket-Extensions`, and the echo goes out as it
/// came, uncompressed (no RSV1, its whole length on the wire).
#[test]
fn with_no_deflate_the_offer_is_declined_and_echoes_are_uncompressed() {
    let (_server, port) = server(&["--no-deflate"]);
    let mut peer = Peer::open(port, Some(DeflateConfig::default()), &[]);
    assert_eq!(peer.extensions, None, "no extension in the response");
    assert!(peer.negotiated().is_none());

    let message = compressible(100_000);
    let (sent, received) = peer.echo(OpCode::TEXT, &message);
    assert_eq!(peer.head[0], 0x81, "a final text frame without RSV1");
    let len = message.len() as u64;
    assert!(
        sent >= len && received >= len,
        "{sent} sent, {received} received for {len}"
    );
}

/// Malformed offers (a window of 99 bits, an unknown parameter) are declined, not refused:
/// the upgrade succeeds without the extension and echoes are plain. The client here sends
/// the header verbatim and offers nothing through its handshake, which would refuse any
/// extension in the answer.
#[test]
fn a_malformed_offer_is_declined_and_the_connection_works() {
    let (_server, port) = server(&[]);
    for offer in [
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; no_such_parameter",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        let mut peer = Peer::open(port, None, &[("Sec-WebSocket-Extensions", offer)]);
        assert_eq!(peer.extensions, None, "{offer:?} is declined");
        let message = compressible(10_000);
        let (_, received) = peer.echo(OpCode::TEXT, &message);
        assert_eq!(peer.head[0], 0x81, "{offer:?}: an uncompressed echo");
        assert!(received >= message.len() as u64);
    }
    // A malformed offer followed by a valid one: the valid one wins.
    let mut peer = Peer::open(
        port,
        Some(DeflateConfig::default()),
        &[(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; server_max_window_bits=99",
        )],
    );
    assert_eq!(peer.extensions.as_deref(), Some("permessage-deflate"));
    peer.echo(OpCode::TEXT, &compressible(10_000));
    assert_eq!(peer.head[0], 0xc1, "a compressed echo");
}

/// 16 MiB of zeros, compressed to a few KiB, against `--max-message 1MiB`: the server
/// stops inflating at the limit and closes with 1009; its memory does not grow by the
/// bomb's size, and the next client is served.
#[test]
fn a_compression_bomb_ends_with_1009_and_the_server_stays_small() {
    const BOMB: usize = 16 << 20;
    let (server, port) = server(&["--max-message", "1MiB"]);
    let pid = server.0.id();
    // A first visit warms the server up (runtime, compressor tables).
    let mut warm = Peer::open(port, Some(DeflateConfig::default()), &[]);
    warm.echo(OpCode::BINARY, &compressible(500_000));
    drop(warm);
    let (rss_before, hwm_before) = (rss_kib(pid), hwm_kib(pid));

    let mut peer = Peer::open(port, Some(DeflateConfig::default()), &[]);
    assert!(peer.negotiated().is_some());
    let sent = peer.send(OpCode::BINARY, &vec![0u8; BOMB]).expect("send the bomb");
    assert!(sent < 64 * 1024, "the bomb is {sent} bytes on the wire");
    let got = peer.next().expect("read the answer");
    let (rss_after, hwm_after) = (rss_kib(pid), hwm_kib(pid));
    eprintln!(
        "bomb of {BOMB} bytes in {sent} on the wire, --max-message 1MiB: {got:?}; server RSS \
         {rss_before} -> {rss_after} KiB, peak {hwm_before} -> {hwm_after} KiB"
    );
    assert!(matches!(got, Got::Close(Some(1009))), "closed with 1009, got {got:?}");
    assert!(
        matches!(peer.next(), Ok(Got::Eof) | Err(_)),
        "then the server closes TCP"
    );
    assert!(
        hwm_after < hwm_before + 8 * 1024,
        "the server's peak grew from {hwm_before} to {hwm_after} KiB"
    );

    let mut next = Peer::open(port, Some(DeflateConfig::default()), &[]);
    next.echo(OpCode::TEXT, b"still here");
    // Just under the limit is still echoed.
    let (sent, _) = next.echo(OpCode::BINARY, &vec![0u8; (1 << 20) - 16]);
    assert!(sent < 16 * 1024, "{sent} bytes for 1 MiB of zeros");
}
