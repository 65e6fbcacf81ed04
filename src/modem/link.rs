//! One AT link: a wsat-client configured as the firmware's ESP client, translating its
//! events into the engine's link events and completions, in the firmware's order.
//!
//! # `SEND OK` comes before the echo's `+WS_DATA`
//!
//! On the chip, `AT+WSSEND` answers `SEND OK` once the frame is written, and the echo's
//! `+WS_DATA` usually follows it, though the chip may print the echo first when it races
//! the result (FIRMWARE.md §13.1). wsat always prints `SEND OK` first, so that transcripts are
//! deterministic (a driver that accepts both orders works against either). The order is
//! kept here, in [`run`], and only here, by relying on one guarantee of
//! [`Client::send_part`]: its future resolves before the client reads anything more from
//! the socket than it had read when the frame was written, so an echo's event always comes
//! after the send's completion is ready. [`run`]'s `select!` is `biased` with the send's
//! completion first: when both are ready, the completion (`SEND OK`) is reported to the
//! modem loop before the event (`+WS_DATA`), and the modem loop handles link messages in
//! the order they were sent. The seed transcripts (`tests/modem_*`, `wsat demo`) check it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use wsat_at::{Completion, LinkEvent, LinkHandle, OpenRequest};
use wsat_client::{
    ChunkPolicy, Client, ClientConfig, ClientError, Delivery, Event, Events, LinkState, OpCode, Reconnect, Verification,
};
use wsat_proto::handshake::ESP_USER_AGENT;

use super::radio::Radio;
use super::secrets::Secrets;

/// What the firmware's links do that no AT parameter sets: its timing and how it cuts
/// received frames into `+WS_DATA` chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkProfile {
    /// Delay between a disconnect and the next connect attempt (firmware: 10–15 s).
    pub reconnect_delay: Duration,
    /// Delay between `+WS_DISCONNECTED` and the `ERROR` of a failed AT+WSOPEN (firmware: ≈5 s).
    pub open_error_delay: Duration,
    /// Bound on each network step (firmware: 10 s).
    pub network_timeout: Duration,
    /// How received frames are cut into `+WS_DATA` chunks: [`ChunkPolicy::Eager`] is the
    /// chip's (each chunk is what one read returned, at most `buffer_size`),
    /// [`ChunkPolicy::Full`] gives reproducible `min(remaining, buffer_size)` cuts. Either
    /// way every byte read is reported, before `+WS_DISCONNECTED` at the latest.
    pub chunking: ChunkPolicy,
}

impl Default for LinkProfile {
    /// The firmware's: reconnect after 15 s, a failed open's ERROR after 5 s, 10 s per
    /// network step, the chip's chunking.
    fn default() -> Self {
        LinkProfile {
            reconnect_delay: Duration::from_secs(15),
            open_error_delay: Duration::from_secs(5),
            network_timeout: Duration::from_secs(10),
            chunking: ChunkPolicy::Eager,
        }
    }
}

/// What a link reports to the modem loop.
#[derive(Debug)]
pub enum LinkMsg {
    /// A link event for the engine (URCs, state).
    Event(LinkHandle, LinkEvent),
    /// The result of an action.
    Done(Completion),
}

/// What the modem loop asks of a running link.
#[derive(Debug)]
pub enum LinkCmd {
    /// AT+WSSEND's payload.
    Send {
        opcode: u8,
        fin: bool,
        payload: Vec<u8>,
        timeout_ms: u32,
    },
    /// AT+WSCLOSE: drop without a close frame.
    Close,
    /// A fault: the TCP connection is lost (`+WS_DISCONNECTED`, then the usual reconnect).
    Drop,
}

/// The client configuration the firmware would use for `request`.
pub fn client_config(request: &OpenRequest, profile: &LinkProfile) -> ClientConfig {
    let cfg = &request.config;
    let mut c = ClientConfig::new(&request.uri);
    c.user_agent = Some(ESP_USER_AGENT.to_owned());
    c.subprotocol = request.subprotocol.clone();
    c.authorization = request.authorization.clone();
    // The library writes "<key>: <value>", the value verbatim (leading space kept).
    c.headers = request.headers.clone();
    c.buffer_size = cfg.buffer_size.max(1);
    c.delivery = Delivery::Chunks;
    c.chunk_policy = profile.chunking;
    c.strict = false;
    c.echo_close_code = false;
    c.ping_interval = Some(Duration::from_secs(u64::from(cfg.ping_interval_s)));
    c.pong_timeout = Some(Duration::from_secs(u64::from(cfg.pong_timeout_s)));
    c.ping_resets_on_receive = true;
    c.network_timeout = profile.network_timeout;
    c.reconnect = Reconnect::Fixed(profile.reconnect_delay);
    c.close_timeout = Duration::from_secs(1);
    c.close_linger = Duration::from_secs(1);
    // The firmware's client (esp_websocket_client 1.2.x) follows no redirects and keeps the
    // whole request and response head within its 1024-byte handshake buffer.
    c.max_redirects = 0;
    c.max_request_len = Some(1023);
    c.max_response_head = 1022;
    c.tls.verification = if cfg.auth_mode & 2 != 0 {
        Verification::ChainOnly
    } else {
        Verification::None
    };
    if cfg.auth_mode & 2 != 0 {
        c.tls.ca_pem = cfg.ca_pem.clone();
    }
    if cfg.auth_mode & 1 != 0 {
        c.tls.client_cert_pem = cfg.client_cert_pem.clone();
        c.tls.client_key_pem = cfg.client_key_pem.clone();
    }
    c
}

