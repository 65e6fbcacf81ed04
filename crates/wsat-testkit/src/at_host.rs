//! The host end of an AT port, as the MCU drives the chip: what the end-to-end tests and
//! `wsat-bench --modem` share.
//!
//! * [`AtClient`]: the port itself (a TCP AT port, a pty opened by path in raw mode, a child's
//!   stdin and stdout, any tty), every read bounded by poll(2). Tests use its exact-bytes API ([`AtClient::at`],
//!   [`AtClient::expect`], …: a mismatch fails the test showing both sides `escape_ascii`d);
//!   the bench uses its event API ([`AtClient::pump`], [`AtClient::command`]), which returns
//!   errors instead.
//! * [`AtStream`] / [`AtEvent`]: the modem's output cut into lines, prompts and `+WS_DATA`
//!   chunks (pure, no I/O), and [`EchoCheck`]: every echoed byte is the byte that was sent.
//! * The firmware's fixed strings ([`READY`], [`OK`], …) and [`ws_data`].
//!
//! The stream grammar is the firmware's (docs/FIRMWARE.md §1.2, §1.7, §1.8,
//! §8.5): result codes and URCs are CR LF terminated lines, the data prompt is a bare `>`
//! (no CR LF after it), and `+WS_DATA:<link>,<len>,<bytes>\r\n` carries `len` raw bytes that
//! may themselves contain CR LF, `>` or anything else, so it is cut by its length, never by a
//! terminator.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The deadline of a single expectation of the exact-bytes API (a response, a URC).
pub const STEP: Duration = Duration::from_secs(5);

/// The firmware's power-on banner, sent at start and to every new TCP client.
pub const READY: &[u8] = b"\r\nready\r\n";
/// The result of a command that succeeded (FIRMWARE.md §1.2).
pub const OK: &[u8] = b"\r\nOK\r\n";
/// The result of a command that failed (FIRMWARE.md §1.2).
pub const ERROR: &[u8] = b"\r\nERROR\r\n";
/// The result of a payload sent by AT+WSSEND (FIRMWARE.md §7).
pub const SEND_OK: &[u8] = b"\r\nSEND OK\r\n";
/// OK and the data prompt of AT+WSSEND / AT+WSHEAD (FIRMWARE.md §1.7).
pub const PROMPT: &[u8] = b"\r\nOK\r\n\r\n>";
/// The answer to input while a command runs (FIRMWARE.md §1.6).
pub const BUSY: &[u8] = b"\r\nbusy p...\r\n";

