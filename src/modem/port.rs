//! The AT port's transports. Each delivers [`PortEvent`]s to the modem loop and takes
//! the modem's output through a [`PortWriter`]; blocking devices (stdio, pty, serial)
//! run a reader and a writer thread, TCP runs on tokio.
//!
//! Input is read only as fast as output is written, as on the chip, whose UART buffers are
//! fixed: the events channel holds at most [`PORT_QUEUE`] arrivals of at most [`READ_CHUNK`]
//! bytes, and the modem loop takes the next arrival only once the output of the previous one
//! is written (TCP: taken by the socket; threads: within [`WRITER_BUDGET`] bytes). A host
//! that writes and never reads (every byte is echoed) therefore stalls on its own writes;
//! the modem's memory stays flat.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

/// Most bytes one read from the port takes (one [`PortEvent::Data`]).
pub const READ_CHUNK: usize = 4096;
/// Most events waiting for the modem loop: with [`READ_CHUNK`], at most 16 KiB of input.
pub const PORT_QUEUE: usize = 4;
/// Most bytes handed to a writer thread and not yet written (≈ 2.8 s of a 115200-baud UART).
pub const WRITER_BUDGET: usize = 32 * 1024;

/// The channel a transport delivers its events on, bounded by [`PORT_QUEUE`].
pub fn channel() -> (mpsc::Sender<PortEvent>, mpsc::Receiver<PortEvent>) {
    mpsc::channel(PORT_QUEUE)
}

/// Where a transport delivers its events.
#[derive(Debug, Clone)]
pub enum PortSender {
    /// A [`channel`]: the transport waits while the modem loop is behind.
    Bounded(mpsc::Sender<PortEvent>),
    /// An unbounded channel, for an in-process host (tests) that paces itself.
    Unbounded(mpsc::UnboundedSender<PortEvent>),
}

impl PortSender {
    /// Delivers `event`, waiting for room; false once the modem loop is gone.
    async fn send(&self, event: PortEvent) -> bool {
        match self {
            PortSender::Bounded(tx) => tx.send(event).await.is_ok(),
            PortSender::Unbounded(tx) => tx.send(event).is_ok(),
        }
    }

    /// [`PortSender::send`] from a thread outside the runtime.
    fn blocking_send(&self, event: PortEvent) -> bool {
        match self {
            PortSender::Bounded(tx) => tx.blocking_send(event).is_ok(),
            PortSender::Unbounded(tx) => tx.send(event).is_ok(),
        }
    }
}

impl From<mpsc::Sender<PortEvent>> for PortSender {
    fn from(tx: mpsc::Sender<PortEvent>) -> Self {
        PortSender::Bounded(tx)
    }
}

impl From<mpsc::UnboundedSender<PortEvent>> for PortSender {
    fn from(tx: mpsc::UnboundedSender<PortEvent>) -> Self {
        PortSender::Unbounded(tx)
    }
}

/// Where the modem loop takes port events from.
#[derive(Debug)]
pub enum PortEvents {
    /// A transport's [`channel`]: bounded, so input waits in the host's socket or device
    /// while output is pending.
    Transport(mpsc::Receiver<PortEvent>),
    /// An in-process host (the demo, tests) that paces itself.
    InProcess(mpsc::UnboundedReceiver<PortEvent>),
}

impl PortEvents {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<PortEvent> {
        match self {
            PortEvents::Transport(rx) => rx.recv().await,
            PortEvents::InProcess(rx) => rx.recv().await,
        }
    }
}

impl From<mpsc::Receiver<PortEvent>> for PortEvents {
    fn from(rx: mpsc::Receiver<PortEvent>) -> Self {
        PortEvents::Transport(rx)
    }
}

impl From<mpsc::UnboundedReceiver<PortEvent>> for PortEvents {
    fn from(rx: mpsc::UnboundedReceiver<PortEvent>) -> Self {
        PortEvents::InProcess(rx)
    }
}

/// Something that happened on the port.
#[derive(Debug)]
pub enum PortEvent {
    /// A host is attached; write to it through this writer.
    Attached(PortWriter),
    /// Bytes from the host, as one arrival.
    Data(Vec<u8>),
    /// The host went away (TCP client closed, stdin ended).
    Detached,
}

/// Where the modem's bytes go.
#[derive(Debug)]
pub enum PortWriter {
    /// A byte stream: a TCP client, or an in-process host's end of a duplex pipe.
    Stream(StreamWriter),
    /// A writer thread (stdio, pty, serial). Bounded in bytes: a slow port (a UART at
    /// 115200 baud) holds the modem loop back, and through it the links' reads, as on the chip.
    Thread(ThreadWriter),
    /// An in-process host (the demo, tests): each piece arrives as one message.
    Channel(mpsc::UnboundedSender<Vec<u8>>),
}

