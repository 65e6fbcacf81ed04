//! The load client of `wsat-bench`: one workload through one implementation, in a process
//! of its own, on a single-threaded runtime (the client has one core).
//!
//! Every connection keeps `window` messages in flight: a sender puts a message out whenever
//! the window has room and a receiver takes the echoes in order, timing each round trip.
//! Every implementation is used alike, the way its README shows: one task per connection,
//! in which a send loop awaits each send before the next (no task per send) and a receive
//! loop runs concurrently (`tokio::try_join!` of the two), on split halves where the
//! library has them, so a 16 MiB message is read while it is written.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::report::DEFLATE_SUFFIX;
use super::server::WireCounters;
use super::stats::{percentile, Figures};
use super::sys;
use super::workload::Workload;

/// What one client process does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One of [`super::report::IMPLEMENTATIONS`].
    pub implementation: String,
    /// The load.
    pub workload: Workload,
    /// The WebSocket echo (host:port).
    pub ws_addr: String,
    /// The plain TCP echo (host:port).
    pub tcp_addr: String,
    /// The echo server's byte counters (host:port), for the bytes on the wire; none: not
    /// measured.
    pub stats_addr: Option<String>,
    /// Load before measuring (connections warm, buffers grown).
    pub warmup: Duration,
    /// The measured interval.
    pub measure: Duration,
}

/// The measurement interval and what was seen in it, shared by all connections.
struct Clock {
    start: Instant,
    stop: Instant,
    latencies: Mutex<Vec<u64>>,
    counted: AtomicU64,
    /// Every echo received so far, in or out of the interval: what the wire bytes are
    /// divided by, counted between the same two instants as they are.
    echoes: AtomicU64,
}

impl Clock {
    fn record(&self, sent: Instant, now: Instant) {
        self.echoes.fetch_add(1, Ordering::Relaxed);
        if sent >= self.start && now <= self.stop {
            self.counted.fetch_add(1, Ordering::Relaxed);
            lock(&self.latencies).push((now - sent).as_nanos() as u64);
        }
    }
}

/// The raw-tcp-batched client's read buffer: room for a whole window, within these bounds.
const RAW_READ_MIN: usize = 64 * 1024;
const RAW_READ_MAX: usize = 4 << 20;

/// The bound a `wsat` (`Client`) send is given: it never comes near it on loopback.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The messages of a workload, shared by its connections: `count` different ones of `len`
/// bytes, back to back, followed by the first `window - 1` again, so that any `window`
/// consecutive messages are one slice (raw-tcp-batched writes them with one call). Message
/// `i` of a connection is number `i % count`.
#[derive(Clone)]
struct Messages {
    all: Bytes,
    len: usize,
    count: usize,
    /// Compare every echo with what was sent (JSON workloads: a compressed round trip
    /// must give back the very bytes), not only its length.
    verify: bool,
}

impl Messages {
    fn new(w: &Workload) -> Messages {
        let list = w.messages();
        let count = list.len();
        let mut all = Vec::with_capacity((count + w.window - 1) * w.payload);
        for k in 0..count + w.window - 1 {
            all.extend_from_slice(&list[k % count]);
        }
        Messages {
            all: Bytes::from(all),
            len: w.payload,
            count,
            verify: w.is_json(),
        }
    }

    fn start(&self, i: u64) -> usize {
        (i % self.count as u64) as usize * self.len
    }

    /// Message `i`, without a copy.
    fn get(&self, i: u64) -> Bytes {
        let at = self.start(i);
        self.all.slice(at..at + self.len)
    }

    /// Messages `i..i + n` (`n` at most the window) as one slice.
    fn run(&self, i: u64, n: usize) -> &[u8] {
        let at = self.start(i);
        &self.all[at..at + n * self.len]
    }

    /// Whether `echo` is message `i` come back.
    fn check(&self, i: u64, echo: &[u8]) -> anyhow::Result<()> {
        if echo.len() != self.len {
            bail!("echo of {} bytes for {}", echo.len(), self.len);
        }
        if self.verify && echo != self.run(i, 1) {
            bail!("echo {i} differs from the message sent");
        }
        Ok(())
    }
}

