//! Faults on demand: the `--control` TCP port (one command per line, answered `ok`,
//! `error: <why>` or a status line) and the `--faults` schedule (`@<ms> <command>`).
//! Both go through a [`ModemHandle`], as a Rust test's calls do.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::faults::{parse, FaultError, Request};
use super::port::{accept, bind_address};
use super::ModemHandle;

/// Longest control line; a longer one is answered with an error and the connection closed.
const MAX_LINE: usize = 1024;

/// Control connections served at once; more are refused.
const MAX_CLIENTS: usize = 8;

/// Listens for control connections on `addr` (a bare port binds to loopback only: the
/// port can reset the modem and drop its links).
pub async fn serve(addr: &str, modem: ModemHandle) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(bind_address(addr)).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = accept(&listener, "control port").await;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "refusing a control connection: {MAX_CLIENTS} are open");
                let mut tcp = tcp;
                tokio::spawn(async move {
                    let refusal = format!("error: {MAX_CLIENTS} control connections are open\n");
                    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(refusal.as_bytes())).await;
                });
                continue;
            };
            let modem = modem.clone();
            tokio::spawn(async move {
                tracing::info!(%peer, "control client attached");
                if let Err(e) = session(tcp, &modem).await {
                    tracing::info!(%peer, "control client: {e}");
                }
                drop(slot);
            });
        }
    });
    Ok(local)
}

/// Answers one control connection's lines until it closes.
async fn session(tcp: TcpStream, modem: &ModemHandle) -> io::Result<()> {
    let (rd, mut wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
            wr.write_all(format!("error: line longer than {MAX_LINE} bytes\n").as_bytes())
                .await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let answer = answer(modem, text.trim()).await;
        wr.write_all(answer.as_bytes()).await?;
        wr.write_all(b"\n").await?;
    }
}

/// The answer to one control line: `ok`, `error: <why>`, or the status JSON.
pub async fn answer(modem: &ModemHandle, line: &str) -> String {
    let request = match parse(line) {
        Ok(request) => request,
        Err(e) => return format!("error: {e}"),
    };
    match modem.request(request).await {
        Ok(Some(status)) => status.to_json(),
        Ok(None) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// A `--faults` file: control lines on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// In file order.
    entries: Vec<Entry>,
}

/// One line of a schedule.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// When, after the start.
    at: Duration,
    request: Request,
    /// The line's number in the file, from 1.
    number: usize,
    /// The command as written.
    command: String,
}

impl Schedule {
    /// Reads a schedule: one `@<ms> <command>` per line; blank lines and `#` comments are
    /// skipped. Every line is checked now, so a typo fails at start, not mid-test.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (number, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at_line = |why: String| format!("line {}: {why}: {raw}", number + 1);
            let Some(rest) = line.strip_prefix('@') else {
                return Err(at_line("expected @<ms> <command>".to_owned()));
            };
            let (ms, command) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let ms: u64 = ms
                .parse()
                .map_err(|_| at_line(format!("not a number of milliseconds: {ms}")))?;
            let request = parse(command).map_err(|e| at_line(e.to_string()))?;
            entries.push(Entry {
                at: Duration::from_millis(ms),
                request,
                number: number + 1,
                command: command.trim().to_owned(),
            });
        }
        Ok(Schedule { entries })
    }

    /// Reads a schedule file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks every entry against the modem it will run on (`check` is
    /// [`super::Modem::check`]: a link that exists, a command it has), so that a schedule
    /// naming `drop 9` fails at start, not mid-test.
    pub fn check(&self, check: impl Fn(&Request) -> Result<(), FaultError>) -> Result<(), String> {
        for entry in &self.entries {
            check(&entry.request).map_err(|e| format!("line {}: {e}: {}", entry.number, entry.command))?;
        }
        Ok(())
    }

    /// Runs the schedule against `modem`, from now; each answer is logged.
    pub fn spawn(self, modem: ModemHandle) {
        let start = Instant::now();
        tokio::spawn(async move {
            for entry in self.entries {
                tokio::time::sleep_until(start + entry.at).await;
                let answer = match modem.request(entry.request).await {
                    Ok(Some(status)) => status.to_json(),
                    Ok(None) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                tracing::info!("faults @{} {}: {answer}", entry.at.as_millis(), entry.command);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::faults::Fault;

    #[test]
    fn a_schedule_reads_times_commands_and_comments() {
        let schedule = Schedule::parse(
            "# a driver's bad day\n\n@500 wifi off   # the AP reboots\n@2500 wifi on\n@3000 fail AT+WSOPEN 1\n",
        )
        .expect("valid");
        let got: Vec<_> = schedule
            .entries
            .iter()
            .map(|e| (e.at.as_millis(), e.request.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (500, Request::Fault(Fault::Wifi { up: false })),
                (2500, Request::Fault(Fault::Wifi { up: true })),
                (
                    3000,
                    Request::Fault(Fault::Fail {
                        command: "AT+WSOPEN".into(),
                        count: 1
                    })
                ),
            ]
        );
    }

    #[test]
    fn a_bad_schedule_line_is_named() {
        let err = Schedule::parse("@100 wifi on\n@x wifi off\n").expect_err("bad time");
        assert!(err.starts_with("line 2: not a number"), "{err}");
        let err = Schedule::parse("wifi off\n").expect_err("no time");
        assert!(err.contains("expected @<ms>"), "{err}");
        let err = Schedule::parse("@5 explode\n").expect_err("bad command");
        assert!(err.contains("line 1: unknown"), "{err}");
    }
}
