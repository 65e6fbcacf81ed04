//! Resource bounds, measured: a server that never stops sending cannot make the modem or
//! the client hold more than their limits.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{accept_upgrade, rss_kib, scripted_peer, until};
use std::io::BufRead;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsat_client::{Client, ClientConfig, ClientError, Delivery, Event, Reconnect};

/// A server that upgrades, announces a 1 TiB binary frame and streams zeros until told to
/// stop; returns how many payload bytes it managed to hand to TCP.
async fn endless_frame_peer(
    stop: tokio::sync::watch::Receiver<bool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    scripted_peer(move |mut tcp| {
        let mut stop = stop.clone();
        let sent = sent.clone();
        async move {
            accept_upgrade(&mut tcp).await;
            let _ = tcp.write_all(&[0x82, 0x7F, 0, 0, 1, 0, 0, 0, 0, 0]).await;
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
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_frame_cannot_grow_a_modem_whose_host_stops_reading() {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (peer, _task) = endless_frame_peer(stop_rx, sent.clone()).await;
    let mut modem = Killed(
        Command::new(env!("CARGO_BIN_EXE_wsat"))
            .args(["modem", "--tcp", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn wsat"),
    );
    let stderr = modem.0.stderr.take().expect("stderr");
    // The first stderr line names the port: "wsat modem: AT port on tcp://ADDR".
    let line = std::io::BufReader::new(stderr)
        .lines()
        .next()
        .expect("a line")
        .expect("read");
    let addr = line.rsplit("tcp://").next().expect("address").trim().to_owned();
    let mut at = TcpStream::connect(&addr).await.expect("AT port");
    at.write_all(format!("AT+WSOPEN=0,\"ws://{peer}\"\r\n").as_bytes())
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
    let (rss_1s, sent_1s) = (rss_kib(modem.0.id()), sent.load(std::sync::atomic::Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_4s, sent_4s) = (rss_kib(modem.0.id()), sent.load(std::sync::atomic::Ordering::Relaxed));
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
    let (addr, _peer) = scripted_peer(|mut tcp| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp.write_all(&[0x02, 0x00]).await;
        let mut frame = vec![0x00, 0x7E, 0x10, 0x00];
        frame.extend_from_slice(&[0u8; 4096]);
        while tcp.write_all(&frame).await.is_ok() {}
    })
    .await;
    let mut config = ClientConfig::new(format!("ws://{addr}"));
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
    let (addr, _peer) = scripted_peer(|mut tcp| async move {
        accept_upgrade(&mut tcp).await;
        let _ = tcp.write_all(&[0x82, 0x7F, 0, 0, 1, 0, 0, 0, 0, 0]).await;
        common::drain(&mut tcp).await;
    })
    .await;
    let mut config = ClientConfig::new(format!("ws://{addr}"));
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

/// A child process killed and reaped when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
