//! Harness for the end-to-end tests of `wsat modem` (tests/modem_tcp.rs, tests/modem_pty.rs).
//!
//! * [`Modem`]: the `wsat` binary as a child process (`wsat modem --tcp 127.0.0.1:0` or
//!   `--pty --link PATH`), killed on drop; its stderr is collected and printed when a test fails.
//! * [`AtClient`]: the host side of the AT port (TCP or the pty opened by path). Every read has a
//!   deadline; [`AtClient::expect`] compares exact bytes and shows both sides `escape_ascii`d.
//! * [`Peer`]: a scripted WebSocket server on plain threads (accept the upgrade, record the
//!   request, send any frame, die mid-frame, never answer a ping…).
//! * [`EchoPeer`]: wsat's in-process echo server (ws or wss) on a small tokio runtime.
//!
//! Tests assert the firmware's bytes (shared/spec/esp-at-websocket.md), never loosely.

#![allow(dead_code)] // each test binary uses its own subset

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The deadline of a single expectation (a response, a URC).
pub const STEP: Duration = Duration::from_secs(5);

/// Short firmware timings so that failure paths and reconnects take milliseconds, not seconds.
pub const FAST: &[&str] = &[
    "--reconnect-delay-ms",
    "300",
    "--open-error-delay-ms",
    "200",
    "--network-timeout-ms",
    "2000",
];

/// The firmware's power-on banner, sent to every new TCP client.
pub const READY: &[u8] = b"\r\nready\r\n";
/// Result strings (spec §1.2).
pub const OK: &[u8] = b"\r\nOK\r\n";
pub const ERROR: &[u8] = b"\r\nERROR\r\n";
pub const SEND_OK: &[u8] = b"\r\nSEND OK\r\n";
pub const PROMPT: &[u8] = b"\r\nOK\r\n\r\n>";
pub const BUSY: &[u8] = b"\r\nbusy p...\r\n";

// ---------------------------------------------------------------------------------------------
// The modem process

/// A running `wsat modem`, killed and reaped on drop.
pub struct Modem {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// The TCP address of the AT port (`--tcp`).
    pub tcp: Option<SocketAddr>,
    /// The pty device (`--pty`), e.g. `/dev/pts/7`.
    pub pty: Option<PathBuf>,
}

impl Modem {
    /// `wsat modem --tcp 127.0.0.1:0 ARGS…`, once it listens (logging at `RUST_LOG=debug`).
    pub fn tcp(args: &[&str]) -> Modem {
        Self::tcp_logging(args, "debug")
    }

    /// [`Modem::tcp`] with `RUST_LOG=rust_log` (e.g. `trace`).
    pub fn tcp_logging(args: &[&str], rust_log: &str) -> Modem {
        let mut modem = Self::spawn(&["--tcp", "127.0.0.1:0"], args, rust_log);
        let line = modem.wait_for_banner_line();
        let addr = line
            .strip_prefix("wsat modem: AT port on tcp://")
            .unwrap_or_else(|| modem.fail(&format!("unexpected listening line {line:?}")));
        modem.tcp = Some(addr.trim().parse().expect("a socket address"));
        modem
    }

    /// `wsat modem --pty --link LINK ARGS…`, once the pty exists.
    pub fn pty(link: &Path, args: &[&str]) -> Modem {
        let link_arg = link.to_str().expect("a UTF-8 path");
        let mut modem = Self::spawn(&["--pty", "--link", link_arg], args, "debug");
        let line = modem.wait_for_banner_line();
        let rest = line
            .strip_prefix("wsat modem: AT port on ")
            .unwrap_or_else(|| modem.fail(&format!("unexpected pty line {line:?}")));
        let expected_tail = format!(" (linked from {})", link.display());
        let dev = rest
            .trim_end()
            .strip_suffix(&expected_tail)
            .unwrap_or_else(|| modem.fail(&format!("pty line {line:?} does not end with {expected_tail:?}")));
        modem.pty = Some(PathBuf::from(dev));
        modem
    }

