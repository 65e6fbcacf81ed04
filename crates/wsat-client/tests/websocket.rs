//! `WebSocket`, the caller-task client, on loopback against in-test servers: handshake and
//! echo, TLS verification levels, redirects, limits, cancel-safe `recv`, split halves used
//! from two tasks, `Stream`/`Sink`, keepalive in `recv`, the closing handshake both ways,
//! frames and chunks. Every wait is bounded.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::TlsAcceptor;
use wsat_client::tls::{certs_from_pem, key_from_pem, provider};
use wsat_client::{ChunkPolicy, ClientConfig, ClientError, Delivery, Message, OpCode, Verification, WebSocket};
use wsat_proto::handshake::accept_response;
use wsat_proto::{Connection, ConnectionConfig, ConnectionState, Event, ProtocolError, Role};
use wsat_testkit::frames::{read_frame, server_frame, Frame};
use wsat_testkit::peer::{drain, read_request, redirect, Request, ScriptedPeer};
use wsat_testkit::{Credential, TestPki};

/// The bound on every wait.
const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {STEP:?}"))
}

/// The next message, which must come.
async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Message {
    within("recv", ws.recv())
        .await
        .expect("the connection is open")
        .expect("a message")
}

fn text(payload: &str) -> Message {
    Message {
        opcode: OpCode::TEXT,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

fn config(uri: &str) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    c.delivery = Delivery::messages();
    c
}

/// A server on wsat-proto's server role: echoes every data frame as it came (opcode, FIN,
/// payload), with a ping after each if `pings`, answers pings and the close, and closes TCP
/// after the closing handshake.
async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, leftover: Vec<u8>, pings: bool) {
    let cfg = ConnectionConfig {
        max_chunk: 32 << 20,
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut conn = Connection::new(cfg, Instant::now());
    conn.handle_bytes(&leftover, Instant::now());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(event) = conn.poll_event() {
            if let Event::Data(d) = event {
                if d.opcode.is_data() {
                    let _ = conn.send_frame(d.opcode, d.fin, &d.data);
                    if pings {
                        let _ = conn.send_frame(OpCode::PING, true, b"keep up");
                    }
                }
            }
        }
        while let Some(out) = conn.poll_transmit() {
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
        if matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
            let _ = io.shutdown().await;
            return;
        }
        match io.read(&mut buf).await {
            Ok(n) if n > 0 => conn.handle_bytes(&buf[..n], Instant::now()),
            _ => return,
        }
    }
}

/// Reads the upgrade request and accepts it, choosing the first subprotocol offered;
/// `None` if the client left first.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) -> Option<Request> {
    let request = read_request(io).await?;
    let upgrade = request.upgrade()?;
    let chosen = upgrade.subprotocols.first().map(String::as_str);
    io.write_all(&accept_response(&upgrade.key, chosen)).await.ok()?;
    Some(request)
}

fn echo_peer() -> ScriptedPeer {
    echo_peer_with(false)
}

/// An echo server, that pings after every echo if `pings`.
fn echo_peer_with(pings: bool) -> ScriptedPeer {
    ScriptedPeer::start(move |mut tcp, _| async move {
        if let Some(request) = upgrade(&mut tcp).await {
            serve_echo(tcp, request.after, pings).await;
        }
    })
}

/// A rustls server configuration serving `cred`.
fn server_tls(cred: &Credential) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            certs_from_pem(cred.cert_pem.as_bytes(), "server certificate").expect("certificate"),
            key_from_pem(cred.key_pem.as_bytes()).expect("key"),
        )
        .expect("server TLS");
    TlsAcceptor::from(Arc::new(config))
}

/// An echo server over TLS with `cred`.
fn tls_echo_peer(cred: &Credential) -> ScriptedPeer {
    let acceptor = server_tls(cred);
    ScriptedPeer::start(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if let Some(request) = upgrade(&mut tls).await {
                serve_echo(tls, request.after, false).await;
            }
        }
    })
}