/// `+WS_DATA:<link>,<len>,<data>\r\n` (FIRMWARE.md §8.5).
pub fn ws_data(link: usize, data: &[u8]) -> Vec<u8> {
    let mut v = format!("+WS_DATA:{link},{},", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// A line of the answer to `AT+WSOPEN?`: `+WSOPEN:<link>,<state>,"<uri>"\r\n` (FIRMWARE.md §6.2).
pub fn wsopen_line(link: usize, state: u8, uri: &str) -> String {
    format!("+WSOPEN:{link},{state},\"{uri}\"\r\n")
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

// ---------------------------------------------------------------------------------------------
// The modem's output as events

/// What the modem said, one piece at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtEvent {
    /// A CR LF terminated line without its CR LF (`OK`, `SEND OK`, `+WS_CONNECTED:0`,
    /// an echoed command…). Empty lines (the CR LF around result codes) are skipped.
    Line(String),
    /// The data prompt `>` of AT+WSSEND / AT+WSHEAD: the payload may be written now.
    Prompt,
    /// One `+WS_DATA` URC: a chunk of a message received on `link`.
    Data {
        /// The link id.
        link: usize,
        /// The chunk's bytes (`<data_len>` of them).
        bytes: Vec<u8>,
    },
}

impl AtEvent {
    /// The event for an error message: a line quoted, a chunk by its size.
    pub fn describe(&self) -> String {
        match self {
            AtEvent::Line(l) => format!("{l:?}"),
            AtEvent::Prompt => "> prompt".to_owned(),
            AtEvent::Data { link, bytes } => format!("+WS_DATA on link {link} ({} bytes)", bytes.len()),
        }
    }
}

/// The URC prefix of received data.
const DATA_PREFIX: &[u8] = b"+WS_DATA:";
/// `+WS_DATA:` + two decimal numbers and their commas never take more than this.
const MAX_DATA_HEAD: usize = DATA_PREFIX.len() + 24;
/// A longer line without CR LF means the stream is not what the firmware writes.
const MAX_LINE: usize = 64 * 1024;
/// The firmware never reports a chunk larger than its 8 KiB buffer (16 KiB on master).
const MAX_DATA_LEN: usize = 1 << 20;

/// Cuts the modem's output into [`AtEvent`]s. Feed arrivals with [`AtStream::push`] in
/// whatever pieces the transport delivers, take events with [`AtStream::next_event`] (or
/// raw bytes with [`AtStream::unread`] and [`AtStream::consume`]).
#[derive(Debug, Default)]
pub struct AtStream {
    buf: Vec<u8>,
    pos: usize,
}

impl AtStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes that arrived from the modem.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed but not yet returned as an event or consumed.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes pushed but not yet returned or consumed.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Drops the first `n` unread bytes (at most [`AtStream::pending`]).
    pub fn consume(&mut self, n: usize) {
        self.pos += n.min(self.pending());
    }

    /// The next complete event, `Ok(None)` if more bytes are needed, or an error if the
    /// stream cannot be what a modem writes (a malformed `+WS_DATA` head, a huge line).
    pub fn next_event(&mut self) -> anyhow::Result<Option<AtEvent>> {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.is_empty() || rest == b"\r" {
                return Ok(None);
            }
            if rest.starts_with(b"\r\n") {
                self.pos += 2;
                continue;
            }
            if rest[0] == b'>' {
                self.pos += 1;
                return Ok(Some(AtEvent::Prompt));
            }
            if rest.len() < DATA_PREFIX.len() && DATA_PREFIX.starts_with(rest) {
                return Ok(None);
            }
            if rest.starts_with(DATA_PREFIX) {
                return self.data();
            }
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                ensure!(
                    rest.len() <= MAX_LINE,
                    "more than {MAX_LINE} bytes from the modem without CR LF"
                );
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&rest[..end]).into_owned();
            self.pos += end + 2;
            return Ok(Some(AtEvent::Line(line)));
        }
    }

    /// `+WS_DATA:<link>,<len>,<len bytes>\r\n` at the current position.
    fn data(&mut self) -> anyhow::Result<Option<AtEvent>> {
        let rest = &self.buf[self.pos..];
        let head = &rest[DATA_PREFIX.len()..rest.len().min(MAX_DATA_HEAD)];
        let mut commas = head.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i);
        let (Some(c1), Some(c2)) = (commas.next(), commas.next()) else {
            ensure!(
                rest.len() < MAX_DATA_HEAD,
                "malformed +WS_DATA head {:?}",
                String::from_utf8_lossy(head)
            );
            return Ok(None);
        };
        let number = |digits: &[u8]| -> Option<usize> {
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse().ok()
        };
        let (Some(link), Some(len)) = (number(&head[..c1]), number(&head[c1 + 1..c2])) else {
            bail!("malformed +WS_DATA head {:?}", String::from_utf8_lossy(&head[..=c2]));
        };
        ensure!(len <= MAX_DATA_LEN, "+WS_DATA announces {len} bytes");
        let start = DATA_PREFIX.len() + c2 + 1;
        if rest.len() < start + len + 2 {
            return Ok(None);
        }
        ensure!(
            &rest[start + len..start + len + 2] == b"\r\n",
            "+WS_DATA:{link},{len} is not followed by CR LF after its {len} bytes"
        );
        let bytes = rest[start..start + len].to_vec();
        self.pos += start + len + 2;
        Ok(Some(AtEvent::Data { link, bytes }))
    }
}

