//! [`WebSocket`]: a client connection driven in the caller's task, the shape of
//! tokio-tungstenite's `WebSocketStream`, on the same protocol core as [`crate::Client`].
//!
//! | module | job |
//! |---|---|
//! | `core` | the connection's state and its poll steps (receive, send, flush, close, linger) |
//! | this one | the type, its constructors and its `async fn`s |
//! | `split` | the two halves for two tasks |
//! | `stream` | `futures::Stream` and `Sink` (cargo feature `stream`) |

mod core;
mod split;
#[cfg(feature = "stream")]
mod stream;

use std::fmt;
use std::future::poll_fn;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use wsat_proto::close::CloseFrame;
use wsat_proto::{Connection, ConnectionConfig, ConnectionState, DataChunk, Message, NegotiatedDeflate, OpCode};

use self::core::{Chunks, Core, Discard, Messages};
use crate::config::{ClientConfig, Delivery};
use crate::event::Connected;
use crate::transport::Stream as MaybeTlsStream;
use crate::upgrade::{self, Upgraded};
use crate::ClientError;

pub use self::split::{WebSocketReader, WebSocketWriter};

/// The message limit of a [`WebSocket`] under [`Delivery::Chunks`], which sets none for a
/// [`crate::Client`]: the default of [`Delivery::messages`].
const DEFAULT_MAX_MESSAGE: usize = match Delivery::messages() {
    Delivery::Messages { max_size } => max_size,
    Delivery::Chunks => 64 << 20,
};

/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A WebSocket client connection driven in the caller's task: no background task, no
/// channels; `recv` reads and decodes, `send` encodes, masks and writes, both right where
/// they are awaited. Also a `futures::Stream` of messages and a `Sink` of messages (cargo
/// feature `stream`, on by default), and [`WebSocket::split`] into a reader and a writer
/// for two tasks.
///
/// It runs on the same [`wsat_proto::Connection`] as [`crate::Client`], configured by the
/// same [`ClientConfig`]: strict RFC 6455 validation by default, masking, the streaming
/// decoder, automatic pongs, the ping interval and pong timeout, the closing handshake with
/// its close timeout and linger, and the same bounds:
/// - **message size**: `Delivery::Messages { max_size }` ([`WebSocket::connect`] uses
///   [`Delivery::messages`], 64 MiB); a longer message fails the connection with close code
///   1009 at the frame header that announces it. Unlike a `Client`, a `WebSocket` bounds
///   messages under [`Delivery::Chunks`] too (at the same 64 MiB), since
///   [`WebSocket::recv`] joins them; `Chunks` then only chooses how frames are decoded
///   (`buffer_size` pieces, as `chunk_policy` says, instead of whole frames).
/// - **unwritten bytes**: at most `max_write_buffer` wait to be written; a send waits while
///   more do.
///
/// Pick a `WebSocket` for the fastest path and the `Stream`/`Sink` shape in your own task
/// (it never reconnects: on an error, connect anew). Pick [`crate::Client`] for the ESP
/// client's model: a background task, events, auto-reconnect, what `wsat modem` runs on.
/// `examples/esp_example_stream.rs` is the ESP-IDF example app on a `WebSocket` split into
/// a reader and a writer (`examples/esp_example.rs` the same on a `Client`).
///
/// Keepalive pings and the pong timeout run while the connection is driven by a receive
/// (`recv`, `recv_chunk`, the `Stream`, [`WebSocket::close`]): a caller that only sends
/// never reads the pongs, so no pong timeout fires then either.
pub struct WebSocket<S = MaybeTlsStream> {
    core: Core<S>,
}

impl WebSocket<MaybeTlsStream> {
    /// Connects to `uri` with [`ClientConfig::new`]'s defaults and whole-message delivery
    /// up to 64 MiB ([`Delivery::messages`]): DNS, TCP (`TCP_NODELAY`), TLS for `wss://`
    /// (full verification against webpki roots), redirects and the upgrade. Returns the
    /// connection and what the server said.
    pub async fn connect(uri: impl Into<String>) -> Result<(Self, Connected), ClientError> {
        let mut config = ClientConfig::new(uri);
        config.delivery = Delivery::messages();
        Self::connect_with(&config).await
    }