impl PortWriter {
    /// Writes some of `bytes`, returning how many were taken. Cancel-safe: when the future
    /// is dropped before it completes, nothing was taken, so the modem loop can wait for a
    /// host that does not read and still serve everything else.
    pub async fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            PortWriter::Stream(w) => w.write_some(bytes).await,
            PortWriter::Thread(w) => w.write_some(bytes).await,
            PortWriter::Channel(tx) => tx
                .send(bytes.to_vec())
                .map(|()| bytes.len())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "port reader gone")),
        }
    }
}

/// The writing half of a stream host, and the signal that another host took the port over.
pub struct StreamWriter {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    replaced: Arc<Notify>,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter").finish_non_exhaustive()
    }
}

impl StreamWriter {
    /// One write; fails at once (and from then on) once the host was replaced, even while a
    /// host that does not read has the write waiting.
    async fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let replaced = || io::Error::new(io::ErrorKind::ConnectionAborted, "another AT client took the port");
        tokio::select! {
            biased;
            () = self.replaced.notified() => {
                // Stays failed: the permit is put back for the next write.
                self.replaced.notify_one();
                Err(replaced())
            }
            written = self.io.write(bytes) => written,
        }
    }
}

/// The sending side of a writer thread: pieces in order, each holding its share of
/// [`WRITER_BUDGET`] until the thread has written it.
#[derive(Debug)]
pub struct ThreadWriter {
    pieces: mpsc::UnboundedSender<(Vec<u8>, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

impl ThreadWriter {
    /// Hands (up to the whole budget of) `bytes` to the thread once the budget has room for
    /// it. The queue is bounded by the budget (every piece holds at least one byte of it).
    async fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "port writer gone");
        let taken = bytes.len().min(WRITER_BUDGET);
        let cost = u32::try_from(taken.max(1)).unwrap_or(u32::MAX);
        let permit = self.budget.clone().acquire_many_owned(cost).await.map_err(|_| gone())?;
        self.pieces
            .send((bytes[..taken].to_vec(), permit))
            .map_err(|_| gone())?;
        Ok(taken)
    }
}

/// Serves a blocking device: a writer thread for `writer`, announced with
/// [`PortEvent::Attached`], then a reader thread for `reader`.
fn spawn_threads<R, W>(reader: R, writer: W, events: PortSender, retry_eof: bool)
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // A port that retries its end of input (pty, serial) also outlives write errors.
    let gone = (!retry_eof).then(|| events.clone());
    let writer = spawn_writer(writer, gone);
    std::thread::spawn(move || {
        if events.blocking_send(PortEvent::Attached(writer)) {
            read_loop(reader, &events, retry_eof);
        }
    });
}

/// Reads `reader` into `events`, one arrival at a time: while the modem loop has not taken
/// the previous ones, this waits and the device's buffer fills. With `retry_eof` an end of
/// input or an error means "nobody attached right now" (a pty) and reading goes on.
fn read_loop<R: Read>(mut reader: R, events: &PortSender, retry_eof: bool) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) if !retry_eof => {
                events.blocking_send(PortEvent::Detached);
                return;
            }
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => {
                if !events.blocking_send(PortEvent::Data(buf[..n].to_vec())) {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::TimedOut) => {}
            // EIO on a pty master while no peer holds the other side: wait for one.
            Err(_) if retry_eof => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!("port read failed: {e}");
                events.blocking_send(PortEvent::Detached);
                return;
            }
        }
    }
}

/// Writes every piece with one write each, flushing after each, then returns its share of
/// the budget. On a port that cannot come back (stdout, given `gone`), a write error ends
/// the thread and reports [`PortEvent::Detached`] on `gone`: the modem loop learns that the
/// host is gone (and the modem's later writes fail at once). On a pty or a serial device
/// errors pass (no peer yet, an adapter replugged): the first of a run is logged.
fn spawn_writer<W: Write + Send + 'static>(mut writer: W, gone: Option<PortSender>) -> PortWriter {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Vec<u8>, OwnedSemaphorePermit)>();
    let budget = Arc::new(Semaphore::new(WRITER_BUDGET));
    let closing = budget.clone();
    std::thread::spawn(move || {
        let mut failing = false;
        while let Some((piece, permit)) = rx.blocking_recv() {
            match writer.write_all(&piece).and_then(|()| writer.flush()) {
                Ok(()) => failing = false,
                Err(e) => match &gone {
                    None => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!("port write failed: {e}");
                        }
                    }
                    Some(events) => {
                        tracing::warn!("port write failed: {e}; the host is gone");
                        // Waiting writers fail at once rather than wait for room that never comes.
                        closing.close();
                        events.blocking_send(PortEvent::Detached);
                        return;
                    }
                },
            }
            drop(permit);
        }
    });
    PortWriter::Thread(ThreadWriter { pieces: tx, budget })
}

/// Standard input and output. The end of input ends the modem.
pub fn stdio(events: impl Into<PortSender>) {
    spawn_threads(io::stdin(), io::stdout(), events.into(), false);
}

