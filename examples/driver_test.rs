//! Testing an AT driver against wsat's modem in this process: no chip, no serial adapter,
//! nothing on the network but an echo server on loopback.
//!
//! ```sh
//! cargo run --example driver_test
//! ```
//!
//! [`Driver`] is what an MCU's ESP-AT driver does, written in Rust: it sends a command and
//! collects the lines up to `OK`, `ERROR` or `busy p...`, keeps the URCs (`+WS_CONNECTED`,
//! `+WS_DATA`, …) that arrive meanwhile, and retries what the chip may refuse. `main` is the
//! test: it runs the driver through a session against [`wsat::modem::in_memory`] and
//! injects faults through the [`wsat::modem::ModemHandle`] — a forced `ERROR` for
//! `AT+WSOPEN`, a busy chip, a lost connection. It prints the transcript (`H:` driver to
//! modem, `D:` modem to driver) and exits non-zero at the first surprise.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsat::echo_server::EchoServer;
use wsat::modem::link::LinkProfile;
use wsat::modem::{in_memory, ModemOptions};

/// The longest the driver waits for anything from the modem.
const ANSWER: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // The peer: a WebSocket echo server on a free loopback port.
    let server = EchoServer::bind("127.0.0.1:0", None).await?;
    let uri = format!("ws://{}", server.local_addr()?);
    let _server = server.spawn();

    // The modem, reconnecting 200 ms after a lost connection (the chip waits 10-15 s).
    let options = ModemOptions {
        link: LinkProfile {
            reconnect_delay: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    };
    let (modem, port) = in_memory(options).await?;
    let mut at = Driver::new(port);

    at.wait_for(&Urc::Ready).await?;
    at.ok("ATE0").await?;
    at.ok("AT+CWMODE=1").await?;
    at.ok("AT+CWJAP=\"espressif\",\"1234567890\"").await?;

    println!("# fault: the next AT+WSOPEN answers ERROR");
    modem.fail("AT+WSOPEN", 1).await?;
    ensure!(at.open(0, &uri).await? == 2, "the refused open was not retried");
    at.send(0, b"hello").await?;
    ensure!(at.receive(0, 5).await? == b"hello", "wrong echo");

    println!("# fault: the chip is busy for 500 ms");
    modem.busy(Duration::from_millis(500)).await?;
    let (links, attempts) = at.retry("AT+WSOPEN?").await?;
    ensure!(attempts > 1, "the chip was not busy");
    ensure!(
        links == [format!("+WSOPEN:0,2,\"{uri}\"")],
        "unexpected links: {links:?}"
    );

    println!("# fault: link 0 loses its TCP connection");
    modem.drop_link(0).await?;
    at.wait_for(&Urc::Disconnected(0)).await?;
    at.wait_for(&Urc::Connected(0)).await?; // the modem reconnects by itself
    at.send(0, b"again").await?;
    ensure!(at.receive(0, 5).await? == b"again", "wrong echo after the reconnect");

    at.ok("AT+WSCLOSE=0").await?;
    println!("driver_test: every check passed");
    Ok(())
}

/// Something the modem says without being asked.
#[derive(Debug, Clone, PartialEq)]
enum Urc {
    Ready,
    Connected(u32),
    Disconnected(u32),
    Closed(u32),
    Data(u32, Vec<u8>),
    /// `WIFI CONNECTED`, `+TIME_UPDATED`, …
    Other(String),
}

/// How a command ended.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `OK` (or `SEND OK`), with the information lines before it.
    Ok(Vec<String>),
    Error,
    /// `busy p...`: the command was not run; send it again later.
    Busy,
}

/// One thing read from the AT port.
enum Item {
    Line(String),
    /// The `>` of `AT+WSSEND`, which no line end follows.
    Prompt,
    Data(u32, Vec<u8>),
}

/// A minimal ESP-AT WebSocket driver over any byte stream (a UART, TCP, a duplex pipe).
struct Driver<S> {
    port: S,
    input: Vec<u8>,
    urcs: VecDeque<Urc>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn new(port: S) -> Self {
        Driver {
            port,
            input: Vec::new(),
            urcs: VecDeque::new(),
        }
    }

    /// Sends one command line and reads up to its result.
    async fn command(&mut self, command: &str) -> Result<Reply> {
        self.write(format!("{command}\r\n").as_bytes()).await?;
        self.result(command).await
    }

    /// A command that must answer `OK`; its information lines.
    async fn ok(&mut self, command: &str) -> Result<Vec<String>> {
        match self.command(command).await? {
            Reply::Ok(lines) => Ok(lines),
            other => bail!("{command}: {other:?}"),
        }
    }