#[tokio::test]
async fn connects_and_echoes_text_binary_empty_and_large_messages() {
    let peer = echo_peer();
    let mut c = config(&peer.uri());
    c.subprotocol = Some("chat, superchat".into());
    let (mut ws, connected) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    assert_eq!(connected.status, 101);
    assert_eq!(connected.subprotocol.as_deref(), Some("chat"));
    assert!(connected
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-accept")));
    assert!(ws.is_open());

    let large: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let messages = [
        text("hello"),
        Message {
            opcode: OpCode::BINARY,
            payload: Bytes::from_static(&[0, 1, 2, 255]),
        },
        text(""),
        // Masked a chunk at a time as it is written (wsat-proto's transmit queue).
        Message {
            opcode: OpCode::BINARY,
            payload: Bytes::from(large),
        },
    ];
    for m in messages {
        within("send", ws.send(m.clone())).await.expect("sent");
        assert_eq!(next_message(&mut ws).await, m);
    }
    within("send_text", ws.send_text("text")).await.expect("sent");
    within("send_binary", ws.send_binary(vec![7u8; 10]))
        .await
        .expect("sent");
    assert_eq!(next_message(&mut ws).await, text("text"));
    assert_eq!(next_message(&mut ws).await.payload, vec![7u8; 10]);

    within("close", ws.close(Some(1000), "bye")).await.expect("clean close");
    assert_eq!(ws.close_frame().map(|f| f.code), Some(1000));
    assert!(!ws.is_open());
    assert!(within("recv after close", ws.recv()).await.is_none());
    assert!(matches!(ws.send_text("late").await, Err(ClientError::NotConnected)));
}

/// Connects over TLS with `ca` trusted at `verification`, then echoes one message.
async fn tls_outcome(uri: &str, ca: &str, verification: Verification) -> Result<(), ClientError> {
    let mut c = config(uri);
    c.tls.ca_pem = Some(ca.as_bytes().to_vec());
    c.tls.verification = verification;
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await?;
    within("send", ws.send_text("over TLS")).await?;
    let m = within("recv", ws.recv()).await.ok_or(ClientError::ConnectionClosed)??;
    assert_eq!(m, text("over TLS"));
    within("close", ws.close(Some(1000), "")).await
}

#[tokio::test]
async fn tls_verification_levels() {
    let pki = TestPki::generate();
    let good = tls_echo_peer(&pki.server);
    let good_uri = format!("wss://127.0.0.1:{}", good.port());
    tls_outcome(&good_uri, &pki.ca.cert_pem, Verification::Full)
        .await
        .expect("full verification with the right CA");
    let err = tls_outcome(&good_uri, &pki.other_ca.cert_pem, Verification::Full)
        .await
        .expect_err("the wrong CA");
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    assert!(tls_outcome(&good_uri, &pki.other_ca.cert_pem, Verification::ChainOnly)
        .await
        .is_err());
    tls_outcome(&good_uri, &pki.other_ca.cert_pem, Verification::None)
        .await
        .expect("no verification");

    let wrong_host = tls_echo_peer(&pki.wrong_host_server);
    let wrong_uri = format!("wss://127.0.0.1:{}", wrong_host.port());
    let err = tls_outcome(&wrong_uri, &pki.ca.cert_pem, Verification::Full)
        .await
        .expect_err("the host name is checked");
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    tls_outcome(&wrong_uri, &pki.ca.cert_pem, Verification::ChainOnly)
        .await
        .expect("chain only: the firmware's auth modes 2/3 skip the host name");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_hop_limit() {
    let peer = ScriptedPeer::start(|mut tcp, n| async move {
        if n < 2 {
            let _ = read_request(&mut tcp).await;
            redirect(&mut tcp, &format!("/hop{}", n + 1)).await;
        } else if let Some(request) = upgrade(&mut tcp).await {
            serve_echo(tcp, request.after, false).await;
        }
    });
    let (mut ws, connected) = within("connect", WebSocket::connect(format!("{}/start", peer.uri())))
        .await
        .expect("redirected twice, then connected");
    assert!(connected.uri.ends_with("/hop2"), "{}", connected.uri);
    within("send", ws.send_text("after redirects")).await.expect("sent");
    assert_eq!(next_message(&mut ws).await, text("after redirects"));

    let always = ScriptedPeer::start(|mut tcp, _| async move {
        let _ = read_request(&mut tcp).await;
        redirect(&mut tcp, "/again").await;
    });
    let mut c = config(&always.uri());
    c.max_redirects = 2;
    let err = within("connect", WebSocket::connect_with(&c))
        .await
        .expect_err("the hop limit");
    assert!(matches!(err, ClientError::TooManyRedirects(2)), "{err:?}");
    assert_eq!(always.accepted(), 3, "the first request and two hops");
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let other = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            if let Some(request) = upgrade(&mut tcp).await {
                let _ = tx.send(request.head_text());
                drain(&mut tcp).await;
            }
        }
    });
    let target = format!("{}/elsewhere", other.uri());
    let origin = ScriptedPeer::start(move |mut tcp, _| {
        let target = target.clone();
        async move {
            let _ = read_request(&mut tcp).await;
            redirect(&mut tcp, &target).await;
        }
    });
    let mut c = config(&origin.uri());
    c.authorization = Some("Bearer s3cret".into());
    c.headers.push(("Cookie".into(), "session=abc".into()));
    c.headers.push(("X-Trace".into(), "t1".into()));
    let _ws = within("connect", WebSocket::connect_with(&c))
        .await
        .expect("connected to the other origin");
    let head = within("the request", rx.recv()).await.expect("recorded");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("authorization") && !lower.contains("cookie"), "{head}");
    assert!(lower.contains("x-trace: t1"), "{head}");
}

