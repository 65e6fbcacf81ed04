//! An echo server on wsat-proto's server role: every text or binary message comes back
//! with its type, like the seed examples' `ws-server.py` and `wss-server.py`.
//!
//! It faces peers it cannot trust, so what they can take is bounded ([`EchoOptions`]): a
//! deadline on everything before the upgrade completes, a connection limit, a bound on
//! the echoes one connection may leave unread, and one on the size of a message (counted
//! decompressed, so a compression bomb stops at it).
//!
//! permessage-deflate (RFC 7692) is accepted by default ([`EchoOptions::deflate`]): a
//! compressed message is echoed compressed by the server's own compressor. The accept loop backs off instead of
//! spinning when it runs out of descriptors, and logs such failures at most once a second.
//!
//! This module holds the public face, [`EchoServer`] and [`EchoOptions`], and the accept
//! loop; `slots` keeps the connection limit and its evictions, `pacing` the accept loop's
//! backoff and log limits, `connection` one connection's deadline and upgrade, and
//! `echo_loop` its echoes with their byte bound.

mod connection;
mod echo_loop;
mod pacing;
mod slots;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use wsat_proto::deflate::DeflateConfig;
use wsat_proto::handshake::reject_response;

use connection::{deadline_after, serve};
use pacing::{after_accept_failure, held_back_note, report_held_back, Backoff, LogLimiter, LOG_INTERVAL};
use slots::{Claim, Slot, Slots};

pub use connection::{echo, echo_with};

/// The default [`EchoOptions::max_message`]: the largest message echoed; longer ones close
/// the connection with 1009.
pub const MAX_MESSAGE: usize = 64 << 20;

/// The default [`EchoOptions::handshake_timeout`]: ample for a TLS handshake and an upgrade
/// over a slow link, short enough that idle half-open connections do not pile up.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`EchoOptions::max_connections`]: half the common soft limit of 1,024
/// descriptors (see there why it must stay below the limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The default [`EchoOptions::max_queued_bytes`]: 4 MiB, a few round trips of any
/// realistic echo pipeline, small beside the 64 MiB a single message may take.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;

/// Limits that keep peers, one or many, from exhausting the server. `Default` gives the
/// `DEFAULT_*` constants, [`MAX_MESSAGE`] and [`default_deflate`]; [`echo_with`] and
/// [`EchoServer::with_options`] take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoOptions {
    /// How long a connection may take from its TCP accept to a completed upgrade, the TLS
    /// handshake included; then it is closed. Without it, a peer that sends half a request
    /// (or no ClientHello) holds a descriptor and a slot forever. An upgraded connection has
    /// no deadline. `Duration::MAX` (or anything beyond 30 years) means 30 years.
    pub handshake_timeout: Duration,
    /// At most this many connections at once, in their handshake or upgraded. At the limit a
    /// new connection takes the slot of the oldest connection still in its handshake, which
    /// is closed, so peers that never finish an upgrade cannot lock others out; when every
    /// slot holds an upgraded connection the new one is closed at once (a plain `ws` one
    /// after a `503` if its socket takes it without waiting).
    ///
    /// Each connection holds one descriptor. The default, [`DEFAULT_MAX_CONNECTIONS`], stays
    /// well below the common soft limit of 1,024 (`ulimit -n`), leaving room for the
    /// runtime, the listener and stdio: at the limit `accept` still gets descriptors, so
    /// extra connections are answered and closed at once rather than left to queue while
    /// `accept` fails with EMFILE. Raise it only together with the descriptor limit. With 0
    /// every connection is refused.
    pub max_connections: usize,
    /// Per connection, reading stops while more than this many bytes of echoes wait to be
    /// written, and resumes as the peer reads them: a peer that sends and never reads meets
    /// TCP backpressure instead of growing the server. Writing goes on meanwhile, so nothing
    /// deadlocks on the server's side.
    ///
    /// The bound is checked before each read, so one connection holds about this much plus
    /// one message (up to [`EchoOptions::max_message`], the one that crossed the bound or is being
    /// assembled) plus one socket read (64 KiB); for a moment, while a message is copied into
    /// its echo frame, that message twice. With 0, a connection reads only once all its
    /// echoes are written.
    pub max_queued_bytes: usize,
    /// The largest message echoed, in bytes; a longer one closes the connection with 1009
    /// as soon as a frame header announces it, or, for a compressed message, as soon as
    /// inflating it passes the limit (a compression bomb costs at most this much).
    pub max_message: usize,
    /// permessage-deflate (RFC 7692): `Some` accepts the first offer it can honour with
    /// this configuration, read the server's way (see the table on [`DeflateConfig`]:
    /// `server_max_window_bits` caps our compressor's window, `client_max_window_bits`
    /// below 15 asks the client for a smaller one, the `*_no_context_takeover` flags ask
    /// for fresh compressors per message); a malformed offer is declined and the
    /// connection goes on uncompressed. `None` declines every offer.
    pub deflate: Option<DeflateConfig>,
}