/// The pipelining window of one connection: send times of messages in flight.
struct Pace {
    window: Semaphore,
    /// The window's size: messages in flight at most.
    size: usize,
    in_flight: Mutex<VecDeque<Instant>>,
    clock: Arc<Clock>,
    /// The receiver is done: nothing more may be sent.
    closing: AtomicBool,
}

impl Pace {
    fn new(window: usize, clock: Arc<Clock>) -> Self {
        Pace {
            window: Semaphore::new(window),
            size: window,
            in_flight: Mutex::new(VecDeque::with_capacity(window)),
            clock,
            closing: AtomicBool::new(false),
        }
    }

    /// Waits for room in the window; `false` once the measurement is over.
    ///
    /// Past the end, one last message still goes out if none is in flight: the receiver
    /// may be waiting for an echo, and it stops only after one arrives past the end.
    async fn may_send(&self) -> bool {
        match self.window.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.admit()
    }

    /// Messages in flight at most.
    fn window_size(&self) -> usize {
        self.size
    }

    /// [`Pace::may_send`] without waiting: `false` also when the window is full.
    fn may_send_now(&self) -> bool {
        match self.window.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        self.admit()
    }

    /// Records a send that has its window slot; `false` (the slot is spent) once the
    /// measurement is over.
    fn admit(&self) -> bool {
        if self.closing.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        if now >= self.clock.stop && !in_flight.is_empty() {
            return false;
        }
        in_flight.push_back(now);
        true
    }

    /// One echo arrived; `false` once nothing is in flight and nothing more will be sent.
    fn received(&self) -> bool {
        let now = Instant::now();
        let mut in_flight = lock(&self.in_flight);
        if let Some(sent) = in_flight.pop_front() {
            self.clock.record(sent, now);
        }
        if now >= self.clock.stop && in_flight.is_empty() {
            self.closing.store(true, Ordering::Relaxed);
        }
        drop(in_flight);
        self.window.add_permits(1);
        !self.closing.load(Ordering::Relaxed)
    }
}

/// A lock that a panicked holder cannot poison for the others (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the plan and returns the figures of the measured interval.
///
/// Every connection runs as a task of its own on a single-threaded runtime (not inside the
/// `block_on` future, nor a `LocalSet`): a wake between tasks then costs a queue push for
/// every implementation alike, not an extra poll of the I/O driver.
pub fn run(plan: &Plan) -> anyhow::Result<Figures> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let plan = plan.clone();
    rt.block_on(async move { tokio::spawn(async move { drive(&plan).await }).await })
        .map_err(|e| anyhow!("load task: {e}"))?
}

/// The echo server's byte counters, if they are wanted and can be read.
async fn wire_bytes(addr: Option<&str>) -> Option<u64> {
    match WireCounters::query(addr?).await {
        Ok(c) => Some(c.total()),
        Err(e) => {
            tracing::warn!("reading the echo server's byte counters: {e}");
            None
        }
    }
}