    fn spawn(transport: &[&str], args: &[&str], rust_log: &str) -> Modem {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsat"))
            .arg("modem")
            .args(transport)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run the wsat binary");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Modem {
            child,
            stderr,
            stderr_reader: Some(stderr_reader),
            tcp: None,
            pty: None,
        }
    }

    /// The `wsat modem: AT port on …` line, within 10 s.
    fn wait_for_banner_line(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.stderr().lines().find(|l| l.starts_with("wsat modem: AT port on ")) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("the modem exited before listening ({status})"));
            }
            if Instant::now() > deadline {
                self.fail("the modem did not announce its AT port within 10 s");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the modem wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- modem stderr ---\n{}", self.stderr())
    }

    /// The modem's resident memory in KiB from `/proc/PID/status`: `(VmRSS, VmHWM)`, i.e. now
    /// and the peak since it started (the peak catches growth between two samples).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_else(|e| self.fail(&format!("cannot read the modem's /proc status: {e}")));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| self.fail(&format!("no {name} in /proc status")))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Panics if the modem process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!("the modem process died ({status})"));
        }
    }

    /// A new TCP AT client; asserts that the first bytes are the boot banner `\r\nready\r\n`.
    /// Retries while the previous client is still being detached (the modem refuses a second
    /// client by closing it without a banner).
    pub fn connect(&self) -> AtClient {
        let addr = self.tcp.expect("a --tcp modem");
        let deadline = Instant::now() + STEP;
        loop {
            let stream = TcpStream::connect(addr).expect("connect to the AT port");
            stream.set_nodelay(true).expect("nodelay");
            let mut client = AtClient::new(Box::new(TcpIo(stream)), "tcp AT client");
            match client.wait_for_first_bytes(Duration::from_millis(500)) {
                Some(true) => {
                    client.expect(READY);
                    return client;
                }
                // Refused (closed at once) or nothing yet: the old client is still attached.
                _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => self.fail("no AT client was accepted (no \\r\\nready\\r\\n banner) within 5 s"),
            }
        }
    }

    /// A raw TCP connection to the AT port, without reading anything.
    pub fn connect_raw(&self) -> AtClient {
        let stream = TcpStream::connect(self.tcp.expect("a --tcp modem")).expect("connect to the AT port");
        stream.set_nodelay(true).expect("nodelay");
        AtClient::new(Box::new(TcpIo(stream)), "second tcp AT client")
    }
}

