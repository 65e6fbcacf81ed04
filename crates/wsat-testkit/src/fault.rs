//! A fault-injection WebSocket server for the fault matrix (tests/faults.rs, docs/FAULTS.md).
//!
//! [`FaultPeer::start`] binds `127.0.0.1:0` and serves the n-th accepted connection with the
//! n-th [`Fault`] of its plan (the last entry repeats), so a row can say "die mid-frame, then
//! behave" to watch a reconnect. It runs on a one-worker tokio runtime of its own, so the
//! synchronous modem tests (the AT harness blocks) and the async client tests use it alike;
//! dropping the peer stops it and every connection it holds.
//!
//! It speaks real WebSocket through wsat-proto: [`crate::peer::read_request`] and
//! `accept_response` for the upgrade, a [`Connection`] in the server role for what the client
//! sends (unmasking, automatic pongs, the closing handshake), [`crate::frames`] for the frames
//! it scripts. Every complete frame the client sends is reported, in order, with the number of
//! the connection it came on ([`FaultPeer::frame`], [`FaultPeer::next_frame`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsat_proto::handshake::{accept_response, reject_response, ServerRequest};
use wsat_proto::{Connection, ConnectionConfig, ConnectionState, Event, MessageAssembler, OpCode, Role};

use crate::frames::{frame_header, server_frame};
use crate::peer::read_request;

/// What the peer does with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listens: the listener is closed before this connection could be accepted, so
    /// the connect is refused (ECONNREFUSED), and every later one too.
    Refuse,
    /// Reads the upgrade request and never answers it; holds TCP until the client leaves.
    HangBefore101,
    /// Answers `101` with a `Sec-WebSocket-Accept` computed for another key.
    BadAccept,
    /// Answers the upgrade with this HTTP status (`Content-Length: 0`).
    Status(u16),
    /// Answers `302 Found` with a `Location` pointing at the request's own target, forever.
    RedirectLoop,
    /// Upgrades, sends the header and the first half of a text frame carrying [`MID_FRAME`],
    /// then closes TCP (FIN) without a close frame.
    CloseMidFrame,
    /// Upgrades, waits for the client's first data frame, then resets TCP (RST, `SO_LINGER` 0).
    Reset,
    /// Upgrades and never reads again: the client's writes stall once the socket buffers
    /// are full (backpressure).
    StopReading,
    /// Upgrades and reads everything, answering nothing: no pong, no close.
    NeverPong,
    /// Upgrades, sends a close frame with this code and [`CLOSE_REASON`] (or an empty close
    /// frame for `None`), waits for the client's close frame, then closes TCP.
    CloseWith(Option<u16>),
    /// Writes the `101` answer and then a text frame of [`split_payload`]`(n)` one byte per
    /// write, flushing after each; then echoes.
    SplitEveryByte(usize),
    /// Upgrades, waits for one data frame from the client (a "go"), then sends one binary
    /// frame of this many bytes made of [`huge_block`]s; then echoes.
    Huge(u64),
    /// Upgrades and sends a text message in three fragments ([`FRAGMENTS`]) with a ping
    /// ([`PINGS`]) after each of the first two; each next fragment leaves only once the
    /// client's pong for the previous ping has arrived. Then echoes.
    PingsInsideFragments,
    /// Upgrades and echoes every message (whole, as one frame), answering pings and close.
    Echo,
}

/// A complete frame the client sent, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The connection it came on: 0 for the first accepted, 1 for the next…
    pub conn: usize,
    /// The frame's opcode.
    pub opcode: u8,
    /// Its FIN bit.
    pub fin: bool,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The reason [`Fault::CloseWith`] puts after its code.