/// Runs one link from AT+WSOPEN to its end: the open (with the firmware's failure timing),
/// then events, sends and the close. Every action gets its completion.
pub async fn run(
    link: LinkHandle,
    request: OpenRequest,
    profile: LinkProfile,
    radio: Radio,
    up: mpsc::Sender<LinkMsg>,
    mut commands: mpsc::UnboundedReceiver<LinkCmd>,
) {
    // Bounded: while the AT port cannot take more, this waits, the client's event queue
    // fills and it stops reading the socket, so TCP pushes back on the server.
    let report = |msg| {
        let up = up.clone();
        async move {
            let _ = up.send(msg).await;
        }
    };
    let mut config = client_config(&request, &profile);
    // Connects go through the modem's Wi-Fi, which a fault can take down.
    config.connector = Some(Arc::new(radio));
    // ClientConfig's Debug hides credentials too; the link's own list, as the --trace file
    // uses it, also catches every other occurrence (a password repeated in the query), a
    // URI the client cannot parse and error messages (tests/log_redaction.rs).
    let secrets = Secrets::of_request(&request);
    tracing::debug!(link = link.id, config = %secrets.redact_text(&format!("{config:?}")), "opening");
    let (client, mut events) = match Client::start(config) {
        Ok(started) => started,
        Err(e) => {
            let error = secrets.redact_text(&e.to_string());
            tracing::warn!(link = link.id, "cannot start the link: {error}");
            report(LinkMsg::Done(Completion::Open { link, ok: false })).await;
            return;
        }
    };
    if !open(link, &request, &profile, &mut events, &report).await {
        client.stop(Duration::from_secs(1)).await;
        report(LinkMsg::Done(Completion::Open { link, ok: false })).await;
        return;
    }
    report(LinkMsg::Done(Completion::Open { link, ok: true })).await;

    type Sending = Pin<Box<dyn Future<Output = SendOutcome> + Send>>;
    let mut sending: Option<Sending> = None;
    let mut events_open = true;
    loop {
        tokio::select! {
            // A send's completion first: the client answered it before reading anything that
            // came after (an echo), so SEND OK precedes that +WS_DATA, as on the chip.
            biased;
            outcome = async { match sending.as_mut() { Some(f) => f.await, None => std::future::pending().await } } => {
                sending = None;
                // A send that failed took the link down inside the call (a write that timed
                // out is aborted, as the firmware's client does, esp-protocols #942): its
                // +WS_DISCONNECTED comes before the ERROR, and the link reconnects.
                let settle = match outcome {
                    SendOutcome::TimedOut => {
                        client.abort().await;
                        Some(ABORT_REPORT_BOUND)
                    }
                    SendOutcome::Failed if client.state() != LinkState::Connected => Some(LOSS_REPORT_BOUND),
                    _ => None,
                };
                if let (Some(settle), true) = (settle, events_open) {
                    events_open = forward_until_disconnected(link, &mut events, &report, settle).await;
                }
                report(LinkMsg::Done(Completion::Send { link, ok: outcome == SendOutcome::Sent })).await;
                if !events_open {
                    return;
                }
            }
            ev = events.recv(), if events_open => match ev {
                None | Some(Event::Finish) => {
                    events_open = false;
                    if sending.is_none() {
                        return;
                    }
                }
                Some(ev) => forward(link, ev, &report).await,
            },
            cmd = commands.recv() => match cmd {
                None => {
                    client.stop(Duration::from_secs(1)).await;
                    return;
                }
                Some(LinkCmd::Send { opcode, fin, payload, timeout_ms }) => {
                    sending = Some(Box::pin(send(client.clone(), opcode, fin, payload, timeout_ms)));
                }
                Some(LinkCmd::Drop) => client.abort().await,
                Some(LinkCmd::Close) => {
                    client.stop(Duration::from_secs(2)).await;
                    report(LinkMsg::Done(Completion::Close { link })).await;
                    return;
                }
            },
        }
    }
}

