//! `wsat modem` as a child process: started on a TCP AT port (`--tcp 127.0.0.1:0`) or a pty
//! (`--pty --link PATH`), awaited until it announces its port, its stderr kept, and killed on
//! drop.
//!
//! The caller names the `wsat` binary: `env!("CARGO_BIN_EXE_wsat")` in the `wsat` package's
//! tests, [`crate::process::target_binary`] in another package's, a located path in the
//! bench. Tests use [`ModemCommand::start`] (a failure panics and shows the modem's stderr),
//! the bench [`ModemCommand::try_start`].

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::at_host::{AtClient, READY, STEP};
use crate::process::status_kib;

/// The start of the line with which the modem announces its AT port on stderr.
pub const BANNER: &str = "wsat modem: AT port on ";
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
            link,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let banner = loop {
            match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(BANNER) => break line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "`wsat modem` did not announce its AT port within {START_TIMEOUT:?}; {}",
                        modem.last_words()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "`wsat modem` ended before announcing its AT port; {}",
                        modem.last_words()
                    )
                }
            }
        };
        drop(lines_rx);
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
