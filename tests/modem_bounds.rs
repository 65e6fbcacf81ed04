//! Memory bounds of `wsat modem` against a careless or hostile host and server, measured on
//! the running process (`/proc/PID/status`):
//!
//! * an AT host that floods the port and never reads what is echoed back (TCP and pty);
//! * an AT host that stores ever more AT+WSHEAD headers;
//! * a server that floods pings and never reads the pongs.
//!
//! Each test is loopback only and bounded in time (a few seconds of flooding).

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{modem_pty, modem_tcp, FAST};
use tokio::io::AsyncWriteExt;
use wsat_testkit::at_host::{AtClient, OK, PROMPT, STEP};
use wsat_testkit::frames::server_frame;
use wsat_testkit::modem_process::Modem;
use wsat_testkit::peer::{accept_upgrade, ScriptedPeer};

/// What the modem may hold at its peak (VmHWM) while flooded; it starts at ~10 MiB.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// How long each flood of the AT port lasts.
const FLOOD: Duration = Duration::from_secs(4);
/// How long the ping flood is watched.
const PING_FLOOD: Duration = Duration::from_secs(5);

/// Writes `chunk` to `sink` over and over for `how_long`, never reading; `write` is expected
/// to time out (or refuse, if non-blocking) once the modem stops taking bytes. Returns the
/// bytes accepted.
fn flood(sink: &mut impl Write, chunk: &[u8], how_long: Duration) -> u64 {
    let until = Instant::now() + how_long;
    let mut sent = 0u64;
    while Instant::now() < until {
        match sink.write(chunk) {
            Ok(n) => sent += n as u64,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                thread::sleep(Duration::from_micros(200));
            }
            Err(e) => panic!("the flood's write failed: {e}"),
        }
    }
    sent
}

/// Asserts that the modem's peak resident memory stayed under [`RSS_LIMIT_KIB`].
fn assert_bounded(modem: &Modem, what: &str) {
    let (now, peak) = modem.memory_kib();
    eprintln!("{what}: VmRSS {now} KiB, VmHWM {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "{what}: the modem grew to {peak} KiB (now {now} KiB), over the {RSS_LIMIT_KIB} KiB bound"
    );
}

#[test]
fn an_at_host_that_floods_and_never_reads_cannot_grow_the_modem_over_tcp() {
    let modem = modem_tcp(FAST);
    let mut flooder = TcpStream::connect(modem.tcp.expect("a --tcp modem")).expect("connect");
    flooder
        .set_write_timeout(Some(Duration::from_millis(50)))
        .expect("write timeout");
    // Echo is on: every byte comes back, and this host never reads it. No CR LF: one endless line.
    let sent = flood(&mut flooder, &[b'x'; 64 * 1024], FLOOD);
    eprintln!("the flooder wrote {sent} bytes in {FLOOD:?}");
    assert_bounded(&modem, "after the AT port flood");

    // The flooder leaves (its unread bytes make the close a reset); the next host is served at once.
    drop(flooder);
    let start = Instant::now();
    let mut at = modem.connect();
    let waited = start.elapsed();
    eprintln!("the next AT client got ready after {waited:?}");
    assert!(
        waited < Duration::from_secs(1),
        "the next AT client waited {waited:?} for ready"
    );
    at.at("AT", OK);
}

#[test]
fn an_at_host_that_floods_and_never_reads_cannot_grow_the_modem_over_a_pty() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("at-pty");
    let modem = modem_pty(&link, FAST);
    // The host's side, non-blocking, so the flood can stop when the pty is full.
    let mut host = AtClient::open_pty(&link).expect("open the pty");
    let mut raw = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(&link)
        .expect("open the pty for writing");
    let sent = flood(&mut raw, &[b'x'; 4096], FLOOD);
    eprintln!("the flooder wrote {sent} bytes in {FLOOD:?}");
    assert_bounded(&modem, "after the pty flood");
    // The pty's own buffers hold some tens of KiB: once they are full, the modem takes no
    // more than its bounded queues while its echo is not read.
    assert!(
        sent < 1 << 20,
        "the modem took {sent} bytes from a host that never reads"
    );

    // The backlog is bounded: reading it takes a moment, then the port answers again.
    drop(raw);
    host.drain(Duration::from_millis(300));
    host.send("\r\n");
    host.drain(Duration::from_millis(300));
    host.at("AT", OK);
}

