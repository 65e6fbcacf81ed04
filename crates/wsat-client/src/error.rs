//! Client errors: typed, cloneable (they travel in events), with the cause kept.

use std::io;
use std::sync::Arc;

use wsat_proto::handshake::HandshakeError;
use wsat_proto::uri::UriError;
use wsat_proto::ProtocolError;

use crate::proxy::ProxyError;
use crate::tls::TlsConfigError;

/// Everything that can go wrong in a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The URI (with overrides) is unusable.
    #[error("invalid URI: {0}")]
    Uri(#[from] UriError),
    /// The TLS configuration is unusable.
    #[error("TLS configuration: {0}")]
    TlsConfig(Arc<TlsConfigError>),
    /// A network step did not finish within the network timeout.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// An I/O error during a step.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The cause.
        source: Arc<io::Error>,
    },
    /// The TLS handshake failed (bad certificate, unknown CA, refused client certificate).
    #[error("TLS handshake: {0}")]
    Tls(rustls::Error),
    /// The upgrade was refused or invalid.
    #[error("WebSocket upgrade: {0}")]
    Handshake(#[from] HandshakeError),
    /// The upgrade request is larger than allowed.
    #[error("upgrade request of {len} bytes exceeds the limit of {limit}")]
    RequestTooLarge {
        /// The request's size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More redirects than allowed.
    #[error("too many redirects (limit {0})")]
    TooManyRedirects(u32),
    /// A redirect from `wss` to `ws` was refused: it would carry the connection, and the
    /// headers sent with it, in cleartext (see `ClientConfig::allow_insecure_redirect`).
    #[error("refusing the redirect from {from} to {to}: it leaves TLS (allow_insecure_redirect permits it)")]
    InsecureRedirect {
        /// Where the redirect came from (without credentials).
        from: String,
        /// Where it pointed (without credentials).
        to: String,
    },
    /// The proxy refused the tunnel or broke its protocol (a `CONNECT` answered with a
    /// status other than 2xx, a SOCKS5 reply code), or the proxy URL is unusable.
    #[error("{0}")]
    Proxy(#[from] ProxyError),
    /// The server closed TCP during the upgrade.
    #[error("server closed the connection during the upgrade")]
    HandshakeEof,
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// No pong within the pong timeout.
    #[error("no pong received for more than {0} s")]
    PongTimeout(u64),
    /// The server closed TCP without a closing handshake.
    #[error("server closed the connection")]
    ConnectionClosed,
    /// The server did not answer our close frame in time.
    #[error("server did not answer the close frame in time")]
    CloseTimeout,
    /// Not connected (connecting, waiting to reconnect, closing, stopped).
    #[error("not connected")]
    NotConnected,
    /// The send did not complete within its timeout; the connection stays up and the data
    /// may still go out (it was already queued).
    #[error("send timed out")]
    SendTimeout,
    /// The application dropped the connection ([`crate::Client::abort`]).
    #[error("connection aborted by the application")]
    Aborted,
    /// The client task is gone.
    #[error("client stopped")]
    Stopped,
}

impl ClientError {
    /// Wraps an I/O error, lifting a rustls error out of it so the message says what TLS
    /// refused.
    pub(crate) fn io(step: &'static str, err: io::Error) -> Self {
        if let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return ClientError::Tls(tls.clone());
        }
        ClientError::Io {
            step,
            source: Arc::new(err),
        }
    }

    /// The HTTP status of a refused upgrade, if any.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Handshake(h) => h.status(),
            _ => None,
        }
    }
}

impl From<TlsConfigError> for ClientError {
    fn from(err: TlsConfigError) -> Self {
        ClientError::TlsConfig(Arc::new(err))
    }
}