/// The bytes sent on one link and not yet echoed: every echoed chunk must be exactly the
/// next bytes sent (the echo server and the link keep order), so a lost, duplicated or
/// altered byte is an error, never a figure.
#[derive(Debug, Default)]
pub struct EchoCheck {
    pending: VecDeque<u8>,
    echoed: u64,
}

impl EchoCheck {
    /// Nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records bytes written to the link (before the echo can arrive).
    pub fn sent(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
    }

    /// Checks an echoed chunk against what was sent and consumes it.
    pub fn received(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        ensure!(
            chunk.len() <= self.pending.len(),
            "{} bytes echoed but only {} in flight (after {} good bytes)",
            chunk.len(),
            self.pending.len(),
            self.echoed
        );
        if let Some(i) = self.pending.iter().zip(chunk).position(|(a, b)| a != b) {
            bail!(
                "echoed byte {} differs: sent {:#04x}, got {:#04x}",
                self.echoed + i as u64,
                self.pending[i],
                chunk[i]
            );
        }
        self.pending.drain(..chunk.len());
        self.echoed += chunk.len() as u64;
        Ok(())
    }

    /// Bytes sent and not echoed yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes echoed correctly so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }
}

// ---------------------------------------------------------------------------------------------
// The port

/// A byte stream with a file descriptor to poll for reading: a TCP socket, a tty, a child's
/// pipes.
trait PortIo: Read + Write + AsFd + Send {
    /// Ends the host's output (the modem reads end of input) while reading goes on.
    fn close_input(&mut self) -> io::Result<()>;
}

impl PortIo for TcpStream {
    fn close_input(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl PortIo for File {
    fn close_input(&mut self) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a tty has no end of input"))
    }
}

/// A child's stdin (the modem's input) and stdout (its output), as one port.
struct ChildPipes {
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Read for ChildPipes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for ChildPipes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stdin {
            Some(stdin) => stdin.write(buf),
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the input was closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl AsFd for ChildPipes {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }
}

impl PortIo for ChildPipes {
    fn close_input(&mut self) -> io::Result<()> {
        self.stdin = None;
        Ok(())
    }
}

/// What one bounded read brought.
enum Arrival {
    /// Bytes (pushed into the stream).
    Bytes,
    /// Nothing within the wait.
    Nothing,
    /// End of stream: the modem closed the port (or the pty's other side is gone).
    Closed,
}

/// The host end of an AT port; see the module documentation. Bytes that arrived but were not
/// yet consumed by an expectation (or returned as an event) stay buffered for the next one.
pub struct AtClient {
    io: Box<dyn PortIo>,
    stream: AtStream,
    chunk: Vec<u8>,
    eof: bool,
    name: String,
    /// Everything received so far.
    pub received: Vec<u8>,
    /// Everything sent so far.
    pub sent: Vec<u8>,
}

impl AtClient {
    /// A TCP AT port at `addr`; `name` labels its failures.
    pub fn connect_tcp(addr: SocketAddr, name: &str) -> anyhow::Result<AtClient> {
        let stream = TcpStream::connect_timeout(&addr, STEP)
            .with_context(|| format!("connecting to the AT port tcp://{addr}"))?;
        stream.set_nodelay(true)?;
        Ok(AtClient::new(Box::new(stream), name))
    }

    /// Opens the pty (or the symlink to it) at `path` like a host program would: read+write,
    /// not as the controlling terminal, raw mode (binary payloads, no echo, no CR/LF mapping).
    pub fn open_pty(path: &Path) -> anyhow::Result<AtClient> {
        Ok(AtClient::new(Box::new(open_raw_pty(path)?), "pty AT client"))
    }

    /// The AT port on a child's stdin and stdout (`wsat modem --stdio`); both must be piped.
    pub fn stdio(child: &mut Child) -> AtClient {
        let pipes = ChildPipes {
            stdin: Some(child.stdin.take().expect("the child's stdin is piped")),
            stdout: child.stdout.take().expect("the child's stdout is piped"),
        };
        AtClient::new(Box::new(pipes), "stdio AT client")
    }