impl Drop for Modem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if thread::panicking() {
            eprintln!(
                "--- wsat modem stderr ---\n{}--- end of modem stderr ---",
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The AT client

/// One blocking read with a bound.
trait AtIo: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// `Ok(Some(0))` = end of stream, `Ok(Some(n))` = n bytes, `Ok(None)` = nothing within `wait`.
    fn read_some(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>>;
}

struct TcpIo(TcpStream);

impl AtIo for TcpIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn read_some(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
        self.0.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.0.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }
}

/// The pty's host side in raw mode with VMIN=0, VTIME=1: a read returns what is there, or
/// nothing after 0.1 s. (A pty whose other side the modem holds never reports end of stream.)
struct PtyIo(File);

impl AtIo for PtyIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    fn read_some(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + wait;
        loop {
            match self.0.read(buf) {
                Ok(0) => {}
                Ok(n) => return Ok(Some(n)),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

/// Opens the pty (or the symlink to it) like a host program would: read+write, no controlling
/// terminal, raw mode.
pub fn open_pty(path: &Path) -> AtClient {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, SpecialCharacterIndices};
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut attrs = tcgetattr(&file).expect("tcgetattr on the pty");
    cfmakeraw(&mut attrs);
    attrs.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
    attrs.control_chars[SpecialCharacterIndices::VTIME as usize] = 1;
    tcsetattr(&file, SetArg::TCSANOW, &attrs).expect("tcsetattr on the pty");
    AtClient::new(Box::new(PtyIo(file)), "pty AT client")
}

/// The host side of the AT port. Bytes that arrived but were not yet consumed by an
/// expectation stay buffered for the next one.
pub struct AtClient {
    io: Box<dyn AtIo>,
    buf: Vec<u8>,
    eof: bool,
    name: &'static str,
    /// Everything received so far (for the trace test).
    pub received: Vec<u8>,
    /// Everything sent so far (for the trace test).
    pub sent: Vec<u8>,
}

impl AtClient {
    fn new(io: Box<dyn AtIo>, name: &'static str) -> AtClient {
        AtClient {
            io,
            buf: Vec::new(),
            eof: false,
            name,
            received: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Writes `bytes` in one write.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.sent.extend_from_slice(bytes);
        self.io
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// Sends `cmd` + CR LF and expects the echo of the line followed by exactly `response`.
    pub fn at(&mut self, cmd: &str, response: impl AsRef<[u8]>) {
        self.send(format!("{cmd}\r\n"));
        let mut expected = format!("{cmd}\r\n").into_bytes();
        expected.extend_from_slice(response.as_ref());
        self.expect(expected);
    }

    /// Reads one arrival into the buffer; false if nothing came within `wait`.
    fn fill(&mut self, wait: Duration) -> bool {
        if self.eof {
            thread::sleep(wait.min(Duration::from_millis(20)));
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.io.read_some(&mut chunk, wait) {
            Ok(Some(0)) => {
                self.eof = true;
                false
            }
            Ok(Some(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(None) => false,
            Err(e) => panic!("{}: read failed: {e}", self.name),
        }
    }

    /// `Some(true)` once a byte is there, `Some(false)` on end of stream, `None` on timeout.
    fn wait_for_first_bytes(&mut self, wait: Duration) -> Option<bool> {
        let deadline = Instant::now() + wait;
        while self.buf.is_empty() {
            if self.eof {
                return Some(false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.fill(left);
        }
        Some(true)
    }

    /// Whether the modem closed the connection (reads until end of stream, at most `wait`).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.eof && Instant::now() < deadline {
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        self.eof
    }

    /// Reads until exactly `expected` has arrived (within [`STEP`]) and consumes it.
    pub fn expect(&mut self, expected: impl AsRef<[u8]>) {
        self.expect_within(expected, STEP);
    }

    /// [`AtClient::expect`] with its own deadline.
    pub fn expect_within(&mut self, expected: impl AsRef<[u8]>, within: Duration) {
        let expected = expected.as_ref();
        let deadline = Instant::now() + within;
        loop {
            let n = self.buf.len().min(expected.len());
            if self.buf[..n] != expected[..n] {
                // Collect a little more so the failure shows what came instead.
                let more = Instant::now() + Duration::from_millis(300);
                while Instant::now() < more {
                    self.fill(more.saturating_duration_since(Instant::now()));
                }
                panic!("{}: wrong bytes\n{}", self.name, diff(expected, &self.buf));
            }
            if n == expected.len() {
                self.buf.drain(..n);
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: timed out after {within:?}{}\n{}",
                    self.name,
                    if self.eof {
                        " (the modem closed the connection)"
                    } else {
                        ""
                    },
                    diff(expected, &self.buf)
                );
            }
            self.fill(left);
        }
    }

    /// Expects the concatenation of `parts` in any order (for output whose order the firmware
    /// does not fix, e.g. `SEND OK` and the server's echo, spec §13.1). Each part exactly once.
    pub fn expect_any_order(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let got = self.take(total, STEP);
        if !is_permutation(&got, parts) {
            let shown: Vec<String> = parts.iter().map(|p| p.escape_ascii().to_string()).collect();
            panic!(
                "{}: expected these parts in any order: {shown:#?}\n     got: \"{}\"",
                self.name,
                got.escape_ascii()
            );
        }
    }

    /// Expects `sequence` (in this order) with `floating` inserted at exactly one of its part
    /// boundaries (e.g. `+WS_DATA` chunks of one frame with `SEND OK` anywhere around them).
    pub fn expect_with_floating(&mut self, sequence: &[&[u8]], floating: &[u8]) {
        let total = sequence.iter().map(|p| p.len()).sum::<usize>() + floating.len();
        let got = self.take(total, STEP);
        let candidates: Vec<Vec<u8>> = (0..=sequence.len())
            .map(|at| {
                let mut v = Vec::with_capacity(total);
                for (i, part) in sequence.iter().enumerate() {
                    if i == at {
                        v.extend_from_slice(floating);
                    }
                    v.extend_from_slice(part);
                }
                if at == sequence.len() {
                    v.extend_from_slice(floating);
                }
                v
            })
            .collect();
        if !candidates.contains(&got) {
            panic!(
                "{}: expected {:?} interleaved at a part boundary\n{}",
                self.name,
                floating.escape_ascii().to_string(),
                diff(&candidates[sequence.len()], &got)
            );
        }
    }

    /// Exactly `n` bytes (within `within`), consumed.
    pub fn take(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: timed out waiting for {n} bytes; got {}: \"{}\"",
                    self.name,
                    self.buf.len(),
                    self.buf.escape_ascii()
                );
            }
            self.fill(left);
        }
        self.buf.drain(..n).collect()
    }

    /// Reads until `pattern` has arrived; returns everything up to and including it.
    pub fn read_until(&mut self, pattern: impl AsRef<[u8]>, within: Duration) -> Vec<u8> {
        let pattern = pattern.as_ref();
        let deadline = Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.windows(pattern.len()).position(|w| w == pattern) {
                return self.buf.drain(..pos + pattern.len()).collect();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: \"{}\" did not arrive within {within:?}; got \"{}\"",
                    self.name,
                    pattern.escape_ascii(),
                    self.buf.escape_ascii()
                );
            }
            self.fill(left);
        }
    }

    /// Asserts that nothing (more) arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline && self.buf.is_empty() {
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        if !self.buf.is_empty() {
            panic!(
                "{}: expected silence for {quiet:?}, got \"{}\"",
                self.name,
                self.buf.escape_ascii()
            );
        }
    }

    /// Reads and returns everything until nothing arrives for `quiet` (bounded by 30 s).
    pub fn drain(&mut self, quiet: Duration) -> Vec<u8> {
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            if !self.fill(quiet) || Instant::now() > limit {
                return std::mem::take(&mut self.buf);
            }
        }
    }
}

/// Whether `got` is the concatenation of all `parts` in some order.
fn is_permutation(got: &[u8], parts: &[&[u8]]) -> bool {
    if parts.is_empty() {
        return got.is_empty();
    }
    parts.iter().enumerate().any(|(i, p)| {
        got.starts_with(p) && {
            let rest: Vec<&[u8]> = parts
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, q)| *q)
                .collect();
            is_permutation(&got[p.len()..], &rest)
        }
    })
}

