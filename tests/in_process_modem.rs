//! The in-process modem as a library user drives it: `wsat::modem::in_memory` on a duplex
//! pipe, byte-exact answers, a link to an in-process echo server, and every fault of the
//! `ModemHandle` (drop_link, wifi, reset, busy, latency, noise, fail) and its status.
//! Every wait is bounded (`STEP`). Spec: docs/FIRMWARE.md §1, §8, §10, §13;
//! examples/driver_test.rs is the same API as documentation.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wsat::echo_server::EchoServer;
use wsat::modem::link::LinkProfile;
use wsat::modem::{in_memory, ModemHandle, ModemOptions};
use wsat_at::{LinkStatus, PortState};
use wsat_client::ChunkPolicy;

/// The longest any one answer may take.
const STEP: Duration = Duration::from_secs(10);
/// The reconnect delay of these modems (the chip: 10-15 s).
const RECONNECT: Duration = Duration::from_millis(300);
/// The delay before the ERROR of a failed AT+WSOPEN (the chip: ≈5 s).
const OPEN_ERROR: Duration = Duration::from_millis(200);

const READY: &[u8] = b"\r\nready\r\n";

/// The host's end of the AT port, read byte-exactly.
struct Host {
    io: DuplexStream,
    buf: Vec<u8>,
}

impl Host {
    async fn send(&mut self, bytes: &[u8]) {
        timeout(STEP, self.io.write_all(bytes))
            .await
            .expect("the modem takes input")
            .expect("write");
    }

    /// Reads more bytes into the buffer, at most `STEP` from now.
    async fn fill(&mut self, want: &[u8]) {
        let mut chunk = [0u8; 4096];
        let n = match timeout(STEP, self.io.read(&mut chunk)).await {
            Ok(read) => read.expect("read"),
            Err(_) => panic!(
                "waited {STEP:?} for {:?}; have {:?}",
                want.escape_ascii().to_string(),
                self.buf.escape_ascii().to_string()
            ),
        };
        assert!(n > 0, "the modem ended the port");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next `want.len()` bytes must be `want`.
    async fn expect(&mut self, want: &[u8]) {
        while self.buf.len() < want.len() {
            self.fill(want).await;
        }
        let got: Vec<u8> = self.buf.drain(..want.len()).collect();
        assert_eq!(
            got.escape_ascii().to_string(),
            want.escape_ascii().to_string(),
            "the modem's bytes"
        );
    }

    /// Everything up to and including the first `marker`.
    async fn read_until(&mut self, marker: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(marker.len()).position(|w| w == marker) {
                return self.buf.drain(..at + marker.len()).collect();
            }
            self.fill(marker).await;
        }
    }

    /// `command`, and the exact answer (the echo included).
    async fn exchange(&mut self, command: &str, answer: &str) {
        self.send(command.as_bytes()).await;
        self.expect(answer.as_bytes()).await;
    }

    /// Opens `link` to `uri`, the seed's way.
    async fn open(&mut self, link: usize, uri: &str) {
        let open = format!("AT+WSOPEN={link},\"{uri}\"\r\n");
        self.exchange(&open, &format!("{open}+WS_CONNECTED:{link}\r\n\r\nOK\r\n"))
            .await;
    }

    /// Sends `data` on `link` and sees it echoed (`SEND OK` first, as wsat always does).
    async fn echo(&mut self, link: usize, data: &str) {
        let send = format!("AT+WSSEND={link},{}\r\n", data.len());
        self.exchange(&send, &format!("{send}\r\nOK\r\n\r\n>")).await;
        self.exchange(
            data,
            &format!("\r\nSEND OK\r\n+WS_DATA:{link},{},{data}\r\n", data.len()),
        )
        .await;
    }