    /// The AT port on a tty the caller opened and set up (e.g. the master side of a pty pair
    /// whose slave the modem opened as a serial device).
    pub fn tty(file: File, name: &str) -> AtClient {
        AtClient::new(Box::new(file), name)
    }

    fn new(io: Box<dyn PortIo>, name: &str) -> AtClient {
        AtClient {
            io,
            stream: AtStream::new(),
            chunk: vec![0; 64 * 1024],
            eof: false,
            name: name.to_owned(),
            received: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Ends the host's output, as a host that detaches its side of a pipe or socket: the modem
    /// reads end of input; its output can still be read. Panics on a tty (it has no such end).
    pub fn close_input(&mut self) {
        if let Err(e) = self.io.close_input() {
            panic!("{}: cannot close the input: {e}", self.name);
        }
    }

    /// Whether the modem closed the port (seen by a read so far).
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    /// One read, bounded by `wait` (poll(2) first, so neither transport blocks longer).
    fn read_once(&mut self, wait: Duration) -> io::Result<Arrival> {
        if self.eof {
            std::thread::sleep(wait.min(Duration::from_millis(20)));
            return Ok(Arrival::Closed);
        }
        let timeout = PollTimeout::try_from(wait.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.io.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) | Ok(0) => return Ok(Arrival::Nothing),
            Err(e) => return Err(io::Error::from(e)),
            Ok(_) => {}
        }
        let n = match self.io.read(&mut self.chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                return Ok(Arrival::Nothing)
            }
            // A reset TCP port, or a pty whose other side is gone (EIO): the port is closed.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset || e.raw_os_error() == Some(Errno::EIO as i32) => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
            return Ok(Arrival::Closed);
        }
        self.stream.push(&self.chunk[..n]);
        self.received.extend_from_slice(&self.chunk[..n]);
        Ok(Arrival::Bytes)
    }

    /// Reads one arrival into the buffer; false if nothing came within `wait`. Panics on a
    /// read error.
    fn fill(&mut self, wait: Duration) -> bool {
        match self.read_once(wait) {
            Ok(Arrival::Bytes) => true,
            Ok(_) => false,
            Err(e) => panic!("{}: read failed: {e}", self.name),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The exact-bytes API of the tests: every mismatch panics.

    /// Writes `bytes` in one write.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        if let Err(e) = self.write(bytes) {
            panic!("{}: {e:#}", self.name);
        }
    }

    /// Sends `cmd` + CR LF and expects the echo of the line followed by exactly `response`.
    pub fn at(&mut self, cmd: &str, response: impl AsRef<[u8]>) {
        self.send(format!("{cmd}\r\n"));
        let mut expected = format!("{cmd}\r\n").into_bytes();
        expected.extend_from_slice(response.as_ref());
        self.expect(expected);
    }

    /// `AT+WSOPEN=<link>,"<uri>"` answered `+WS_CONNECTED:<link>` then OK (FIRMWARE.md §6.1).
    pub fn open(&mut self, link: usize, uri: &str) {
        self.at(
            &format!("AT+WSOPEN={link},\"{uri}\""),
            format!("+WS_CONNECTED:{link}\r\n\r\nOK\r\n"),
        );
    }

    /// `AT+WSOPEN` that fails after the connection attempt: `+WS_DISCONNECTED:<link>` then
    /// ERROR (FIRMWARE.md §6.1).
    pub fn open_fails(&mut self, link: usize, uri: &str) {
        self.at(
            &format!("AT+WSOPEN={link},\"{uri}\""),
            format!("+WS_DISCONNECTED:{link}\r\n\r\nERROR\r\n"),
        );
    }

