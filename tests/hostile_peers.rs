//! A hostile server against the client library and `wsat connect`: a ping flood into a
//! client whose pongs it never reads, redirects that try to carry credentials to another
//! origin or out of TLS, and connections that end while stdin stays open
//! (docs/SECURITY.md lists each bound and the test that proves it).

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wsat;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsat_client::{Client, ClientConfig, ClientError, Event, Reconnect, Verification};
use wsat_proto::handshake::accept_response;
use wsat_testkit::events::until;
use wsat_testkit::frames::{frame_header, server_frame};
use wsat_testkit::peer::{accept_upgrade, drain, read_request, redirect, ScriptedPeer};
use wsat_testkit::process::{output_within, rss_kib, Killed};
use wsat_testkit::TestPki;

/// The request heads a peer received, in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// A WebSocket peer that records every request head it upgrades, then waits for the
/// client to leave.
fn recording_peer() -> (ScriptedPeer, Heads) {
    let heads = Heads::default();
    let seen = heads.clone();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let seen = seen.clone();
        async move {
            // Recorded before the 101 goes out: a client that saw `Connected` finds it there.
            let Some(request) = read_request(&mut tcp).await else {
                return;
            };
            seen.lock().expect("heads").push(request.head_text());
            let key = request.upgrade().expect("an upgrade request").key;
            tcp.write_all(&accept_response(&key, None)).await.expect("101");
            drain(&mut tcp).await;
        }
    });
    (peer, heads)
}

/// A peer that answers every request with a redirect to `location`, recording the heads.
fn redirecting_peer(location: String) -> (ScriptedPeer, Heads) {
    let heads = Heads::default();
    let seen = heads.clone();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let (seen, location) = (seen.clone(), location.clone());
        async move {
            if let Some(request) = read_request(&mut tcp).await {
                seen.lock().expect("heads").push(request.head_text());
                redirect(&mut tcp, &location).await;
            }
        }
    });
    (peer, heads)
}

fn has_header(head: &str, name: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

fn with_credentials(uri: String) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    c.authorization = Some("Bearer T0ken".into());
    c.headers = vec![
        ("Cookie".into(), "s=1".into()),
        ("Proxy-Authorization".into(), "Basic cHJveHk6cA==".into()),
        ("X-Request-Id".into(), "r1".into()),
    ];
    c.reconnect = Reconnect::Disabled;
    c
}

/// The events of one connect attempt, up to `Connected` or `Finish`.
async fn attempt(config: ClientConfig) -> Vec<Event> {
    let (_client, mut events) = Client::start(config).expect("valid config");
    until(&mut events, |e| matches!(e, Event::Connected(_) | Event::Finish)).await
}

#[tokio::test]
async fn a_redirect_to_another_port_loses_every_credential_and_one_to_the_origin_keeps_them() {
    let (target, target_heads) = recording_peer();
    let (other_origin, _) = redirecting_peer(format!("ws://{}/landed", target.addr()));
    let seen = attempt(with_credentials(format!("ws://user:pw@{}/start", other_origin.addr()))).await;
    assert!(matches!(seen.last(), Some(Event::Connected(_))), "{seen:?}");
    let head = target_heads.lock().expect("heads")[0].clone();
    for secret in ["Authorization", "Cookie", "Proxy-Authorization"] {
        assert!(!has_header(&head, secret), "{secret} reached another origin:\n{head}");
    }
    assert!(has_header(&head, "X-Request-Id"), "other headers still go:\n{head}");

    // The same origin (a path-only redirect) keeps them, the URI's password included.
    let (same, heads) = scripted_peer_redirecting_once();
    let mut config = with_credentials(format!("ws://user:pw@{}/start", same.addr()));
    config.authorization = None;
    let seen = attempt(config).await;
    assert!(matches!(seen.last(), Some(Event::Connected(_))), "{seen:?}");
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[1].starts_with("GET /landed "), "{heads:?}");
    for name in ["Authorization", "Cookie", "Proxy-Authorization"] {
        assert!(
            has_header(&heads[1], name),
            "{name} lost on the same origin:\n{}",
            heads[1]
        );
    }
}

