//! `wsat-proto`: the sans-IO RFC 6455 core under wsat's client, modem and tools.
//!
//! Nothing here touches a socket, a clock or a thread: bytes come in as slices, time comes
//! in as an [`std::time::Instant`] argument, and output (bytes to send, events) is pulled.
//! That keeps the protocol testable without sleeping and fuzzable from raw bytes.
//!
//! The layers, bottom up:
//! - [`OpCode`], [`FrameHeader`], [`mask`]: the wire format of one frame.
//! - [`encode`]: frames of any opcode and FIN, and the ESP firmware's TX fragmentation.
//! - [`FrameDecoder`]: a streaming decoder that hands a frame's payload out in chunks of a
//!   caller-chosen size, so a 1 GiB frame never needs 1 GiB of memory.
//! - [`Utf8Validator`], [`close`]: incremental text validation and close-frame rules.
//! - [`handshake`], [`uri`]: the opening handshake (client and server side) and
//!   `ws://`/`wss://` URIs as the ESP client parses them.
//! - [`deflate`]: permessage-deflate (RFC 7692): its negotiation in the handshake; the
//!   compression runs in the [`Connection`] ([`Connection::with_deflate`]).
//! - [`Connection`]: the connection state machine (fragmentation and UTF-8 checks,
//!   automatic pong, ping interval and pong timeout, the closing handshake).
//! - [`MessageAssembler`]: whole-message delivery on top of the chunk stream.
#![forbid(unsafe_code)]

pub mod close;
mod compression;
mod connection;
mod decode;
pub mod deflate;
pub mod encode;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
mod header;
pub mod mask;
mod message;
mod opcode;
mod transmit;
pub mod uri;
mod utf8;

pub use close::CloseFrame;
pub use connection::{Connection, ConnectionConfig, ConnectionState, DataChunk, Event, Role};
pub use decode::{ChunkPolicy, DecoderConfig, FrameDecoder, Item};
pub use deflate::{DeflateConfig, NegotiatedDeflate};
pub use error::{ProtocolError, SendError};
pub use header::FrameHeader;
pub use message::{Message, MessageAssembler};
pub use opcode::OpCode;
pub use utf8::Utf8Validator;