/// The default [`EchoOptions::deflate`]: accept any valid offer as it stands, windows of
/// 32 KiB unless the client asks for less, compression level 6.
pub fn default_deflate() -> DeflateConfig {
    DeflateConfig::default()
}

impl Default for EchoOptions {
    fn default() -> Self {
        EchoOptions {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_message: MAX_MESSAGE,
            deflate: Some(default_deflate()),
        }
    }
}

/// A bound, not yet running echo server.
pub struct EchoServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    options: EchoOptions,
}

impl EchoServer {
    /// Binds to `addr`; with `tls`, every connection is wss. The options are the defaults
    /// until [`EchoServer::with_options`].
    pub async fn bind(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        Ok(EchoServer {
            listener: TcpListener::bind(addr).await?,
            tls: tls.map(TlsAcceptor::from),
            options: EchoOptions::default(),
        })
    }

    /// The same server with `options` in force.
    pub fn with_options(mut self, options: EchoOptions) -> Self {
        self.options = options;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &EchoOptions {
        &self.options
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections, within the limits of [`EchoServer::options`], until the task is
    /// dropped or aborted; each connection runs on its own task and a failing one never
    /// stops the server (connections outlive a stopped server).
    pub async fn run(self) {
        let mut slots = Slots::new(self.options.max_connections);
        let mut backoff = Backoff::new();
        let mut failures = LogLimiter::new(LOG_INTERVAL);
        let mut at_limit = LogLimiter::new(LOG_INTERVAL);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    after_accept_failure(&e, &mut backoff, &mut failures).await;
                    continue;
                }
            };
            backoff.reset();
            report_held_back(&mut failures, "accept failures");
            let deadline = deadline_after(self.options.handshake_timeout);
            match slots.claim().await {
                Claim::Free(slot) => {
                    report_held_back(&mut at_limit, "connections at the limit");
                    self.spawn_connection(tcp, peer, slot, deadline);
                }
                Claim::MadeRoom(slot) => {
                    let action = format_args!("closed the oldest connection in its handshake for {peer}");
                    self.log_at_limit(&mut at_limit, action);
                    self.spawn_connection(tcp, peer, slot, deadline);
                }
                Claim::Full => {
                    turn_away(tcp, self.tls.is_none());
                    let action = format_args!("every connection is upgraded; refused {peer}");
                    self.log_at_limit(&mut at_limit, action);
                }
            }
        }
    }

    /// Runs the server on a task of its own.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Logs (at most once per [`LOG_INTERVAL`]) what the connection limit made the server do.
    fn log_at_limit(&self, log: &mut LogLimiter, action: std::fmt::Arguments<'_>) {
        if let Some(held_back) = log.admit(Instant::now()) {
            let limit = self.options.max_connections;
            let note = held_back_note(held_back, "more connections at the limit");
            tracing::warn!("connection limit ({limit}) reached: {action}{note}");
        }
    }

    fn spawn_connection(&self, tcp: TcpStream, peer: SocketAddr, slot: Slot, deadline: Instant) {
        let tls = self.tls.clone();
        let options = self.options.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, tls, slot, deadline, &options).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// Turns away a connection beyond the limit at once: a plain ws peer gets a `503` if its
/// socket takes it without waiting, then the connection is closed (dropped).
fn turn_away(tcp: TcpStream, plain: bool) {
    if plain {
        let _ = tcp.try_write(&reject_response(503, "Service Unavailable"));
    }
}
