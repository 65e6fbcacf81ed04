//! `wsat echo-server` under abuse, end to end against the binary: a descriptor limit full
//! of half-open connections, the connection limit, the handshake timeout (plain and TLS),
//! and a peer that uploads and never reads. Everything runs on 127.0.0.1 with small bounds.

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::wsat;
use wsat_proto::handshake::{ClientHandshake, HandshakeRequest, HandshakeResponse};
use wsat_proto::uri::WsUri;
use wsat_testkit::frames::{client_frame, read_frame_blocking};
use wsat_testkit::process::{rss_kib, Killed};

/// Half an upgrade request: a request line and one header, never the blank line.
const HALF_UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// An echo server child whose stderr goes to a file (a pipe nobody drains would throttle a
/// chatty server and hide the very log flood we count).
struct Server {
    child: Killed,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `wsat echo-server EXTRA…` on a free port, under `ulimit -n FDS` when given; returns
    /// once it accepts TCP connections.
    fn start(fds: Option<u32>, extra: &[&str]) -> Server {
        let port = wsat_testkit::free_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("stderr");
        let mut cmd = match fds {
            None => wsat(),
            Some(n) => {
                // The shell lowers its own limit, then becomes the server: no `pre_exec`.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_wsat"));
                sh
            }
        };
        cmd.args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("a log file"));
        let mut server = Server {
            child: Killed(cmd.spawn().expect("spawn echo-server")),
            port,
            log,
            _dir: dir,
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                panic!("echo-server exited ({status}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "echo-server did not listen");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Everything the server logged so far.
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).expect("read the log")).into_owned()
    }
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("TCP connect")
}

/// A connection that sends half an upgrade request and then nothing.
fn half_open(port: u16) -> TcpStream {
    let mut tcp = connect(port);
    tcp.write_all(HALF_UPGRADE).expect("write half a request");
    tcp
}