pub const CLOSE_REASON: &str = "bye";
/// The payload of the text frame [`Fault::CloseMidFrame`] sends half of.
pub const MID_FRAME: &[u8] = b"0123456789";
/// The fragments of [`Fault::PingsInsideFragments`]: text (no FIN), continuation (no FIN),
/// continuation (FIN).
pub const FRAGMENTS: [&[u8]; 3] = [b"frag-1 ", b"frag-2 ", b"frag-3"];
/// The ping payloads of [`Fault::PingsInsideFragments`], after the first and second fragment.
pub const PINGS: [&[u8]; 2] = [b"p1", b"p2"];
/// The block size [`Fault::Huge`] builds its frame from.
pub const HUGE_BLOCK: usize = 8192;

/// The longest the peer waits for anything from a client (it is also stopped with its test).
const PEER_WAIT: Duration = Duration::from_secs(30);

/// Block `k` of a [`Fault::Huge`] frame: a fixed byte pattern whose first 8 bytes are `k`
/// (little endian), so a lost, repeated or reordered block shows.
pub fn huge_block(k: u64) -> Vec<u8> {
    let mut block: Vec<u8> = (0..HUGE_BLOCK).map(|i| (i * 31 % 251) as u8).collect();
    block[..8].copy_from_slice(&k.to_le_bytes());
    block
}

/// The text [`Fault::SplitEveryByte`] sends: `n` ASCII letters in a position-dependent cycle.
pub fn split_payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + i / 26) % 26) as u8).collect()
}