async fn drive(plan: &Plan) -> anyhow::Result<Figures> {
    let w = plan.workload;
    let msgs = Messages::new(&w);
    // Connect everything first, so the handshakes are outside the measurement.
    let mut conns = Vec::with_capacity(w.connections);
    for _ in 0..w.connections {
        conns.push(
            Conn::connect(plan)
                .await
                .with_context(|| format!("{} connecting", plan.implementation))?,
        );
    }
    let now = Instant::now();
    let clock = Arc::new(Clock {
        start: now + plan.warmup,
        stop: now + plan.warmup + plan.measure,
        latencies: Mutex::new(Vec::with_capacity(1 << 16)),
        counted: AtomicU64::new(0),
        echoes: AtomicU64::new(0),
    });
    let cpu_sampler = {
        let clock = clock.clone();
        let stats = plan.stats_addr.clone();
        tokio::spawn(async move {
            // The wire bytes over the echoes received between two readings of the server's
            // counters, both taken while the load runs steadily (at the start and at the end
            // of the interval, before the senders stop), so that what is in flight at either
            // end cancels out; the readings lie outside the CPU interval.
            let wire = |clock: Arc<Clock>, stats: Option<String>| async move {
                let bytes = wire_bytes(stats.as_deref()).await?;
                Some((bytes, clock.echoes.load(Ordering::Relaxed)))
            };
            tokio::time::sleep_until(clock.start.into()).await;
            let wire0 = wire(clock.clone(), stats.clone()).await;
            let (t0, c0) = (Instant::now(), sys::process_cpu_time());
            tokio::time::sleep_until(clock.stop.into()).await;
            let (wall, cpu) = (Instant::now() - t0, sys::process_cpu_time() - c0);
            let wire1 = wire(clock.clone(), stats).await;
            let wire = wire0
                .zip(wire1)
                .and_then(|((b0, e0), (b1, e1))| (e1 > e0).then(|| b1.saturating_sub(b0) as f64 / (e1 - e0) as f64));
            (wall, cpu, wire)
        })
    };
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let pace = Pace::new(w.window, clock.clone());
            let msgs = msgs.clone();
            tokio::spawn(async move { c.run(pace, msgs).await })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| anyhow!("connection task: {e}"))??;
    }
    let (wall, cpu, wire) = cpu_sampler.await.map_err(|e| anyhow!("sampler: {e}"))?;
    let measured = plan.measure.as_secs_f64();
    let count = clock.counted.load(Ordering::Relaxed);
    if count == 0 {
        bail!("no message completed a round trip in the measured interval");
    }
    let mut lat = std::mem::take(&mut *lock(&clock.latencies));
    lat.sort_unstable();
    // CPU over the sampler's own interval, scaled to the messages counted in the planned one.
    let cpu_per_s = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let msgs_per_s = count as f64 / measured;
    Ok(Figures {
        msgs_per_s,
        mb_per_s: msgs_per_s * w.payload as f64 / 1e6,
        p50_us: percentile(&lat, 50.0).unwrap_or(0) as f64 / 1e3,
        p99_us: percentile(&lat, 99.0).unwrap_or(0) as f64 / 1e3,
        cpu_us_per_msg: cpu_per_s / msgs_per_s * 1e6,
        peak_rss_kib: sys::peak_rss_kib() as f64,
        wire_bytes_per_msg: wire.unwrap_or(0.0),
    })
}

type Tungstenite = tokio_tungstenite::WebSocketStream<TcpStream>;
type FastRead = fastwebsockets::FragmentCollectorRead<tokio::net::tcp::OwnedReadHalf>;
type FastWrite = fastwebsockets::WebSocketWrite<tokio::net::tcp::OwnedWriteHalf>;

/// A connected client of one implementation.
enum Conn {
    /// `wsat_client::Client`: the connection on a task of the library's, a handle and events.
    Wsat(wsat_client::Client, wsat_client::Events),
    /// `wsat_client::WebSocket`: the connection driven in the caller's task.
    WsatStream(Box<wsat_client::WebSocket>),
    Tungstenite(Box<Tungstenite>),
    Fast(Box<FastRead>, FastWrite),
    /// Plain TCP; `batched` sends what the window allows in one write and reads as many
    /// echoes as have arrived, instead of one write and one exact read per message.
    Raw {
        tcp: TcpStream,
        batched: bool,
    },
}

/// The configuration of both wsat rows: whole messages in one frame (`buffer_size` 64 MiB),
/// no pings, no reconnect; permessage-deflate offered with its defaults when `deflate`.
fn wsat_config(uri: &str, deflate: bool) -> wsat_client::ClientConfig {
    let mut config = wsat_client::ClientConfig::new(uri);
    config.delivery = wsat_client::Delivery::Messages { max_size: 64 << 20 };
    config.buffer_size = 64 << 20;
    config.ping_interval = None;
    config.pong_timeout = None;
    config.reconnect = wsat_client::Reconnect::Disabled;
    config.compression = deflate.then(wsat_client::DeflateConfig::default);
    config
}

/// A compressing row must compress: the echo server accepts every offer, so a connection
/// without permessage-deflate is a broken setup, not a figure.
fn check_negotiated(wanted: bool, got: &Option<wsat_client::NegotiatedDeflate>) -> anyhow::Result<()> {
    match (wanted, got) {
        (true, None) => bail!("the server did not accept permessage-deflate"),
        (false, Some(d)) => bail!("permessage-deflate in force although not offered: {}", d.response()),
        _ => Ok(()),
    }
}

