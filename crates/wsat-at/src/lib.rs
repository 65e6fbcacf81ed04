//! wsat-at: a sans-IO re-implementation of the ESP-AT WebSocket command port.
//!
//! Bytes from the AT port go in with [`Engine::feed`]; bytes for the port come out of
//! [`Engine::poll_output`] (one piece = one write: an echo, a response, a URC) and things to do
//! with WebSocket links come out of [`Engine::poll_action`]. The glue performs the actions and
//! reports back with [`Engine::complete`] and [`Engine::handle_link_event`]. No sockets, threads,
//! clocks or async runtime are involved, so every byte of behaviour is testable directly.
//!
//! The behaviour follows `docs/FIRMWARE.md` (firmware v5.0 by default, master with
//! [`Firmware::Master`]).
//!
//! # What the glue must do
//!
//! * Call [`Engine::boot`] at start and for every new TCP client; call [`Engine::feed`] once per
//!   arrival (one `busy p...` is printed per call while a command runs); write every
//!   [`Engine::poll_output`] piece with one write, in order, after every call into the engine.
//! * Perform every [`Action`] in order. While an [`Action::Open`], [`Action::Send`],
//!   [`Action::Close`] or [`Action::QueryTime`] is outstanding the port is BUSY until the
//!   matching [`Completion`] arrives; [`Action::SntpSync`] and [`Action::CloseAll`] do not block.
//! * Open: report [`LinkEvent::Connected`] (or [`LinkEvent::Disconnected`]) *before*
//!   [`Completion::Open`]; no retry inside AT+WSOPEN. The ≈5 s delay before the ERROR of a failed
//!   open (FIRMWARE.md §6.1) and the 10–15 s reconnect delay (§10) are the glue's timers.
//! * Tag every event with the [`LinkHandle`] from the Open action. The generation changes at every
//!   Open action of an id, so events of a link dropped by AT+WSCLOSE, a failed open, a received
//!   close frame or AT+RST are ignored. After [`LinkEvent::Closed`] the link is gone for the
//!   engine: finish the closing handshake and stop the link without further events.
//! * Report [`LinkEvent::Data`] per received chunk (≤ `buffer_size`) for every frame; the engine
//!   filters control/reserved opcodes and formats per AT+WSDATAFMT.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod asctime;
mod commands;
mod engine;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
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

pub use commands::system::BUILD_STAMP;
pub use commands::ws::MAX_HEADER_BYTES;
pub use engine::Engine;
pub use faults::UnknownCommand;
pub use types::{
    Action, Completion, EngineConfig, Firmware, LinkConfig, LinkEvent, LinkHandle, LinkStatus, OpenRequest, Pki,
    PortState,
};
