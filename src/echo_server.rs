//! An echo server on wsat-proto's server role: every text or binary message comes back
//! with its type, like the seed examples' `ws-server.py` and `wss-server.py`.
//!
//! It faces peers it cannot trust, so what they can take is bounded ([`EchoOptions`]): a
//! deadline on everything before the upgrade completes, a connection limit, and a bound on
//! the echoes one connection may leave unread. The accept loop backs off instead of
//! spinning when it runs out of descriptors, and logs such failures at most once a second.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use wsat_proto::handshake::{accept_response, parse_request, reject_response};
use wsat_proto::{ChunkPolicy, Connection, ConnectionConfig, ConnectionState, Event, MessageAssembler, Role};

/// The largest message echoed; longer ones close the connection with 1009.
pub const MAX_MESSAGE: usize = 64 << 20;
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The default [`EchoOptions::handshake_timeout`]: ample for a TLS handshake and an upgrade
/// over a slow link, short enough that idle half-open connections do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`EchoOptions::max_connections`]: half the common soft limit of 1,024
/// descriptors (see there why it must stay below the limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The default [`EchoOptions::max_queued_bytes`]: 4 MiB, a few round trips of any
/// realistic echo pipeline, small beside the 64 MiB a single message may take.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;

/// The accept loop's first pause after a failure that repeats at once (out of
/// descriptors or memory); it doubles with each further failure up to
/// [`ACCEPT_BACKOFF_MAX`] and starts over after a successful accept.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line this often for accept failures, and one for the connection limit.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
/// How long a new connection waits for the slot of the handshake closed to make room.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// Limits that keep peers, one or many, from exhausting the server. `Default` gives the
/// `DEFAULT_*` constants; [`echo_with`] and [`EchoServer::with_options`] take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoOptions {
    /// How long a connection may take from its TCP accept to a completed upgrade, the TLS
    /// handshake included; then it is closed. Without it, a peer that sends half a request
    /// (or no ClientHello) holds a descriptor and a slot forever. An upgraded connection has
    /// no deadline. `Duration::MAX` (or anything beyond 30 years) means 30 years.
    pub handshake_timeout: Duration,
    /// At most this many connections at once, in their handshake or upgraded. At the limit a
    /// new connection takes the slot of the oldest connection still in its handshake, which
    /// is closed, so peers that never finish an upgrade cannot lock others out; when every
    /// slot holds an upgraded connection the new one is closed at once (a plain `ws` one
    /// after a `503` if its socket takes it without waiting).
    ///
    /// Each connection holds one descriptor. The default, [`DEFAULT_MAX_CONNECTIONS`], stays
    /// well below the common soft limit of 1,024 (`ulimit -n`), leaving room for the
    /// runtime, the listener and stdio: at the limit `accept` still gets descriptors, so
    /// extra connections are answered and closed at once rather than left to queue while
    /// `accept` fails with EMFILE. Raise it only together with the descriptor limit. With 0
    /// every connection is refused.
    pub max_connections: usize,
    /// Per connection, reading stops while more than this many bytes of echoes wait to be
    /// written, and resumes as the peer reads them: a peer that sends and never reads meets
    /// TCP backpressure instead of growing the server. Writing goes on meanwhile, so nothing
    /// deadlocks on the server's side.
    ///
    /// The bound is checked before each read, so one connection holds about this much plus
    /// one message (up to [`MAX_MESSAGE`], the one that crossed the bound or is being
    /// assembled) plus one socket read (64 KiB); for a moment, while a message is copied into
    /// its echo frame, that message twice. With 0, a connection reads only once all its
    /// echoes are written.
    pub max_queued_bytes: usize,
}