/// A peer that redirects `/start` to `/landed` on itself and upgrades `/landed`.
fn scripted_peer_redirecting_once() -> (ScriptedPeer, Heads) {
    let heads = Heads::default();
    let seen = heads.clone();
    let peer = ScriptedPeer::start(move |mut tcp, _| {
        let seen = seen.clone();
        async move {
            let Some(request) = read_request(&mut tcp).await else {
                return;
            };
            let head = request.head_text();
            seen.lock().expect("heads").push(head.clone());
            if head.starts_with("GET /start ") {
                redirect(&mut tcp, "/landed").await;
                return;
            }
            let Some(upgrade) = request.upgrade() else {
                return;
            };
            let _ = tcp
                .write_all(&wsat_proto::handshake::accept_response(&upgrade.key, None))
                .await;
            drain(&mut tcp).await;
        }
    });
    (peer, heads)
}

/// A wss peer (certificates from `pki`) that redirects every request to `location`.
fn tls_redirecting_peer(pki: &TestPki, location: String) -> ScriptedPeer {
    let tls = wsat::tls_server::server_config(pki.server.cert_pem.as_bytes(), pki.server.key_pem.as_bytes(), None)
        .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    ScriptedPeer::start(move |tcp, _| {
        let (acceptor, location) = (acceptor.clone(), location.clone());
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if read_request(&mut tls).await.is_some() {
                redirect(&mut tls, &location).await;
                let _ = tls.shutdown().await;
            }
        }
    })
}

#[tokio::test]
async fn a_redirect_from_wss_to_ws_is_refused_unless_allowed() {
    let pki = TestPki::generate();
    let (plain, plain_heads) = recording_peer();
    let secure = tls_redirecting_peer(&pki, format!("ws://{}/cleartext", plain.addr()));
    let config = || {
        let mut c = with_credentials(format!("wss://localhost:{}/start", secure.port()));
        c.tls.ca_pem = Some(pki.ca.cert_pem.clone().into_bytes());
        c.tls.verification = Verification::Full;
        c
    };
    let seen = attempt(config()).await;
    let refused = seen.iter().find_map(|e| match e {
        Event::Error(ClientError::InsecureRedirect { from, to }) => Some((from.clone(), to.clone())),
        _ => None,
    });
    let (from, to) = refused.unwrap_or_else(|| panic!("no InsecureRedirect in {seen:?}"));
    assert!(
        from.starts_with("wss://") && to == format!("ws://{}/cleartext", plain.addr()),
        "{from} -> {to}"
    );
    assert!(
        plain_heads.lock().expect("heads").is_empty(),
        "nothing went out in cleartext"
    );

    let mut allowed = config();
    allowed.allow_insecure_redirect = true;
    let seen = attempt(allowed).await;
    assert!(matches!(seen.last(), Some(Event::Connected(_))), "{seen:?}");
    let head = plain_heads.lock().expect("heads")[0].clone();
    assert!(
        !has_header(&head, "Authorization") && !has_header(&head, "Cookie"),
        "{head}"
    );
}

/// `wsat connect URI -H …` with stdin open, its stdout and stderr piped.
fn connect(uri: &str, extra: &[&str]) -> Killed {
    let child = wsat()
        .arg("connect")
        .args(extra)
        .arg(uri)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsat connect");
    Killed(child)
}