    /// `AT+WSSEND=<link>,<n>`, the prompt, the payload, then `SEND OK` and the server's echo
    /// in either order (FIRMWARE.md §13.1: the echo may come first).
    pub fn send_and_echo(&mut self, link: usize, payload: &[u8]) {
        self.at(&format!("AT+WSSEND={link},{}", payload.len()), PROMPT);
        self.send(payload);
        self.expect_any_order(&[SEND_OK, &ws_data(link, payload)]);
    }

    /// `Some(true)` once a byte is there, `Some(false)` on end of stream, `None` if nothing
    /// came within `wait`.
    pub fn wait_for_first_bytes(&mut self, wait: Duration) -> Option<bool> {
        let deadline = Instant::now() + wait;
        while self.stream.pending() == 0 {
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
            let got = self.stream.unread();
            let n = got.len().min(expected.len());
            if got[..n] != expected[..n] {
                // Collect a little more so the failure shows what came instead.
                let more = Instant::now() + Duration::from_millis(300);
                while Instant::now() < more {
                    self.fill(more.saturating_duration_since(Instant::now()));
                }
                panic!("{}: wrong bytes\n{}", self.name, diff(expected, self.stream.unread()));
            }
            if n == expected.len() {
                self.stream.consume(n);
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
                    diff(expected, self.stream.unread())
                );
            }
            self.fill(left);
        }
    }

    /// Expects the concatenation of `parts` in any order (for output whose order the firmware
    /// does not fix, e.g. `SEND OK` and the server's echo, FIRMWARE.md §13.1). Each part exactly once.
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

    /// Expects `parts` one after the other (each whole, within [`STEP`] in all), with any
    /// number of the `ignored` pieces (whole URCs such as `+WS_DISCONNECTED:0\r\n`, which
    /// come at their own pace) before, between and after them; returns how many were skipped.
    /// Only whole pieces are skipped, so a part must not itself be cut by a URC: the modem
    /// writes each response piece whole. An awaited part is matched before an ignored one.
    pub fn expect_ignoring(&mut self, parts: &[&[u8]], ignored: &[&[u8]]) -> usize {
        self.expect_parts_ignoring(parts, true, ignored)
    }

    /// [`AtClient::expect_ignoring`] with `parts` in any order, each exactly once.
    pub fn expect_any_order_ignoring(&mut self, parts: &[&[u8]], ignored: &[&[u8]]) -> usize {
        self.expect_parts_ignoring(parts, false, ignored)
    }

    fn expect_parts_ignoring(&mut self, parts: &[&[u8]], ordered: bool, ignored: &[&[u8]]) -> usize {
        let deadline = Instant::now() + STEP;
        let mut awaited: Vec<&[u8]> = parts.to_vec();
        let mut skipped = 0;
        while !awaited.is_empty() {
            let got = self.stream.unread();
            let candidates = if ordered { &awaited[..1] } else { &awaited[..] };
            if let Some(i) = candidates.iter().position(|p| got.starts_with(p)) {
                let n = awaited.remove(i).len();
                self.stream.consume(n);
                continue;
            }
            if let Some(p) = ignored.iter().find(|p| !p.is_empty() && got.starts_with(p)) {
                self.stream.consume(p.len());
                skipped += 1;
                continue;
            }
            let undecided = candidates.iter().chain(ignored).any(|p| p.starts_with(got));
            if !undecided {
                let more = Instant::now() + Duration::from_millis(300);
                while Instant::now() < more {
                    self.fill(more.saturating_duration_since(Instant::now()));
                }
                panic!(
                    "{}: wrong bytes; awaited {} {:?} (ignoring {:?})\n     got: \"{}\"",
                    self.name,
                    if ordered { "in order" } else { "in any order" },
                    awaited.iter().map(|p| p.escape_ascii().to_string()).collect::<Vec<_>>(),
                    ignored.iter().map(|p| p.escape_ascii().to_string()).collect::<Vec<_>>(),
                    self.stream.unread().escape_ascii()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: timed out after {STEP:?}; awaited {:?}\n     got: \"{}\"",
                    self.name,
                    awaited.iter().map(|p| p.escape_ascii().to_string()).collect::<Vec<_>>(),
                    self.stream.unread().escape_ascii()
                );
            }
            self.fill(left);
        }
        skipped
    }

