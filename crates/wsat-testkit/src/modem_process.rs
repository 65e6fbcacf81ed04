//! `wsat modem` as a child process: started on a TCP AT port (`--tcp 127.0.0.1:0`) or a pty
//! (`--pty --link PATH`), awaited until it announces its port (and its control port, with
//! `--control`), its stderr kept, and killed on drop. [`ControlClient`] talks to the control
//! port: one command line, one answer line.
//!
//! The caller names the `wsat` binary: `env!("CARGO_BIN_EXE_wsat")` in the `wsat` package's
//! tests, [`crate::process::target_binary`] in another package's, a located path in the
//! bench. Tests use [`ModemCommand::start`] (a failure panics and shows the modem's stderr),
//! the bench [`ModemCommand::try_start`].

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};

use crate::at_host::{AtClient, READY, STEP};
use crate::process::status_kib;

/// The start of the line with which the modem announces its AT port on stderr.
pub const BANNER: &str = "wsat modem: AT port on ";
/// The start of the line with which the modem announces its control port (`--control`).
pub const CONTROL_BANNER: &str = "wsat modem: control port on ";
/// How long the modem may take to announce its AT port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The AT port a [`ModemCommand`] asks for.
#[derive(Debug, Clone)]
enum Port {
    Tcp,
    Pty(PathBuf),
}

/// How to start `wsat modem`: built with [`ModemCommand::new`], then [`ModemCommand::tcp`]
/// or [`ModemCommand::pty`], options, and [`ModemCommand::start`].
#[derive(Debug)]
pub struct ModemCommand {
    command: Command,
    port: Port,
    args: Vec<String>,
    forward: Option<String>,
    control: bool,
}

impl ModemCommand {
    /// `<wsat> modem`, with the TCP AT port unless [`ModemCommand::pty`] says otherwise.
    pub fn new(wsat: impl AsRef<OsStr>) -> ModemCommand {
        ModemCommand::wrapping(Command::new(wsat))
    }

    /// `modem` appended to a prepared command that runs the `wsat` binary (e.g. under
    /// `taskset`, with its environment set).
    pub fn wrapping(command: Command) -> ModemCommand {
        ModemCommand {
            command,
            port: Port::Tcp,
            args: Vec::new(),
            forward: None,
            control: false,
        }
    }

    /// The AT port on TCP: `--tcp 127.0.0.1:0` (the default).
    pub fn tcp(mut self) -> ModemCommand {
        self.port = Port::Tcp;
        self
    }

    /// The AT port on a pty, linked from `link`: `--pty --link LINK`.
    pub fn pty(mut self, link: &Path) -> ModemCommand {
        self.port = Port::Pty(link.to_path_buf());
        self
    }

    /// The control port on loopback: `--control 127.0.0.1:0`; its address is
    /// the [`Modem::control`] field once started. (A `--control ADDR` passed with
    /// [`ModemCommand::args`] is awaited and parsed too.)
    pub fn control(mut self) -> ModemCommand {
        self.control = true;
        self
    }

