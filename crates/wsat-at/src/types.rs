//! The engine's public vocabulary: configuration in, actions out, completions and link events
//! back in. These types are the whole contract with the glue that owns sockets and clocks.

/// Which firmware's behaviour the engine reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// ESP-AT v4.1–v5.0 (the seed documents): FIRMWARE.md §1–§8. The default.
    #[default]
    V5,
    /// Current ESP-AT master: adds AT+WSDATAFMT, the `<fin>` parameter and 16 KiB limits (FIRMWARE.md §9).
    Master,
}

/// The factory "wss" PKI set as loaded by the glue (`--pki DIR`), indexed by `NN`.
///
/// The number of entries decides `NO CERT FOUND` / `NO PRVT_KEY FOUND` / `NO CA FOUND`
/// (FIRMWARE.md §4.2 step 7); an empty entry behaves like a failed flash read (bare ERROR, step 8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pki {
    /// `wss_ca_NN.crt` PEM bytes, index = `<ca_number>`.
    pub cas: Vec<Vec<u8>>,
    /// `wss_client_NN.crt` PEM bytes, index = `<pki_number>`.
    pub client_certs: Vec<Vec<u8>>,
    /// `wss_client_NN.key` PEM bytes, index = `<pki_number>`.
    pub client_keys: Vec<Vec<u8>>,
}

/// Everything the engine needs to know at construction; it never reads files or the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of link slots (firmware: 3, ids 0..=2). Link ids ≥ this are rejected.
    pub links: usize,
    /// Behaviour switch (FIRMWARE.md §9).
    pub firmware: Firmware,
    /// Certificates for AT+WSCFG auth modes 1..3.
    pub pki: Pki,
    /// wsat's version, printed by AT+GMR.
    pub version: String,
}

impl Default for EngineConfig {
    /// Firmware defaults: 3 links, v5 behaviour, no PKI, this crate's version.
    fn default() -> Self {
        EngineConfig {
            links: 3,
            firmware: Firmware::V5,
            pki: Pki::default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Names one incarnation of a link: the slot id plus a generation that changes at every
/// AT+WSOPEN of that slot, so late events from a link that has since been closed are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkHandle {
    /// Slot id, the `<link_id>` of the AT commands.
    pub id: usize,
    /// Incremented at every AT+WSOPEN of this id that reaches the glue (an [`Action::Open`]).
    pub generation: u64,
}

/// Per-link client settings from AT+WSCFG (or the defaults of FIRMWARE.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Keep-alive ping interval in seconds (default 10).
    pub ping_interval_s: u32,
    /// Pong timeout in seconds (default 120).
    pub pong_timeout_s: u32,
    /// RX chunk size and TX fragment size in bytes (default 1024).
    pub buffer_size: usize,
    /// 0 none, 1 client cert, 2 verify server (no host name check), 3 both (FIRMWARE.md §4.4).
    pub auth_mode: u8,
    /// CA used to verify the server (auth modes 2 and 3).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate presented to the server (auth modes 1 and 3).
    pub client_cert_pem: Option<Vec<u8>>,
    /// Key of the client certificate (auth modes 1 and 3).
    pub client_key_pem: Option<Vec<u8>>,
}

impl Default for LinkConfig {
    /// The library defaults of FIRMWARE.md §4.3: 10 s ping, 120 s pong timeout, 1024-byte buffer, no TLS auth.
    fn default() -> Self {
        LinkConfig {
            ping_interval_s: 10,
            pong_timeout_s: 120,
            buffer_size: 1024,
            auth_mode: 0,
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
        }
    }
}

/// What the glue needs to open one link (AT+WSOPEN plus the slot's config and global headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The URI exactly as given (after AT unescaping); the engine only sanity-checked it.
    pub uri: String,
    /// `Sec-WebSocket-Protocol` value; `Some("")` means send the header with an empty value.
    pub subprotocol: Option<String>,
    /// How long AT+WSOPEN waits for the connection (1..=180000, default 15000).
    pub timeout_ms: u32,
    /// Verbatim `Authorization` header value; overrides URI userinfo Basic auth.
    pub authorization: Option<String>,
    /// AT+WSHEAD list, newest first, key and value verbatim (value keeps its leading space).
    pub headers: Vec<(String, String)>,
    /// Client settings for this link.
    pub config: LinkConfig,
}