impl Default for EchoOptions {
    fn default() -> Self {
        EchoOptions {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

/// A bound, not yet running echo server.
pub struct EchoServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    options: EchoOptions,
}

impl EchoServer {
    /// Binds to `addr`; with `tls`, every connection is wss. The options are the defaults
    /// until [`EchoServer::with_options`].
    pub async fn bind(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        Ok(EchoServer {
            listener: TcpListener::bind(addr).await?,
            tls: tls.map(TlsAcceptor::from),
            options: EchoOptions::default(),
        })
    }

    /// The same server with `options` in force.
    pub fn with_options(mut self, options: EchoOptions) -> Self {
        self.options = options;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &EchoOptions {
        &self.options
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections, within the limits of [`EchoServer::options`], until the task is
    /// dropped or aborted; each connection runs on its own task and a failing one never
    /// stops the server (connections outlive a stopped server).
    pub async fn run(self) {
        let mut slots = Slots::new(self.options.max_connections);
        let mut backoff = Backoff::new();
        let mut failures = LogLimiter::new(LOG_INTERVAL);
        let mut at_limit = LogLimiter::new(LOG_INTERVAL);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    after_accept_failure(&e, &mut backoff, &mut failures).await;
                    continue;
                }
            };
            backoff.reset();
            report_held_back(&mut failures, "accept failures");
            let deadline = deadline_after(self.options.handshake_timeout);
            match slots.claim().await {
                Claim::Free(slot) => {
                    report_held_back(&mut at_limit, "connections at the limit");
                    self.spawn_connection(tcp, peer, slot, deadline);
                }
                Claim::MadeRoom(slot) => {
                    let action = format_args!("closed the oldest connection in its handshake for {peer}");
                    self.log_at_limit(&mut at_limit, action);
                    self.spawn_connection(tcp, peer, slot, deadline);
                }
                Claim::Full => {
                    turn_away(tcp, self.tls.is_none());
                    let action = format_args!("every connection is upgraded; refused {peer}");
                    self.log_at_limit(&mut at_limit, action);
                }
            }
        }
    }

    /// Runs the server on a task of its own.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Logs (at most once per [`LOG_INTERVAL`]) what the connection limit made the server do.
    fn log_at_limit(&self, log: &mut LogLimiter, action: std::fmt::Arguments<'_>) {
        if let Some(held_back) = log.admit(Instant::now()) {
            let limit = self.options.max_connections;
            let note = held_back_note(held_back, "more connections at the limit");
            tracing::warn!("connection limit ({limit}) reached: {action}{note}");
        }
    }

    fn spawn_connection(&self, tcp: TcpStream, peer: SocketAddr, slot: Slot, deadline: Instant) {
        let tls = self.tls.clone();
        let max_queued = self.options.max_queued_bytes;
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, tls, slot, deadline, max_queued).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// Logs a failed accept (at most once per [`LOG_INTERVAL`]) and, unless the failure was
/// the connection's own, pauses before the next one: out of descriptors, `accept` would
/// fail again at once, forever, while the pending connection waits in the backlog.
async fn after_accept_failure(e: &io::Error, backoff: &mut Backoff, log: &mut LogLimiter) {
    let pause = (!is_connection_error(e)).then(|| backoff.failure());
    if let Some(held_back) = log.admit(Instant::now()) {
        let retry = pause.map_or_else(|| "; retrying".to_owned(), |p| format!("; retrying in {p:?}"));
        tracing::warn!(
            "accept failed: {e}{retry}{}",
            held_back_note(held_back, "more failures")
        );
    }
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
}

/// A failure of the one connection being accepted (it is gone; the next accept may
/// succeed at once), not of the server.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Logs how many events `log` held back, if any, so a storm that ended is accounted for.
fn report_held_back(log: &mut LogLimiter, what: &str) {
    let held_back = log.take_held_back();
    if held_back > 0 {
        tracing::warn!("{held_back} {what} not logged since the last report");
    }
}

/// `" (N <what> since the last report)"`, or nothing for 0.
fn held_back_note(held_back: u64, what: &str) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!(" ({held_back} {what} since the last report)")
    }
}

