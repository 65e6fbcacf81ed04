//! wsat-client end to end on loopback, against wsat's own echo server and scripted peers:
//! the ESP client's pytest cases restated, reconnect, keepalive, redirects, stop, TLS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsat::echo_server::EchoServer;
use wsat_client::{
    Client, ClientConfig, ClientError, DataChunk, Delivery, DisconnectReason, Event, LinkState, OpCode, Reconnect,
    StopOutcome, Verification,
};
use wsat_testkit::events::{next, until, STEP};
use wsat_testkit::frames::server_frame;
use wsat_testkit::peer::{accept_upgrade, drain, read_request, ScriptedPeer};
use wsat_testkit::TestPki;

async fn echo_server() -> String {
    let server = EchoServer::bind("127.0.0.1:0", None).await.expect("bind");
    let uri = format!("ws://{}", server.local_addr().expect("addr"));
    server.spawn();
    uri
}

fn config(uri: &str) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    c.reconnect = Reconnect::Disabled;
    c
}

async fn connected(config: ClientConfig) -> (Client, wsat_client::Events) {
    let (client, mut events) = Client::start(config).expect("valid config");
    let seen = until(&mut events, |e| {
        matches!(e, Event::Connected(_) | Event::Disconnected(_))
    })
    .await;
    assert!(matches!(seen.last(), Some(Event::Connected(_))), "{seen:?}");
    (client, events)
}

fn data(ev: &Event) -> Option<&DataChunk> {
    match ev {
        Event::Data(d) => Some(d),
        _ => None,
    }
}

#[tokio::test]
async fn echo_five_texts() {
    let (client, mut events) = connected(config(&echo_server().await)).await;
    for i in 0..5 {
        client.send_text(&format!("hello {i:04}"), STEP).await.expect("sent");
    }
    for i in 0..5 {
        let ev = next(&mut events).await;
        let d = data(&ev).expect("data");
        assert_eq!(
            (d.opcode, &d.data[..]),
            (OpCode::TEXT, format!("hello {i:04}").as_bytes())
        );
    }
    assert_eq!(client.state(), LinkState::Connected);
}

#[tokio::test]
async fn a_2000_byte_frame_arrives_as_chunks_at_0_and_1024_and_reassembles() {
    let (client, mut events) = connected(config(&echo_server().await)).await;
    for round in 0..3u8 {
        let text: String = (0..2000)
            .map(|i| (b'A' + ((i * 7 + round as usize) % 26) as u8) as char)
            .collect();
        client.send_text(&text, STEP).await.expect("sent");
        let (a, b) = (next(&mut events).await, next(&mut events).await);
        let (a, b) = (data(&a).expect("chunk"), data(&b).expect("chunk"));
        assert_eq!((a.offset, a.data.len(), a.payload_len, a.fin), (0, 1024, 2000, true));
        assert_eq!((b.offset, b.data.len(), b.payload_len, b.fin), (1024, 976, 2000, true));
        assert_eq!([&a.data[..], &b.data[..]].concat(), text.as_bytes());
    }
}

#[tokio::test]
async fn fragmented_text_and_binary_sends_come_back_joined() {
    let mut c = config(&echo_server().await);
    c.delivery = Delivery::messages();
    let (client, mut events) = connected(c).await;
    client
        .send_part(OpCode::TEXT, Bytes::from(vec![b'a'; 32]), false, STEP)
        .await
        .expect("part");
    client
        .send_part(OpCode::CONTINUATION, Bytes::from(vec![b'b'; 32]), false, STEP)
        .await
        .expect("cont");
    client.send_fin(STEP).await.expect("fin");
    client
        .send_part(OpCode::BINARY, Bytes::from(vec![0u8; 5]), false, STEP)
        .await
        .expect("part");
    client
        .send_part(OpCode::CONTINUATION, Bytes::from(vec![1u8; 5]), false, STEP)
        .await
        .expect("cont");
    client.send_fin(STEP).await.expect("fin");
    let Event::Message(text) = next(&mut events).await else {
        panic!("text message")
    };
    assert_eq!(text.payload, [vec![b'a'; 32], vec![b'b'; 32]].concat());
    let Event::Message(bin) = next(&mut events).await else {
        panic!("binary message")
    };
    assert_eq!(
        (bin.opcode, &bin.payload[..]),
        (OpCode::BINARY, &[0, 0, 0, 0, 0, 1, 1, 1, 1, 1][..])
    );
}

