//! `wsat demo`: wsat at work with nothing else on the machine. An in-process echo
//! server (ws, and wss with mutual TLS on certificates generated now) and a client
//! session against each, printed as a transcript of the ESP client's events.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use wsat::echo_server::EchoServer;
use wsat::pki::DemoPki;
use wsat::tls_server::server_config;
use wsat_client::{Client, ClientConfig, Event, OpCode, Reconnect, Verification};

const STEP: Duration = Duration::from_secs(5);

pub async fn run() -> anyhow::Result<ExitCode> {
    let pki = DemoPki::generate().context("generating the demo PKI")?;
    let ws = EchoServer::bind("127.0.0.1:0", None).await?;
    let ws_uri = format!("ws://{}", ws.local_addr()?);
    let tls = server_config(
        pki.server.cert.as_bytes(),
        pki.server.key.as_bytes(),
        Some(pki.ca.cert.as_bytes()),
    )?;
    let wss = EchoServer::bind("127.0.0.1:0", Some(tls)).await?;
    let wss_uri = format!("wss://{}", wss.local_addr()?);
    let servers = [ws.spawn(), wss.spawn()];

    println!("# wsat demo: ESP WebSocket client semantics against in-process echo servers\n");
    println!("## {ws_uri} (plain TCP)");
    session(ClientConfig::new(&ws_uri)).await?;

    println!("\n## {wss_uri} (TLS, mutual authentication with certificates generated just now)");
    let mut config = ClientConfig::new(&wss_uri);
    config.tls.ca_pem = Some(pki.ca.cert.clone().into_bytes());
    config.tls.client_cert_pem = Some(pki.client.cert.clone().into_bytes());
    config.tls.client_key_pem = Some(pki.client.key.clone().into_bytes());
    config.tls.verification = Verification::Full;
    session(config).await?;

    for s in servers {
        s.abort();
    }
    println!("\nNext: `wsat echo-server --listen 127.0.0.1:8765` and `wsat connect ws://127.0.0.1:8765`.");
    Ok(ExitCode::SUCCESS)
}

/// Echo ×2, a fragmented text, a 2000-byte text seen through a 1024-byte buffer, close.
async fn session(mut config: ClientConfig) -> anyhow::Result<()> {
    config.reconnect = Reconnect::Disabled;
    config.buffer_size = 1024;
    let (client, mut events) = Client::start(config)?;
    let mut step = 0;
    loop {
        let event = tokio::time::timeout(STEP, events.recv())
            .await
            .context("the demo stalled")?;
        let Some(event) = event else {
            bail!("the client ended early")
        };
        print_event(&event);
        match event {
            Event::Connected(_) => {
                send(&client, "hello 0000").await?;
                send(&client, "hello 0001").await?;
            }
            Event::Data(d) if d.ends_message() => {
                step += 1;
                match step {
                    2 => {
                        println!(
                            "-> text part \"{}\" (FIN=0), continuation \"{}\" (FIN=0), empty continuation (FIN=1)",
                            "a".repeat(8),
                            "b".repeat(8)
                        );
                        client
                            .send_part(OpCode::TEXT, Bytes::from("a".repeat(8)), false, STEP)
                            .await?;
                        client
                            .send_part(OpCode::CONTINUATION, Bytes::from("b".repeat(8)), false, STEP)
                            .await?;
                        client.send_fin(STEP).await?;
                    }
                    3 => {
                        println!(
                            "-> text of 2000 bytes (leaves as 1024 + 976 frames; the echo comes back as one frame)"
                        );
                        client.send(OpCode::TEXT, Bytes::from("x".repeat(2000)), STEP).await?;
                    }
                    4 => {
                        println!("-> close 1000");
                        client.close(Some(1000), "demo done", STEP).await?;
                    }
                    _ => {}
                }
            }
            Event::Finish => return Ok(()),
            Event::Disconnected(_) => bail!("the demo lost its connection"),
            _ => {}
        }
    }
}

async fn send(client: &Client, text: &str) -> anyhow::Result<()> {
    println!("-> text \"{text}\"");
    client.send_text(text, STEP).await?;
    Ok(())
}

fn print_event(event: &Event) {
    match event {
        Event::BeforeConnect { uri } => println!("<- BEFORE_CONNECT {uri}"),
        Event::Connected(c) => println!("<- CONNECTED (HTTP {})", c.status),
        Event::Data(d) => {
            let shown = if d.opcode == OpCode::CLOSE && d.data.len() >= 2 {
                format!("(close code {})", u16::from_be_bytes([d.data[0], d.data[1]]))
            } else if d.data.len() > 24 {
                format!("{}… ({} bytes)", String::from_utf8_lossy(&d.data[..24]), d.data.len())
            } else {
                format!("{:?}", String::from_utf8_lossy(&d.data))
            };
            println!(
                "<- DATA opcode={} fin={} payload_len={} offset={} len={} {shown}",
                d.opcode.value(),
                u8::from(d.fin),
                d.payload_len,
                d.offset,
                d.data.len()
            );
        }
        Event::Message(m) => println!("<- MESSAGE {} ({} bytes)", m.opcode, m.payload.len()),
        Event::Error(e) => println!("<- ERROR {e}"),
        Event::Disconnected(r) => println!("<- DISCONNECTED {r:?}"),
        Event::Closed { code, reason } => println!("<- CLOSED code={code:?} reason={reason:?}"),
        Event::Finish => println!("<- FINISH"),
    }
}