/// The accept loop's pause after each failure in a row: [`ACCEPT_BACKOFF_FIRST`],
/// doubling up to [`ACCEPT_BACKOFF_MAX`], back to the first after a success.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: ACCEPT_BACKOFF_FIRST,
        }
    }

    /// The pause after one more failure.
    fn failure(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    /// A success: the next failure pauses briefly again.
    fn reset(&mut self) {
        self.next = ACCEPT_BACKOFF_FIRST;
    }
}

/// Lets one event in per interval be logged and counts the others, so a storm of them
/// costs a line a second and the next line still says how many there were.
#[derive(Debug)]
struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimiter {
    fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// For an event at `now`: `Some(n)` to log it, `n` being how many events were held back
    /// since the last logged one; `None` to hold it back (it is counted).
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }

    /// The events held back so far, now counted as reported.
    fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

/// The connection limit: a permit per live connection, and, in accept order, a way to
/// close each connection that is still in its handshake.
#[derive(Debug)]
struct Slots {
    permits: Arc<Semaphore>,
    /// One sender per connection accepted, oldest first; a connection drops its receiver
    /// when its handshake ends, so the senders that can still be sent on are the
    /// connections that are still in their handshake.
    handshaking: VecDeque<oneshot::Sender<()>>,
    /// The length of `handshaking` at which the senders of finished handshakes are dropped:
    /// twice what was left last time, so pruning costs O(1) per connection.
    prune_at: usize,
}

/// What a connection holds while it lives: its share of the limit, and the signal that
/// closes it during its handshake to make room for a newer connection.
#[derive(Debug)]
struct Slot {
    permit: OwnedSemaphorePermit,
    evict: oneshot::Receiver<()>,
}

/// The smallest [`Slots::prune_at`].
const MIN_PRUNE_AT: usize = 64;

/// The outcome of [`Slots::claim`].
#[derive(Debug)]
enum Claim {
    /// A slot nobody held.
    Free(Slot),
    /// The slot of the oldest connection still in its handshake, which was told to close.
    MadeRoom(Slot),
    /// None: every slot holds an upgraded connection.
    Full,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            handshaking: VecDeque::new(),
            prune_at: MIN_PRUNE_AT,
        }
    }

    /// A slot for a new connection: a free one, else the oldest handshake's (that
    /// connection is closed for it), else none.
    async fn claim(&mut self) -> Claim {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Claim::Free(self.track(permit));
        }
        match self.evict_oldest_handshake().await {
            Some(permit) => Claim::MadeRoom(self.track(permit)),
            None => Claim::Full,
        }
    }

    /// A slot for `permit`, remembered as in its handshake until it drops its receiver.
    fn track(&mut self, permit: OwnedSemaphorePermit) -> Slot {
        if self.handshaking.len() >= self.prune_at {
            self.handshaking.retain(|h| !h.is_closed());
            self.prune_at = (2 * self.handshaking.len()).max(MIN_PRUNE_AT);
        }
        let (tx, evict) = oneshot::channel();
        self.handshaking.push_back(tx);
        Slot { permit, evict }
    }

    async fn evict_oldest_handshake(&mut self) -> Option<OwnedSemaphorePermit> {
        while let Some(oldest) = self.handshaking.pop_front() {
            if oldest.send(()).is_ok() {
                // The closed connection's task drops its permit as it ends; should it have
                // finished its handshake at that very moment, the wait times out instead.
                let freed = tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned());
                return freed.await.ok()?.ok();
            }
        }
        None
    }
}

/// Turns away a connection beyond the limit at once: a plain ws peer gets a `503` if its
/// socket takes it without waiting, then the connection is closed (dropped).
fn turn_away(tcp: TcpStream, plain: bool) {
    if plain {
        let _ = tcp.try_write(&reject_response(503, "Service Unavailable"));
    }
}

/// One accepted connection: TLS (if any) and the upgrade before `deadline`, unless evicted
/// first, then the echo loop.
async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    slot: Slot,
    deadline: Instant,
    max_queued: usize,
) -> io::Result<()> {
    let Slot { permit: _permit, evict } = slot;
    tcp.set_nodelay(true)?;
    match tls {
        None => echo_after(upgrade(tcp), deadline, Some(evict), max_queued).await,
        Some(acceptor) => {
            let opening = async move { upgrade(acceptor.accept(tcp).await?).await };
            echo_after(opening, deadline, Some(evict), max_queued).await
        }
    }
}

