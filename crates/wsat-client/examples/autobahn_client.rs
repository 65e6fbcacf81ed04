//! Autobahn TestSuite testee: the standard client loop against a fuzzing server.
//!
//! `cargo run --release -p wsat-client --example autobahn_client -- [--stream] [--deflate] ws://127.0.0.1:9001 AGENT`
//!
//! Asks `/getCaseCount`, runs every `/runCase?case=N&agent=AGENT` echoing each text and
//! binary message with its type, then `/updateReports?agent=AGENT`. The client runs strict
//! (RFC 6455 validation), with chunks handed out as they arrive so invalid UTF-8 fails
//! fast, and whole-message delivery. By default on [`Client`] (a background task, events);
//! with `--stream` on [`WebSocket`] (`recv` and `send` in this task), the same
//! configuration. `--deflate` offers permessage-deflate (`permessage-deflate;
//! client_max_window_bits; client_no_context_takeover`: the server may then limit our window
//! and take its own context over, which covers Autobahn's sections 12 and 13); without it
//! nothing is offered.

use std::process::ExitCode;
use std::time::Duration;

use wsat_client::{
    ChunkPolicy, Client, ClientConfig, ClientError, DeflateConfig, Delivery, Event, Reconnect, WebSocket,
};

const CASE_BOUND: Duration = Duration::from_secs(120);
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `--deflate` was given (set once, before the first connection).
static DEFLATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn config(uri: String) -> ClientConfig {
    let mut c = ClientConfig::new(uri);
    if DEFLATE.get() == Some(&true) {
        c.compression = Some(DeflateConfig {
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        });
    }
    c.reconnect = Reconnect::Disabled;
    c.ping_interval = None;
    c.pong_timeout = None;
    c.delivery = Delivery::Messages { max_size: 64 << 20 };
    c.chunk_policy = ChunkPolicy::Eager;
    c.buffer_size = 1 << 20;
    c.close_timeout = Duration::from_secs(3);
    c.user_agent = Some("wsat-autobahn".into());
    c.event_capacity = 0;
    c
}

/// Connects to `uri`, echoes messages if `echo`, and returns the text messages received.
async fn run(uri: String, echo: bool) -> Result<Vec<String>, ClientError> {
    let (client, mut events) = Client::start(config(uri))?;
    let mut texts = Vec::new();
    let work = async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message(m) => {
                    if echo {
                        // Sending fails once the server has started closing; that is expected.
                        let _ = client.send_frame(m.opcode, true, m.payload.clone(), SEND_TIMEOUT).await;
                    }
                    texts.push(String::from_utf8_lossy(&m.payload).into_owned());
                }
                Event::Finish => break,
                _ => {}
            }
        }
    };
    if tokio::time::timeout(CASE_BOUND, work).await.is_err() {
        client.stop(Duration::from_secs(1)).await;
    }
    Ok(texts)
}

/// [`run`] on a [`WebSocket`]: connect, then `recv` and echo until the end.
async fn run_stream(uri: String, echo: bool) -> Result<Vec<String>, ClientError> {
    let (mut ws, _) = WebSocket::connect_with(&config(uri)).await?;
    let mut texts = Vec::new();
    let work = async {
        while let Some(received) = ws.recv().await {
            // An error comes once, after the closing handshake it caused; `None` follows.
            let Ok(m) = received else { continue };
            texts.push(String::from_utf8_lossy(&m.payload).into_owned());
            if echo {
                // Sending fails once the server has started closing; that is expected.
                let _ = ws.send(m).await;
            }
        }
    };
    // Past the bound the connection is dropped.
    let _ = tokio::time::timeout(CASE_BOUND, work).await;
    Ok(texts)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let mut stream = false;
    let mut deflate = false;
    while let Some(flag) = args.next_if(|a| a.starts_with("--")) {
        match flag.as_str() {
            "--stream" => stream = true,
            "--deflate" => deflate = true,
            other => {
                eprintln!("autobahn_client: unknown flag {other} (known: --stream, --deflate)");
                return ExitCode::FAILURE;
            }
        }
    }
    DEFLATE.set(deflate).expect("set once");
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "wsat".into());
    let session = |uri: String, echo: bool| async move {
        if stream {
            run_stream(uri, echo).await
        } else {
            run(uri, echo).await
        }
    };
    let count = match session(format!("{base}/getCaseCount"), false).await {
        Ok(texts) => texts.first().and_then(|t| t.trim().parse::<u32>().ok()),
        Err(e) => {
            eprintln!("autobahn_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(count) = count else {
        eprintln!("autobahn_client: no case count from {base}/getCaseCount");
        return ExitCode::FAILURE;
    };
    eprintln!("autobahn_client: {count} cases");
    for case in 1..=count {
        if let Err(e) = session(format!("{base}/runCase?case={case}&agent={agent}"), true).await {
            eprintln!("autobahn_client: case {case}: {e}");
        }
    }
    if let Err(e) = session(format!("{base}/updateReports?agent={agent}"), false).await {
        eprintln!("autobahn_client: updateReports: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
