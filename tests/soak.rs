//! Data-integrity soak, bounded: `WSAT_SOAK_SECS` per soak (default 15; the issue's
//! ceiling inside the test command is 2 minutes, longer runs are for sessions).
//!
//! 1. Through the modem's TCP AT port, 3 links at once (buffer sizes 1024, 4096, 8192),
//!    random text and binary payloads of 1..8192 bytes against wsat's echo server: every
//!    byte must come back exactly once, in order, as the exact `+WS_DATA` chunks
//!    (`min(remaining, buffer_size)` each).
//! 2. Through the library in whole-message mode, messages up to 16 MiB.
//!
//! Counts are printed: sent, received, lost, duplicated, reordered (the last three 0).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wsat::echo_server::EchoServer;
use wsat::modem::link::LinkProfile;
use wsat::modem::{port, Modem, ModemOptions};
use wsat_client::{Client, ClientConfig, Delivery, Event, OpCode, Reconnect};

fn soak_duration() -> Duration {
    let secs = std::env::var("WSAT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15u64);
    Duration::from_secs(secs)
}

/// A small deterministic generator (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, len: usize, text: bool) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if text {
                    b' ' + self.below(95) as u8
                } else {
                    self.next() as u8
                }
            })
            .collect()
    }
}

/// What the AT port said, split into URCs and everything else.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Data { link: usize, bytes: Vec<u8> },
    Text(Vec<u8>),
}

/// Splits the modem's output stream: `+WS_DATA:<id>,<len>,<bytes>\r\n` by its length
/// (the bytes may hold anything), the rest up to the next CR LF or `>` prompt.
fn parse(buf: &mut Vec<u8>) -> Option<Piece> {
    const DATA: &[u8] = b"+WS_DATA:";
    if buf.starts_with(DATA) {
        let header_end = buf
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b',')
            .nth(1)
            .map(|(i, _)| i)?;
        let header = std::str::from_utf8(&buf[DATA.len()..header_end]).expect("ascii header");
        let (link, len) = header.split_once(',').expect("id,len");
        let (link, len): (usize, usize) = (link.parse().expect("id"), len.parse().expect("len"));
        let total = header_end + 1 + len + 2;
        if buf.len() < total {
            return None;
        }
        assert_eq!(&buf[total - 2..total], b"\r\n", "a +WS_DATA must end with CR LF");
        let bytes = buf[header_end + 1..header_end + 1 + len].to_vec();
        buf.drain(..total);
        return Some(Piece::Data { link, bytes });
    }
    if DATA.starts_with(&buf[..buf.len().min(DATA.len())]) && buf.len() < DATA.len() && !buf.is_empty() {
        return None; // maybe the start of a +WS_DATA
    }
    let end = buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2);
    let end = match (end, buf.first()) {
        (_, Some(b'>')) => Some(1),
        (Some(0), _) => None,
        (e, _) => e,
    };
    // The data prompt follows "\r\nOK\r\n" as "\r\n>", with nothing after it.
    if buf.starts_with(b"\r\n>") {
        return Some(Piece::Text(buf.drain(..3).collect()));
    }
    // Leading CR LF of a result code belongs to it: "\r\nOK\r\n" is one piece.
    let end = if buf.starts_with(b"\r\n") {
        buf[2..].windows(2).position(|w| w == b"\r\n").map(|i| i + 4)
    } else {
        end
    }?;
    Some(Piece::Text(buf.drain(..end).collect()))
}

struct AtPort {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Per link: chunks received, in order.
    data: Vec<VecDeque<Vec<u8>>>,
}