/// Runs the upgrade and the echo loop on one stream with the default [`EchoOptions`]: the
/// upgrade must complete within [`DEFAULT_HANDSHAKE_TIMEOUT`], and echoes queue up to
/// [`DEFAULT_MAX_QUEUED_BYTES`] (the connection limit is the server's business).
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> io::Result<()> {
    echo_with(stream, &EchoOptions::default()).await
}

/// [`echo`] with `options`: the upgrade must complete within `handshake_timeout` of this
/// call (else an error of kind `TimedOut`), and reading pauses while more than
/// `max_queued_bytes` of echoes wait to be written.
pub async fn echo_with<S: AsyncRead + AsyncWrite + Unpin>(stream: S, options: &EchoOptions) -> io::Result<()> {
    let deadline = deadline_after(options.handshake_timeout);
    echo_after(upgrade(stream), deadline, None, options.max_queued_bytes).await
}

/// The instant `timeout` from now; a timeout too long to represent is taken as 30 years.
fn deadline_after(timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    Instant::now() + timeout.min(FAR)
}

/// A stream whose upgrade completed, with the bytes that followed the request.
struct Upgraded<S> {
    stream: S,
    rest: BytesMut,
}

/// Runs `opening` until `deadline` (an error of kind `TimedOut` after it), or until
/// `evict` fires, then echoes on the upgraded stream.
async fn echo_after<S, F>(
    opening: F,
    deadline: Instant,
    evict: Option<oneshot::Receiver<()>>,
    max_queued: usize,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = io::Result<Option<Upgraded<S>>>>,
{
    let upgraded = tokio::select! {
        res = tokio::time::timeout_at(deadline.into(), opening) => {
            res.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timeout"))??
        }
        () = evicted(evict) => return Err(io::Error::other("closed in its handshake to make room")),
    };
    match upgraded {
        Some(Upgraded { stream, rest }) => echo_loop(stream, rest, max_queued).await,
        None => Ok(()),
    }
}

/// Completes when the accept loop closes this connection for a newer one; never without
/// that signal (a sender dropped with the server is no eviction).
async fn evicted(evict: Option<oneshot::Receiver<()>>) {
    let told = match evict {
        Some(rx) => rx.await.is_ok(),
        None => false,
    };
    if !told {
        std::future::pending::<()>().await;
    }
}

/// Reads the upgrade request and answers it: the upgraded stream, or `None` when the peer
/// left or was refused (400, 431).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<Option<Upgraded<S>>> {
    let mut buf = BytesMut::with_capacity(4096);
    let request = loop {
        match parse_request(&buf) {
            Ok(Some(req)) => break req,
            Ok(None) if buf.len() < MAX_REQUEST_HEAD => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(None);
                }
            }
            Ok(None) => {
                refuse(&mut stream, 431, "Request Header Fields Too Large").await?;
                return Ok(None);
            }
            Err(e) => {
                tracing::debug!("refusing upgrade: {e}");
                refuse(&mut stream, 400, "Bad Request").await?;
                return Ok(None);
            }
        }
    };
    stream.write_all(&accept_response(&request.key, None)).await?;
    stream.flush().await?;
    let _ = buf.split_to(request.head_len);
    Ok(Some(Upgraded { stream, rest: buf }))
}