    /// Connects as `config` says: the same path as a [`crate::Client`]'s connect attempt
    /// (host, port, path and credential overrides, [`crate::TlsConfig`] with its
    /// verification levels, every network step bounded by `network_timeout`, redirects up to
    /// `max_redirects` with credentials dropped across origins and `wss`→`ws` refused unless
    /// `allow_insecure_redirect`). The reconnect and event options do not apply.
    pub async fn connect_with(config: &ClientConfig) -> Result<(Self, Connected), ClientError> {
        let Upgraded {
            stream,
            connection,
            info,
        } = upgrade::connect_with_protocol(config, None, protocol(config), |_| {}).await?;
        Ok((
            WebSocket {
                core: Core::new(stream, connection, config),
            },
            info,
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A client connection on `io`, whose opening handshake was done elsewhere (a proxy, a
    /// test, an HTTP library that hands over upgraded connections).
    ///
    /// It expects `io` right after the server's `101 Switching Protocols` head, with the
    /// response already checked (`Sec-WebSocket-Accept` and any subprotocol; see
    /// [`wsat_proto::handshake`]), and `leftover` the bytes read past the head (frames the
    /// server sent right behind it; empty if none), which are decoded first. It speaks as a
    /// client: it masks its frames and refuses masked ones. Of `config` it uses the protocol
    /// and bound options (`strict`, `delivery`, `buffer_size`, `chunk_policy`, the ping,
    /// pong, close and linger times, `echo_close_code`, `max_write_buffer`); the address,
    /// TLS and redirect options are for connecting and are ignored. The keepalive timer
    /// starts now.
    pub fn from_upgraded(io: S, config: &ClientConfig, leftover: &[u8]) -> Self {
        Self::from_upgraded_with_deflate(io, config, leftover, None)
    }

    /// [`WebSocket::from_upgraded`] for a connection whose handshake agreed on
    /// permessage-deflate: `deflate` is what the server's response accepted (see
    /// [`wsat_proto::deflate`]: [`wsat_proto::handshake::ClientHandshake::negotiated_deflate`]
    /// gives it); `None` is [`WebSocket::from_upgraded`].
    pub fn from_upgraded_with_deflate(
        io: S,
        config: &ClientConfig,
        leftover: &[u8],
        deflate: Option<NegotiatedDeflate>,
    ) -> Self {
        let mut connection = Connection::with_deflate(protocol(config), deflate, Instant::now());
        connection.read_buf().extend_from_slice(leftover);
        WebSocket {
            core: Core::new(io, connection, config),
        }
    }

    /// The next whole text or binary message; `Some(Err)` once if the connection failed,
    /// then `None`; `None` at once after a clean close (the server's close frame is
    /// [`WebSocket::close_frame`]).
    ///
    /// Pings are answered, the closing handshake is completed (the server's close is
    /// answered, then the linger) and the keepalive timers run while this waits. A
    /// protocol error, in strict mode, sends the close code it calls for (1002, 1007, 1009),
    /// waits for the server's close within `close_timeout` and is then returned.
    ///
    /// **Cancel-safe**: dropping the future at any point, in the middle of a frame or a
    /// fragmented message, loses nothing: what was read stays in the connection's buffer,
    /// what was decoded stays in the message being joined, and the next call returns the
    /// same message. So it can be a `tokio::select!` branch or run under a timeout.
    pub async fn recv(&mut self) -> Option<Result<Message, ClientError>> {
        poll_fn(|cx| self.core.poll_recv::<Messages>(cx)).await
    }

    /// The next chunk of a received frame, at most `buffer_size` bytes, with its opcode,
    /// FIN, offset and the frame's length: the ESP client's DATA event. Control frames come
    /// too (each whole: pings, pongs and the server's close frame), although they are
    /// handled inside as with [`WebSocket::recv`]. With [`Delivery::Chunks`] a frame's
    /// chunks come as its bytes arrive (under `chunk_policy`); with `Delivery::Messages`
    /// once the frame is whole, cut without copying. Ends like `recv`, and is cancel-safe
    /// like it. When the connection drops in the middle of a frame, the bytes read of it
    /// come as a last chunk that does not end it ([`DataChunk::ends_frame`]).
    ///
    /// Mixing it with `recv` is meant for message boundaries: `recv` after some chunks of a
    /// message returns the rest of that message.
    pub async fn recv_chunk(&mut self) -> Option<Result<DataChunk, ClientError>> {
        poll_fn(|cx| self.core.poll_recv::<Chunks>(cx)).await
    }

    /// Sends `message` as one frame with its opcode and FIN, masked and written with its
    /// header in one write (a payload of 64 KiB or more is masked 256 KiB at a time as it is
    /// written, the first piece with the header), then flushes once; returns once the
    /// transport has it. Waits first while more than `max_write_buffer` bytes are unwritten.
    /// [`ClientError::NotConnected`] once closing.
    ///
    /// Cancelled before it returns, the message is either not queued or queued whole
    /// (never a partial frame); a queued one goes out with the next send, flush or receive.
    pub async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.send_frame(message.opcode, true, message.payload).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.send_frame(OpCode::TEXT, true, Bytes::from(text.into())).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        self.send_frame(OpCode::BINARY, true, data).await
    }

    /// Sends exactly one frame with this opcode and FIN, however long, nothing checked
    /// (reserved opcodes, a lone continuation, a close frame that does not start the
    /// handshake): fragment a message with `send_frame(TEXT or BINARY, false, ..)`, then
    /// `send_frame(OpCode::CONTINUATION, .., last)`. Written and flushed like
    /// [`WebSocket::send`].
    pub async fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let mut frame = Some((opcode, fin, payload.into()));
        poll_fn(|cx| self.core.poll_send(cx, &mut frame)).await
    }

    /// Sends a ping with `payload` (at most 125 bytes; a longer one is refused with
    /// [`wsat_proto::ProtocolError::ControlTooLong`]). Its pong is taken inside; keepalive
    /// pings go out by themselves (`ping_interval`).
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let payload = control_payload(payload.into())?;
        self.send_frame(OpCode::PING, true, payload).await
    }

    /// Writes and flushes everything queued (frames a cancelled send queued, replies).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        poll_fn(|cx| self.core.poll_flush(cx)).await
    }