/// The fault-injection server; see the module documentation.
pub struct FaultPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    frames: Arc<Mutex<mpsc::Receiver<Seen>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl FaultPeer {
    /// Starts serving `plan`: connection n gets `plan[n]`, or the last entry past the end.
    pub fn start(plan: &[Fault]) -> FaultPeer {
        assert!(!plan.is_empty(), "a plan needs at least one fault");
        let plan: Arc<Vec<Fault>> = Arc::new(plan.to_vec());
        let fault_for = move |n: usize| plan[n.min(plan.len() - 1)].clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the fault peer's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (report, frames) = mpsc::channel();
        if fault_for(0) == Fault::Refuse {
            // Closed before anybody could connect: connects are refused.
            drop(listener);
        } else {
            listener.set_nonblocking(true).expect("nonblocking listener");
            let accepted = accepted.clone();
            rt.spawn(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                for n in 0.. {
                    let Ok((tcp, _)) = listener.accept().await else { return };
                    accepted.fetch_add(1, Ordering::AcqRel);
                    tokio::spawn(serve(tcp, n, fault_for(n), report.clone()));
                    if fault_for(n + 1) == Fault::Refuse {
                        // Dropping the listener closes the port for good.
                        return;
                    }
                }
            });
        }
        FaultPeer {
            addr,
            accepted,
            frames: Arc::new(Mutex::new(frames)),
            rt: Some(rt),
        }
    }

    /// `ws://127.0.0.1:PORT`
    pub fn uri(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// The next frame the client sent (blocking), failing the test after `within`.
    pub fn frame(&self, within: Duration) -> Seen {
        recv_frame(&self.frames, within)
    }

    /// [`FaultPeer::frame`] for async tests: waits on a blocking thread, not on the runtime.
    pub async fn next_frame(&self, within: Duration) -> Seen {
        let frames = self.frames.clone();
        tokio::task::spawn_blocking(move || recv_frame(&frames, within))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

impl Drop for FaultPeer {
    fn drop(&mut self) {
        // Does not block, so it is fine inside an async test too.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn recv_frame(frames: &Mutex<mpsc::Receiver<Seen>>, within: Duration) -> Seen {
    let frames = frames.lock().unwrap_or_else(|p| p.into_inner());
    frames
        .recv_timeout(within)
        .unwrap_or_else(|e| panic!("the fault peer got no frame from the client within {within:?} ({e})"))
}

/// One server frame (unmasked).
fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    server_frame(opcode.value(), fin, payload)
}

/// Runs `fault` on one accepted connection.
async fn serve(mut tcp: TcpStream, n: usize, fault: Fault, report: mpsc::Sender<Seen>) {
    let _ = tcp.set_nodelay(true);
    let Some((req, leftover)) = read_upgrade(&mut tcp).await else {
        return;
    };
    let answer = match &fault {
        // Never accepted (see FaultPeer::start).
        Fault::Refuse => return,
        Fault::HangBefore101 => {
            drain(&mut tcp).await;
            return;
        }
        // The RFC 6455 sample key's accept value: right length, wrong key.
        Fault::BadAccept => accept_response("dGhlIHNhbXBsZSBub25jZQ==", None),
        Fault::Status(code) => reject_response(*code, "Fault Injected"),
        Fault::RedirectLoop => format!(
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
            req.target
        )
        .into_bytes(),
        _ => accept_response(&req.key, None),
    };
    if let Fault::SplitEveryByte(_) = fault {
        if write_bytewise(&mut tcp, &answer).await.is_err() {
            return;
        }
    } else if tcp.write_all(&answer).await.is_err() {
        return;
    }
    if matches!(fault, Fault::BadAccept | Fault::Status(_) | Fault::RedirectLoop) {
        drain(&mut tcp).await;
        return;
    }
    let mut s = Session::new(tcp, n, report, &leftover);
    match fault {
        // Done above: these never upgrade.
        Fault::Refuse | Fault::HangBefore101 | Fault::BadAccept | Fault::Status(_) | Fault::RedirectLoop => {}
        Fault::CloseMidFrame => {
            let whole = frame(OpCode::TEXT, true, MID_FRAME);
            let half = whole.len() - MID_FRAME.len() / 2;
            if s.tcp.write_all(&whole[..half]).await.is_ok() {
                let _ = s.tcp.shutdown().await;
            }
        }
        Fault::Reset => {
            if s.pump(Reply::Nothing, |f| OpCode::from_bits(f.opcode).is_data()).await {
                // SO_LINGER 0 turns the close into an RST. (Deprecated in tokio because a
                // non-zero linger blocks on drop; zero does not.)
                #[allow(deprecated)]
                let _ = s.tcp.set_linger(Some(Duration::ZERO));
                drop(s);
            }
        }
        Fault::StopReading => {
            // Holds the connection, unread, until the peer is dropped.
            std::future::pending::<()>().await;
        }
        Fault::NeverPong => {
            s.pump(Reply::Nothing, |_| false).await;
        }
        Fault::CloseWith(code) => {
            s.conn
                .close(code, if code.is_some() { CLOSE_REASON } else { "" }, Instant::now());
            // Ends once the client's close frame has arrived (state Closed) or TCP ends.
            s.pump(Reply::Control, |_| false).await;
        }
        Fault::SplitEveryByte(len) => {
            let message = frame(OpCode::TEXT, true, &split_payload(len));
            if write_bytewise(&mut s.tcp, &message).await.is_ok() {
                s.pump(Reply::All, |_| false).await;
            }
        }
        Fault::Huge(len) => {
            if s.pump(Reply::Control, |f| OpCode::from_bits(f.opcode).is_data()).await
                && write_huge(&mut s.tcp, len).await.is_ok()
            {
                s.pump(Reply::All, |_| false).await;
            }
        }
        Fault::PingsInsideFragments => {
            for (i, part) in FRAGMENTS.iter().enumerate() {
                let opcode = if i == 0 { OpCode::TEXT } else { OpCode::CONTINUATION };
                let mut bytes = frame(opcode, i + 1 == FRAGMENTS.len(), part);
                let ping = PINGS.get(i);
                if let Some(ping) = ping {
                    bytes.extend(frame(OpCode::PING, true, ping));
                }
                if s.tcp.write_all(&bytes).await.is_err() {
                    return;
                }
                if let Some(ping) = ping {
                    let pong = |f: &Seen| f.opcode == OpCode::PONG.value() && f.payload == *ping;
                    if !s.pump(Reply::Control, pong).await {
                        return;
                    }
                }
            }
            s.pump(Reply::All, |_| false).await;
        }
        Fault::Echo => {
            s.pump(Reply::All, |_| false).await;
        }
    }
}

/// Reads the upgrade request (waiting at most [`PEER_WAIT`]); returns it and the bytes that
/// followed it.
async fn read_upgrade(tcp: &mut TcpStream) -> Option<(ServerRequest, Vec<u8>)> {
    let request = tokio::time::timeout(PEER_WAIT, read_request(tcp)).await.ok()??;
    Some((request.upgrade()?, request.after))
}

/// Reads and discards until the client leaves (at most [`PEER_WAIT`]).
async fn drain(tcp: &mut TcpStream) {
    let _ = tokio::time::timeout(PEER_WAIT, crate::peer::drain(tcp)).await;
}

/// One byte per write, flushed, yielding in between.
async fn write_bytewise(tcp: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    for b in bytes {
        tcp.write_all(std::slice::from_ref(b)).await?;
        tcp.flush().await?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// One binary frame of `len` bytes made of [`huge_block`]s, written 64 KiB at a time.
async fn write_huge(tcp: &mut TcpStream, len: u64) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(64 * 1024 + 16);
    out.extend(frame_header(OpCode::BINARY.value(), true, None, len));
    let mut left = len;
    let mut k = 0u64;
    while left > 0 {
        let block = huge_block(k);
        let take = block.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.extend_from_slice(&block[..take]);
        left -= take as u64;
        k += 1;
        if out.len() >= 64 * 1024 || left == 0 {
            tcp.write_all(&out).await?;
            out.clear();
        }
    }
    tcp.flush().await
}

/// What the peer writes back while it pumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Nothing at all (no pong, no close answer, no echo).
    Nothing,
    /// Pongs and the closing handshake, no echo.
    Control,
    /// Pongs, the closing handshake, and every message echoed.
    All,
}

/// An upgraded connection, read through a server-role [`Connection`].
struct Session {
    tcp: TcpStream,
    conn: Connection,
    n: usize,
    report: mpsc::Sender<Seen>,
    frame: Vec<u8>,
    messages: MessageAssembler,
}

impl Session {
    fn new(tcp: TcpStream, n: usize, report: mpsc::Sender<Seen>, leftover: &[u8]) -> Session {
        let config = ConnectionConfig {
            // The modem sends what the firmware sends; the peer records, it does not judge.
            strict: false,
            ..ConnectionConfig::rfc(Role::Server)
        };
        let mut conn = Connection::new(config, Instant::now());
        conn.read_buf().extend_from_slice(leftover);
        Session {
            tcp,
            conn,
            n,
            report,
            frame: Vec::new(),
            messages: MessageAssembler::new(),
        }
    }

    /// Reads, reports every complete client frame and replies per `reply`, until a reported
    /// frame satisfies `until` (`true`, after writing the replies due) or the connection
    /// ends: closing handshake done, TCP closed, an error (`false`).
    async fn pump(&mut self, reply: Reply, mut until: impl FnMut(&Seen) -> bool) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        self.conn.process(Instant::now());
        loop {
            let mut done = false;
            while let Some(ev) = self.conn.poll_event() {
                let Event::Data(chunk) = ev else { continue };
                self.frame.extend_from_slice(&chunk.data);
                if reply == Reply::All {
                    if let Some(msg) = self.messages.push(&chunk) {
                        let _ = self.conn.send_frame(msg.opcode, true, &msg.payload);
                    }
                }
                if chunk.ends_frame() {
                    let seen = Seen {
                        conn: self.n,
                        opcode: chunk.opcode.value(),
                        fin: chunk.fin,
                        payload: std::mem::take(&mut self.frame),
                    };
                    let _ = self.report.send(seen.clone());
                    done |= until(&seen);
                }
            }
            while let Some(bytes) = self.conn.poll_transmit() {
                if reply != Reply::Nothing && self.tcp.write_all(&bytes).await.is_err() {
                    return false;
                }
            }
            if done {
                return true;
            }
            if matches!(self.conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
                let _ = self.tcp.shutdown().await;
                return false;
            }
            match tokio::time::timeout(PEER_WAIT, self.tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.conn.handle_bytes(&buf[..n], Instant::now()),
                _ => return false,
            }
        }
    }
}
