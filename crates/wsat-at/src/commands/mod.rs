//! The command table (names, handlers per type, registration order) and what a handler can ask
//! the engine to do next. Handlers never touch the port state; the engine applies [`Outcome`]s.

pub(crate) mod system;
pub(crate) mod ws;

use crate::output::ResultCode;
use crate::params::Params;
use crate::state::State;
use crate::types::{Action, Firmware, LinkHandle};

/// A command handler: state plus (for set) the parameters; returns what happens next.
pub(crate) type Handler = fn(&mut State, &Params) -> Outcome;

/// One registered command with up to four handlers (test `=?`, query `?`, set `=`, execute).
pub(crate) struct Command {
    /// Name after `AT`, upper case (`""` for bare AT).
    pub name: &'static str,
    /// `AT<name>=?`.
    pub test: Option<Handler>,
    /// `AT<name>?`.
    pub query: Option<Handler>,
    /// `AT<name>=...`.
    pub set: Option<Handler>,
    /// `AT<name>`.
    pub exec: Option<Handler>,
}

/// What a handler decided.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Finished: print the result (port back to IDLE).
    Done(ResultCode),
    /// Print `\r\nOK\r\n\r\n>` and read exactly `len` payload bytes.
    Prompt {
        /// Bytes to read.
        len: usize,
        /// Who gets them.
        purpose: DataPurpose,
    },
    /// Hand `action` to the glue and stay BUSY until the completion `until` names. One
    /// value for both, so a handler cannot queue an action and forget to wait (or wait for
    /// an action it never queued).
    Await {
        /// What the glue must do.
        action: Action,
        /// The completion that ends the command.
        until: Pending,
    },
    /// AT+RST: print OK, then reboot.
    Restart,
}

/// The handler that owns data mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataPurpose {
    /// AT+WSHEAD=<n>.
    Header,
    /// AT+WSSEND.
    Send(SendPlan),
}

/// A validated AT+WSSEND waiting for its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendPlan {
    /// Target link.
    pub link: LinkHandle,
    /// Announced length.
    pub len: usize,
    /// Opcode 0..=15.
    pub opcode: u8,
    /// `<fin>` (master; always true in v5).
    pub fin: bool,
    /// `<timeout_ms>`.
    pub timeout_ms: u32,
}

/// The completion a BUSY port waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// AT+WSOPEN.
    Open(LinkHandle),
    /// AT+WSSEND; `force_error` for the master opcode-0 quirk (ERROR although a frame was sent).
    Send {
        /// Target link.
        link: LinkHandle,
        /// Print ERROR whatever the outcome.
        force_error: bool,
    },
    /// AT+WSCLOSE.
    Close(LinkHandle),
    /// AT+CIPSNTPTIME?, with the offset to apply.
    Time {
        /// Minutes east of UTC.
        offset_minutes: i32,
    },
}

/// Shorthand for a bare ERROR.
pub(crate) fn error() -> Outcome {
    Outcome::Done(ResultCode::Error)
}

/// Shorthand for OK.
pub(crate) fn ok() -> Outcome {
    Outcome::Done(ResultCode::Ok)
}

/// The registered commands in registration order (base, Wi-Fi, TCP/IP, WebSocket), so that
/// AT+CMD? numbers them like the firmware does for this subset.
pub(crate) fn table(firmware: Firmware) -> Vec<Command> {
    let mut t = system::commands();
    t.extend(ws::commands(firmware));
    t
}

/// Finds the handler table entry for an upper-cased name (last registration wins).
pub(crate) fn lookup<'a>(table: &'a [Command], name: &str) -> Option<&'a Command> {
    table.iter().rev().find(|c| c.name == name)
}
