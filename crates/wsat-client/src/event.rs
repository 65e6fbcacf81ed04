//! What a client reports: the ESP client's events, richer.

use wsat_proto::{DataChunk, Message, NegotiatedDeflate};

use crate::ClientError;

/// The firmware's link state, as `AT+WSOPEN?` prints it (the ESP client's internal enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Not running (never started, stopped or finished).
    Stopped = 0,
    /// A connect attempt is in progress (TCP, TLS, upgrade).
    Connecting = 1,
    /// Connected.
    Connected = 2,
    /// Disconnected, waiting to reconnect.
    WaitingToReconnect = 3,
    /// The closing handshake is in progress.
    Closing = 4,
}

/// Details of an accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The URI finally connected to (after redirects).
    pub uri: String,
    /// The HTTP status (101).
    pub status: u16,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// The response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The permessage-deflate parameters in force, when it was offered
    /// ([`crate::ClientConfig::compression`]) and the server accepted; `None`: uncompressed.
    pub deflate: Option<NegotiatedDeflate>,
}

/// Why a connection ended abnormally ([`Event::Disconnected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The connect attempt failed (DNS, TCP, TLS or the upgrade).
    ConnectFailed,
    /// The transport failed or the server closed TCP without a closing handshake.
    ConnectionLost,
    /// A ping went unanswered for the pong timeout.
    PongTimeout,
    /// The server broke the protocol; we failed the connection.
    ProtocolError,
    /// Our close frame was not answered in time.
    CloseTimeout,
    /// The application dropped the connection ([`crate::Client::abort`]).
    Aborted,
}

/// One event, in the order things happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A connect attempt starts (every attempt, every redirect hop).
    BeforeConnect {
        /// Where to.
        uri: String,
    },
    /// The upgrade succeeded.
    Connected(Connected),
    /// A chunk of a received frame ([`crate::Delivery::Chunks`]); control frames too. When
    /// the connection drops in the middle of a frame, the bytes received of it come as a
    /// last chunk that does not end the frame ([`DataChunk::ends_frame`] is false), before
    /// [`Event::Disconnected`]: every byte received is reported.
    Data(DataChunk),
    /// A whole received message ([`crate::Delivery::Messages`]).
    Message(Message),
    /// Something failed; a [`Event::Disconnected`] usually follows.
    Error(ClientError),
    /// The connection ended abnormally; a reconnect follows if enabled.
    Disconnected(DisconnectReason),
    /// The closing handshake completed.
    Closed {
        /// The code from the server's close frame, if it had one.
        code: Option<u16>,
        /// The reason from the server's close frame.
        reason: String,
    },
    /// The client stopped for good (stop, clean close, or no reconnect).
    Finish,
}

impl Event {
    /// The received payload bytes this event carries (what the event budget counts).
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Event::Data(chunk) => chunk.data.len(),
            Event::Message(message) => message.payload.len(),
            _ => 0,
        }
    }
}
