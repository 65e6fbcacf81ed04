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

pub use client::{Client, Events, StopOutcome};
pub use config::{ClientConfig, Connecting, Connector, Delivery, Reconnect, Target, TcpKeepalive};
pub use error::ClientError;
pub use event::{Connected, DisconnectReason, Event, LinkState};
pub use proxy::{Proxy, ProxyError, ProxyKind, DEFAULT_PROXY_PORT};
pub use tls::{TlsConfig, Verification};
pub use wsat_proto::{ChunkPolicy, DataChunk, Message, OpCode};
