//! The AT port's transports. Each delivers [`PortEvent`]s to the modem loop and takes
//! the modem's output through a [`PortWriter`]; blocking devices (stdio, pty, serial)
//! run a reader and a writer thread, TCP runs on tokio.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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
    /// A TCP client.
    Tcp(OwnedWriteHalf),
    /// A writer thread (stdio, pty, serial). Bounded: a slow port (a UART at 115200 baud)
    /// holds the modem loop back, and through it the links' reads, as on the chip.
    Thread(mpsc::Sender<Vec<u8>>),
    /// An in-process host (the demo, tests): each piece arrives as one message.
    Channel(mpsc::UnboundedSender<Vec<u8>>),
}

impl PortWriter {
    /// Writes one piece with one write (URCs stay whole).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            PortWriter::Tcp(w) => w.write_all(bytes).await,
            PortWriter::Thread(tx) => tx
                .send(bytes.to_vec())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "port writer gone")),
            PortWriter::Channel(tx) => tx
                .send(bytes.to_vec())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "port reader gone")),
        }
    }
}

/// Reads `reader` on a thread into `events`. With `retry_eof` an end of input or an error
/// means "nobody attached right now" (a pty) and reading goes on.
fn spawn_reader<R: Read + Send + 'static>(mut reader: R, events: mpsc::UnboundedSender<PortEvent>, retry_eof: bool) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) if !retry_eof => {
                    let _ = events.send(PortEvent::Detached);
                    return;
                }
                Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                Ok(n) => {
                    if events.send(PortEvent::Data(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::TimedOut) => {}
                // EIO on a pty master while no peer holds the other side: wait for one.
                Err(_) if retry_eof => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    tracing::warn!("port read failed: {e}");
                    let _ = events.send(PortEvent::Detached);
                    return;
                }
            }
        }
    });
}

/// Writes every piece from the channel with one write each, flushing after each.
fn spawn_writer<W: Write + Send + 'static>(mut writer: W) -> PortWriter {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        while let Some(piece) = rx.blocking_recv() {
            if let Err(e) = writer.write_all(&piece).and_then(|()| writer.flush()) {
                tracing::warn!("port write failed: {e}");
            }
        }
    });
    PortWriter::Thread(tx)
}

/// Standard input and output. The end of input ends the modem.
pub fn stdio(events: mpsc::UnboundedSender<PortEvent>) {
    let _ = events.send(PortEvent::Attached(spawn_writer(io::stdout())));
    spawn_reader(io::stdin(), events, false);
}

/// Listens on `addr`, one AT client at a time: a second client is refused while one is
/// attached. Every accepted client is announced with [`PortEvent::Attached`].
pub async fn tcp(addr: &str, events: mpsc::UnboundedSender<PortEvent>) -> io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            if busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
                tracing::warn!(%peer, "refusing a second AT client");
                drop(tcp);
                continue;
            }
            tracing::info!(%peer, "AT client attached");
            let _ = tcp.set_nodelay(true);
            let (mut rd, wr) = tcp.into_split();
            if events.send(PortEvent::Attached(PortWriter::Tcp(wr))).is_err() {
                return;
            }
            let events = events.clone();
            let busy = busy.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 4096];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(n) if n > 0 => {
                            let _ = events.send(PortEvent::Data(buf[..n].to_vec()));
                        }
                        _ => break,
                    }
                }
                tracing::info!(%peer, "AT client detached");
                busy.store(false, std::sync::atomic::Ordering::Release);
                let _ = events.send(PortEvent::Detached);
            });
        }
    });
    Ok(local)
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
pub fn pty(link: Option<&Path>, events: mpsc::UnboundedSender<PortEvent>) -> io::Result<Pty> {
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
    let _ = events.send(PortEvent::Attached(spawn_writer(writer)));
    spawn_reader(master, events, true);
    Ok(Pty {
        path,
        link,
        _slave: pair.slave,
    })
}

/// A serial device (USB adapter, UART) at `baud`, 8N1, no flow control.
pub fn serial(device: &str, baud: u32, events: mpsc::UnboundedSender<PortEvent>) -> io::Result<()> {
    let port = serialport::new(device, baud)
        .timeout(Duration::from_millis(200))
        .open_native()
        .map_err(io::Error::from)?;
    let writer = port.try_clone_native().map_err(io::Error::from)?;
    let _ = events.send(PortEvent::Attached(spawn_writer(writer)));
    spawn_reader(port, events, true);
    Ok(())
}