/// Listens on `addr`, one AT client at a time. A new client takes the port over at once,
/// like a new cable plugged in: the previous connection is closed (and logged), its unread
/// input and unwritten output are dropped. Every accepted client is announced with
/// [`PortEvent::Attached`].
pub async fn tcp(addr: &str, events: impl Into<PortSender>) -> io::Result<std::net::SocketAddr> {
    let events = events.into();
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let mut current: Option<(std::net::SocketAddr, Host)> = None;
        loop {
            let (tcp, peer) = accept(&listener, "AT port").await;
            if let Some((old, host)) = current.take() {
                tracing::info!(%old, new = %peer, "a new AT client takes the port over; closing the old one");
                host.close().await;
            }
            tracing::info!(%peer, "AT client attached");
            let _ = tcp.set_nodelay(true);
            let (rd, wr) = tcp.into_split();
            match attach(rd, wr, &events, peer.to_string()).await {
                Some(host) => current = Some((peer, host)),
                None => return,
            }
        }
    });
    Ok(local)
}

/// The address to bind for a user's `ADDR|PORT`: a bare port means loopback only (an AT or
/// control port can carry credentials and reset the modem; exposing it takes an address).
pub fn bind_address(addr: &str) -> String {
    match addr.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => addr.to_owned(),
    }
}

/// The next connection on `listener`; accept errors (out of descriptors, say) are logged
/// and retried after a pause rather than in a spin.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!("{what} accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one in-process host on its end of a byte stream (e.g. `tokio::io::duplex`): the
/// in-process modem's port, with the same bounds as a TCP client's.
pub async fn stream<S>(io: S, events: impl Into<PortSender>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    match attach(rd, wr, &events.into(), "in-process host".to_owned()).await {
        Some(_) => Ok(()),
        None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the modem is gone")),
    }
}

/// A stream host being served: its reader task and the signal that ends its writer.
struct Host {
    reader: tokio::task::JoinHandle<()>,
    replaced: Arc<Notify>,
}

impl Host {
    /// Ends the host: its reader delivers nothing more (not even `Detached`, which would
    /// detach the next host), and the modem's writes to it fail at once.
    async fn close(self) {
        self.reader.abort();
        let _ = self.reader.await;
        self.replaced.notify_one();
    }
}

/// Announces a stream host and starts reading it; `None` once the modem loop is gone.
async fn attach<R, W>(mut rd: R, wr: W, events: &PortSender, peer: String) -> Option<Host>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let replaced = Arc::new(Notify::new());
    let writer = StreamWriter {
        io: Box::new(wr),
        replaced: replaced.clone(),
    };
    if !events.send(PortEvent::Attached(PortWriter::Stream(writer))).await {
        return None;
    }
    let events = events.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                // Waits while the modem loop is behind: the client's bytes stay in the
                // socket and TCP stops it.
                Ok(n) if n > 0 => {
                    if !events.send(PortEvent::Data(buf[..n].to_vec())).await {
                        return;
                    }
                }
                _ => break,
            }
        }
        tracing::info!(%peer, "AT client detached");
        events.send(PortEvent::Detached).await;
    });
    Some(Host { reader, replaced })
}

/// A pseudo-terminal in raw mode whose other side a host program opens by path.
#[derive(Debug)]
pub struct Pty {
    /// The path of the side the host opens (`/dev/pts/N`).
    pub path: PathBuf,
    /// The symlink kept at the user's `--link` path, removed on drop.
    pub link: Option<PathBuf>,
    /// Our handle on the host's side: keeping it open means a host that closes and
    /// reopens the path finds everything as it left it.
    _slave: OwnedFd,
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Creates the pty, puts it in raw mode (no echo, no CR/LF mapping: `+WS_DATA` carries
/// binary), starts its threads and optionally links `link` to it.
pub fn pty(link: Option<&Path>, events: impl Into<PortSender>) -> io::Result<Pty> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pair = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    let path = nix::unistd::ttyname(pair.slave.as_fd()).map_err(io::Error::from)?;
    for fd in [pair.slave.as_fd(), pair.master.as_fd()] {
        let mut attrs = tcgetattr(fd).map_err(io::Error::from)?;
        cfmakeraw(&mut attrs);
        tcsetattr(fd, SetArg::TCSANOW, &attrs).map_err(io::Error::from)?;
    }
    let link = match link {
        Some(l) => {
            if std::fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(l)?;
            }
            std::os::unix::fs::symlink(&path, l)?;
            Some(l.to_path_buf())
        }
        None => None,
    };
    let master = std::fs::File::from(pair.master);
    let writer = master.try_clone()?;
    spawn_threads(master, writer, events.into(), true);
    Ok(Pty {
        path,
        link,
        _slave: pair.slave,
    })
}

/// A serial device (USB adapter, UART) at `baud`, 8N1, no flow control.
pub fn serial(device: &str, baud: u32, events: impl Into<PortSender>) -> io::Result<()> {
    let port = serialport::new(device, baud)
        .timeout(Duration::from_millis(200))
        .open_native()
        .map_err(io::Error::from)?;
    let writer = port.try_clone_native().map_err(io::Error::from)?;
    spawn_threads(port, writer, events.into(), true);
    Ok(())
}