    /// More options after the port's (e.g. `--firmware master`).
    pub fn args<I, S>(mut self, args: I) -> ModemCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `RUST_LOG=<filter>` for the modem (otherwise it inherits the caller's environment).
    pub fn rust_log(mut self, filter: &str) -> ModemCommand {
        self.command.env("RUST_LOG", filter);
        self
    }

    /// Pass the modem's stderr lines after its announcement on to this process's stderr,
    /// each after `prefix` (they are kept in [`Modem::stderr`] either way).
    pub fn forward_stderr(mut self, prefix: &str) -> ModemCommand {
        self.forward = Some(prefix.to_owned());
        self
    }

    /// Starts the modem and waits (at most [`START_TIMEOUT`]) until it announces its port;
    /// panics with its stderr if it does not.
    pub fn start(self) -> Modem {
        self.try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`ModemCommand::start`] returning the failure (with the modem's last stderr lines).
    pub fn try_start(mut self) -> anyhow::Result<Modem> {
        self.command.arg("modem");
        let link = match &self.port {
            Port::Tcp => {
                self.command.args(["--tcp", "127.0.0.1:0"]);
                None
            }
            Port::Pty(link) => {
                self.command.arg("--pty").arg("--link").arg(link);
                Some(link.clone())
            }
        };
        if self.control {
            self.command.args(["--control", "127.0.0.1:0"]);
        }
        let want_control = self.control
            || self
                .args
                .iter()
                .any(|a| a == "--control" || a.starts_with("--control="));
        let mut child = self
            .command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `wsat modem`")?;
        let pipe = child.stderr.take().context("the modem's stderr")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let (keep, forward) = (stderr.clone(), self.forward);
        // Drained for the modem's whole life (a full pipe would stall it).
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                {
                    let mut s = keep.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&line);
                    s.push('\n');
                }
                // After the announcement nobody listens any more.
                if let Err(mpsc::SendError(line)) = lines_tx.send(line) {
                    if let Some(prefix) = &forward {
                        eprintln!("{prefix}{line}");
                    }
                }
            }
        });
        let mut modem = Modem {
            child,
            stderr,
            reader: Some(reader),
            tcp: None,
            pty: None,
            control: None,
            link,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let what = if want_control {
            "its AT port and its control port"
        } else {
            "its AT port"
        };
        let (mut banner, mut control) = (None, None);
        while banner.is_none() || (want_control && control.is_none()) {
            match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(BANNER) => banner = Some(line),
                Ok(line) if line.starts_with(CONTROL_BANNER) => control = Some(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "`wsat modem` did not announce {what} within {START_TIMEOUT:?}; {}",
                        modem.last_words()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("`wsat modem` ended before announcing {what}; {}", modem.last_words())
                }
            }
        }
        drop(lines_rx);
        let Some(banner) = banner else {
            bail!("`wsat modem` did not announce its AT port")
        };
        if let Some(line) = control {
            let addr = line[CONTROL_BANNER.len()..]
                .strip_prefix("tcp://")
                .and_then(|a| a.trim().parse().ok())
                .ok_or_else(|| anyhow!("unexpected control port announcement {line:?}"))?;
            modem.control = Some(addr);
        }
        let rest = &banner[BANNER.len()..];
        match &modem.link {
            None => {
                let addr = rest
                    .strip_prefix("tcp://")
                    .and_then(|a| a.trim().parse().ok())
                    .ok_or_else(|| anyhow!("unexpected announcement {banner:?}"))?;
                modem.tcp = Some(addr);
            }
            Some(link) => {
                let tail = format!(" (linked from {})", link.display());
                let dev = rest
                    .trim_end()
                    .strip_suffix(&tail)
                    .ok_or_else(|| anyhow!("the announcement {banner:?} does not end with {tail:?}"))?;
                modem.pty = Some(PathBuf::from(dev));
            }
        }
        Ok(modem)
    }
}

/// A running `wsat modem`; see the module documentation.
pub struct Modem {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// The TCP address of the AT port (`--tcp`).
    pub tcp: Option<SocketAddr>,
    /// The pty device (`--pty`), e.g. `/dev/pts/7`.
    pub pty: Option<PathBuf>,
    /// The control port's address (`--control`), as the modem announced it.
    pub control: Option<SocketAddr>,
    /// The `--link` path of the pty.
    link: Option<PathBuf>,
}

impl Modem {
    /// The modem's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the modem wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the process ended, and its last stderr lines: what to add to an error.
    pub fn last_words(&mut self) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("the modem process ended ({status})"),
            _ => "the modem process is still running".to_owned(),
        };
        let log = self.stderr();
        let lines: Vec<&str> = log.lines().collect();
        if lines.is_empty() {
            status
        } else {
            format!(
                "{status}; its last stderr lines: {}",
                lines[lines.len().saturating_sub(20)..].join(" | ")
            )
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- modem stderr ---\n{}", self.stderr())
    }

    /// The modem's resident memory in KiB from `/proc/PID/status`: `(VmRSS, VmHWM)`, i.e. now
    /// and the peak since it started; an error if the process is gone.
    pub fn try_memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.pid();
        status_kib(pid, "VmRSS:")
            .zip(status_kib(pid, "VmHWM:"))
            .ok_or_else(|| anyhow!("cannot read /proc/{pid}/status of the modem"))
    }

    /// [`Modem::try_memory_kib`], failing the test if it cannot be read.
    pub fn memory_kib(&self) -> (u64, u64) {
        self.try_memory_kib().unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics if the modem process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.exited() {
            self.fail(&format!("the modem process died ({status})"));
        }
    }

    /// A new TCP AT client, which takes the port over from any other; asserts that the first
    /// bytes are the boot banner `\r\nready\r\n` (within [`STEP`], retrying a connection
    /// that stays silent or is closed).
    pub fn connect(&self) -> AtClient {
        let deadline = Instant::now() + STEP;
        loop {
            let mut client = self.connect_raw();
            match client.wait_for_first_bytes(Duration::from_millis(500)) {
                Some(true) => {
                    client.expect(READY);
                    return client;
                }
                // Closed or silent: a modem that is still starting, or was just taken over.
                _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => self.fail("no AT client was accepted (no \\r\\nready\\r\\n banner) within 5 s"),
            }
        }
    }

    /// A raw TCP connection to the AT port, without reading anything.
    pub fn connect_raw(&self) -> AtClient {
        let addr = self.tcp.unwrap_or_else(|| self.fail("not a --tcp modem"));
        AtClient::connect_tcp(addr, "tcp AT client").unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// The control port's address; fails the test if the modem was started without one.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
            .unwrap_or_else(|| self.fail("no control port (start the modem with ModemCommand::control)"))
    }

    /// A new connection to the control port (within [`STEP`]).
    pub fn control_client(&self) -> ControlClient {
        ControlClient::connect(self.control_addr()).unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// Sends one control command on a connection of its own and returns the answer line
    /// (`ok`, `error: <why>`, the status JSON) without its newline; the modem must answer
    /// within [`STEP`].
    pub fn control_request(&self, line: &str) -> String {
        self.control_client()
            .request(line)
            .unwrap_or_else(|e| self.fail(&format!("control command {line:?}: {e:#}")))
    }

    /// Attaches to the AT port as a host would (TCP connect, or the pty opened by its link),
    /// reading nothing.
    pub fn try_attach(&self) -> anyhow::Result<AtClient> {
        match (&self.tcp, &self.link) {
            (Some(addr), _) => AtClient::connect_tcp(*addr, "tcp AT client"),
            (None, Some(link)) => AtClient::open_pty(link),
            (None, None) => bail!("the modem has no AT port"),
        }
    }
}

