//! The ESP-IDF `esp_websocket_client` example app, on [`Client`]: the ESP client's model
//! (a background task, events, auto-reconnect).
//!
//! ```text
//! cargo run -p wsat-client --example esp_example -- ws://127.0.0.1:9002
//! cargo run -p wsat-client --example esp_example            # asks for the URI on stdin
//! ```
//!
//! What the example app does (docs/ESP-CLIENT.md §5.2), step by step:
//! 1. Takes the endpoint's URI (from the command line, or "Please enter uri of websocket
//!    endpoint" and a line from stdin, as with `CONFIG_WEBSOCKET_URI_FROM_STDIN`).
//! 2. `esp_websocket_client_init` + `esp_websocket_register_events` + `_start`:
//!    [`Client::start`], and a task that logs every [`Event`] the way the example's handler
//!    does (`WEBSOCKET_EVENT_CONNECTED`, `WEBSOCKET_EVENT_DATA` with `Received opcode=…`,
//!    `Received=…` and `Total payload length=…`, …).
//! 3. Sends `hello 0000`, `hello 0001`, … as text, one a second while connected
//!    (`--count`, default 5; `--interval-ms`, default 1000).
//! 4. Waits until no data came for 5 seconds (the example's one-shot shutdown timer,
//!    restarted by every DATA event; `--no-data-timeout-ms`), then
//!    `esp_websocket_client_close`: [`Client::close`] with 1000, which returns once the
//!    closing handshake is done and the client task has ended, and logs
//!    `Websocket Stopped`. Dropping the client is `esp_websocket_client_destroy`.
//!
//! The example's fragmented and 2000-byte sends are left out (see `Client::send_part` and
//! `Client::send`). Log lines go to stdout as `I (<ms since start>) WEBSOCKET: <message>`,
//! `I`, `W` or `E` as the ESP example logs them. Exit status 0 after a clean close. As on
//! the chip, a server that cannot be reached is retried every 10 s and nothing is sent
//! until it answers: Ctrl-C ends the program. `esp_example_stream` is the same app on
//! `WebSocket`.

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wsat_client::{Client, ClientConfig, DataChunk, Event, Events, OpCode};

const TAG: &str = "WEBSOCKET";
/// `portMAX_DELAY` in the ESP example; a bound here.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// `ESP_LOGx`: `<level> (<ms since start>) WEBSOCKET: <message>` on stdout.
fn log(level: char, message: std::fmt::Arguments<'_>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    println!("{level} ({ms}) {TAG}: {message}");
}

macro_rules! logi { ($($t:tt)*) => { log('I', format_args!($($t)*)) }; }
macro_rules! logw { ($($t:tt)*) => { log('W', format_args!($($t)*)) }; }
macro_rules! loge { ($($t:tt)*) => { log('E', format_args!($($t)*)) }; }

struct Options {
    uri: Option<String>,
    count: u32,
    interval: Duration,
    no_data_timeout: Duration,
}