#[tokio::test]
async fn a_redirect_from_wss_to_ws_is_refused() {
    let pki = TestPki::generate();
    let acceptor = server_tls(&pki.server);
    let peer = ScriptedPeer::start(move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = read_request(&mut tls).await;
            redirect(&mut tls, "ws://127.0.0.1:9/plain").await;
            let _ = tls.shutdown().await;
        }
    });
    let mut c = config(&format!("wss://127.0.0.1:{}", peer.port()));
    c.tls.ca_pem = Some(pki.ca.cert_pem.as_bytes().to_vec());
    let err = within("connect", WebSocket::connect_with(&c))
        .await
        .expect_err("wss -> ws");
    assert!(matches!(err, ClientError::InsecureRedirect { .. }), "{err:?}");
}

/// A server that sends `frames`, then reports the frames it reads until the client's close,
/// answers that close with the same payload and closes TCP.
fn scripted(frames: Vec<Vec<u8>>, seen: mpsc::UnboundedSender<Frame>) -> ScriptedPeer {
    ScriptedPeer::start(move |mut tcp, _| {
        let (frames, seen) = (frames.clone(), seen.clone());
        async move {
            if upgrade(&mut tcp).await.is_none() {
                return;
            }
            for f in &frames {
                if tcp.write_all(f).await.is_err() {
                    return;
                }
            }
            while let Some(frame) = read_frame(&mut tcp).await {
                let close = frame.opcode == 8;
                let payload = frame.payload.clone();
                let _ = seen.send(frame);
                if close {
                    let _ = tcp.write_all(&server_frame(8, true, &payload)).await;
                    let _ = tcp.shutdown().await;
                    return;
                }
            }
        }
    })
}

#[tokio::test]
async fn a_message_over_the_limit_fails_with_1009() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let peer = scripted(vec![server_frame(2, true, &[1; 2000])], tx);
    let mut c = config(&peer.uri());
    c.delivery = Delivery::Messages { max_size: 1000 };
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    let got = within("recv", ws.recv()).await;
    assert!(
        matches!(
            got,
            Some(Err(ClientError::Protocol(ProtocolError::MessageTooBig(1000))))
        ),
        "{got:?}"
    );
    assert!(within("recv after the error", ws.recv()).await.is_none());
    let close = within("the close", seen.recv()).await.expect("a frame");
    assert_eq!((close.opcode, &close.payload[..2]), (8, &[0x03, 0xF1][..]), "1009");
}