impl AtPort {
    /// Reads until a non-URC piece arrives and returns it; URCs are collected on the way.
    async fn next_text(&mut self) -> Vec<u8> {
        loop {
            while let Some(piece) = parse(&mut self.buf) {
                match piece {
                    Piece::Data { link, bytes } => self.data[link].push_back(bytes),
                    Piece::Text(t) => return t,
                }
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(20), self.tcp.read(&mut chunk))
                .await
                .expect("the modem stopped answering")
                .expect("read");
            assert!(n > 0, "the modem closed the AT port");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn command(&mut self, line: &str, answer: &[u8]) {
        self.tcp.write_all(line.as_bytes()).await.expect("write");
        loop {
            let t = self.next_text().await;
            if t.starts_with(b"+WS_CONNECTED") {
                continue;
            }
            assert_eq!(
                t.escape_ascii().to_string(),
                answer.escape_ascii().to_string(),
                "answer to {line:?}"
            );
            return;
        }
    }
}

/// Matches every chunk received so far against what each link must get next.
fn check(at: &mut AtPort, expected: &mut [VecDeque<Vec<u8>>], got: &mut u64, chunks: &mut u64) {
    for (link, want_queue) in expected.iter_mut().enumerate() {
        while let Some(chunk) = at.data[link].pop_front() {
            let want = want_queue
                .pop_front()
                .unwrap_or_else(|| panic!("link {link}: unexpected (duplicated) chunk of {} bytes", chunk.len()));
            assert_eq!(
                chunk.len(),
                want.len(),
                "link {link}: chunk size (lost, reordered or mis-chunked data)"
            );
            assert!(
                chunk == want,
                "link {link}: chunk bytes differ (corrupted or reordered)"
            );
            *got += chunk.len() as u64;
            *chunks += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_through_the_modem_tcp_port_with_three_links() {
    let server = EchoServer::bind("127.0.0.1:0", None).await.expect("bind");
    let echo = server.local_addr().expect("addr");
    server.spawn();
    let (tx, rx) = mpsc::unbounded_channel();
    let at_addr = port::tcp("127.0.0.1:0", tx).await.expect("AT port");
    let link = LinkProfile {
        reconnect_delay: Duration::from_secs(1),
        open_error_delay: Duration::from_millis(100),
        network_timeout: Duration::from_secs(5),
        // The soak checks exact min(remaining, buffer_size) cuts.
        chunking: wsat::modem::ChunkPolicy::Full,
    };
    let options = ModemOptions {
        link,
        ..ModemOptions::default()
    };
    tokio::spawn(Modem::new(options).run(rx, std::future::pending()));

    let tcp = TcpStream::connect(at_addr).await.expect("connect AT port");
    tcp.set_nodelay(true).expect("nodelay");
    let mut at = AtPort {
        tcp,
        buf: Vec::new(),
        data: vec![VecDeque::new(); 3],
    };
    assert_eq!(at.next_text().await, b"\r\nready\r\n");
    at.command("ATE0\r\n", b"ATE0\r\n").await;
    assert_eq!(at.next_text().await, b"\r\nOK\r\n");
    let buffers = [1024usize, 4096, 8192];
    for (link, size) in buffers.iter().enumerate() {
        at.command(&format!("AT+WSCFG={link},10,120,{size}\r\n"), b"\r\nOK\r\n")
            .await;
        at.tcp
            .write_all(format!("AT+WSOPEN={link},\"ws://{echo}\"\r\n").as_bytes())
            .await
            .expect("write");
        assert_eq!(at.next_text().await, format!("+WS_CONNECTED:{link}\r\n").as_bytes());
        assert_eq!(at.next_text().await, b"\r\nOK\r\n");
    }

    let mut rng = Rng(0x0005_eed0_f3a7_u64);
    let mut expected: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); 3];
    let (mut sent_msgs, mut sent_bytes, mut got_bytes, mut chunks) = (0u64, 0u64, 0u64, 0u64);
    let deadline = Instant::now() + soak_duration();
    while Instant::now() < deadline {
        let link = rng.below(3) as usize;
        let len = 1 + rng.below(8192) as usize;
        let text = rng.below(2) == 0;
        let payload = rng.bytes(len, text);
        let op = if text { 1 } else { 2 };
        at.command(&format!("AT+WSSEND={link},{len},{op}\r\n"), b"\r\nOK\r\n")
            .await;
        assert_eq!(at.next_text().await, b"\r\n>");
        at.tcp.write_all(&payload).await.expect("payload");
        assert_eq!(at.next_text().await, b"\r\nSEND OK\r\n");
        for piece in payload.chunks(buffers[link]) {
            expected[link].push_back(piece.to_vec());
        }
        sent_msgs += 1;
        sent_bytes += len as u64;
        check(&mut at, &mut expected, &mut got_bytes, &mut chunks);
    }
    // Drain the echoes still in flight.
    let settle = Instant::now() + Duration::from_secs(20);
    while expected.iter().any(|e| !e.is_empty()) {
        assert!(
            Instant::now() < settle,
            "lost data: {:?} chunks never came back",
            expected.iter().map(VecDeque::len).collect::<Vec<_>>()
        );
        at.command("AT\r\n", b"\r\nOK\r\n").await;
        check(&mut at, &mut expected, &mut got_bytes, &mut chunks);
    }
    eprintln!(
        "modem soak: {sent_msgs} messages, sent {sent_bytes} bytes, received {got_bytes} bytes in {chunks} +WS_DATA chunks; lost 0, duplicated 0, reordered 0"
    );
    assert_eq!(sent_bytes, got_bytes);
    assert!(
        sent_msgs > 10,
        "the soak ran too few messages to mean anything: {sent_msgs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_through_the_library_with_whole_messages_up_to_16_mib() {
    let server = EchoServer::bind("127.0.0.1:0", None).await.expect("bind");
    let uri = format!("ws://{}", server.local_addr().expect("addr"));
    server.spawn();
    let mut config = ClientConfig::new(uri);
    config.delivery = Delivery::Messages { max_size: 16 << 20 };
    config.buffer_size = 64 * 1024;
    config.reconnect = Reconnect::Disabled;
    let (client, mut events) = Client::start(config).expect("valid");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("event")
        {
            Some(Event::Connected(_)) => break,
            Some(Event::BeforeConnect { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let mut rng = Rng(0x001b_0000_feed_u64);
    let deadline = Instant::now() + soak_duration();
    let (mut sent, mut bytes) = (0u64, 0u64);
    while Instant::now() < deadline {
        // Log-uniform sizes: many small messages, some of several MiB, up to 16 MiB.
        let len = 1usize << rng.below(25);
        let len = (len + rng.below(len as u64) as usize).min(16 << 20);
        let text = rng.below(2) == 0;
        let payload = Bytes::from(rng.bytes(len, text));
        let op = if text { OpCode::TEXT } else { OpCode::BINARY };
        client
            .send(op, payload.clone(), Duration::from_secs(30))
            .await
            .expect("sent");
        let ev = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("echo in time");
        match ev {
            Some(Event::Message(m)) => {
                assert_eq!(m.opcode, op);
                assert!(m.payload == payload, "message of {len} bytes came back different");
            }
            other => panic!("{other:?}"),
        }
        sent += 1;
        bytes += len as u64;
    }
    eprintln!("library soak: {sent} messages, {bytes} bytes echoed whole; lost 0, duplicated 0, reordered 0");
    assert!(sent > 10, "too few messages: {sent}");
    client
        .close(Some(1000), "", Duration::from_secs(5))
        .await
        .expect("clean close");
}