/// Expected vs got, escaped; long values are cut around the first difference.
pub fn diff(expected: &[u8], got: &[u8]) -> String {
    let first = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    let window = |b: &[u8]| -> String {
        if b.len() <= 400 {
            return format!("\"{}\"", b.escape_ascii());
        }
        let start = first.saturating_sub(120);
        let end = (first + 200).min(b.len());
        format!(
            "({} bytes) …[{start}..{end}]: \"{}\"…",
            b.len(),
            b[start.min(b.len())..end.max(start.min(b.len()))].escape_ascii()
        )
    };
    format!(
        "expected: {}\n     got: {}\n(first difference at byte {first})",
        window(expected),
        window(got)
    )
}

// ---------------------------------------------------------------------------------------------
// Peers

/// A scripted WebSocket server on 127.0.0.1: `handler(stream, n)` runs on its own thread for
/// the n-th accepted connection (0, 1, …). Stops accepting when dropped.
pub struct Peer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    pub fn spawn<F>(handler: F) -> Peer
    where
        F: Fn(TcpStream, usize) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("bound");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        tcp.set_nonblocking(false).expect("blocking stream");
                        tcp.set_nodelay(true).expect("nodelay");
                        // No scripted connection outlives a test by much.
                        tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
                        let n = accepted2.fetch_add(1, Ordering::AcqRel);
                        let handler = handler.clone();
                        thread::spawn(move || handler(tcp, n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("scripted peer: accept failed: {e}"),
                }
            }
        });
        Peer {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT`
    pub fn uri(&self) -> String {
        format!("ws://127.0.0.1:{}", self.addr.port())
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the client's upgrade request, answers `101`, and returns the raw request head.
pub fn ws_accept(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(req)) = wsat_proto::handshake::parse_request(&buf) {
            let resp = wsat_proto::handshake::accept_response(&req.key, None);
            tcp.write_all(&resp).expect("write 101");
            assert_eq!(buf.len(), req.head_len, "the client sent frames before the 101");
            return buf;
        }
        let n = tcp.read(&mut chunk).expect("read the upgrade request");
        assert!(n > 0, "the client left during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An unmasked server frame.
pub fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let op = wsat_proto::OpCode::new(opcode).expect("opcode 0..15");
    wsat_proto::encode::encode_frame(&mut out, op, fin, None, payload);
    out
}

/// One frame from the client (masked), decoded independently of wsat's own decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Reads one client frame; `None` at end of stream or on a read error/timeout.
pub fn read_client_frame(tcp: &mut TcpStream) -> Option<ClientFrame> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).ok()?;
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        tcp.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    tcp.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(ClientFrame {
        fin,
        opcode,
        masked,
        payload,
    })
}

/// Reads and discards until the client closes (or 30 s pass); answers nothing, not even pings.
pub fn hold(tcp: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
}

/// wsat's in-process echo server (ws, or wss with `tls`) on its own tokio runtime.
pub struct EchoPeer {
    addr: SocketAddr,
    tls: bool,
    _rt: tokio::runtime::Runtime,
}

impl EchoPeer {
    pub fn ws() -> EchoPeer {
        Self::start(None)
    }

    pub fn wss(config: Arc<rustls::ServerConfig>) -> EchoPeer {
        Self::start(Some(config))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> EchoPeer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let is_tls = tls.is_some();
        let addr = rt.block_on(async {
            let server = wsat::echo_server::EchoServer::bind("127.0.0.1:0", tls)
                .await
                .expect("bind the echo server");
            let addr = server.local_addr().expect("bound");
            server.spawn();
            addr
        });
        EchoPeer {
            addr,
            tls: is_tls,
            _rt: rt,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT` or `wss://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }
}

/// A `--pki` folder by the firmware's file names, from a generated PKI:
/// CA #0 = `other_ca` (signs nothing the servers use), CA #1 = `ca`,
/// client #0 = `client` (signed by `ca`), client #1 = `other_client` (signed by `other_ca`).
pub fn firmware_pki_dir(pki: &wsat_testkit::TestPki) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        ("wss_ca_00.crt", &pki.other_ca.cert_pem),
        ("wss_ca_01.crt", &pki.ca.cert_pem),
        ("wss_client_00.crt", &pki.client.cert_pem),
        ("wss_client_00.key", &pki.client.key_pem),
        ("wss_client_01.crt", &pki.other_client.cert_pem),
        ("wss_client_01.key", &pki.other_client.key_pem),
    ];
    for (name, pem) in files {
        std::fs::write(dir.path().join(name), pem).expect("write PKI file");
    }
    dir
}

/// A wss echo server presenting `cert`; with `client_ca`, a client certificate is required.
pub fn wss_echo(cert: &wsat_testkit::Credential, client_ca: Option<&wsat_testkit::Credential>) -> EchoPeer {
    let config = wsat::tls_server::server_config(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        client_ca.map(|c| c.cert_pem.as_bytes()),
    )
    .expect("server TLS config");
    EchoPeer::wss(config)
}

/// A port on 127.0.0.1 where nothing listens (bound a moment ago, then released).
pub fn closed_port() -> u16 {
    wsat_testkit::free_port()
}

/// A small deterministic generator (xorshift64*), for reproducible junk input.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[3]).collect()
    }
}

/// `n` payload bytes with a recognisable, position-dependent pattern (`a`..`z`, then `A`..`Z`,
/// then digits, cycling), so misordered chunks show.
pub fn pattern(n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|i| ALPHABET[(i * 7 + i / 61) % ALPHABET.len()]).collect()
}

/// `+WS_DATA:<link>,<len>,<data>\r\n` (spec §8.5).
pub fn ws_data(link: usize, data: &[u8]) -> Vec<u8> {
    let mut v = format!("+WS_DATA:{link},{},", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// Waits until `f` holds (polling), failing after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A channel pair for a scripted peer to report what it saw.
pub fn report<T>() -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
    mpsc::channel()
}