/// A peer that records the frames it receives (opcode, FIN, length) and reports them.
#[tokio::test]
async fn a_2000_byte_send_leaves_as_two_frames_and_any_opcode_goes_raw() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let tx = tx.clone();
        async move {
            let leftover = accept_upgrade(&mut tcp).await.after;
            let cfg = wsat_proto::ConnectionConfig {
                strict: false,
                ..wsat_proto::ConnectionConfig::rfc(wsat_proto::Role::Server)
            };
            let mut conn = wsat_proto::Connection::new(cfg, Instant::now());
            conn.handle_bytes(&leftover, Instant::now());
            let mut buf = [0u8; 8192];
            loop {
                while let Some(ev) = conn.poll_event() {
                    if let wsat_proto::Event::Data(d) = ev {
                        if d.ends_frame() {
                            let _ = tx.send((d.opcode.value(), d.fin, d.payload_len));
                        }
                    }
                }
                match tcp.read(&mut buf).await {
                    Ok(n) if n > 0 => conn.handle_bytes(&buf[..n], Instant::now()),
                    _ => return,
                }
            }
        }
    });
    let (client, _events) = connected(config(&format!("ws://{}", peer.addr()))).await;
    client
        .send(OpCode::TEXT, Bytes::from(vec![b'a'; 2000]), STEP)
        .await
        .expect("sent");
    client
        .send_frame(OpCode::from_bits(0x3), true, Bytes::from_static(b"r"), STEP)
        .await
        .expect("reserved");
    client
        .send_frame(OpCode::CONTINUATION, true, Bytes::new(), STEP)
        .await
        .expect("lone continuation");
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.push(
            tokio::time::timeout(STEP, rx.recv())
                .await
                .expect("frame")
                .expect("peer alive"),
        );
    }
    assert_eq!(frames, [(1, false, 1024), (0, true, 976), (3, true, 1), (0, true, 0)]);
}

#[tokio::test]
async fn close_started_by_the_client_gets_the_servers_1000() {
    let (client, mut events) = connected(config(&echo_server().await)).await;
    let close = tokio::spawn({
        let client = client.clone();
        async move { client.close(Some(1000), "bye", STEP).await }
    });
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    close.await.expect("joined").expect("clean close");
    let close_data = seen
        .iter()
        .filter_map(data)
        .find(|d| d.opcode == OpCode::CLOSE)
        .expect("DATA opcode 8");
    assert_eq!(&close_data.data[..], &[0x03, 0xE8]);
    assert!(
        matches!(seen[seen.len() - 2], Event::Closed { code: Some(1000), .. }),
        "{seen:?}"
    );
    assert_eq!(client.state(), LinkState::Stopped);
}