    /// A command sent again, after a pause, while it answers `busy p...` or `ERROR`: its
    /// information lines, and how many attempts it took.
    async fn retry(&mut self, command: &str) -> Result<(Vec<String>, u32)> {
        for attempt in 1..=10 {
            match self.command(command).await? {
                Reply::Ok(lines) => return Ok((lines, attempt)),
                Reply::Error | Reply::Busy => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        bail!("{command}: no OK after 10 attempts")
    }

    /// Opens `link` (retrying a refusal) and waits for its `+WS_CONNECTED`; how many
    /// attempts it took.
    async fn open(&mut self, link: u32, uri: &str) -> Result<u32> {
        let (_, attempts) = self.retry(&format!("AT+WSOPEN={link},\"{uri}\"")).await?;
        self.wait_for(&Urc::Connected(link)).await?;
        Ok(attempts)
    }

    /// Sends `data` as one text message: `AT+WSSEND`, the `>` prompt, the bytes, `SEND OK`.
    async fn send(&mut self, link: u32, data: &[u8]) -> Result<()> {
        let command = format!("AT+WSSEND={link},{}", data.len());
        self.ok(&command).await?;
        match self.next_item().await? {
            Item::Prompt => {}
            _ => bail!("{command}: no > prompt"),
        }
        self.write(data).await?;
        match self.result(&command).await? {
            Reply::Ok(_) => Ok(()),
            other => bail!("{command}: {other:?} after the payload"),
        }
    }

    /// Collects `+WS_DATA` of `link` until `len` bytes have come (the chip may cut a
    /// message into several chunks).
    async fn receive(&mut self, link: u32, len: usize) -> Result<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < len {
            match self.next_urc().await? {
                Urc::Data(id, chunk) if id == link => got.extend(chunk),
                Urc::Other(_) => {}
                other => bail!("expected +WS_DATA:{link}, got {other:?}"),
            }
        }
        Ok(got)
    }

    /// Waits for `want`, skipping other URCs.
    async fn wait_for(&mut self, want: &Urc) -> Result<()> {
        while self.next_urc().await? != *want {}
        Ok(())
    }

    /// The oldest URC not yet taken.
    async fn next_urc(&mut self) -> Result<Urc> {
        loop {
            if let Some(urc) = self.urcs.pop_front() {
                return Ok(urc);
            }
            match self.next_item().await? {
                Item::Line(line) => match urc(&line) {
                    Some(urc) => self.urcs.push_back(urc),
                    None => bail!("unexpected line {line:?}"),
                },
                Item::Data(link, data) => self.urcs.push_back(Urc::Data(link, data)),
                Item::Prompt => bail!("unexpected > prompt"),
            }
        }
    }

    /// Reads up to the result of `command`, keeping URCs for later.
    async fn result(&mut self, command: &str) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            match self.next_item().await? {
                Item::Line(line) if line == command => {} // the echo (ATE1)
                Item::Line(line) if line == "OK" || line == "SEND OK" => return Ok(Reply::Ok(lines)),
                Item::Line(line) if line == "ERROR" => return Ok(Reply::Error),
                Item::Line(line) if line == "busy p..." => return Ok(Reply::Busy),
                Item::Line(line) => match urc(&line) {
                    Some(urc) => self.urcs.push_back(urc),
                    None => lines.push(line),
                },
                Item::Data(link, data) => self.urcs.push_back(Urc::Data(link, data)),
                Item::Prompt => bail!("{command}: unexpected > prompt"),
            }
        }
    }

    /// The next line, prompt or `+WS_DATA` from the port.
    async fn next_item(&mut self) -> Result<Item> {
        loop {
            if let Some(item) = parse(&mut self.input) {
                match &item {
                    Item::Line(line) => println!("D: {line}"),
                    Item::Prompt => println!("D: >"),
                    Item::Data(link, data) => println!("D: +WS_DATA:{link},{},{}", data.len(), show(data)),
                }
                return Ok(item);
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(ANSWER, self.port.read(&mut chunk))
                .await
                .context("the modem did not answer")??;
            ensure!(n > 0, "the modem closed the port");
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        println!("H: {}", show(bytes));
        self.port.write_all(bytes).await?;
        Ok(())
    }
}

/// Takes the next complete item off the front of `input`; `None` until one has arrived.
fn parse(input: &mut Vec<u8>) -> Option<Item> {
    while input.starts_with(b"\r\n") {
        input.drain(..2);
    }
    if input.first() == Some(&b'>') {
        input.drain(..1);
        return Some(Item::Prompt);
    }
    if let Some(rest) = input.strip_prefix(b"+WS_DATA:") {
        // +WS_DATA:<link>,<len>,<data>\r\n: the data is binary, <len> bytes long.
        let mut fields = rest.splitn(3, |b| *b == b',');
        let link = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let len_field = fields.next()?;
        let len: usize = std::str::from_utf8(len_field).ok()?.parse().ok()?;
        let start = b"+WS_DATA:".len() + rest.len() - fields.next()?.len();
        if input.len() < start + len + 2 {
            return None;
        }
        let data = input[start..start + len].to_vec();
        input.drain(..start + len + 2);
        return Some(Item::Data(link, data));
    }
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&input[..end]).into_owned();
    input.drain(..end + 2);
    Some(Item::Line(line))
}

/// The URC a line is, if it is one.
fn urc(line: &str) -> Option<Urc> {
    let link = |text: &str| text.parse().ok();
    match line.split_once(':') {
        Some(("+WS_CONNECTED", id)) => link(id).map(Urc::Connected),
        Some(("+WS_DISCONNECTED", id)) => link(id).map(Urc::Disconnected),
        Some(("+WS_CLOSED", id)) => link(id).map(Urc::Closed),
        _ if line == "ready" => Some(Urc::Ready),
        _ if line.starts_with("WIFI ") || line == "+TIME_UPDATED" => Some(Urc::Other(line.to_owned())),
        _ => None,
    }
}

/// `bytes` for the transcript: CR and LF as `\r` `\n`, other controls as `\xNN`.
fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\r' => "\\r".to_owned(),
            b'\n' => "\\n".to_owned(),
            b' '..=b'~' => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}