/// `AT+WSHEAD=<n>`, the prompt, the header; true if it was kept (OK), false on ERROR.
fn store_header(at: &mut AtClient, header: &[u8]) -> bool {
    at.at(&format!("AT+WSHEAD={}", header.len()), PROMPT);
    at.send(header);
    at.expect(b"\r\n");
    let result = at.read_until(b"\r\n", STEP);
    match &result[..] {
        b"OK\r\n" => true,
        b"ERROR\r\n" => false,
        other => panic!("AT+WSHEAD answered \"{}\"", other.escape_ascii()),
    }
}

#[test]
fn wshead_keeps_a_bounded_number_of_bytes() {
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    // 128 KiB values, as many as a careless host likes: none is kept.
    let big = [b"X-Big:".as_slice(), &[b'v'; 128 * 1024 - 6]].concat();
    for _ in 0..4 {
        assert!(!store_header(&mut at, &big), "a 128 KiB header was kept");
    }
    // 1 KiB headers: kept until 4 KiB are stored, then refused.
    let header = [b"X-Fill:".as_slice(), &[b'f'; 1024 - 7]].concat();
    let kept = (0..16).take_while(|_| store_header(&mut at, &header)).count();
    assert_eq!(kept, 4, "4 KiB of headers are kept");
    at.at("AT+WSHEAD?", b"");
    let listed = at.read_until(b"\r\nOK\r\n", STEP);
    eprintln!("AT+WSHEAD? printed {} bytes", listed.len());
    assert_eq!(
        listed.len(),
        4 * (b"+WSHEAD:0,\"\"\r\n".len() + header.len()) + OK.len()
    );
    // Clearing makes room again.
    at.at("AT+WSHEAD=0", OK);
    assert!(store_header(&mut at, &header));
}

#[test]
fn a_server_that_floods_pings_and_never_reads_cannot_grow_the_modem() {
    let peer = ScriptedPeer::start(|mut tcp, _| async move {
        accept_upgrade(&mut tcp).await;
        // Whole frames back to back; writing resumes where a partial write stopped.
        let batch: Vec<u8> = (0..512).flat_map(|_| server_frame(0x9, true, &[b'p'; 125])).collect();
        let until = Instant::now() + PING_FLOOD + Duration::from_secs(3);
        let mut at = 0;
        while Instant::now() < until {
            // A write that times out wrote nothing (tokio's write is cancel safe).
            match tokio::time::timeout(Duration::from_millis(50), tcp.write(&batch[at..])).await {
                Ok(Ok(n)) => at = (at + n) % batch.len(),
                Ok(Err(_)) => return, // the modem is gone
                Err(_) => {}
            }
        }
    });
    let modem = modem_tcp(FAST);
    let mut at = modem.connect();
    at.at(
        &format!("AT+WSOPEN=0,\"{}\"", peer.uri()),
        "+WS_CONNECTED:0\r\n\r\nOK\r\n",
    );
    let mut rss = Vec::new();
    for _ in 0..PING_FLOOD.as_secs() {
        thread::sleep(Duration::from_secs(1));
        rss.push(modem.memory_kib().0);
    }
    eprintln!("ping flood: VmRSS each second {rss:?} KiB");
    assert_bounded(&modem, "after the ping flood");
    // Flat once the first second has filled the bounded buffers: a leak slower than the
    // bound above still shows here.
    let growth = rss[rss.len() - 1].saturating_sub(rss[0]);
    assert!(
        growth < 8 * 1024,
        "the modem grew by {growth} KiB while flooded: {rss:?} KiB"
    );
    // Pings are not reported (FIRMWARE.md §8.5) and the link is still there.
    at.at("AT+WSOPEN?", format!("+WSOPEN:0,2,\"{}\"\r\n\r\nOK\r\n", peer.uri()));
}
