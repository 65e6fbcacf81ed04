//! Resource bounds, measured: a server that never stops sending cannot make the modem or
//! the client hold more than their limits.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsat_client::{Client, ClientConfig, ClientError, Delivery, Event, Reconnect};
use wsat_testkit::events::until;
use wsat_testkit::frames::{frame_header, server_frame};
use wsat_testkit::modem_process::ModemCommand;
use wsat_testkit::peer::{accept_upgrade, drain, ScriptedPeer};
use wsat_testkit::process::rss_kib;

/// A server that upgrades, announces a 1 TiB binary frame and streams zeros until told to
/// stop; returns how many payload bytes it managed to hand to TCP.
fn endless_frame_peer(
    stop: tokio::sync::watch::Receiver<bool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> ScriptedPeer {
    ScriptedPeer::start(move |mut tcp, _| {
        let mut stop = stop.clone();
        let sent = sent.clone();
        async move {
            accept_upgrade(&mut tcp).await;
            let _ = tcp.write_all(&frame_header(2, true, None, 1 << 40)).await;
            let zeros = vec![0u8; 64 * 1024];
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    res = tcp.write_all(&zeros) => {
                        if res.is_err() { return; }
                        sent.fetch_add(zeros.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_frame_cannot_grow_a_modem_whose_host_stops_reading() {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peer = endless_frame_peer(stop_rx, sent.clone());
    let modem = ModemCommand::new(env!("CARGO_BIN_EXE_wsat")).tcp().start();
    let mut at = TcpStream::connect(modem.tcp.expect("a --tcp modem"))
        .await
        .expect("AT port");
    at.write_all(format!("AT+WSOPEN=0,\"{}\"\r\n", peer.uri()).as_bytes())
        .await
        .expect("write");
    // Read the open's answer, then stop reading the AT port for good.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"\r\nOK\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), at.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        got.extend_from_slice(&buf[..n]);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_1s, sent_1s) = (rss_kib(modem.pid()), sent.load(std::sync::atomic::Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_4s, sent_4s) = (rss_kib(modem.pid()), sent.load(std::sync::atomic::Ordering::Relaxed));
    let _ = stop_tx.send(true);
    drop(modem);
    eprintln!(
        "endless frame into a modem nobody reads: modem RSS {rss_1s} KiB after 1 s, {rss_4s} KiB after 4 s; \
         the server could send {} KiB then {} KiB",
        sent_1s / 1024,
        sent_4s / 1024
    );
    assert!(
        rss_4s < rss_1s + 16 * 1024,
        "the modem grew from {rss_1s} to {rss_4s} KiB"
    );
    assert!(sent_4s < 64 << 20, "no backpressure: the server pushed {sent_4s} bytes");
}

#[tokio::test]
async fn an_endless_message_stops_at_the_clients_limit() {
    // A text message that never ends: a first fragment, then continuations forever.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp.write_all(&server_frame(2, false, b"")).await;
        let frame = server_frame(0, false, &[0u8; 4096]);
        while tcp.write_all(&frame).await.is_ok() {}
    });
    let mut config = ClientConfig::new(peer.uri());
    config.delivery = Delivery::Messages { max_size: 1 << 20 };
    config.reconnect = Reconnect::Disabled;
    config.close_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let (_client, mut events) = Client::start(config).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::Protocol(p)) if p.close_code() == 1009)),
        "{seen:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A single frame announcing more than the limit fails at its header.
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp.write_all(&frame_header(2, true, None, 1 << 40)).await;
        drain(&mut tcp).await;
    });
    let mut config = ClientConfig::new(peer.uri());
    config.delivery = Delivery::Messages { max_size: 1 << 20 };
    config.reconnect = Reconnect::Disabled;
    config.close_timeout = Duration::from_millis(500);
    let (_client, mut events) = Client::start(config).expect("valid");
    let seen = until(&mut events, |e| matches!(e, Event::Finish)).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Error(ClientError::Protocol(p)) if p.close_code() == 1009)),
        "{seen:?}"
    );
}