/// Echoes every message on an upgraded stream; `rest` holds bytes read with the request.
async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(stream: S, rest: BytesMut, max_queued: usize) -> io::Result<()> {
    let config = ConnectionConfig {
        chunk_policy: ChunkPolicy::Eager,
        max_chunk: 1 << 20,
        max_message_len: Some(MAX_MESSAGE as u64),
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut conn = Connection::new(config, Instant::now());
    conn.read_buf().extend_from_slice(&rest);
    let mut assembler = MessageAssembler::new();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Outbox::default();
    loop {
        queue_echoes(&mut conn, &mut assembler);
        out.take_from(&mut conn);
        if matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
            return finish(&mut wr, out).await;
        }
        let deadline = conn.poll_timeout();
        // Reading stops while the echoes not yet written pass the bound. Writing never
        // stops, and when reading does there is something to write: the loop always waits
        // for progress it can make.
        let may_read = out.len() <= max_queued;
        tokio::select! {
            res = wr.write(out.front()), if !out.is_empty() => {
                if out.advance(res?)? {
                    wr.flush().await?;
                }
            }
            res = read_into(&mut rd, &mut conn), if may_read => {
                if res? == 0 {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                conn.handle_timeout(Instant::now());
            }
        }
    }
}

/// Decodes what was read and queues each message's echo, message by message: a close read
/// together with a message is answered only after that message's echo is queued, so the
/// echo is not lost to the closing handshake.
fn queue_echoes(conn: &mut Connection, assembler: &mut MessageAssembler) {
    loop {
        let more = conn.process_message(Instant::now());
        while let Some(ev) = conn.poll_event() {
            if let Some(msg) = match ev {
                Event::Data(chunk) => assembler.push(&chunk),
                _ => None,
            } {
                let _ = conn.send_frame(msg.opcode, true, &msg.payload);
            }
        }
        if !more {
            break;
        }
    }
}

/// Writes what is left and closes TCP: the server closes first (RFC 6455 §7.1.1).
async fn finish<W: AsyncWrite + Unpin>(wr: &mut W, out: Outbox) -> io::Result<()> {
    for bytes in out.chunks {
        wr.write_all(&bytes).await?;
    }
    wr.flush().await?;
    wr.shutdown().await
}

/// Bytes taken from the connection and not yet written, with their total: the bound is
/// on bytes, since one chunk may be a 64 MiB echo or a 2-byte pong.
#[derive(Debug, Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Outbox {
    /// Moves everything `conn` has to send to the back.
    fn take_from(&mut self, conn: &mut Connection) {
        while let Some(bytes) = conn.poll_transmit() {
            self.push(bytes);
        }
    }

    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Bytes waiting.
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The next bytes to write (empty when nothing waits).
    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |b| &b[..])
    }

    /// Marks `n` bytes of [`Outbox::front`] written; `true` once nothing waits. A write of
    /// nothing from a non-empty buffer is an error (the transport is gone).
    fn advance(&mut self, n: usize) -> io::Result<bool> {
        let Some(front) = self.chunks.front_mut() else {
            return Ok(true);
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        front.advance(n);
        self.len -= n;
        if front.is_empty() {
            self.chunks.pop_front();
        }
        Ok(self.chunks.is_empty())
    }
}

