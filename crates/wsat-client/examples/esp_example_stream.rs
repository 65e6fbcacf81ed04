//! The ESP-IDF `esp_websocket_client` example app, on [`WebSocket`]: the connection driven
//! in this program's own tasks (no background task, no events, no reconnect), split into a
//! reader and a writer.
//!
//! ```text
//! cargo run -p wsat-client --example esp_example_stream -- ws://127.0.0.1:9002
//! cargo run -p wsat-client --example esp_example_stream     # asks for the URI on stdin
//! ```
//!
//! What the example app does (docs/ESP-CLIENT.md §5.2), step by step:
//! 1. Takes the endpoint's URI (from the command line, or "Please enter uri of websocket
//!    endpoint" and a line from stdin, as with `CONFIG_WEBSOCKET_URI_FROM_STDIN`).
//! 2. Connects: [`WebSocket::connect_with`] returns once the upgrade is done, where the ESP
//!    client fires `WEBSOCKET_EVENT_CONNECTED`; a failed connect is its
//!    `WEBSOCKET_EVENT_ERROR`, and the program ends (a `WebSocket` does not reconnect).
//! 3. [`WebSocket::split`]: a reader task takes every received chunk
//!    ([`WebSocketReader::recv_chunk`], the ESP client's DATA event, control frames
//!    included) and logs it as the example's handler does (`WEBSOCKET_EVENT_DATA`,
//!    `Received opcode=…`, `Received=…`, `Total payload length=…`); when it returns
//!    `None` the closing handshake is done (`WEBSOCKET_EVENT_CLOSED`).
//! 4. This task sends `hello 0000`, `hello 0001`, … as text, one a second
//!    (`--count`, default 5; `--interval-ms`, default 1000).
//! 5. Waits until no data came for 5 seconds (the example's one-shot shutdown timer,
//!    restarted by every DATA event; `--no-data-timeout-ms`), then closes with 1000
//!    ([`WebSocketWriter::close`]), waits for the reader to finish the handshake, and logs
//!    `Websocket Stopped`. Dropping the halves is `esp_websocket_client_destroy`.
//!
//! The example's fragmented and 2000-byte sends are left out (see
//! `WebSocketWriter::send_frame`). Log lines go to stdout as
//! `I (<ms since start>) WEBSOCKET: <message>`, `I`, `W` or `E` as the ESP example logs
//! them: the same lines as the `esp_example` example on `Client`, without its
//! `WEBSOCKET_EVENT_BEFORE_CONNECT` and `WEBSOCKET_EVENT_FINISH`. Exit status 0 after a
//! clean close, 1 when the connect fails or the connection does.

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wsat_client::{ClientConfig, DataChunk, MaybeTlsStream, OpCode, WebSocket, WebSocketReader};

const TAG: &str = "WEBSOCKET";
/// How long the reader may take to finish the closing handshake once the close is sent
/// (the server's answer within `close_timeout`, 5 s, then up to 1 s of linger).
const CLOSE_BOUND: Duration = Duration::from_secs(10);

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
    "usage: esp_example_stream [URI] [--count N (5)] [--interval-ms MS (1000)] [--no-data-timeout-ms MS (5000)]";

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

/// The reader task: every received chunk is the example's DATA event. Also answers pings
/// and completes the closing handshake; ends with `None` once it is done (or after the
/// error that ended the connection).
async fn read_chunks(mut reader: WebSocketReader<MaybeTlsStream>, data_seen: watch::Sender<Instant>) {
    while let Some(received) = reader.recv_chunk().await {
        match received {
            Ok(chunk) => {
                logi!("WEBSOCKET_EVENT_DATA");
                log_chunk(&chunk);
                data_seen.send_replace(Instant::now());
            }
            Err(e) => {
                // The connection failed; `None` follows. No reconnect: the program ends.
                logi!("WEBSOCKET_EVENT_ERROR");
                loge!("Last error: {e}");
                logi!("WEBSOCKET_EVENT_DISCONNECTED");
                return;
            }
        }
    }
    logi!("WEBSOCKET_EVENT_CLOSED");
    let (code, reason) = reader.close_frame().map(|f| (f.code, f.reason)).unwrap_or_default();
    logi!("Close status code={code}, reason={reason:?}");
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
    // The ESP defaults: chunks of at most 1024 bytes, a ping every 10 s while receiving.
    let config = ClientConfig::new(uri);
    let ws = match WebSocket::connect_with(&config).await {
        Ok((ws, _connected)) => ws,
        Err(e) => {
            logi!("WEBSOCKET_EVENT_ERROR");
            if let Some(status) = e.http_status() {
                loge!("HTTP status code: {status}");
            }
            loge!("Last error: {e}");
            return ExitCode::FAILURE;
        }
    };
    logi!("WEBSOCKET_EVENT_CONNECTED");
    let (reader, mut writer) = ws.split();
    // The shutdown timer starts now; every DATA event restarts it.
    let (data_seen, mut last_data) = watch::channel(Instant::now());
    let mut reader = tokio::spawn(read_chunks(reader, data_seen));

    for i in 0..options.count {
        if !writer.is_open() {
            loge!("The connection is gone; not sending the rest");
            break;
        }
        let data = format!("hello {i:04}");
        logi!("Sending {data}");
        if let Err(e) = writer.send_text(data).await {
            loge!("Send failed: {e}");
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

    // Sends the close frame; the reader takes the server's answer and ends.
    let closed = writer.close(Some(1000), "").await;
    let finished = tokio::time::timeout(CLOSE_BOUND, &mut reader).await;
    if let Err(e) = closed {
        loge!("Close failed: {e}");
        return ExitCode::FAILURE;
    }
    if finished.is_err() {
        reader.abort();
        loge!("The closing handshake did not finish within {CLOSE_BOUND:?}");
        return ExitCode::FAILURE;
    }
    logi!("Websocket Stopped");
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