/// Large sends go out masked a chunk at a time (wsat-proto's transmit queue): two 3 MiB
/// messages, a ping and a close queued at once reach the server whole and in order.
#[tokio::test]
async fn large_sends_queued_with_a_close_arrive_whole_and_in_order() {
    let mut c = config(&echo_server().await);
    c.delivery = Delivery::Messages { max_size: 8 << 20 };
    c.buffer_size = 8 << 20;
    let (client, mut events) = connected(c).await;
    let first = Bytes::from((0..3usize << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let second = Bytes::from((0..3usize << 20).map(|i| (i % 241) as u8 ^ 0x5a).collect::<Vec<u8>>());
    // Polled in this order, so the commands are queued in this order.
    let (a, b, p, closed) = tokio::join!(
        client.send_binary(first.clone(), STEP),
        client.send_binary(second.clone(), STEP),
        client.send_frame(OpCode::PING, true, Bytes::from_static(b"after"), STEP),
        client.close(Some(1000), "done", STEP),
    );
    assert_eq!(
        (a.expect("first"), b.expect("second"), p.expect("ping")),
        (3 << 20, 3 << 20, 5)
    );
    closed.expect("clean close");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    let messages: Vec<&Bytes> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(&m.payload),
            _ => None,
        })
        .collect();
    assert!(messages.len() == 2, "{} messages", messages.len());
    assert!(
        messages[0] == &first && messages[1] == &second,
        "echoes differ from the sends"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Closed { code: Some(1000), .. })),
        "no clean close: {:?}",
        seen.iter()
            .filter(|e| !matches!(e, Event::Message(_)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn frames_sent_with_the_101_are_not_lost() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        let req = read_request(&mut tcp)
            .await
            .and_then(|r| r.upgrade())
            .expect("an upgrade request");
        let mut resp = wsat_proto::handshake::accept_response(&req.key, None);
        resp.extend_from_slice(&server_frame(1, true, b"Test"));
        tcp.write_all(&resp).await.expect("write");
        drain(&mut tcp).await;
    });
    let (_client, mut events) = connected(config(&format!("ws://{}", peer.addr()))).await;
    let ev = next(&mut events).await;
    assert_eq!(data(&ev).map(|d| &d.data[..]), Some(&b"Test"[..]));
}

#[tokio::test]
async fn reconnects_after_the_server_dies_and_comes_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let first = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let _ = wsat::echo_server::echo(tcp).await;
    });
    let mut c = config(&format!("ws://{addr}"));
    c.reconnect = Reconnect::Fixed(Duration::from_millis(200));
    let (client, mut events) = connected(c).await;
    // The server dies: its task, listener and connection are gone.
    first.abort();
    let seen = until(&mut events, |e| matches!(e, Event::Disconnected(_))).await;
    assert!(
        matches!(seen.last(), Some(Event::Disconnected(DisconnectReason::ConnectionLost))),
        "{seen:?}"
    );
    // While it is away, attempts fail and are reported.
    let seen = until(&mut events, |e| matches!(e, Event::Disconnected(_))).await;
    assert!(
        matches!(seen.last(), Some(Event::Disconnected(DisconnectReason::ConnectFailed))),
        "{seen:?}"
    );
    assert!(matches!(
        client.send_text("x", STEP).await,
        Err(ClientError::NotConnected)
    ));
    // It comes back on the same port.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(wsat::echo_server::echo(tcp));
        }
    });
    until(&mut events, |e| matches!(e, Event::Connected(_))).await;
    client.send_text("back", STEP).await.expect("sent after reconnect");
    let ev = until(&mut events, |e| data(e).is_some()).await;
    assert_eq!(data(ev.last().expect("one")).map(|d| &d.data[..]), Some(&b"back"[..]));
}

#[tokio::test]
async fn pong_timeout_against_a_server_that_never_answers_pings() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        drain(&mut tcp).await;
    });
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.ping_interval = Some(Duration::from_millis(100));
    c.pong_timeout = Some(Duration::from_millis(400));
    let started = Instant::now();
    let (_client, mut events) = connected(c).await;
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    let n = seen.len();
    assert!(
        matches!(seen[n - 3], Event::Error(ClientError::PongTimeout(_))),
        "{seen:?}"
    );
    assert!(
        matches!(seen[n - 2], Event::Disconnected(DisconnectReason::PongTimeout)),
        "{seen:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the deadline runs from the first ping"
    );
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_hop_limit_and_a_redirect_is_followed() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        let Some(req) = read_request(&mut tcp).await.and_then(|r| r.upgrade()) else {
            return;
        };
        let resp = match req.target.as_str() {
            "/loop" => b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/old" => b"HTTP/1.1 301 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => wsat_proto::handshake::accept_response(&req.key, None),
        };
        let _ = tcp.write_all(&resp).await;
        drain(&mut tcp).await;
    });
    let mut c = config(&format!("ws://{}/loop", peer.addr()));
    c.max_redirects = 3;
    let (_client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    let hops = seen.iter().filter(|e| matches!(e, Event::BeforeConnect { .. })).count();
    assert_eq!(hops, 4, "the first attempt and 3 redirects: {seen:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::TooManyRedirects(3)))),
        "{seen:?}"
    );

    let (_client, mut events) = Client::start(config(&format!("ws://{}/old", peer.addr()))).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    match seen.last() {
        Some(Event::Connected(info)) => assert!(info.uri.ends_with("/new"), "{info:?}"),
        other => panic!("{other:?} in {seen:?}"),
    }
}