/// How long a link waits for the `Disconnected` of the abort it asked for after a timed-out
/// AT+WSSEND, so that `+WS_DISCONNECTED` comes before the `ERROR` (FIRMWARE.md §7.3). The client
/// reports it within one round of its task; the bound only guards against a task that died.
const ABORT_REPORT_BOUND: Duration = Duration::from_secs(2);

/// How long a link waits, after a send failed because the link was going down, for the
/// `Disconnected` that the client may still be about to report (it may also have reported
/// it already, which is why this wait is short).
const LOSS_REPORT_BOUND: Duration = Duration::from_millis(200);

/// Forwards events until the link's `Disconnected` (or `settle` runs out); `false` if the
/// client finished meanwhile.
async fn forward_until_disconnected<R: Future<Output = ()>>(
    link: LinkHandle,
    events: &mut Events,
    report: &impl Fn(LinkMsg) -> R,
    settle: Duration,
) -> bool {
    let deadline = Instant::now() + settle;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Finish)) | Ok(None) => return false,
            Ok(Some(ev)) => {
                let disconnected = matches!(ev, Event::Disconnected(_));
                forward(link, ev, report).await;
                if disconnected {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
}

/// The open: connected, or failed with the firmware's URCs and timing. `true` if up.
async fn open<R>(
    link: LinkHandle,
    request: &OpenRequest,
    profile: &LinkProfile,
    events: &mut Events,
    report: &impl Fn(LinkMsg) -> R,
) -> bool
where
    R: Future<Output = ()>,
{
    let deadline = Instant::now() + Duration::from_millis(u64::from(request.timeout_ms));
    // After the deadline, the attempt in progress still runs to its end (bounded by the
    // network timeout), as the firmware's cleanup waits for it.
    let last_chance = deadline + profile.network_timeout * 3 + Duration::from_secs(1);
    let mut timed_out = false;
    loop {
        let until = if timed_out { last_chance } else { deadline };
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(Event::Connected(_))) => {
                report(LinkMsg::Event(link, LinkEvent::Connected)).await;
                if timed_out {
                    return false; // "+WS_CONNECTED" then ERROR: the link is torn down at once
                }
                return true;
            }
            Ok(Some(Event::Disconnected(_))) => {
                report(LinkMsg::Event(link, LinkEvent::Disconnected)).await;
                tokio::time::sleep(profile.open_error_delay).await;
                return false;
            }
            Ok(Some(Event::Finish)) | Ok(None) => return false,
            Ok(Some(_)) => {}
            Err(_) if !timed_out => timed_out = true,
            Err(_) => return false,
        }
    }
}

/// Translates a client event into the engine's link event.
async fn forward<R: Future<Output = ()>>(link: LinkHandle, event: Event, report: &impl Fn(LinkMsg) -> R) {
    let ev = match event {
        Event::BeforeConnect { .. } => LinkEvent::Connecting,
        Event::Connected(_) => LinkEvent::Connected,
        Event::Disconnected(_) => LinkEvent::Disconnected,
        // +WS_CLOSED is printed when the close frame arrives; the library finishes the
        // handshake in the background and the AT layer forgets the link at once.
        Event::Data(d) if d.opcode == OpCode::CLOSE => LinkEvent::Closed,
        Event::Data(d) => LinkEvent::Data {
            opcode: d.opcode.value(),
            fin: d.fin,
            payload_len: d.payload_len,
            offset: d.offset,
            chunk: d.data.to_vec(),
        },
        Event::Message(_) | Event::Error(_) | Event::Closed { .. } | Event::Finish => return,
    };
    report(LinkMsg::Event(link, ev)).await;
}

/// How an AT+WSSEND ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendOutcome {
    /// Every byte handed to TCP.
    Sent,
    /// The write did not finish within the timeout: the firmware drops the link.
    TimedOut,
    /// Not connected, or the transport failed.
    Failed,
}

/// AT+WSSEND: while a reconnect attempt runs the firmware's send waits for it (the link
/// task holds the lock); otherwise a link that is not connected fails at once.
async fn send(client: Client, opcode: u8, fin: bool, payload: Vec<u8>, timeout_ms: u32) -> SendOutcome {
    // A timeout of 0 means "do not wait" on the chip; a write still needs a moment here.
    let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms.max(100)));
    let _ = tokio::time::timeout_at(deadline, client.wait_for_state(|s| s != LinkState::Connecting)).await;
    let len = payload.len();
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    match client
        .send_part(OpCode::from_bits(opcode), Bytes::from(payload), fin, remaining)
        .await
    {
        Ok(n) if n == len => SendOutcome::Sent,
        Err(ClientError::SendTimeout) => SendOutcome::TimedOut,
        _ => SendOutcome::Failed,
    }
}