    /// Sends `AT` until it answers `OK` (not `busy p...`), every 50 ms.
    async fn at_until_ok(&mut self) {
        let deadline = Instant::now() + STEP;
        loop {
            self.send(b"AT\r\n").await;
            let answer = self.read_until(b"\r\n\r\n").await;
            assert_eq!(answer, b"AT\r\n\r\n", "the echo, then a result code");
            let code = self.read_until(b"\r\n").await;
            match &code[..] {
                b"OK\r\n" => return,
                b"busy p...\r\n" => {}
                other => panic!("AT answered {:?}", other.escape_ascii().to_string()),
            }
            assert!(Instant::now() < deadline, "still busy after {STEP:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A modem in this process, with short timings and reproducible `+WS_DATA` chunks, after
/// its banner.
async fn modem() -> (ModemHandle, Host) {
    modem_with(ModemOptions {
        link: LinkProfile {
            reconnect_delay: RECONNECT,
            open_error_delay: OPEN_ERROR,
            chunking: ChunkPolicy::Full,
            ..LinkProfile::default()
        },
        ..ModemOptions::default()
    })
    .await
}

async fn modem_with(options: ModemOptions) -> (ModemHandle, Host) {
    let (handle, io) = timeout(STEP, in_memory(options))
        .await
        .expect("the modem starts")
        .expect("in_memory");
    let mut host = Host { io, buf: Vec::new() };
    host.expect(READY).await;
    (handle, host)
}

/// An echo server on loopback: its URI and its task.
async fn echo_server() -> (String, JoinHandle<()>) {
    let server = EchoServer::bind("127.0.0.1:0", None).await.expect("bind");
    let uri = format!("ws://{}", server.local_addr().expect("addr"));
    (uri, server.spawn())
}

async fn status(modem: &ModemHandle) -> wsat::modem::Status {
    timeout(STEP, modem.status())
        .await
        .expect("status in time")
        .expect("status")
}

#[tokio::test]
async fn banner_then_at_and_echo_off() {
    let (_modem, mut host) = modem().await;
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
    host.exchange("ATE0\r\n", "ATE0\r\n\r\nOK\r\n").await;
    host.exchange("AT\r\n", "\r\nOK\r\n").await;
    host.exchange("AT+WSOPEN?\r\n", "\r\nOK\r\n").await;
}

#[tokio::test]
async fn a_link_echoes_and_status_shows_it() {
    let (uri, _server) = echo_server().await;
    let (modem, mut host) = modem().await;
    let before = status(&modem).await;
    assert!(before.host_attached);
    assert_eq!(before.port, PortState::Idle { buffered: 0 });
    assert!(before.wifi_up);
    assert_eq!(before.links.len(), 3);
    assert!(before.links.iter().all(|l| l.state.is_none()));
    assert_eq!(
        (before.busy_left, before.latency, before.noise, before.pace_baud),
        (None, Duration::ZERO, None, None)
    );
    assert!(before.failures.is_empty());

    host.open(0, &uri).await;
    host.echo(0, "test").await;
    host.exchange(
        "AT+WSOPEN?\r\n",
        &format!("AT+WSOPEN?\r\n+WSOPEN:0,2,\"{uri}\"\r\n\r\nOK\r\n"),
    )
    .await;
    let after = status(&modem).await;
    assert_eq!(after.links[0].state, Some(LinkStatus::Connected));
    assert_eq!(after.links[1].state, None);
    let json: serde_json::Value = serde_json::from_str(&after.to_json()).expect("status JSON");
    assert_eq!(json["links"][0]["state"], 2);
    assert_eq!(json["wifi"], "on");

    host.exchange("AT+WSCLOSE=0\r\n", "AT+WSCLOSE=0\r\n\r\nOK\r\n").await;
    assert_eq!(status(&modem).await.links[0].state, None);
}

#[tokio::test]
async fn drop_link_disconnects_and_the_link_reconnects_after_the_delay() {
    let (uri, _server) = echo_server().await;
    let (modem, mut host) = modem().await;
    host.open(0, &uri).await;

    let start = Instant::now();
    modem.drop_link(0).await.expect("drop 0");
    host.expect(b"+WS_DISCONNECTED:0\r\n").await;
    host.expect(b"+WS_CONNECTED:0\r\n").await;
    let took = start.elapsed();
    assert!(
        took >= RECONNECT,
        "reconnected after {took:?}, before the {RECONNECT:?} delay"
    );
    host.echo(0, "again").await;

    // Only a connected link can be dropped; the error says why.
    let err = modem.drop_link(1).await.expect_err("link 1 is not open");
    assert!(err.to_string().contains("not connected"), "{err}");
    let err = modem.drop_link(7).await.expect_err("no link 7");
    assert!(err.to_string().contains("no link 7"), "{err}");
}

#[tokio::test]
async fn wifi_off_drops_links_and_fails_opens_until_wifi_on() {
    let (uri, _server) = echo_server().await;
    let (modem, mut host) = modem().await;
    host.open(0, &uri).await;

    modem.wifi(false).await.expect("wifi off");
    host.expect(b"WIFI DISCONNECT\r\n+WS_DISCONNECTED:0\r\n").await;
    assert!(!status(&modem).await.wifi_up);

    // Meanwhile link 0's reconnects fail, each with its +WS_DISCONNECTED:0, which may land
    // anywhere between the pieces below: they are taken out before comparing.
    let failed_again = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .expect("text")
            .replace("+WS_DISCONNECTED:0\r\n", "")
    };
    let open = format!("AT+WSOPEN=1,\"{uri}\"\r\n");
    host.send(open.as_bytes()).await;
    let started = Instant::now();
    let answer = failed_again(host.read_until(b"\r\nERROR\r\n").await);
    assert_eq!(answer, format!("{open}+WS_DISCONNECTED:1\r\n\r\nERROR\r\n"));
    assert!(
        started.elapsed() >= OPEN_ERROR,
        "ERROR came before the open-error delay"
    );

    modem.wifi(true).await.expect("wifi on");
    let back = failed_again(host.read_until(b"+WS_CONNECTED:0\r\n").await);
    assert_eq!(back, "WIFI CONNECTED\r\nWIFI GOT IP\r\n+WS_CONNECTED:0\r\n");
    assert!(status(&modem).await.wifi_up);
    host.echo(0, "back").await;
}

#[tokio::test]
async fn reset_loses_links_and_settings_and_prints_the_banner() {
    let (uri, _server) = echo_server().await;
    let (modem, mut host) = modem().await;
    host.open(0, &uri).await;
    host.exchange("ATE0\r\n", "ATE0\r\n\r\nOK\r\n").await;

    // No URC for the lost link: just the banner, and the port as after boot (echo on).
    modem.reset(false).await.expect("reset");
    host.expect(READY).await;
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
    host.exchange("AT+WSOPEN?\r\n", "AT+WSOPEN?\r\n\r\nOK\r\n").await;
    assert!(status(&modem).await.links.iter().all(|l| l.state.is_none()));

    // With noise: the boot ROM's garbage first.
    modem.reset(true).await.expect("reset noise");
    let boot = host.read_until(READY).await;
    assert!(boot.len() > READY.len(), "no garbage before the banner");
    assert!(!boot[..boot.len() - READY.len()].windows(5).any(|w| w == b"ready"));
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
}

#[tokio::test]
async fn busy_answers_busy_p_until_its_time_is_up() {
    let (modem, mut host) = modem().await;
    let busy = Duration::from_millis(1000);
    let start = Instant::now();
    modem.busy(busy).await.expect("busy");
    host.exchange("AT\r\n", "AT\r\n\r\nbusy p...\r\n").await;
    host.exchange("AT+GMR\r\n", "AT+GMR\r\n\r\nbusy p...\r\n").await;
    assert!(status(&modem).await.busy_left.is_some());
    host.at_until_ok().await;
    assert!(start.elapsed() >= busy, "OK before the busy time was up");
    assert_eq!(status(&modem).await.busy_left, None);

    // busy 0 ends it at once.
    modem.busy(Duration::from_secs(600)).await.expect("busy");
    host.exchange("AT\r\n", "AT\r\n\r\nbusy p...\r\n").await;
    modem.busy(Duration::ZERO).await.expect("busy 0");
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;

    // A reset during busy keeps the bench's busy, and its end.
    let busy = Duration::from_millis(500);
    let start = Instant::now();
    modem.busy(busy).await.expect("busy");
    modem.reset(false).await.expect("reset");
    host.expect(b"\r\nready\r\n").await;
    host.exchange("AT\r\n", "AT\r\n\r\nbusy p...\r\n").await;
    host.at_until_ok().await;
    assert!(start.elapsed() >= busy, "OK before the busy time was up");
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let (modem, mut host) = modem().await;
    let delay = Duration::from_millis(300);
    modem.latency(delay).await.expect("latency");
    assert_eq!(status(&modem).await.latency, delay);
    for _ in 0..2 {
        let start = Instant::now();
        host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
        let took = start.elapsed();
        assert!(took >= delay, "answered after {took:?}, under the {delay:?} latency");
    }
    modem.latency(Duration::ZERO).await.expect("latency 0");
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
}

/// What the host receives for `AT+CMD?` under `noise <rate> <seed>` (`None`: no noise).
async fn cmd_query_received(noise: Option<(f64, u64)>) -> Vec<u8> {
    let (modem, mut host) = modem().await;
    if let Some((rate, seed)) = noise {
        modem.noise(rate, seed).await.expect("noise");
        assert_eq!(status(&modem).await.noise, Some((rate, seed)));
    }
    host.send(b"AT+CMD?\r\n").await;
    // The whole answer was made (and garbled) at once, as the line was read: once any of it
    // has arrived, the noise can end. A clean AT marks where the garbled bytes stop.
    host.fill(b"the answer to AT+CMD?").await;
    modem.noise(0.0, 0).await.expect("noise 0");
    host.send(b"AT\r\n").await;
    let mut got = host.read_until(b"AT\r\n\r\nOK\r\n").await;
    got.truncate(got.len() - b"AT\r\n\r\nOK\r\n".len());
    got
}

#[tokio::test]
async fn noise_garbles_the_same_bytes_for_the_same_seed() {
    let clean = cmd_query_received(None).await;
    assert!(clean.starts_with(b"AT+CMD?\r\n+CMD:0,\"AT\"") && clean.ends_with(b"\r\nOK\r\n"));
    let first = cmd_query_received(Some((0.05, 42))).await;
    let again = cmd_query_received(Some((0.05, 42))).await;
    let other = cmd_query_received(Some((0.05, 43))).await;
    assert_ne!(first, clean, "no byte was garbled");
    assert_eq!(first, again, "the same seed garbled differently");
    assert_ne!(first, other, "another seed garbled the same way");
}

#[tokio::test]
async fn fail_answers_error_for_the_next_runs_only() {
    let (uri, _server) = echo_server().await;
    let (modem, mut host) = modem().await;
    modem.fail("AT+WSOPEN", 2).await.expect("fail");
    assert_eq!(status(&modem).await.failures, vec![("AT+WSOPEN".to_owned(), 2)]);
    let open = format!("AT+WSOPEN=0,\"{uri}\"\r\n");
    for _ in 0..2 {
        // At once: no +WS_DISCONNECTED, no open-error delay; nothing was opened.
        host.exchange(&open, &format!("{open}\r\nERROR\r\n")).await;
    }
    assert!(status(&modem).await.failures.is_empty());
    host.open(0, &uri).await;
    host.echo(0, "works").await;

    // Any command, as people write it; 0 cancels; an unknown command is refused.
    modem.fail("at", 1).await.expect("fail AT");
    host.exchange("AT\r\n", "AT\r\n\r\nERROR\r\n").await;
    host.exchange("AT\r\n", "AT\r\n\r\nOK\r\n").await;
    modem.fail("+wssend", 3).await.expect("fail +wssend");
    modem.fail("AT+WSSEND", 0).await.expect("cancel");
    assert!(status(&modem).await.failures.is_empty());
    host.echo(0, "still").await;
    let err = modem.fail("AT+NOSUCH", 1).await.expect_err("unknown command");
    assert!(err.to_string().contains("no such AT command"), "{err}");
}

#[tokio::test]
async fn pacing_at_9600_baud_takes_the_line_time() {
    let (modem, mut host) = modem_with(ModemOptions {
        pace_baud: Some(9600),
        ..ModemOptions::default()
    })
    .await;
    assert_eq!(status(&modem).await.pace_baud, Some(9600));
    let start = Instant::now();
    host.send(b"AT+CMD?\r\n").await;
    let answer = host.read_until(b"\r\nOK\r\n").await;
    let took = start.elapsed();
    // 10 bits a byte; the first slice (≤ 9 bytes) leaves at once.
    let line_time = Duration::from_micros((answer.len() as u64 - 9) * 10 * 1_000_000 / 9600);
    assert!(
        took >= line_time,
        "{} bytes in {took:?}, under the line time {line_time:?}",
        answer.len()
    );
}

#[tokio::test]
async fn the_modem_ends_with_its_stream() {
    let (modem, host) = modem().await;
    drop(host);
    let gone = async {
        while modem.status().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(STEP, gone)
        .await
        .expect("the modem still answers after its stream ended");
    let err = modem.wifi(false).await.expect_err("a stopped modem");
    assert!(err.to_string().contains("stopped"), "{err}");
}