/// The longest answer [`ControlClient::read_line`] accepts (the status JSON is far shorter).
const MAX_CONTROL_ANSWER: usize = 64 * 1024;

/// A connection to the modem's control port (`--control`): one command per line, each
/// answered with one newline-ended line. Every read is bounded in time.
pub struct ControlClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    addr: SocketAddr,
}

impl ControlClient {
    /// Connects to the control port at `addr` (within [`STEP`]).
    pub fn connect(addr: SocketAddr) -> anyhow::Result<ControlClient> {
        let tcp = TcpStream::connect_timeout(&addr, STEP)
            .with_context(|| format!("connecting to the control port tcp://{addr}"))?;
        tcp.set_nodelay(true)?;
        Ok(ControlClient {
            tcp,
            buf: Vec::new(),
            eof: false,
            addr,
        })
    }

    /// Writes `line` and a newline.
    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.send_raw(format!("{line}\n").as_bytes())
    }

    /// Writes `bytes` as they are (a line without its end, a very long line, binary junk).
    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.tcp
            .write_all(bytes)
            .and_then(|()| self.tcp.flush())
            .with_context(|| format!("writing to the control port tcp://{}", self.addr))
    }

    /// The next answer line without its newline, within `within`; `Ok(None)` once the modem
    /// closed the connection (with no partial line left).
    pub fn read_line(&mut self, within: Duration) -> anyhow::Result<Option<String>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
            }
            if self.eof {
                ensure!(
                    self.buf.is_empty(),
                    "the control port closed after a partial line {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return Ok(None);
            }
            ensure!(
                self.buf.len() <= MAX_CONTROL_ANSWER,
                "more than {MAX_CONTROL_ANSWER} bytes from the control port without a newline"
            );
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no answer line from the control port within {within:?} (got {:?})",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            self.read_some(left)?;
        }
    }

    /// Sends `line` and returns its answer (within [`STEP`]); a closed connection is an error.
    pub fn request(&mut self, line: &str) -> anyhow::Result<String> {
        self.send_line(line)?;
        self.read_line(STEP)?
            .ok_or_else(|| anyhow!("the control port closed the connection instead of answering {line:?}"))
    }

    /// Whether the modem closes the connection within `within` (anything it still sends is
    /// kept for [`ControlClient::read_line`]).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.read_some(left).is_err() {
                break;
            }
        }
        self.eof
    }

    /// One read, at most `wait` long.
    fn read_some(&mut self, wait: Duration) -> anyhow::Result<()> {
        self.tcp.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut chunk = [0u8; 4096];
        match self.tcp.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
            Err(e) => return Err(e).context("reading the control port"),
        }
        Ok(())
    }
}

impl Drop for Modem {
    fn drop(&mut self) {
        // Killed, not terminated: a modem whose AT host stopped reading may not act on SIGTERM
        // soon, and a test must not wait for it. Its --link symlink is removed below.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
        if thread::panicking() {
            eprintln!(
                "--- wsat modem stderr ---\n{}--- end of modem stderr ---",
                self.stderr()
            );
        }
    }
}
