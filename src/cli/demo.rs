//! `wsat demo`: the seed documents' two AT sessions, played against an in-process modem
//! and in-process echo servers, with nothing else needed on the machine: a ws echo, and
//! wss with mutual TLS on certificates generated just now (`AT+WSCFG=0,30,60,4096,3,0,0`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use wsat::echo_server::EchoServer;
use wsat::modem::link::LinkProfile;
use wsat::modem::port::{PortEvent, PortWriter};
use wsat::modem::{Modem, ModemOptions};
use wsat::pki::DemoPki;
use wsat::tls_server::server_config;
use wsat_at::{EngineConfig, Pki};
use wsat_client::ChunkPolicy;

/// How long one answer may take.
const ANSWER: Duration = Duration::from_secs(10);

pub async fn run() -> anyhow::Result<ExitCode> {
    let pki = DemoPki::generate().context("generating the demo PKI")?;
    let ws = EchoServer::bind("127.0.0.1:0", None).await?;
    let ws_addr = ws.local_addr()?;
    let tls = server_config(
        pki.server.cert.as_bytes(),
        pki.server.key.as_bytes(),
        Some(pki.ca.cert.as_bytes()),
    )?;
    let wss = EchoServer::bind("127.0.0.1:0", Some(tls)).await?;
    let wss_addr = wss.local_addr()?;
    let servers = [ws.spawn(), wss.spawn()];

    // The modem's factory PKI: CA #0 verifies the server, client certificate #0 is ours.
    let engine = EngineConfig {
        pki: Pki {
            cas: vec![pki.ca.cert.clone().into_bytes()],
            client_certs: vec![pki.client.cert.clone().into_bytes()],
            client_keys: vec![pki.client.key.clone().into_bytes()],
        },
        ..EngineConfig::default()
    };
    let (port_tx, port_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let _ = port_tx.send(PortEvent::Attached(PortWriter::Channel(out_tx)));
    let options = ModemOptions {
        engine,
        // Full chunks: the printed transcript is the same on every run.
        link: LinkProfile {
            chunking: ChunkPolicy::Full,
            ..LinkProfile::default()
        },
        banner_per_attach: false,
        exit_on_detach: true,
        ..ModemOptions::default()
    };
    let modem = tokio::spawn(Modem::new(options).run(port_rx, std::future::pending()));
    let mut host = Host {
        port: port_tx,
        output: out_rx,
    };

    println!("# wsat demo: the ESP-AT WebSocket examples, played against `wsat modem`");
    println!("# H: what the MCU sends, D: what the modem answers (byte for byte, escaped)\n");
    host.expect("\r\nready\r\n").await?;
    println!("## WebSocket over TCP (echo server at ws://{ws_addr})");
    host.exchange("AT+CWMODE=1\r\n", "AT+CWMODE=1\r\n\r\nOK\r\n").await?;
    host.exchange(
        "AT+CWJAP=\"espressif\",\"1234567890\"\r\n",
        "AT+CWJAP=\"espressif\",\"1234567890\"\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n",
    )
    .await?;
    host.echo_session(&format!("ws://{ws_addr}")).await?;

    println!("\n## WebSocket over TLS, mutual authentication (echo server at wss://{wss_addr})");
    host.exchange(
        "AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n",
        "AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n\r\nOK\r\n+TIME_UPDATED\r\n",
    )
    .await?;
    host.send("AT+CIPSNTPTIME?\r\n");
    host.expect_prefix("AT+CIPSNTPTIME?\r\n+CIPSNTPTIME:", "\r\nOK\r\n")
        .await?;
    host.exchange(
        "AT+WSCFG=0,30,60,4096,3,0,0\r\n",
        "AT+WSCFG=0,30,60,4096,3,0,0\r\n\r\nOK\r\n",
    )
    .await?;
    host.echo_session(&format!("wss://{wss_addr}")).await?;

    drop(host);
    let _ = tokio::time::timeout(ANSWER, modem).await;
    for s in servers {
        s.abort();
    }
    println!("\nEvery answer above matched the firmware's bytes.");
    println!("Next: `wsat modem --tcp 127.0.0.1:3333` or `wsat modem --pty --link ./ttyWS0`, and your own driver.");
    Ok(ExitCode::SUCCESS)
}

/// The MCU side of the demo: sends commands, checks the modem's exact answers.
struct Host {
    port: mpsc::UnboundedSender<PortEvent>,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Host {
    fn send(&self, bytes: &str) {
        println!("H: {}", bytes.escape_default());
        let _ = self.port.send(PortEvent::Data(bytes.as_bytes().to_vec()));
    }

    /// The seed's session on link 0: open, send "test", see the echo, close.
    async fn echo_session(&mut self, uri: &str) -> anyhow::Result<()> {
        let open = format!("AT+WSOPEN=0,\"{uri}\"\r\n");
        self.exchange(&open, &format!("{open}+WS_CONNECTED:0\r\n\r\nOK\r\n"))
            .await?;
        self.exchange("AT+WSSEND=0,4\r\n", "AT+WSSEND=0,4\r\n\r\nOK\r\n\r\n>")
            .await?;
        self.exchange("test", "\r\nSEND OK\r\n+WS_DATA:0,4,test\r\n").await?;
        self.exchange("AT+WSCLOSE=0\r\n", "AT+WSCLOSE=0\r\n\r\nOK\r\n").await
    }

    async fn exchange(&mut self, command: &str, answer: &str) -> anyhow::Result<()> {
        self.send(command);
        self.expect(answer).await
    }

    /// Reads exactly `want.len()` bytes and requires them to be `want`.
    async fn expect(&mut self, want: &str) -> anyhow::Result<()> {
        let got = self.read(want.len(), want).await?;
        if got != want.as_bytes() {
            bail!(
                "expected {:?}, the modem sent {:?}",
                want,
                String::from_utf8_lossy(&got)
            );
        }
        Ok(())
    }

    /// Reads an answer that starts with `prefix` and ends with `suffix` (a clock reading).
    async fn expect_prefix(&mut self, prefix: &str, suffix: &str) -> anyhow::Result<()> {
        let mut got = Vec::new();
        while !(got.len() > prefix.len() + suffix.len() && got.ends_with(suffix.as_bytes())) {
            got.extend_from_slice(&self.next_piece(prefix).await?);
            if got.len() > 200 {
                break;
            }
        }
        if !got.starts_with(prefix.as_bytes()) || !got.ends_with(suffix.as_bytes()) {
            bail!("unexpected answer {:?}", String::from_utf8_lossy(&got));
        }
        Ok(())
    }

    async fn read(&mut self, len: usize, want: &str) -> anyhow::Result<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < len {
            got.extend_from_slice(&self.next_piece(want).await?);
        }
        Ok(got)
    }

    /// The modem's next output piece, printed as it arrives.
    async fn next_piece(&mut self, want: &str) -> anyhow::Result<Vec<u8>> {
        let piece = tokio::time::timeout(ANSWER, self.output.recv())
            .await
            .with_context(|| format!("no answer from the modem; expected {want:?}"))?
            .context("the modem ended")?;
        println!("D: {}", String::from_utf8_lossy(&piece).escape_default());
        Ok(piece)
    }
}