/// A client's opening handshake by hand; fails if it takes longer than `within`.
fn upgrade(port: u16, within: Duration) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(within))?;
    tcp.set_write_timeout(Some(within))?;
    let deadline = Instant::now() + within;
    let uri = WsUri::parse(&format!("ws://127.0.0.1:{port}/")).expect("a ws URI");
    let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
    tcp.write_all(handshake.request())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no 101 in time"));
        }
        let n = tcp.read(&mut chunk)?;
        if n == 0 {
            let head = String::from_utf8_lossy(&buf).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed: {head:?}"),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match handshake.parse_response(&buf, true) {
            Ok(None) => {}
            Ok(Some(HandshakeResponse::Accepted { head_len, .. })) if head_len == buf.len() => return Ok(tcp),
            Ok(Some(other)) => return Err(io::Error::other(format!("not a bare 101: {other:?}"))),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// The next server frame: its first header byte and its payload (servers never mask).
fn read_frame(tcp: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let frame = read_frame_blocking(tcp)?;
    assert!(!frame.masked, "a server frame is never masked");
    Ok((frame.first, frame.payload))
}

/// Sends one text message on an upgraded connection and checks its echo.
fn echo_on(tcp: &mut TcpStream, text: &str) -> io::Result<()> {
    tcp.write_all(&client_frame(1, true, [1, 2, 3, 4], text.as_bytes()))?;
    let (first, payload) = read_frame(tcp)?;
    assert_eq!(
        (first, payload.as_slice()),
        (0x81, text.as_bytes()),
        "the echo of {text:?}"
    );
    Ok(())
}

/// A legitimate client's whole visit: upgrade, one message, its echo, within `within`.
fn echo_once(port: u16, within: Duration) -> io::Result<()> {
    let mut tcp = upgrade(port, within)?;
    echo_on(&mut tcp, "legitimate")
}

/// How long until the server closes `tcp` (a read sees end of file or an error), or `None`
/// if it is still open after `bound`. Bytes the server sends first (a refusal) are skipped.
fn closed_within(tcp: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        let left = bound.checked_sub(start.elapsed()).filter(|d| !d.is_zero())?;
        tcp.set_read_timeout(Some(left)).expect("read timeout");
        match tcp.read(&mut sink) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return None,
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// 1,100 half-open connections against a 1,024 descriptor limit, scaled down: 80 against
/// 64. The accept loop must back off instead of spinning on EMFILE, log at most about a
/// line a second, and a legitimate client must be served once the handshake timeout
/// frees descriptors.
#[test]
fn at_the_descriptor_limit_the_accept_loop_backs_off_and_a_client_is_still_served() {
    let server = Server::start(Some(64), &["--handshake-timeout", "1s"]);
    let started = Instant::now();
    let half: Vec<TcpStream> = (0..80).map(|_| half_open(server.port)).collect();
    thread::sleep(Duration::from_millis(300));
    let visit = Instant::now();
    let served = echo_once(server.port, Duration::from_secs(6));
    let took = visit.elapsed();
    let log = server.stderr();
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    eprintln!(
        "descriptor limit 64, 80 half-open: legitimate client {} after {took:?}; \
         {failures} 'accept failed' lines in {:?}; {} stderr bytes",
        if served.is_ok() { "served" } else { "NOT served" },
        started.elapsed(),
        log.len()
    );
    served.expect("a legitimate client is served at the descriptor limit");
    assert!(
        log.contains("leaves too few of the 64 descriptors"),
        "no warning at start:\n{log}"
    );
    assert!(failures >= 1, "the scenario never reached the descriptor limit:\n{log}");
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!(
        failures <= allowed,
        "{failures} accept failures logged, at most {allowed} allowed"
    );
    drop(half);
}

/// At `--max-connections`, a newcomer closes the oldest connection still in its handshake
/// (so half-open connections cannot lock legitimate clients out until they time out);
/// upgraded connections are never closed for it, and with every slot upgraded the newcomer
/// is refused at once.
#[test]
fn at_the_connection_limit_half_open_connections_make_room_and_extras_are_refused_at_once() {
    let server = Server::start(None, &["--max-connections", "8", "--handshake-timeout", "30s"]);
    let port = server.port;
    let mut half: Vec<TcpStream> = (0..8).map(|_| half_open(port)).collect();
    thread::sleep(Duration::from_millis(200));

    let visit = Instant::now();
    echo_once(port, Duration::from_secs(2)).expect("served while half-open connections fill every slot");
    let took = visit.elapsed();
    let oldest = closed_within(&mut half[0], Duration::from_secs(1));
    let newest = closed_within(&mut half[7], Duration::from_millis(200));
    eprintln!("limit 8 full of half-open: legitimate client served in {took:?}; oldest closed: {oldest:?}");
    assert!(oldest.is_some(), "the oldest half-open connection made room");
    assert!(newest.is_none(), "the newest half-open connection is still waiting");

    drop(half);
    thread::sleep(Duration::from_millis(200));
    let mut open: Vec<TcpStream> = (0..8)
        .map(|_| upgrade(port, Duration::from_secs(2)).expect("an upgrade below the limit"))
        .collect();
    let mut extra = connect(port);
    let refused = closed_within(&mut extra, Duration::from_secs(1));
    eprintln!("limit 8 full of upgraded connections: a ninth closed after {refused:?}");
    assert!(refused.is_some(), "a connection beyond the limit is refused at once");
    for (i, tcp) in open.iter_mut().enumerate() {
        echo_on(tcp, &format!("still here {i}")).expect("upgraded connections are kept");
    }

    drop(open.pop());
    thread::sleep(Duration::from_millis(200));
    echo_once(port, Duration::from_secs(2)).expect("a freed slot serves again");
}

/// Half an upgrade request, or nothing at all: closed once `--handshake-timeout` passes.
/// An upgraded connection is past the deadline and stays open however long it idles.
#[test]
fn the_handshake_timeout_closes_half_open_and_silent_connections() {
    let server = Server::start(None, &["--handshake-timeout", "500ms"]);
    let start = Instant::now();
    let mut half = half_open(server.port);
    let mut silent = connect(server.port);
    let mut upgraded = upgrade(server.port, Duration::from_secs(2)).expect("upgrade");
    let half_closed = closed_within(&mut half, Duration::from_millis(1500)).map(|_| start.elapsed());
    let silent_closed = closed_within(&mut silent, Duration::from_millis(1500)).map(|_| start.elapsed());
    eprintln!("handshake timeout 500 ms: half-open closed after {half_closed:?}, silent after {silent_closed:?}");
    for closed in [half_closed, silent_closed] {
        let after = closed.expect("closed by the handshake timeout");
        assert!(
            after >= Duration::from_millis(400),
            "closed after {after:?}, before the timeout"
        );
    }
    thread::sleep(Duration::from_millis(1000).saturating_sub(start.elapsed()));
    echo_on(&mut upgraded, "idle past the handshake timeout").expect("an upgraded connection is kept");
}

/// On a wss server the timeout starts at the TCP accept and covers the TLS handshake: a
/// connection that never sends a ClientHello, or only part of one, is closed too.
#[test]
fn the_handshake_timeout_covers_the_tls_handshake() {
    let pki = wsat_testkit::TestPki::generate();
    let (_dir, files) = pki.write_tempdir();
    let cert = files.server.cert.display().to_string();
    let key = files.server.key.display().to_string();
    let server = Server::start(None, &["--cert", &cert, "--key", &key, "--handshake-timeout", "500ms"]);
    let start = Instant::now();
    let mut silent = connect(server.port);
    let mut partial = connect(server.port);
    // A handshake record header announcing 512 bytes, and none of them.
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).expect("write");
    let silent_closed = closed_within(&mut silent, Duration::from_millis(1500)).map(|_| start.elapsed());
    let partial_closed = closed_within(&mut partial, Duration::from_millis(1500)).map(|_| start.elapsed());
    eprintln!("wss, handshake timeout 500 ms: no ClientHello closed after {silent_closed:?}, part of one after {partial_closed:?}");
    for closed in [silent_closed, partial_closed] {
        let after = closed.expect("closed by the handshake timeout");
        assert!(
            after >= Duration::from_millis(400),
            "closed after {after:?}, before the timeout"
        );
    }
}

/// Message `i` of the upload: distinct per message, so order and integrity are checked.
fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut p = vec![i as u8; size];
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    p
}