#[tokio::test]
async fn stop_during_a_hanging_connect_returns_within_its_bound() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move { drain(&mut tcp).await });
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.network_timeout = Duration::from_secs(60);
    let (client, mut events) = Client::start(c).expect("valid");
    assert!(matches!(next(&mut events).await, Event::BeforeConnect { .. }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.state(), LinkState::Connecting);
    let started = Instant::now();
    let outcome = client.stop(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    assert_ne!(outcome, StopOutcome::AlreadyStopped);
    assert_eq!(client.state(), LinkState::Stopped);
}

#[tokio::test]
async fn refused_upgrade_reports_the_http_status() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        let _ = read_request(&mut tcp).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let (_client, mut events) = Client::start(config(&format!("ws://{}", peer.addr()))).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    let err = seen
        .iter()
        .find_map(|e| {
            if let Event::Error(err) = e {
                Some(err.clone())
            } else {
                None
            }
        })
        .expect("error");
    assert_eq!(err.http_status(), Some(403), "{err}");
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Disconnected(DisconnectReason::ConnectFailed))));
}

#[tokio::test]
async fn messages_over_the_limit_close_with_1009() {
    let mut c = config(&echo_server().await);
    c.delivery = Delivery::Messages { max_size: 1000 };
    let (client, mut events) = connected(c).await;
    client.send_text(&"x".repeat(1001), STEP).await.expect("sent");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::Protocol(p)) if p.close_code() == 1009)),
        "{seen:?}"
    );
}

/// Messages are cut from the receive buffer without a copy and the buffer takes its
/// allocation back once they are dropped: neither may ever touch a message still held.
#[tokio::test]
async fn messages_held_or_dropped_keep_their_bytes_while_the_receive_buffer_is_reused() {
    let mut c = config(&echo_server().await);
    c.delivery = Delivery::messages();
    let (client, mut events) = connected(c).await;
    let sizes = [300 << 10, 20, 1 << 20, 70 << 10, 2 << 20, 5, 100 << 10, 3 << 20, 1];
    let payload = |i: usize, len: usize| Bytes::from((0..len).map(|j| (i * 7 + j) as u8).collect::<Vec<u8>>());
    for round in ["held", "dropped"] {
        // Pipelined: a send completes once written, so the echoes are read meanwhile.
        let sender = {
            let client = client.clone();
            tokio::spawn(async move {
                for (i, &len) in sizes.iter().enumerate() {
                    client.send_binary(payload(i, len), STEP).await.expect("sent");
                }
            })
        };
        let mut held = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let message = match next(&mut events).await {
                Event::Message(m) => m,
                other => panic!("{round}: message {i}: {other:?}"),
            };
            if round == "held" {
                held.push(message);
            } else {
                assert!(
                    message.payload == payload(i, len),
                    "{round}: message {i} of {len} bytes differs"
                );
            }
        }
        for (i, message) in held.iter().enumerate() {
            assert!(
                message.payload == payload(i, sizes[i]),
                "{round}: message {i} differs once all arrived"
            );
        }
        sender.await.expect("every send written");
    }
}

async fn tls_echo(pki: &TestPki, server: &wsat_testkit::Credential, client_ca: bool) -> String {
    let tls = wsat::tls_server::server_config(
        server.cert_pem.as_bytes(),
        server.key_pem.as_bytes(),
        client_ca.then_some(pki.ca.cert_pem.as_bytes()),
    )
    .expect("server TLS");
    let server = EchoServer::bind("127.0.0.1:0", Some(tls)).await.expect("bind");
    let uri = format!("wss://{}", server.local_addr().expect("addr"));
    server.spawn();
    uri
}

