//! `wsat-client`: an async WebSocket client with the ESP-IDF `esp_websocket_client`'s
//! semantics on a host, and what its users keep asking for.
//!
//! - Events in the ESP order: [`Event::BeforeConnect`], [`Event::Connected`],
//!   [`Event::Data`] (chunks of at most `buffer_size` bytes with offset, frame length,
//!   opcode and FIN) or [`Event::Message`] (whole messages), [`Event::Error`],
//!   [`Event::Disconnected`], [`Event::Closed`], [`Event::Finish`].
//! - Any opcode on send, fragmentation by `buffer_size`, partial sends.
//! - Ping interval and pong timeout, auto-reconnect with a fixed delay or backoff,
//!   reconnect after close, redirects with a hop limit.
//! - TLS with rustls (`ring`): webpki or system roots, a CA file, a client certificate,
//!   and full, chain-only (the firmware's auth modes 2/3) or no verification.
//! - A stop that returns within a bound; sends that never block receiving.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsat_client::ClientError> {
//! use std::time::Duration;
//! use wsat_client::{Client, ClientConfig, Delivery, Event};
//!
//! let mut config = ClientConfig::new("ws://127.0.0.1:8765");
//! config.delivery = Delivery::messages();
//! let (client, mut events) = Client::start(config)?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Connected(_) => { client.send_text("hello", Duration::from_secs(5)).await?; }
//!         Event::Message(m) => { println!("{:?}", m.payload); break; }
//!         _ => {}
//!     }
//! }
//! client.close(Some(1000), "bye", Duration::from_secs(5)).await
//! # }
//! ```
//!
//! # Two shapes: `Client` or `WebSocket`
//!
//! Both run the same protocol core ([`wsat_proto::Connection`]: strict RFC 6455 by default,
//! masking, the streaming decoder, keepalive, the closing handshake), connect the same way
//! (TLS and its verification levels, redirects) and take the same [`ClientConfig`] and
//! bounds.
//!
//! - [`Client`]: the ESP client's model. A background task owns the connection and hands
//!   [`Event`]s to the application; it reconnects by itself; sends are commands with a
//!   timeout. What `wsat modem` runs on; pick it for events, reconnects, or many tasks
//!   sharing one cheap handle.
//! - [`WebSocket`]: driven in your own task, the shape of tokio-tungstenite's
//!   `WebSocketStream`: `recv` (cancel-safe) and `send` do the I/O where they are awaited,
//!   with no task and no channel in between, which makes it the fastest path; a
//!   `futures::Stream` and `Sink` of [`Message`]s (feature `stream`, on by default);
//!   [`WebSocket::split`] for a reader task and a writer task. It does not reconnect: after
//!   an error, connect anew.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsat_client::ClientError> {
//! use wsat_client::WebSocket;
//!
//! let (mut ws, connected) = WebSocket::connect("ws://127.0.0.1:8765").await?;
//! println!("subprotocol: {:?}", connected.subprotocol);
//! ws.send_text("hello").await?;
//! if let Some(message) = ws.recv().await {
//!     println!("{:?}", message?.payload);
//! }
//! ws.close(Some(1000), "bye").await
//! # }
//! ```
#![forbid(unsafe_code)]

mod budget;
mod client;
mod config;
mod error;
mod event;
mod outlet;
mod proxy;
mod reader;
mod session;
mod task;
pub mod tls;
mod transport;
mod upgrade;
mod websocket;

pub use client::{Client, Events, StopOutcome};
pub use config::{ClientConfig, Connecting, Connector, Delivery, Reconnect, Target, TcpKeepalive};
pub use error::ClientError;
pub use event::{Connected, DisconnectReason, Event, LinkState};
pub use proxy::{Proxy, ProxyError, ProxyKind, DEFAULT_PROXY_PORT};
pub use tls::{TlsConfig, Verification};
/// The stream under a [`WebSocket`] that [`WebSocket::connect`] opened: TCP for `ws://`,
/// TLS over TCP for `wss://`.
pub use transport::Stream as MaybeTlsStream;
pub use websocket::{WebSocket, WebSocketReader, WebSocketWriter};
pub use wsat_proto::close::CloseFrame;
pub use wsat_proto::{ChunkPolicy, DataChunk, DeflateConfig, Message, NegotiatedDeflate, OpCode};