impl Conn {
    async fn connect(plan: &Plan) -> anyhow::Result<Conn> {
        let uri = format!("ws://{}/", plan.ws_addr);
        let (base, deflate) = match plan.implementation.strip_suffix(DEFLATE_SUFFIX) {
            Some(base) if base == "wsat" || base == "wsat-stream" => (base, true),
            Some(_) => bail!("unknown implementation {:?}", plan.implementation),
            None => (plan.implementation.as_str(), false),
        };
        match base {
            "wsat" => {
                let (client, mut events) = wsat_client::Client::start(wsat_config(&uri, deflate))?;
                loop {
                    match events.recv().await {
                        Some(wsat_client::Event::Connected(info)) => {
                            check_negotiated(deflate, &info.deflate)?;
                            return Ok(Conn::Wsat(client, events));
                        }
                        Some(wsat_client::Event::Error(e)) => return Err(e.into()),
                        Some(_) => {}
                        None => bail!("wsat client ended before connecting"),
                    }
                }
            }
            "wsat-stream" => {
                let (ws, info) = wsat_client::WebSocket::connect_with(&wsat_config(&uri, deflate)).await?;
                check_negotiated(deflate, &info.deflate)?;
                Ok(Conn::WsatStream(Box::new(ws)))
            }
            "tokio-tungstenite" => {
                let tcp = TcpStream::connect(&plan.ws_addr).await?;
                tcp.set_nodelay(true)?;
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_frame_size(Some(64 << 20))
                    .max_message_size(Some(64 << 20));
                let (ws, _) = tokio_tungstenite::client_async_with_config(uri, tcp, Some(config)).await?;
                Ok(Conn::Tungstenite(Box::new(ws)))
            }
            "fastwebsockets" => {
                let mut tcp = TcpStream::connect(&plan.ws_addr).await?;
                tcp.set_nodelay(true)?;
                let request = format!(
                    "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    plan.ws_addr
                );
                tcp.write_all(request.as_bytes()).await?;
                // Read the 101 byte by byte: nothing after its head may be swallowed.
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if tcp.read(&mut b).await? == 0 {
                        bail!("server closed during the handshake");
                    }
                    head.push(b[0]);
                }
                if !head.starts_with(b"HTTP/1.1 101") {
                    bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
                }
                let ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client);
                let (rd, wr) = ws.split(|s| s.into_split());
                Ok(Conn::Fast(Box::new(fastwebsockets::FragmentCollectorRead::new(rd)), wr))
            }
            "raw-tcp" | "raw-tcp-batched" => {
                let tcp = TcpStream::connect(&plan.tcp_addr).await?;
                tcp.set_nodelay(true)?;
                let batched = plan.implementation == "raw-tcp-batched";
                Ok(Conn::Raw { tcp, batched })
            }
            other => bail!("unknown implementation {other:?}"),
        }
    }

    /// One connection's load: in every arm, a send loop that awaits each send before the
    /// next and a receive loop that checks the echoes in order, joined in this one task.
    async fn run(self, pace: Pace, msgs: Messages) -> anyhow::Result<()> {
        match self {
            Conn::Wsat(client, mut events) => {
                // As its README shows: `send_binary` with a timeout, awaited (it returns once
                // the connection's task has written the frame), and the events taken as they
                // come. With a window, echoes arrive while the next send is made.
                let send = async {
                    let mut i = 0;
                    while pace.may_send().await {
                        client.send_binary(msgs.get(i), SEND_TIMEOUT).await?;
                        i += 1;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let recv = async {
                    let mut i = 0;
                    loop {
                        match events.recv().await {
                            Some(wsat_client::Event::Message(m)) => {
                                msgs.check(i, &m.payload)?;
                                i += 1;
                                if !pace.received() {
                                    return Ok(());
                                }
                            }
                            Some(wsat_client::Event::Error(e)) => return Err(e.into()),
                            Some(_) => {}
                            None => bail!("wsat client ended"),
                        }
                    }
                };
                tokio::try_join!(send, recv)?;
                let _ = client.stop(Duration::from_millis(100)).await;
                Ok(())
            }
            Conn::WsatStream(ws) => {
                // As its README shows: `split()`, the writer's `send_binary` awaited, the
                // reader's `recv` for whole messages.
                let (mut reader, mut writer) = ws.split();
                let send = async {
                    let mut i = 0;
                    while pace.may_send().await {
                        writer.send_binary(msgs.get(i)).await?;
                        i += 1;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let recv = async {
                    let mut i = 0;
                    loop {
                        match reader.recv().await {
                            Some(Ok(m)) => {
                                msgs.check(i, &m.payload)?;
                                i += 1;
                                if !pace.received() {
                                    return Ok(());
                                }
                            }
                            Some(Err(e)) => return Err(e.into()),
                            None => bail!("connection ended"),
                        }
                    }
                };
                tokio::try_join!(send, recv)?;
                Ok(())
            }
            Conn::Tungstenite(ws) => {
                use futures_util::{SinkExt, StreamExt};
                use tokio_tungstenite::tungstenite::Message;
                let (mut sink, mut stream) = (*ws).split();
                let send = async {
                    let mut i = 0;
                    while pace.may_send().await {
                        sink.send(Message::Binary(msgs.get(i))).await?;
                        i += 1;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let recv = async {
                    let mut i = 0;
                    loop {
                        match stream.next().await {
                            Some(Ok(Message::Binary(data))) => {
                                msgs.check(i, &data)?;
                                i += 1;
                                if !pace.received() {
                                    return Ok(());
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(e.into()),
                            None => bail!("connection ended"),
                        }
                    }
                };
                tokio::try_join!(send, recv)?;
                Ok(())
            }
            Conn::Fast(mut rd, mut wr) => {
                use fastwebsockets::{Frame, OpCode, Payload};
                let send = async {
                    let mut i = 0;
                    while pace.may_send().await {
                        wr.write_frame(Frame::binary(Payload::Borrowed(msgs.run(i, 1)))).await?;
                        i += 1;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let recv = async {
                    // No pings or closes come in a benchmark: obligated replies are dropped.
                    let mut obligated = |_frame: Frame<'_>| async { Ok::<(), io::Error>(()) };
                    let mut i = 0;
                    loop {
                        let frame = rd.read_frame(&mut obligated).await?;
                        if frame.opcode == OpCode::Binary {
                            msgs.check(i, &frame.payload)?;
                            i += 1;
                            if !pace.received() {
                                return Ok(());
                            }
                        }
                    }
                };
                tokio::try_join!(send, recv)?;
                Ok(())
            }
            Conn::Raw { tcp, batched } => {
                let (mut rd, mut wr) = tcp.into_split();
                let len = msgs.len;
                let most = if batched { pace.window_size() } else { 1 };
                let send = async {
                    let mut i = 0;
                    while pace.may_send().await {
                        let mut n = 1;
                        while n < most && pace.may_send_now() {
                            n += 1;
                        }
                        wr.write_all(msgs.run(i, n)).await?;
                        i += n as u64;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let recv = async {
                    // Per message: exactly one echo per read, checked like the WebSocket
                    // rows'. Batched: whatever has arrived, counted by length only (the TCP
                    // echo gives back the bytes as they came).
                    let room = if batched {
                        (most * len).clamp(RAW_READ_MIN, RAW_READ_MAX)
                    } else {
                        len
                    };
                    let mut buf = vec![0u8; room];
                    let mut partial = 0;
                    let mut i = 0;
                    loop {
                        let n = if batched {
                            rd.read(&mut buf).await?
                        } else {
                            let n = rd.read_exact(&mut buf).await?;
                            msgs.check(i, &buf)?;
                            i += 1;
                            n
                        };
                        if n == 0 {
                            bail!("the TCP echo closed the connection");
                        }
                        partial += n;
                        while partial >= len {
                            partial -= len;
                            if !pace.received() {
                                return Ok(());
                            }
                        }
                    }
                };
                tokio::try_join!(send, recv)?;
                Ok(())
            }
        }
    }
}