async fn read_into<R: AsyncRead + Unpin>(rd: &mut R, conn: &mut Connection) -> io::Result<usize> {
    let buf = conn.read_buf();
    buf.reserve(64 * 1024);
    rd.read_buf(buf).await
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, reason: &str) -> io::Result<()> {
    stream.write_all(&reject_response(status, reason)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsat_proto::handshake::{ClientHandshake, HandshakeRequest, HandshakeResponse};
    use wsat_proto::uri::WsUri;
    use wsat_proto::OpCode;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A message and a close that arrive in one read: the echo leaves before the close
    /// reply (a client closing right after its last send still gets its echo).
    #[tokio::test]
    async fn a_message_read_together_with_a_close_is_echoed_first() {
        let uri = WsUri::parse("ws://127.0.0.1/").expect("uri");
        let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
        let mut client = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
        client.send_frame(OpCode::TEXT, true, b"last words").expect("send");
        client.close(Some(1000), "", Instant::now());
        let mut input = handshake.request().to_vec();
        while let Some(bytes) = client.poll_transmit() {
            input.extend_from_slice(&bytes);
        }

        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(echo(far));
        near.write_all(&input).await.expect("write");
        let mut output = Vec::new();
        near.read_to_end(&mut output).await.expect("read");
        server.await.expect("join").expect("the echo loop");

        let Some(HandshakeResponse::Accepted { head_len, .. }) =
            handshake.parse_response(&output, true).expect("a 101")
        else {
            panic!("no 101: {:?}", String::from_utf8_lossy(&output));
        };
        client.handle_bytes(&output[head_len..], Instant::now());
        let mut events = Vec::new();
        while let Some(ev) = client.poll_event() {
            events.push(ev);
        }
        let echo = events
            .iter()
            .position(|e| matches!(e, Event::Data(d) if d.opcode == OpCode::TEXT && &d.data[..] == b"last words"));
        let close = events
            .iter()
            .position(|e| matches!(e, Event::CloseReceived(Some(c)) if c.code == 1000));
        assert!(matches!((echo, close), (Some(e), Some(c)) if e < c), "{events:?}");
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_starts_over_after_a_success() {
        let mut backoff = Backoff::new();
        let pauses: Vec<u128> = (0..6).map(|_| backoff.failure().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.failure(), Duration::from_millis(100));
    }

    #[test]
    fn the_log_limiter_lets_one_event_a_second_through_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut log = LogLimiter::new(Duration::from_secs(1));
        let admitted: Vec<_> = [0, 100, 300, 700, 1000, 1500, 2100, 2200]
            .into_iter()
            .map(|ms| log.admit(t0 + Duration::from_millis(ms)))
            .collect();
        assert_eq!(admitted, [Some(0), None, None, None, Some(3), None, Some(1), None]);
        assert_eq!(log.take_held_back(), 1);
        assert_eq!(log.take_held_back(), 0);
    }

    /// The attack's figures: EMFILE on every accept for 25 s once cost 7.1 M log lines.
    /// Paced and limited, the same 25 s cost 28 accept attempts and as many lines at most.
    #[test]
    fn a_descriptor_storm_costs_about_one_accept_and_one_line_a_second() {
        let t0 = Instant::now();
        let (mut backoff, mut log) = (Backoff::new(), LogLimiter::new(LOG_INTERVAL));
        let (mut at, mut attempts, mut lines) = (Duration::ZERO, 0, 0);
        while at < Duration::from_secs(25) {
            attempts += 1;
            lines += usize::from(log.admit(t0 + at).is_some());
            at += backoff.failure();
        }
        assert_eq!(attempts, 4 + 24, "100 + 200 + 400 + 800 ms, then one a second");
        assert!(lines <= attempts, "{lines} lines");
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_handshake_makes_room_but_upgraded_connections_stay() {
        let mut slots = Slots::new(2);
        let (Claim::Free(a), Claim::Free(b)) = (slots.claim().await, slots.claim().await) else {
            panic!("two free slots");
        };
        // Like a connection task: it ends, freeing its permit, when told to make room.
        let a_task = tokio::spawn(async move {
            let Slot { permit, evict } = a;
            let told = evict.await.is_ok();
            drop(permit);
            told
        });
        let Claim::MadeRoom(c) = slots.claim().await else {
            panic!("the oldest handshake makes room");
        };
        assert!(a_task.await.expect("join"), "the oldest handshake was told to close");

        // b and c complete their upgrades: no one may be closed for a newcomer now.
        let Slot { permit: b_permit, .. } = b;
        let Slot { permit: _c_permit, .. } = c;
        assert!(matches!(slots.claim().await, Claim::Full));
        drop(b_permit);
        assert!(
            matches!(slots.claim().await, Claim::Free(_)),
            "a freed slot is taken again"
        );
    }

    /// Connections past their handshake are forgotten: with no limit to speak of, a long
    /// run of them does not grow the list of handshakes that could be closed.
    #[tokio::test]
    async fn finished_handshakes_are_forgotten() {
        let mut slots = Slots::new(usize::MAX);
        for _ in 0..10_000 {
            let Claim::Free(slot) = slots.claim().await else {
                panic!("a free slot");
            };
            drop(slot);
        }
        assert!(slots.handshaking.len() <= MIN_PRUNE_AT, "{}", slots.handshaking.len());
    }

    #[tokio::test]
    async fn the_handshake_timeout_ends_a_half_sent_request() {
        let (mut near, far) = tokio::io::duplex(4096);
        let options = EchoOptions {
            handshake_timeout: Duration::from_millis(100),
            ..EchoOptions::default()
        };
        let started = Instant::now();
        let server = tokio::spawn(async move { echo_with(far, &options).await });
        near.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        let ended = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server gave up")
            .expect("join");
        assert_eq!(ended.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(100));
        let mut rest = Vec::new();
        near.read_to_end(&mut rest).await.expect("the stream ends");
        assert_eq!(rest, b"", "nothing is answered");
    }

    /// A request head that never ends is answered 431 at 16 KiB, not buffered on.
    #[tokio::test]
    async fn an_endless_request_head_is_refused_at_its_limit() {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { echo(far).await });
        near.write_all(b"GET / HTTP/1.1\r\nX-Filler: ").await.expect("write");
        let filler = vec![b'x'; MAX_REQUEST_HEAD];
        near.write_all(&filler).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), near.read_to_end(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        assert!(
            answer.starts_with(b"HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        server.await.expect("join").expect("a refusal is no error");
    }

    /// A peer that writes and does not read: the server stops reading near the bound (the
    /// peer's writes stall), and once the peer reads every echo arrives, in order.
    #[tokio::test]
    async fn a_peer_that_does_not_read_stalls_near_the_bound_and_loses_nothing() {
        const MESSAGES: usize = 64;
        const SIZE: usize = 64 * 1024;
        let (near, far) = tokio::io::duplex(16 * 1024);
        let options = EchoOptions {
            max_queued_bytes: SIZE,
            ..EchoOptions::default()
        };
        let server = tokio::spawn(async move { echo_with(far, &options).await });
        let (mut rd, mut wr) = tokio::io::split(near);
        let uri = WsUri::parse("ws://127.0.0.1/").expect("uri");
        let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
        wr.write_all(handshake.request()).await.expect("write");
        let mut client = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
        let mut head = BytesMut::new();
        let head_len = loop {
            rd.read_buf(&mut head).await.expect("read");
            if let Some(HandshakeResponse::Accepted { head_len, .. }) =
                handshake.parse_response(&head, true).expect("ok")
            {
                break head_len;
            }
        };
        client.read_buf().extend_from_slice(&head[head_len..]);

        let written = Arc::new(AtomicUsize::new(0));
        let progress = written.clone();
        let writer = tokio::spawn(async move {
            let mut sender = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
            for i in 0..MESSAGES {
                sender
                    .send_frame(OpCode::BINARY, true, &vec![i as u8; SIZE])
                    .expect("open");
                while let Some(bytes) = sender.poll_transmit() {
                    wr.write_all(&bytes).await?;
                    progress.fetch_add(bytes.len(), Ordering::Relaxed);
                }
            }
            io::Result::Ok(wr)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stalled_at = written.load(Ordering::Relaxed);
        assert!(
            stalled_at < 8 * SIZE,
            "the server read {stalled_at} bytes nobody took back"
        );

        let mut assembler = MessageAssembler::new();
        let mut echoed = 0;
        while echoed < MESSAGES {
            client.process(Instant::now());
            while let Some(ev) = client.poll_event() {
                if let Event::Data(chunk) = ev {
                    if let Some(msg) = assembler.push(&chunk) {
                        assert!(msg.payload[..] == vec![echoed as u8; SIZE][..], "echo {echoed}");
                        echoed += 1;
                    }
                }
            }
            if echoed < MESSAGES {
                let read = tokio::time::timeout(Duration::from_secs(5), rd.read_buf(client.read_buf()));
                assert!(
                    read.await.expect("an echo in time").expect("read") > 0,
                    "the server left"
                );
            }
        }
        drop(writer.await.expect("join").expect("the whole upload is written"));
        drop(rd);
        server.await.expect("join").expect("a clean end");
    }
}
