//! wsat-at: a sans-IO re-implementation of the ESP-AT WebSocket command port.
//!
//! Bytes from the AT port go in with [`Engine::feed`]; bytes for the port come out of
//! [`Engine::poll_output`] (one piece = one write: an echo, a response, a URC) and things to do
//! with WebSocket links come out of [`Engine::poll_action`]. The glue performs the actions and
//! reports back with [`Engine::complete`] and [`Engine::handle_link_event`]. No sockets, threads,
//! clocks or async runtime are involved, so every byte of behaviour is testable directly.
//!
//! The behaviour follows `spec/esp-at-websocket.md` (firmware v5.0 by default, master with
//! [`Firmware::Master`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod asctime;
mod commands;
mod engine;
mod line;
mod links;
mod output;
mod params;
mod parser;
mod state;
mod types;
mod uri;

#[cfg(test)]
mod testutil;

pub use asctime::asctime;
pub use commands::system::BUILD_STAMP;
pub use engine::Engine;
pub use types::{
    Action, Completion, EngineConfig, Firmware, LinkConfig, LinkEvent, LinkHandle, OpenRequest, Pki, PortState,
};