/// Something the glue must do with links (pulled with [`crate::Engine::poll_action`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect; report [`LinkEvent::Connected`]/[`LinkEvent::Disconnected`], then [`Completion::Open`].
    Open {
        /// The new link's handle (use it for all its events).
        link: LinkHandle,
        /// Connection parameters.
        request: OpenRequest,
    },
    /// Send one message raw (fragmented by `buffer_size`, FIRMWARE.md §7.3/§9.1), then [`Completion::Send`].
    Send {
        /// Target link.
        link: LinkHandle,
        /// Opcode 0..=15, sent as given.
        opcode: u8,
        /// FIN bit of the last fragment (always true in v5).
        fin: bool,
        /// Payload (may be empty in master mode).
        payload: Vec<u8>,
        /// Lock/write timeout from AT+WSSEND (0..=60000, default 10000).
        timeout_ms: u32,
    },
    /// Drop the link abruptly (no close frame), then [`Completion::Close`].
    Close {
        /// The link to drop.
        link: LinkHandle,
    },
    /// AT+RST: drop every link; no completion expected.
    CloseAll,
    /// AT+CIPSNTPCFG=1: sync the clock (or just confirm the host clock), then [`Completion::SntpSynced`].
    SntpSync,
    /// AT+CIPSNTPTIME?: answer [`Completion::Time`] with UTC Unix seconds. The offset is
    /// informational: the engine applies it itself when formatting.
    QueryTime {
        /// Minutes east of UTC from AT+CIPSNTPCFG's timezone.
        utc_offset_minutes: i32,
    },
}

/// The outcome of an earlier [`Action`] (fed with [`crate::Engine::complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// AT+WSOPEN finished: `ok` ⇒ `OK`, else the link is cleaned and `ERROR` printed.
    Open {
        /// Handle from the [`Action::Open`].
        link: LinkHandle,
        /// Whether the link is connected.
        ok: bool,
    },
    /// AT+WSSEND finished: `ok` ⇒ `SEND OK` (all bytes handed to TCP), else `ERROR`.
    Send {
        /// Handle from the [`Action::Send`].
        link: LinkHandle,
        /// Whether every byte was written.
        ok: bool,
    },
    /// AT+WSCLOSE finished tearing the link down.
    Close {
        /// Handle from the [`Action::Close`].
        link: LinkHandle,
    },
    /// The clock is synchronised: prints `+TIME_UPDATED` once after AT+CIPSNTPCFG=1.
    SntpSynced,
    /// Answer to [`Action::QueryTime`]: current UTC time.
    Time {
        /// Seconds since 1970-01-01T00:00:00Z.
        unix_seconds: i64,
    },
}

/// A link's connection state, as `AT+WSOPEN?` prints it (FIRMWARE.md §6.2, §10): the engine's
/// mirror of the link's last [`LinkEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Connecting: after AT+WSOPEN, and during each reconnect attempt (printed `1`).
    Connecting,
    /// Connected (printed `2`).
    Connected,
    /// Disconnected, waiting to reconnect (printed `3`).
    WaitingToReconnect,
}

impl LinkStatus {
    /// The number `AT+WSOPEN?` prints for it.
    pub fn code(self) -> u8 {
        match self {
            LinkStatus::Connecting => 1,
            LinkStatus::Connected => 2,
            LinkStatus::WaitingToReconnect => 3,
        }
    }
}

/// Something a running link reports (fed with [`crate::Engine::handle_link_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A (re)connect attempt starts: state 1, no URC.
    Connecting,
    /// Handshake succeeded: `+WS_CONNECTED:<L>`, state 2.
    Connected,
    /// Connection aborted or attempt failed: `+WS_DISCONNECTED:<L>`, state 3.
    Disconnected,
    /// Close frame received: `+WS_CLOSED:<L>`; the slot and its WSCFG config are freed at once.
    Closed,
    /// One received chunk (≤ buffer_size) of a frame: `+WS_DATA` for opcodes 0/1/2 only.
    Data {
        /// Frame opcode.
        opcode: u8,
        /// Frame FIN bit.
        fin: bool,
        /// Total payload length of the frame.
        payload_len: u64,
        /// Offset of this chunk in the frame payload.
        offset: u64,
        /// The chunk's bytes.
        chunk: Vec<u8>,
    },
}

/// Port state as seen from outside (an addition to the brief's API): lets the glue or a test know
/// whether input is being collected as a command line, swallowed as busy, or read as payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Accepting command lines; `buffered` bytes of an unterminated line are held.
    Idle {
        /// Bytes of the partial command line.
        buffered: usize,
    },
    /// A command is executing (waiting for a [`Completion`]); input gets `busy p...`.
    Busy,
    /// After `>`: `remaining` payload bytes are still expected (no timeout, FIRMWARE.md §1.7).
    Data {
        /// Bytes still missing.
        remaining: usize,
    },
}