    /// Exactly `n` bytes (within `within`), consumed.
    pub fn take(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.stream.pending() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: timed out waiting for {n} bytes; got {}: \"{}\"",
                    self.name,
                    self.stream.pending(),
                    self.stream.unread().escape_ascii()
                );
            }
            self.fill(left);
        }
        let got = self.stream.unread()[..n].to_vec();
        self.stream.consume(n);
        got
    }

    /// Reads until `pattern` has arrived; returns everything up to and including it.
    pub fn read_until(&mut self, pattern: impl AsRef<[u8]>, within: Duration) -> Vec<u8> {
        let pattern = pattern.as_ref();
        let deadline = Instant::now() + within;
        loop {
            if let Some(pos) = self.stream.unread().windows(pattern.len()).position(|w| w == pattern) {
                return self.take(pos + pattern.len(), Duration::ZERO);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{}: \"{}\" did not arrive within {within:?}; got \"{}\"",
                    self.name,
                    pattern.escape_ascii(),
                    self.stream.unread().escape_ascii()
                );
            }
            self.fill(left);
        }
    }

    /// Asserts that nothing (more) arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline && self.stream.pending() == 0 {
            self.fill(deadline.saturating_duration_since(Instant::now()));
        }
        if self.stream.pending() != 0 {
            panic!(
                "{}: expected silence for {quiet:?}, got \"{}\"",
                self.name,
                self.stream.unread().escape_ascii()
            );
        }
    }

    /// Reads and returns everything until nothing arrives for `quiet` (bounded by 30 s).
    pub fn drain(&mut self, quiet: Duration) -> Vec<u8> {
        let limit = Instant::now() + Duration::from_secs(30);
        while self.fill(quiet) && Instant::now() <= limit {}
        let n = self.stream.pending();
        self.take(n, Duration::ZERO)
    }

    // -----------------------------------------------------------------------------------------
    // The event API of the bench: errors are returned, never panicked.

    /// Writes all of `bytes` (and flushes).
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.sent.extend_from_slice(bytes);
        self.io
            .write_all(bytes)
            .and_then(|()| self.io.flush())
            .context("writing to the AT port")
    }

    /// Hands the modem's events to `f` until it returns `true`; an error from `f`, from the
    /// port or the deadline passing (`what` says what was awaited) ends the wait.
    pub fn pump(
        &mut self,
        deadline: Instant,
        what: &str,
        mut f: impl FnMut(AtEvent) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        loop {
            while let Some(ev) = self.stream.next_event()? {
                if f(ev)? {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("no {what} from the modem in time");
            }
            match self.read_once(deadline - now).context("reading the AT port")? {
                Arrival::Closed => bail!("the AT port was closed by the modem"),
                Arrival::Bytes | Arrival::Nothing => {}
            }
        }
    }

    /// Sends `cmd` (CR LF added) and returns the lines before its `OK`; `ERROR` (or
    /// `busy p...`) is an error carrying them.
    pub fn command(&mut self, cmd: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        self.write(format!("{cmd}\r\n").as_bytes())?;
        let mut lines = Vec::new();
        let mut failed = false;
        self.pump(Instant::now() + timeout, &format!("answer to {cmd}"), |ev| match ev {
            AtEvent::Line(l) if l == "OK" => Ok(true),
            AtEvent::Line(l) => {
                failed = l == "ERROR" || l.starts_with("busy");
                lines.push(l);
                Ok(failed)
            }
            other => bail!("{cmd}: unexpected {}", other.describe()),
        })?;
        ensure!(!failed, "{cmd} failed: {}", lines.join(" | "));
        Ok(lines)
    }
}