/// Waits for the child's exit with its stdin still open; the exit code, stderr, and how
/// long after `since` it exited.
fn ended(child: &mut Killed, since: Instant, bound: Duration) -> (Option<i32>, String, Duration) {
    let (code, _out, err) = output_within(&mut child.0, bound);
    (code, err, since.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsat_connect_keeps_credentials_from_other_origins_and_refuses_leaving_tls() {
    let (target, target_heads) = recording_peer();
    let (redirector, _) = redirecting_peer(format!("ws://{}/landed", target.addr()));
    let mut child = connect(
        &format!("ws://{}/start", redirector.addr()),
        &[
            "-H",
            "Authorization: Bearer T",
            "-H",
            "Cookie: s=1",
            "-H",
            "X-Seen: yes",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while target_heads.lock().expect("heads").is_empty() {
        assert!(Instant::now() < deadline, "connect never reached the redirect's target");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let head = target_heads.lock().expect("heads")[0].clone();
    assert!(
        !has_header(&head, "Authorization") && !has_header(&head, "Cookie"),
        "{head}"
    );
    assert!(has_header(&head, "X-Seen"), "{head}");
    drop(child.0.stdin.take());

    let pki = TestPki::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca.cert_pem).expect("write the CA");
    let secure = tls_redirecting_peer(&pki, format!("ws://{}/cleartext", target.addr()));
    let mut child = connect(
        &format!("wss://localhost:{}/", secure.port()),
        &["--ca", ca.to_str().expect("utf-8 path")],
    );
    let (code, err, _) = ended(&mut child, Instant::now(), Duration::from_secs(10));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refusing the redirect"), "{err}");
    assert_eq!(
        target_heads.lock().expect("heads").len(),
        1,
        "nothing went out in cleartext"
    );
}

/// A server that upgrades, then does `then` with the connection.
fn upgrading_peer<F, Fut>(then: F) -> ScriptedPeer
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let then = Arc::new(then);
    ScriptedPeer::start(move |mut tcp, _| {
        let then = then.clone();
        async move {
            accept_upgrade(&mut tcp).await;
            then(tcp).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsat_connect_exits_when_the_server_drops_even_with_stdin_open() {
    let dropped = Arc::new(Mutex::new(None::<Instant>));
    let mark = dropped.clone();
    let peer = upgrading_peer(move |tcp| {
        let mark = mark.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(tcp);
            *mark.lock().expect("mark") = Some(Instant::now());
        }
    });
    let mut child = connect(&format!("ws://{}/", peer.addr()), &[]);
    let (code, err, _) = ended(&mut child, Instant::now(), Duration::from_secs(10));
    let since_drop = dropped.lock().expect("mark").expect("the peer dropped").elapsed();
    assert_eq!(code, Some(1), "a drop is an abnormal end: {err}");
    assert!(
        since_drop < Duration::from_secs(1),
        "exited {since_drop:?} after the drop: {err}"
    );
    assert!(err.contains("disconnected"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsat_connect_reports_invalid_utf8_as_1007_not_the_reset_after_it() {
    let peer = upgrading_peer(|mut tcp| async move {
        let _ = tcp.write_all(&server_frame(1, true, &[0xff, 0xfe])).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Unread input (the client's close frame) makes this close a reset.
        drop(tcp);
    });
    let start = Instant::now();
    let mut child = connect(&format!("ws://{}/", peer.addr()), &[]);
    let (code, err, took) = ended(&mut child, start, Duration::from_secs(10));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("1007") && err.contains("UTF-8"), "{err}");
    assert!(!err.contains("reset"), "the reset is not the cause: {err}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
}

/// Pings of 125 bytes whose pongs (131 bytes each, masked) nobody reads: 500,000 of them
/// owe 65 MB of pongs, which the client held before pongs were coalesced.
const FLOOD_PINGS: u64 = 500_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_cannot_grow_wsat_connect() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let pings_sent = Arc::new(AtomicU64::new(0));
    let counter = pings_sent.clone();
    let peer = upgrading_peer(move |mut tcp| {
        let counter = counter.clone();
        async move {
            let burst = server_frame(9, true, &[b'p'; 125]).repeat(64);
            let until = Instant::now() + Duration::from_secs(8);
            while Instant::now() < until && counter.load(Ordering::Relaxed) < FLOOD_PINGS {
                match tokio::time::timeout(Duration::from_millis(100), tcp.write_all(&burst)).await {
                    Ok(Ok(())) => counter.fetch_add(64, Ordering::Relaxed),
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                };
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let mut child = connect(&format!("ws://{}/", peer.addr()), &[]);
    let started = Instant::now();
    while pings_sent.load(Ordering::Relaxed) < FLOOD_PINGS && started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the client take in what the kernel still holds for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alive = child.0.try_wait().expect("wait").is_none();
    let rss = rss_kib(child.0.id());
    let pings = pings_sent.load(Ordering::Relaxed);
    let _ = child.0.kill();
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    eprintln!("{pings} pings in {:?}; wsat connect RSS {rss} KiB", started.elapsed());
    assert!(alive, "wsat connect gave up under the flood: {err}");
    assert!(
        pings >= FLOOD_PINGS * 4 / 5,
        "the flood did not get going ({pings} pings): {err}"
    );
    assert!(rss < 40 * 1024, "wsat connect grew to {rss} KiB under {pings} pings");
}

/// 64 messages of 1 MiB into an application that does not read its events: the client
/// stops reading once 2 MiB of them wait (`max_event_bytes`), so the server cannot write
/// 64 MiB into it; once the application reads, every message arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_application_has_not_taken_are_bounded_in_bytes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const MESSAGES: u64 = 64;
    const SIZE: usize = 1 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let peer = upgrading_peer(move |mut tcp| {
        let counter = counter.clone();
        async move {
            for i in 0..MESSAGES {
                let header = frame_header(2, true, None, SIZE as u64);
                let payload = vec![i as u8; SIZE];
                if tcp.write_all(&header).await.is_err() || tcp.write_all(&payload).await.is_err() {
                    return;
                }
                counter.fetch_add((header.len() + SIZE) as u64, Ordering::Relaxed);
            }
            drain(&mut tcp).await;
        }
    });
    let mut config = ClientConfig::new(format!("ws://{}/", peer.addr()));
    config.delivery = wsat_client::Delivery::Messages { max_size: 2 * SIZE };
    config.max_event_bytes = 2 * SIZE;
    config.reconnect = Reconnect::Disabled;
    let (_client, mut events) = Client::start(config).expect("valid");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled_at = written.load(Ordering::Relaxed);
    eprintln!("the server wrote {stalled_at} bytes into a client whose application did not read");
    assert!(
        stalled_at < 24 * SIZE as u64,
        "the client took {stalled_at} bytes while its application read nothing"
    );
    for i in 0..MESSAGES {
        let seen = until(&mut events, |e| matches!(e, Event::Message(_) | Event::Finish)).await;
        match seen.last() {
            Some(Event::Message(m)) => {
                assert_eq!(m.payload.len(), SIZE);
                assert!(m.payload.iter().all(|&b| b == i as u8), "message {i} intact");
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
}

/// A server whose upgrade response never ends: refused at `max_response_head`.
#[tokio::test]
async fn an_endless_upgrade_response_is_refused_at_the_head_limit() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        if read_request(&mut tcp).await.is_some() {
            let _ = tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nX-Filler: ").await;
            let filler = [b'x'; 4096];
            while tcp.write_all(&filler).await.is_ok() {}
        }
    });
    let mut config = ClientConfig::new(format!("ws://{}/", peer.addr()));
    config.reconnect = Reconnect::Disabled;
    config.max_response_head = 8 * 1024;
    let seen = attempt(config).await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::Error(ClientError::Handshake(wsat_proto::handshake::HandshakeError::TooLarge(
                8192
            )))
        )),
        "{seen:?}"
    );
}

/// A server that drips its upgrade response a byte at a time: the upgrade gives up at the
/// network timeout instead of waiting for ever.
#[tokio::test]
async fn a_dripped_upgrade_response_times_out() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        if read_request(&mut tcp).await.is_some() {
            for &b in b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                .iter()
                .cycle()
            {
                if tcp.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let mut config = ClientConfig::new(format!("ws://{}/", peer.addr()));
    config.reconnect = Reconnect::Disabled;
    config.network_timeout = Duration::from_millis(800);
    let started = Instant::now();
    let seen = attempt(config).await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Error(ClientError::Timeout(_)))),
        "{seen:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// A server that never answers our close frame: the client gives up at `close_timeout`.
#[tokio::test]
async fn a_close_left_unanswered_ends_at_the_close_timeout() {
    let peer = upgrading_peer(|mut tcp| async move { drain(&mut tcp).await });
    let mut config = ClientConfig::new(format!("ws://{}/", peer.addr()));
    config.reconnect = Reconnect::Disabled;
    config.close_timeout = Duration::from_millis(300);
    let (client, mut events) = Client::start(config).expect("valid");
    until(&mut events, |e| matches!(e, Event::Connected(_))).await;
    let started = Instant::now();
    let closing = tokio::spawn(async move { client.close(Some(1000), "", Duration::from_secs(5)).await });
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::CloseTimeout))),
        "{seen:?}"
    );
    closing.await.expect("join").expect("close returns once the task ended");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// A `ws://` URI that redirects to `wss://` is followed (TLS is set up for the hop), and
/// keeps no credential: the scheme changed.
#[tokio::test]
async fn a_redirect_from_ws_to_wss_is_followed_with_tls() {
    let pki = TestPki::generate();
    let tls = wsat::tls_server::server_config(pki.server.cert_pem.as_bytes(), pki.server.key_pem.as_bytes(), None)
        .expect("server TLS config");
    let echo = wsat::echo_server::EchoServer::bind("127.0.0.1:0", Some(tls))
        .await
        .expect("bind");
    let secure_port = echo.local_addr().expect("bound").port();
    let _echo = echo.spawn();
    let (plain, _) = redirecting_peer(format!("wss://localhost:{secure_port}/up"));
    let mut config = with_credentials(format!("ws://{}/start", plain.addr()));
    config.tls.ca_pem = Some(pki.ca.cert_pem.clone().into_bytes());
    let seen = attempt(config).await;
    match seen.last() {
        Some(Event::Connected(info)) => assert_eq!(info.uri, format!("wss://localhost:{secure_port}/up")),
        other => panic!("not connected: {other:?} after {seen:?}"),
    }
}