/// Dropping `recv` in the middle of a frame (and of a fragmented message) loses nothing:
/// the next `recv` returns the whole message.
#[tokio::test]
async fn recv_is_cancel_safe_in_the_middle_of_a_frame() {
    for policy in [ChunkPolicy::Full, ChunkPolicy::Eager] {
        let go = Arc::new(Notify::new());
        let peer = ScriptedPeer::start({
            let go = go.clone();
            move |mut tcp, _| {
                let go = go.clone();
                async move {
                    if upgrade(&mut tcp).await.is_none() {
                        return;
                    }
                    let first = server_frame(1, false, b"hello, ");
                    let second = server_frame(0, true, b"cancel-safe world");
                    let (head, rest) = second.split_at(2 + 6);
                    let _ = tcp.write_all(&[&first[..], head].concat()).await;
                    go.notified().await;
                    let _ = tcp.write_all(rest).await;
                    drain(&mut tcp).await;
                }
            }
        });
        let mut c = config(&peer.uri());
        c.chunk_policy = policy;
        let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
        for wait in [300, 50] {
            let cut = tokio::time::timeout(Duration::from_millis(wait), ws.recv()).await;
            assert!(cut.is_err(), "{policy:?}: half a message is no message: {cut:?}");
        }
        go.notify_one();
        assert_eq!(
            next_message(&mut ws).await,
            text("hello, cancel-safe world"),
            "{policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_send_1000_messages_while_receiving_the_echoes() {
    let peer = echo_peer();
    let (ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    let (mut reader, mut writer) = ws.split();
    let receiving = tokio::spawn(async move {
        for i in 0..1000 {
            let m = reader.recv().await.expect("open").expect("a message");
            assert_eq!(m, text(&format!("message {i}")));
        }
        reader
    });
    let sending = tokio::spawn(async move {
        for i in 0..1000 {
            writer.send_text(format!("message {i}")).await.expect("sent");
        }
        writer
    });
    let mut writer = within("sending", sending).await.expect("the writer task");
    let mut reader = within("receiving", receiving).await.expect("the reader task");

    // The close goes out from the writer; the reader completes the handshake.
    within("close", writer.close(Some(1000), "done")).await.expect("sent");
    assert!(!writer.is_open());
    assert!(within("recv", reader.recv()).await.is_none());
    assert_eq!(reader.close_frame().map(|f| f.code), Some(1000));
    let ws = reader.reunite(writer).expect("one connection");
    assert!(!ws.is_open());
}

/// Both halves write at once: the writer its large messages, the reader the pongs for the
/// server's pings (one after every echo). Whichever writes moves the other's bytes too and
/// wakes it; a lost wake-up would hang here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_both_write_large_frames_and_pongs_without_losing_a_wakeup() {
    let peer = echo_peer_with(true);
    let mut c = config(&peer.uri());
    c.max_write_buffer = 64 * 1024;
    let (ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    let (mut reader, mut writer) = ws.split();
    const COUNT: usize = 64;
    let payload = |i: usize| Bytes::from(vec![i as u8; 256 * 1024 + i]);
    let receiving = tokio::spawn(async move {
        for i in 0..COUNT {
            let m = reader.recv().await.expect("open").expect("a message");
            assert_eq!(m.payload, payload(i), "message {i}");
        }
        reader
    });
    let sending = tokio::spawn(async move {
        for i in 0..COUNT {
            writer.send_binary(payload(i)).await.expect("sent");
        }
        writer
    });
    let mut writer = within("sending", sending).await.expect("the writer task");
    let mut reader = within("receiving", receiving).await.expect("the reader task");
    within("close", writer.close(Some(1000), "")).await.expect("sent");
    assert!(within("recv", reader.recv()).await.is_none());
}

/// A server that pings, waits for the pong, then sends a text saying so.
fn pinging_peer() -> ScriptedPeer {
    ScriptedPeer::start(|mut tcp, _| async move {
        if upgrade(&mut tcp).await.is_none() {
            return;
        }
        let _ = tcp.write_all(&server_frame(9, true, b"are you there")).await;
        let Some(pong) = read_frame(&mut tcp).await else { return };
        let answer = if (pong.opcode, &pong.payload[..]) == (10, &b"are you there"[..]) {
            "pong seen".to_owned()
        } else {
            format!("unexpected frame {} {:?}", pong.opcode, pong.payload)
        };
        let _ = tcp.write_all(&server_frame(1, true, answer.as_bytes())).await;
        drain(&mut tcp).await;
    })
}

#[tokio::test]
async fn a_ping_is_answered_while_the_caller_waits_in_recv() {
    let peer = pinging_peer();
    let (mut ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    assert_eq!(next_message(&mut ws).await, text("pong seen"));

    // Split, with the writer idle: the reader answers.
    let peer = pinging_peer();
    let (ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    let (mut reader, _writer) = ws.split();
    let m = within("recv", reader.recv()).await.expect("open").expect("a message");
    assert_eq!(m, text("pong seen"));
}

#[tokio::test]
async fn keepalive_pings_leave_while_the_caller_waits_in_recv() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        if upgrade(&mut tcp).await.is_none() {
            return;
        }
        let Some(ping) = read_frame(&mut tcp).await else { return };
        let answer = format!("got opcode {}", ping.opcode);
        let _ = tcp.write_all(&server_frame(10, true, &ping.payload)).await;
        let _ = tcp.write_all(&server_frame(1, true, answer.as_bytes())).await;
        drain(&mut tcp).await;
    });
    let mut c = config(&peer.uri());
    c.ping_interval = Some(Duration::from_millis(100));
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    assert_eq!(next_message(&mut ws).await, text("got opcode 9"));
}

#[tokio::test]
async fn the_pong_timeout_fires_while_the_caller_waits_in_recv() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        if upgrade(&mut tcp).await.is_some() {
            drain(&mut tcp).await;
        }
    });
    let mut c = config(&peer.uri());
    c.ping_interval = Some(Duration::from_millis(100));
    c.pong_timeout = Some(Duration::from_millis(300));
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    let start = Instant::now();
    let got = within("recv", ws.recv()).await;
    assert!(matches!(got, Some(Err(ClientError::PongTimeout(_)))), "{got:?}");
    assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
    assert!(within("recv after the error", ws.recv()).await.is_none());
    assert!(!ws.is_open());
}