/// The pty at `path` opened read+write, not as the controlling terminal, in raw mode, with
/// blocking reads (VMIN 1, VTIME 0) that [`AtClient`] bounds with poll(2).
fn open_raw_pty(path: &Path) -> anyhow::Result<File> {
    use nix::fcntl::OFlag;
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, SpecialCharacterIndices};
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(path)
        .with_context(|| format!("opening the modem's pty {}", path.display()))?;
    let mut attrs = tcgetattr(&file).context("tcgetattr on the pty")?;
    cfmakeraw(&mut attrs);
    attrs.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    attrs.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    tcsetattr(&file, SetArg::TCSANOW, &attrs).context("tcsetattr on the pty")?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::payload;

    fn all(stream: &mut AtStream) -> Vec<AtEvent> {
        let mut out = Vec::new();
        while let Some(ev) = stream.next_event().expect("well formed") {
            out.push(ev);
        }
        out
    }

    fn line(s: &str) -> AtEvent {
        AtEvent::Line(s.to_owned())
    }

    #[test]
    fn a_send_transcript_in_one_piece() {
        let mut s = AtStream::new();
        s.push(b"\r\nready\r\nATE0\r\n\r\nOK\r\n\r\nOK\r\n\r\n>\r\nSEND OK\r\n+WS_DATA:0,4,te\r\n\r\n");
        assert_eq!(
            all(&mut s),
            [
                line("ready"),
                line("ATE0"),
                line("OK"),
                line("OK"),
                AtEvent::Prompt,
                line("SEND OK"),
                AtEvent::Data {
                    link: 0,
                    bytes: b"te\r\n".to_vec()
                },
            ]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let mut body = payload(7, 300);
        body.extend_from_slice(b"\r\n>+WS_DATA:9,9,");
        let mut wire = b"\r\nOK\r\n\r\n>+WS_DATA:2,".to_vec();
        wire.extend_from_slice(format!("{},", body.len()).as_bytes());
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"\r\n+WS_DISCONNECTED:1\r\n\r\nSEND OK\r\n");
        let expected = vec![
            line("OK"),
            AtEvent::Prompt,
            AtEvent::Data {
                link: 2,
                bytes: body.clone(),
            },
            line("+WS_DISCONNECTED:1"),
            line("SEND OK"),
        ];
        for cut in 0..=wire.len() {
            let mut s = AtStream::new();
            s.push(&wire[..cut]);
            let mut got = all(&mut s);
            s.push(&wire[cut..]);
            got.extend(all(&mut s));
            assert_eq!(got, expected, "cut at {cut}");
        }
        // Byte by byte.
        let mut s = AtStream::new();
        let mut got = Vec::new();
        for b in &wire {
            s.push(std::slice::from_ref(b));
            got.extend(all(&mut s));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn ws_disconnected_is_not_taken_for_data() {
        let mut s = AtStream::new();
        s.push(b"+WS_D");
        assert_eq!(s.next_event().unwrap(), None);
        s.push(b"ISCONNECTED:0\r\n+WS_DATA:1,0,\r\n");
        assert_eq!(
            all(&mut s),
            [
                line("+WS_DISCONNECTED:0"),
                AtEvent::Data {
                    link: 1,
                    bytes: Vec::new()
                }
            ]
        );
    }

    #[test]
    fn malformed_data_heads_are_errors() {
        for bad in [
            &b"+WS_DATA:x,4,abcd\r\n"[..],
            b"+WS_DATA:0,-4,abcd\r\n",
            b"+WS_DATA:0,4,abcdXY",
            b"+WS_DATA:0,99999999,",
            b"+WS_DATA:000000000000000000000000000000000",
        ] {
            let mut s = AtStream::new();
            s.push(bad);
            assert!(s.next_event().is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        let mut s = AtStream::new();
        s.push(&vec![b'x'; MAX_LINE + 1]);
        assert!(s.next_event().is_err());
    }

    #[test]
    fn raw_bytes_and_events_share_the_stream() {
        let mut s = AtStream::new();
        s.push(b"AT\r\n\r\nOK\r\n+WS_DATA:0,2,hi\r\n");
        assert_eq!(s.unread(), b"AT\r\n\r\nOK\r\n+WS_DATA:0,2,hi\r\n");
        s.consume(4);
        assert_eq!(
            all(&mut s),
            [
                line("OK"),
                AtEvent::Data {
                    link: 0,
                    bytes: b"hi".to_vec()
                }
            ]
        );
    }

    #[test]
    fn echo_check_accepts_order_and_rejects_the_rest() {
        let mut c = EchoCheck::new();
        c.sent(b"hello");
        c.sent(b"world");
        c.received(b"hel").unwrap();
        c.received(b"lowo").unwrap();
        assert_eq!((c.in_flight(), c.echoed()), (3, 7));
        let e = c.received(b"rlX").unwrap_err().to_string();
        assert!(e.contains("byte 9"), "{e}");
        let mut c = EchoCheck::new();
        c.sent(b"ab");
        assert!(c.received(b"abc").is_err());
    }

    #[test]
    fn parts_in_any_order() {
        assert!(is_permutation(b"abcd", &[b"cd", b"ab"]));
        assert!(!is_permutation(b"abcd", &[b"cd", b"a"]));
        assert_eq!(ws_data(2, b"x\r\n"), b"+WS_DATA:2,3,x\r\n\r\n");
    }

    /// An AT client reading `pieces` from a local TCP peer that writes them one by one.
    fn client_reading(pieces: &'static [&'static [u8]]) -> (AtClient, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("bound");
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            tcp.set_nodelay(true).expect("nodelay");
            for piece in pieces {
                tcp.write_all(piece).expect("write");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        (AtClient::connect_tcp(addr, "test client").expect("connect"), server)
    }

    #[test]
    fn expect_ignoring_skips_whole_urcs_around_and_between_the_parts() {
        // A URC split across two writes is still recognised before it is skipped.
        let (mut at, server) = client_reading(&[
            b"+WS_DISCONNECTED:0\r\nAT\r\n+WS_DISC",
            b"ONNECTED:1\r\n+WS_DISCONNECTED:0\r\n\r\nOK\r\n+WS_CONNECTED:1\r\n",
            b"+WS_DISCONNECTED:0\r\n+WS_CONNECTED:0\r\nrest",
        ]);
        let (d0, d1): (&[u8], &[u8]) = (b"+WS_DISCONNECTED:0\r\n", b"+WS_DISCONNECTED:1\r\n");
        assert_eq!(at.expect_ignoring(&[b"AT\r\n", OK], &[d0, d1]), 3);
        assert_eq!(
            at.expect_any_order_ignoring(&[b"+WS_CONNECTED:0\r\n", b"+WS_CONNECTED:1\r\n"], &[d0]),
            1
        );
        at.expect("rest");
        server.join().expect("the server thread");
    }

    #[test]
    #[should_panic(expected = "wrong bytes")]
    fn expect_ignoring_fails_on_anything_else() {
        let (mut at, _server) = client_reading(&[b"+WS_DISCONNECTED:0\r\n+WS_CLOSED:0\r\n\r\nOK\r\n"]);
        at.expect_ignoring(&[OK], &[b"+WS_DISCONNECTED:0\r\n"]);
    }

    #[test]
    fn the_client_reads_a_tcp_port_with_deadlines() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("bound");
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            tcp.write_all(b"\r\nready\r\n").expect("write");
            let mut line = [0u8; 4];
            tcp.read_exact(&mut line).expect("read");
            assert_eq!(&line, b"AT\r\n");
            tcp.write_all(b"AT\r\n\r\nOK\r\n").expect("write");
        });
        let mut at = AtClient::connect_tcp(addr, "test client").expect("connect");
        at.expect(READY);
        at.at("AT", OK);
        assert!(at.closed_within(STEP));
        assert_eq!((at.sent.as_slice(), at.received.len()), (&b"AT\r\n"[..], 19));
        server.join().expect("the server thread");
    }
}