    /// Closes cleanly: sends a close frame with `code` (none sends an empty one) and
    /// `reason` (cut to 123 bytes), then waits for the server's close within
    /// `close_timeout` ([`ClientError::CloseTimeout`] after it), lingers up to
    /// `close_linger` for the server to close TCP, and shuts the transport down. Messages
    /// that arrive meanwhile are dropped. `Ok` at once when the handshake already completed
    /// (`recv` returned `None`); [`ClientError::NotConnected`] when the connection failed.
    ///
    /// Cancelled, the close frame stays queued and a later `recv` completes the handshake.
    pub async fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        self.core.start_close(code, reason)?;
        match poll_fn(|cx| self.core.poll_recv::<Discard>(cx)).await {
            None | Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e),
        }
    }

    /// The server's close frame (code and reason), once it came.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.core.close_frame()
    }

    /// Whether frames may still be sent: no close frame was sent or received, and the
    /// connection has not failed.
    pub fn is_open(&self) -> bool {
        self.core.state() == ConnectionState::Open
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        self.core.io()
    }

    /// The transport, mutably: reading or writing it directly breaks the connection.
    pub fn get_mut(&mut self) -> &mut S {
        self.core.io_mut()
    }
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.core.state())
            .field("close_frame", &self.core.close_frame())
            .finish_non_exhaustive()
    }
}

/// The protocol configuration of a [`WebSocket`]'s connection: a [`crate::Client`]'s, with
/// whole messages bounded under [`Delivery::Chunks`] too.
fn protocol(config: &ClientConfig) -> ConnectionConfig {
    let mut protocol = upgrade::connection_config(config);
    protocol.max_message_len.get_or_insert(DEFAULT_MAX_MESSAGE as u64);
    protocol
}

/// `payload` if it fits a control frame.
fn control_payload(payload: Bytes) -> Result<Bytes, ClientError> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(ClientError::Protocol(wsat_proto::ProtocolError::ControlTooLong {
            len: payload.len() as u64,
            max: MAX_CONTROL_PAYLOAD as u64,
        }));
    }
    Ok(payload)
}