async fn tls_outcome(
    uri: &str,
    ca: &str,
    verification: Verification,
    client: Option<&wsat_testkit::Credential>,
) -> Result<(), String> {
    let mut c = config(uri);
    c.tls.ca_pem = Some(ca.as_bytes().to_vec());
    c.tls.verification = verification;
    if let Some(cred) = client {
        c.tls.client_cert_pem = Some(cred.cert_pem.as_bytes().to_vec());
        c.tls.client_key_pem = Some(cred.key_pem.as_bytes().to_vec());
    }
    let (client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    if matches!(seen.last(), Some(Event::Connected(_))) {
        // Mutual TLS 1.3 rejects a client certificate after the handshake: prove data flows.
        client.send_text("ping", STEP).await.map_err(|e| e.to_string())?;
        let seen = until(&mut events, |e| matches!(e, Event::Data(_) | Event::Finish)).await;
        return match seen.last() {
            Some(Event::Data(_)) => Ok(()),
            _ => Err(format!("{seen:?}")),
        };
    }
    Err(seen
        .iter()
        .find_map(|e| {
            if let Event::Error(err) = e {
                Some(err.to_string())
            } else {
                None
            }
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn tls_verification_levels() {
    let pki = TestPki::generate();
    let good = tls_echo(&pki, &pki.server, false).await;
    assert_eq!(
        tls_outcome(&good, &pki.ca.cert_pem, Verification::Full, None).await,
        Ok(())
    );
    let err = tls_outcome(&good, &pki.other_ca.cert_pem, Verification::Full, None)
        .await
        .expect_err("wrong CA");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        tls_outcome(&good, &pki.other_ca.cert_pem, Verification::ChainOnly, None)
            .await
            .is_err()
    );
    assert_eq!(
        tls_outcome(&good, &pki.other_ca.cert_pem, Verification::None, None).await,
        Ok(())
    );

    let wrong_host = tls_echo(&pki, &pki.wrong_host_server, false).await;
    let err = tls_outcome(&wrong_host, &pki.ca.cert_pem, Verification::Full, None)
        .await
        .expect_err("name");
    assert!(err.contains("not valid for name"), "{err}");
    assert_eq!(
        tls_outcome(&wrong_host, &pki.ca.cert_pem, Verification::ChainOnly, None).await,
        Ok(())
    );

    let expired = tls_echo(&pki, &pki.expired_server, false).await;
    let err = tls_outcome(&expired, &pki.ca.cert_pem, Verification::ChainOnly, None)
        .await
        .expect_err("expired");
    assert!(err.to_lowercase().contains("expired"), "{err}");
    let early = tls_echo(&pki, &pki.not_yet_valid_server, false).await;
    let err = tls_outcome(&early, &pki.ca.cert_pem, Verification::Full, None)
        .await
        .expect_err("not yet valid");
    assert!(err.to_lowercase().contains("not valid yet"), "{err}");

    // The firmware's shape: a CA:TRUE leaf with no SAN, accepted only by chain-only.
    let firmware = tls_echo(&pki, &pki.firmware_leaf, false).await;
    assert!(tls_outcome(&firmware, &pki.ca.cert_pem, Verification::Full, None)
        .await
        .is_err());
    assert_eq!(
        tls_outcome(&firmware, &pki.ca.cert_pem, Verification::ChainOnly, None).await,
        Ok(())
    );
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = TestPki::generate();
    let uri = tls_echo(&pki, &pki.server, true).await;
    assert_eq!(
        tls_outcome(&uri, &pki.ca.cert_pem, Verification::Full, Some(&pki.client)).await,
        Ok(())
    );
    assert!(tls_outcome(&uri, &pki.ca.cert_pem, Verification::Full, None)
        .await
        .is_err());
    assert!(
        tls_outcome(&uri, &pki.ca.cert_pem, Verification::Full, Some(&pki.other_client))
            .await
            .is_err()
    );
    // A CA:TRUE client leaf, as the firmware presents, is accepted like OpenSSL does.
    assert_eq!(
        tls_outcome(&uri, &pki.ca.cert_pem, Verification::Full, Some(&pki.firmware_leaf)).await,
        Ok(())
    );
}

#[tokio::test]
async fn a_send_timeout_leaves_the_connection_up() {
    // The peer upgrades, then stops reading: TCP backpressure stalls our writes.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tcp);
    });
    let (client, _events) = connected(config(&format!("ws://{}", peer.addr()))).await;
    let big = Bytes::from(vec![7u8; 32 << 20]);
    let res = client
        .send_frame(OpCode::BINARY, true, big, Duration::from_millis(300))
        .await;
    assert!(matches!(res, Err(ClientError::SendTimeout)), "{res:?}");
    assert_eq!(
        client.state(),
        LinkState::Connected,
        "a timed-out send must not tear the link down"
    );
    assert_eq!(client.stop(Duration::from_secs(2)).await, StopOutcome::Stopped);
}

/// Autobahn 2.7 / 2.9 shape: frames that produce no event in message mode (an unsolicited
/// pong) must not stall lockstep delivery.
#[tokio::test]
async fn lockstep_delivery_gets_past_frames_without_events() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp
            .write_all(
                &[
                    server_frame(10, true, b""),
                    server_frame(10, true, b"hi"),
                    server_frame(1, true, b"ok"),
                    server_frame(8, true, &1000u16.to_be_bytes()),
                ]
                .concat(),
            )
            .await;
        drain(&mut tcp).await;
    });
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.delivery = Delivery::messages();
    c.event_capacity = 0;
    let (_client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Message(m) if &m.payload[..] == b"ok")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Closed { code: Some(1000), .. })),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_chosen_subprotocol_is_reported_and_an_unoffered_one_refused() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        let Some(req) = read_request(&mut tcp).await.and_then(|r| r.upgrade()) else {
            return;
        };
        let choice = if req.subprotocols.iter().any(|p| p == "chat") {
            "chat"
        } else {
            "other"
        };
        let _ = tcp
            .write_all(&wsat_proto::handshake::accept_response(&req.key, Some(choice)))
            .await;
        drain(&mut tcp).await;
    });
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.subprotocol = Some("superchat, chat".into());
    let (client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await;
    match seen.last() {
        Some(Event::Connected(info)) => assert_eq!(info.subprotocol.as_deref(), Some("chat")),
        other => panic!("{other:?}"),
    }
    client.stop(STEP).await;
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.subprotocol = Some("v2".into());
    let (_client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::Handshake(_)))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn reconnect_after_a_clean_close_when_asked() {
    // The server closes every connection cleanly right after the upgrade.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp.write_all(&server_frame(8, true, &1001u16.to_be_bytes())).await;
        drain(&mut tcp).await;
    });
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.reconnect = Reconnect::Fixed(Duration::from_millis(50));
    c.reconnect_after_close = true;
    c.close_linger = Duration::from_millis(100);
    let (client, mut events) = Client::start(c).expect("valid");
    for _ in 0..2 {
        let seen = until(&mut events, |e| matches!(e, Event::Closed { .. })).await;
        assert!(
            matches!(seen.last(), Some(Event::Closed { code: Some(1001), .. })),
            "{seen:?}"
        );
        let seen = until(&mut events, |e| matches!(e, Event::Connected(_))).await;
        assert!(!seen.iter().any(|e| matches!(e, Event::Finish)), "{seen:?}");
    }
    client.stop(STEP).await;

    // Without the option, a clean close ends the client.
    let mut c = config(&format!("ws://{}", peer.addr()));
    c.reconnect = Reconnect::Fixed(Duration::from_millis(50));
    let (_client, mut events) = Client::start(c).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert_eq!(
        seen.iter().filter(|e| matches!(e, Event::Connected(_))).count(),
        1,
        "{seen:?}"
    );
}