#[tokio::test]
async fn the_closing_handshake_carries_code_and_reason_both_ways() {
    // Started by the client: the server echoes its close.
    let (tx, mut seen) = mpsc::unbounded_channel();
    let peer = scripted(Vec::new(), tx);
    let (mut ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    within("close", ws.close(Some(4000), "client bye"))
        .await
        .expect("clean close");
    let close = within("the close", seen.recv()).await.expect("a frame");
    assert_eq!(close.opcode, 8);
    assert_eq!(close.payload, [&[0x0F, 0xA0][..], b"client bye"].concat());
    let echoed = ws.close_frame().expect("the server's close");
    assert_eq!((echoed.code, echoed.reason.as_str()), (4000, "client bye"));
    assert!(within("recv", ws.recv()).await.is_none());

    // Started by the server: `recv` ends, the close frame is there, the reply echoes the code.
    let (tx, mut seen) = mpsc::unbounded_channel();
    let server_close = server_frame(8, true, &[&[0x0F, 0xA1][..], b"server bye"].concat());
    let peer = scripted(vec![server_frame(1, true, b"last words"), server_close], tx);
    let (mut ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    assert_eq!(next_message(&mut ws).await, text("last words"));
    assert!(within("recv", ws.recv()).await.is_none());
    let frame = ws.close_frame().expect("the server's close");
    assert_eq!((frame.code, frame.reason.as_str()), (4001, "server bye"));
    let reply = within("the reply", seen.recv()).await.expect("a frame");
    assert_eq!((reply.opcode, &reply.payload[..]), (8, &[0x0F, 0xA1][..]));
    assert!(matches!(ws.send_text("late").await, Err(ClientError::NotConnected)));
    within("close after the handshake", ws.close(Some(1000), ""))
        .await
        .expect("nothing left to do");
}

#[tokio::test]
async fn send_frame_fragments_and_recv_chunk_cuts_by_buffer_size() {
    let peer = echo_peer();
    let mut c = config(&peer.uri());
    c.buffer_size = 4;
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    // The echo server sends every frame back as it came.
    within("send", ws.send_frame(OpCode::TEXT, false, "abc"))
        .await
        .expect("sent");
    within("send", ws.send_frame(OpCode::CONTINUATION, true, "defgh"))
        .await
        .expect("sent");
    within("send", ws.send_binary(vec![9u8; 10])).await.expect("sent");
    let mut chunks = Vec::new();
    for i in 0..7 {
        if i == 6 {
            // After the echoes: the server answers a ping before it echoes what came with it.
            within("ping", ws.ping("p")).await.expect("sent");
        }
        let c = within("recv_chunk", ws.recv_chunk())
            .await
            .expect("open")
            .expect("a chunk");
        assert!(c.data.len() <= 4, "{c:?}");
        chunks.push((
            c.opcode.value(),
            c.message_opcode.map(|o| o.value()),
            c.fin,
            c.payload_len,
            c.offset,
            c.data.to_vec(),
        ));
    }
    assert_eq!(
        chunks,
        [
            (1, Some(1), false, 3, 0, b"abc".to_vec()),
            (0, Some(1), true, 5, 0, b"defg".to_vec()),
            (0, Some(1), true, 5, 4, b"h".to_vec()),
            (2, Some(2), true, 10, 0, vec![9; 4]),
            (2, Some(2), true, 10, 4, vec![9; 4]),
            (2, Some(2), true, 10, 8, vec![9; 2]),
            (10, Some(10), true, 1, 0, b"p".to_vec()),
        ]
    );
    assert!(matches!(
        ws.ping(vec![0u8; 126]).await,
        Err(ClientError::Protocol(ProtocolError::ControlTooLong { len: 126, .. }))
    ));

    // `recv` joins fragments into one message.
    for (opcode, fin, part) in [(OpCode::BINARY, false, "12"), (OpCode::CONTINUATION, false, "34")] {
        within("send", ws.send_frame(opcode, fin, part)).await.expect("sent");
    }
    within("send", ws.send_frame(OpCode::CONTINUATION, true, "5"))
        .await
        .expect("sent");
    let m = next_message(&mut ws).await;
    assert_eq!((m.opcode, &m.payload[..]), (OpCode::BINARY, &b"12345"[..]));
}

#[tokio::test]
async fn stream_and_sink() {
    let peer = echo_peer();
    let (mut ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    within("SinkExt::send", SinkExt::send(&mut ws, text("via sink")))
        .await
        .expect("sent");
    let m = within("StreamExt::next", ws.next())
        .await
        .expect("open")
        .expect("a message");
    assert_eq!(m, text("via sink"));
    // Fed without a flush each, then flushed once.
    for i in 0..10 {
        within("feed", ws.feed(text(&format!("fed {i}"))))
            .await
            .expect("queued");
    }
    within("flush", SinkExt::flush(&mut ws)).await.expect("flushed");
    for i in 0..10 {
        let m = within("next", ws.next()).await.expect("open").expect("a message");
        assert_eq!(m, text(&format!("fed {i}")));
    }
    // The sink's close sends 1000; the stream then ends with the handshake.
    within("SinkExt::close", SinkExt::close(&mut ws)).await.expect("closed");
    assert!(within("next", ws.next()).await.is_none());
    assert_eq!(ws.close_frame().map(|f| f.code), Some(1000));

    // The halves too.
    let peer = echo_peer();
    let (ws, _) = within("connect", WebSocket::connect(peer.uri()))
        .await
        .expect("connected");
    let (mut reader, mut writer) = ws.split();
    within("send", SinkExt::send(&mut writer, text("half")))
        .await
        .expect("sent");
    let m = within("next", reader.next()).await.expect("open").expect("a message");
    assert_eq!(m, text("half"));
    within("close", SinkExt::close(&mut writer)).await.expect("closed");
    assert!(within("next", reader.next()).await.is_none());
}

#[tokio::test]
async fn from_upgraded_decodes_the_leftover_first_and_runs_on_any_stream() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve_echo(server_io, Vec::new(), false));
    let early = server_frame(1, true, b"came with the 101");
    let mut ws = WebSocket::from_upgraded(client_io, &config("ws://unused"), &early);
    assert_eq!(next_message(&mut ws).await, text("came with the 101"));
    within("send", ws.send_text("echo me")).await.expect("sent");
    assert_eq!(next_message(&mut ws).await, text("echo me"));
    within("close", ws.close(Some(1000), "")).await.expect("clean close");
    within("server", server).await.expect("the server ended");
}

/// A peer that never reads: queued sends stop at the bound instead of growing.
#[tokio::test]
async fn sends_wait_while_the_write_buffer_is_over_its_bound() {
    let peer = ScriptedPeer::start(|mut tcp: TcpStream, _| async move {
        if upgrade(&mut tcp).await.is_some() {
            tokio::time::sleep(STEP).await;
        }
    });
    let mut c = config(&peer.uri());
    c.max_write_buffer = 64 * 1024;
    let (mut ws, _) = within("connect", WebSocket::connect_with(&c)).await.expect("connected");
    let payload = Bytes::from(vec![0u8; 64 * 1024]);
    let fed = Cell::new(0usize);
    let feeding = async {
        loop {
            let m = Message {
                opcode: OpCode::BINARY,
                payload: payload.clone(),
            };
            ws.feed(m).await.expect("queued");
            fed.set(fed.get() + payload.len());
        }
    };
    let blocked = tokio::time::timeout(Duration::from_secs(1), feeding).await;
    assert!(blocked.is_err(), "feeding never stopped");
    // Socket buffers on loopback take some MiB; without a bound this would be unbounded.
    assert!(fed.get() < 48 << 20, "{} bytes queued", fed.get());
}