/// A peer uploads large messages and reads nothing: the server stops reading once its
/// queued echoes pass `--max-queued-bytes`, so its memory stays flat and the peer's
/// writes stall; once the peer reads, every echo arrives intact and in order.
#[test]
fn a_peer_that_never_reads_cannot_make_the_server_queue_its_upload() {
    const MESSAGES: usize = 80;
    const SIZE: usize = 1 << 20;
    let server = Server::start(None, &["--max-queued-bytes", "1MiB"]);
    let mut tcp = upgrade(server.port, Duration::from_secs(2)).expect("upgrade");
    let rss_before = rss_kib(server.pid());

    let written = Arc::new(AtomicU64::new(0));
    let mut wr = tcp.try_clone().expect("clone");
    let progress = written.clone();
    let writer = thread::spawn(move || -> io::Result<()> {
        wr.set_write_timeout(Some(Duration::from_secs(20)))?;
        for i in 0..MESSAGES {
            for piece in client_frame(2, true, [0; 4], &payload(i, SIZE)).chunks(64 * 1024) {
                wr.write_all(piece)?;
                progress.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    let total = (MESSAGES * (SIZE + 14)) as u64;

    // Until the writer has made no progress for a second (or wrote everything).
    let start = Instant::now();
    let (mut seen, mut since) = (0, Instant::now());
    let mut rss_peak = rss_before;
    while since.elapsed() < Duration::from_secs(1) && seen < total && start.elapsed() < Duration::from_secs(6) {
        thread::sleep(Duration::from_millis(50));
        rss_peak = rss_peak.max(rss_kib(server.pid()));
        let now = written.load(Ordering::Relaxed);
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
    }
    let rss_stalled = rss_kib(server.pid());
    eprintln!(
        "upload of {MESSAGES} x 1 MiB, nothing read, --max-queued-bytes 1MiB: server RSS {rss_before} KiB before, \
         peak {rss_peak} KiB, {rss_stalled} KiB when the client stalled after {} KiB of {} KiB in {:?}",
        seen / 1024,
        total / 1024,
        start.elapsed()
    );
    assert!(
        rss_peak < rss_before + 32 * 1024,
        "the server grew from {rss_before} to {rss_peak} KiB"
    );
    assert!(
        seen < total,
        "the client wrote everything: the server never stopped reading"
    );

    tcp.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("read timeout");
    let reading = Instant::now();
    for i in 0..MESSAGES {
        let (first, echo) = read_frame(&mut tcp).unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert_eq!(first, 0x82, "echo {i} is a final binary frame");
        assert!(echo == payload(i, SIZE), "echo {i} differs from message {i}");
    }
    writer
        .join()
        .expect("the writer")
        .expect("the whole upload is written once the client reads");
    eprintln!(
        "all {MESSAGES} echoes intact and in order after {:?}",
        reading.elapsed()
    );
}