const USAGE: &str =
    "usage: esp_example [URI] [--count N (5)] [--interval-ms MS (1000)] [--no-data-timeout-ms MS (5000)]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        uri: None,
        count: 5,
        interval: Duration::from_millis(1000),
        no_data_timeout: Duration::from_millis(5000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            value.parse().map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match arg.as_str() {
            "--count" => options.count = number("--count")? as u32,
            "--interval-ms" => options.interval = Duration::from_millis(number("--interval-ms")?),
            "--no-data-timeout-ms" => options.no_data_timeout = Duration::from_millis(number("--no-data-timeout-ms")?),
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}\n{USAGE}")),
            _ if options.uri.is_none() => options.uri = Some(arg),
            _ => return Err(format!("one URI only\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The URI from the command line, or from a line of stdin as the ESP example reads it.
fn endpoint_uri(from_args: Option<String>) -> Option<String> {
    if from_args.is_some() {
        return from_args;
    }
    logi!("Please enter uri of websocket endpoint");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    let uri = line.trim().to_string();
    logi!("Endpoint uri: {uri}");
    (!uri.is_empty()).then_some(uri)
}

/// The example's `websocket_event_handler`, for every event: logs it, and tells the
/// shutdown timer about every DATA event.
async fn log_events(mut events: Events, data_seen: watch::Sender<Instant>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::BeforeConnect { uri } => logi!("WEBSOCKET_EVENT_BEFORE_CONNECT ({uri})"),
            Event::Connected(_) => logi!("WEBSOCKET_EVENT_CONNECTED"),
            Event::Data(chunk) => {
                logi!("WEBSOCKET_EVENT_DATA");
                log_chunk(&chunk);
                data_seen.send_replace(Instant::now());
            }
            // Only with `Delivery::Messages`; this example keeps the ESP client's chunks.
            Event::Message(_) => {}
            Event::Error(e) => {
                logi!("WEBSOCKET_EVENT_ERROR");
                if let Some(status) = e.http_status() {
                    loge!("HTTP status code: {status}");
                }
                loge!("Last error: {e}");
            }
            Event::Disconnected(reason) => {
                logi!("WEBSOCKET_EVENT_DISCONNECTED");
                loge!("Disconnect reason: {reason:?}");
            }
            Event::Closed { code, reason } => {
                logi!("WEBSOCKET_EVENT_CLOSED");
                logi!("Close status code={}, reason={reason:?}", code.unwrap_or(0));
            }
            Event::Finish => logi!("WEBSOCKET_EVENT_FINISH"),
        }
    }
}

/// What the example logs for a DATA event: the opcode, the payload (hex for binary, the
/// code for a close frame), and where the chunk is in its frame.
fn log_chunk(chunk: &DataChunk) {
    logi!("Received opcode={}", chunk.opcode.value());
    if chunk.opcode == OpCode::BINARY {
        for line in chunk.data.chunks(16) {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            logi!("Received binary data: {}", hex.join(" "));
        }
    } else if chunk.opcode == OpCode::CLOSE && chunk.data.len() == 2 {
        logw!(
            "Received closed message with code={}",
            256 * chunk.data[0] as u16 + chunk.data[1] as u16
        );
    } else {
        logw!("Received={}", String::from_utf8_lossy(&chunk.data));
    }
    logw!(
        "Total payload length={}, data_len={}, current payload offset={}",
        chunk.payload_len,
        chunk.data.len(),
        chunk.offset
    );
}

/// The example's `websocket_app_start`.
async fn websocket_app_start(uri: String, options: &Options) -> ExitCode {
    logi!("Connecting to {uri}...");
    // The ESP defaults: chunks of at most 1024 bytes as DATA events, ping every 10 s,
    // reconnect 10 s after an unexpected disconnect.
    let config = ClientConfig::new(uri);
    let (client, events) = match Client::start(config) {
        Ok(started) => started,
        Err(e) => {
            loge!("esp_websocket_client_init failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The shutdown timer starts with the client; every DATA event restarts it.
    let (data_seen, mut last_data) = watch::channel(Instant::now());
    let handler = tokio::spawn(log_events(events, data_seen));

    let mut i = 0;
    while i < options.count {
        if client.is_connected() {
            let data = format!("hello {i:04}");
            i += 1;
            logi!("Sending {data}");
            if let Err(e) = client.send_text(&data, SEND_TIMEOUT).await {
                loge!("Send failed: {e}");
            }
        }
        tokio::time::sleep(options.interval).await;
    }

    // Wait for the shutdown timer: no DATA event for `no_data_timeout`.
    loop {
        let deadline = *last_data.borrow_and_update() + options.no_data_timeout;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break,
            changed = last_data.changed() => if changed.is_err() { break },
        }
    }
    logi!(
        "No data received for {} ms, signaling shutdown",
        options.no_data_timeout.as_millis()
    );

    let closed = client.close(Some(1000), "", CLOSE_TIMEOUT).await;
    // The events end after FINISH; log them all before the last line, as the ESP example's
    // handler runs inside the client task and has logged them by the time close returns.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, handler).await;
    if let Err(e) = closed {
        loge!("esp_websocket_client_close failed: {e}");
        return ExitCode::FAILURE;
    }
    logi!("Websocket Stopped");
    // `esp_websocket_client_destroy`: dropping the last handle.
    drop(client);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let Some(uri) = endpoint_uri(options.uri.clone()) else {
        loge!("No URI given");
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(websocket_app_start(uri, &options))
}
