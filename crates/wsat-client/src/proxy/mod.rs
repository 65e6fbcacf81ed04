//! Proxies under a connection: an HTTP proxy's `CONNECT` tunnel, or SOCKS5 (RFC 1928, with
//! RFC 1929 user name and password), and the proxy the environment asks for, by curl's
//! rules ([`Proxy::from_env`]).
//!
//! The tunnel is opened by the transport (TCP to the proxy, then this handshake); TLS for
//! `wss` and the upgrade then run through it to the target as they would without a proxy.
//!
//! This module holds the [`Proxy`] type (its URL parsing and redacted display), its errors
//! and `tunnel`, the entry the transport calls; the environment's choice of proxy is in
//! `env`, the two handshakes in `http` and `socks5`.

mod env;
mod http;
mod socks5;

use std::fmt;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};
use wsat_proto::uri::WsUri;

use crate::ClientError;
use socks5::socks5_reply_text;

/// The port of a proxy URL without one (curl's default).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy: `CONNECT host:port HTTP/1.1` opens the tunnel (`http://`).
    Http,
    /// A SOCKS5 proxy (RFC 1928). Host names are sent to the proxy, which resolves them
    /// (curl's `socks5h` semantics); IP literals are sent as addresses (`socks5://`,
    /// `socks5h://`).
    Socks5,
}

/// A proxy to connect through ([`crate::ClientConfig::proxy`]): parsed from
/// `http://[user:pass@]host[:port]` (an HTTP proxy's `CONNECT` tunnel, with
/// `Proxy-Authorization: Basic …` when credentials are given) or
/// `socks5://[user:pass@]host[:port]` (SOCKS5 without authentication, or with RFC 1929
/// user name and password when given; `socks5h://` is the same). As in curl: a URL without
/// a scheme is an HTTP proxy, the default port is 1080, user and password are
/// percent-decoded (`%40` for `@`, `%3A` for `:`), a path is ignored.
///
/// The credentials go only to the proxy, never to the WebSocket server. `Debug` and
/// `Display` show the URL with the password as `<redacted>`, and no error carries it.
///
/// ```
/// use wsat_client::{Proxy, ProxyKind};
/// let proxy: Proxy = "http://alice:s3cret@proxy.example:3128".parse().unwrap();
/// assert_eq!((proxy.kind(), proxy.host(), proxy.port()), (ProxyKind::Http, "proxy.example", 3128));
/// assert_eq!(proxy.to_string(), "http://alice:<redacted>@proxy.example:3128");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

/// Why a proxy URL was refused, or a proxy refused or broke the tunnel. Never carries the
/// proxy's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL is unusable (the message says why, without the password).
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(String),
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx.
    #[error("proxy refused CONNECT: {status} {reason}")]
    Refused {
        /// The status code, e.g. 407.
        status: u16,
        /// The reason phrase (control characters replaced, at most 128 characters).
        reason: String,
    },
    /// The HTTP proxy's answer is not an HTTP response.
    #[error("proxy sent an invalid CONNECT response: {0:?}")]
    BadResponse(String),
    /// The `CONNECT` response head did not end within the limit
    /// (`ClientConfig::max_response_head`).
    #[error("proxy CONNECT response head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// The proxy closed the connection before the tunnel was open.
    #[error("proxy closed the connection during the handshake")]
    Closed,
    /// The SOCKS5 proxy accepts none of the authentication methods offered (no
    /// authentication, and user name and password when credentials are given).
    #[error("SOCKS5 proxy accepts none of the offered authentication methods ({offered})")]
    NoAcceptableMethod {
        /// What was offered.
        offered: &'static str,
    },
    /// The SOCKS5 proxy refused the user name and password (RFC 1929 status).
    #[error("SOCKS5 proxy rejected the user name and password (status {0})")]
    AuthFailed(u8),
    /// The SOCKS5 proxy refused the connection to the target (RFC 1928 reply code).
    #[error("SOCKS5 proxy refused the connection: reply {code} ({})", socks5_reply_text(*code))]
    Socks5Refused {
        /// The reply code (1 general failure … 8 address type not supported).
        code: u8,
    },
    /// The SOCKS5 proxy broke the protocol.
    #[error("SOCKS5 proxy sent an invalid reply: {0}")]
    Socks5BadReply(String),
    /// What SOCKS5 cannot carry: a user name or password over 255 bytes (or an empty user
    /// name), a host name over 255 bytes.
    #[error("SOCKS5 cannot carry {0}")]
    Socks5Limit(&'static str),
}

impl ProxyError {
    /// The status of a refused `CONNECT`, if that is what happened.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Proxy {
    /// An HTTP proxy at `host:port`, without credentials.
    pub fn http(host: impl Into<String>, port: u16) -> Proxy {
        Proxy {
            kind: ProxyKind::Http,
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// A SOCKS5 proxy at `host:port`, without credentials.
    pub fn socks5(host: impl Into<String>, port: u16) -> Proxy {
        Proxy {
            kind: ProxyKind::Socks5,
            ..Proxy::http(host, port)
        }
    }

    /// The same proxy with a user name and password: `Proxy-Authorization: Basic` for an
    /// HTTP proxy, RFC 1929 for SOCKS5 (each at most 255 bytes, the user name not empty,
    /// or the handshake fails with [`ProxyError::Socks5Limit`]).
    pub fn with_credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Proxy {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Parses a proxy URL (see [`Proxy`]).
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let url = url.trim();
        let owned;
        let url = if url.contains("://") {
            url
        } else {
            owned = format!("http://{url}");
            &owned
        };
        // WsUri's errors never carry the password.
        let uri = WsUri::parse(url).map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        let kind = match uri.scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            "https" => {
                return Err(ProxyError::InvalidUrl(
                    "HTTPS proxies (TLS to the proxy) are not supported: use http:// or socks5://".into(),
                ))
            }
            other => {
                return Err(ProxyError::InvalidUrl(format!(
                    "unsupported proxy scheme {other:?}: use http:// or socks5://"
                )))
            }
        };
        let mut proxy = Proxy {
            kind,
            host: uri.host,
            port: uri.port.unwrap_or(DEFAULT_PROXY_PORT),
            credentials: None,
        };
        if let Some(user) = uri.username {
            let user = percent_decode(&user, "user name")?;
            let password = percent_decode(uri.password.as_deref().unwrap_or(""), "password")?;
            if !user.is_empty() || !password.is_empty() {
                proxy = proxy.with_credentials(user, password);
            }
        }
        if kind == ProxyKind::Socks5 {
            proxy
                .check_socks5_credentials()
                .map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        }
        Ok(proxy)
    }

    /// HTTP or SOCKS5.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host (a name or an IP literal, without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name sent to the proxy, if any (the password has no getter).
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// The name of the handshake step, for timeouts.
    pub(crate) fn step(&self) -> &'static str {
        match self.kind {
            ProxyKind::Http => "proxy CONNECT",
            ProxyKind::Socks5 => "SOCKS5 handshake",
        }
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse(s)
    }
}

/// The URL with the password as `<redacted>`.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
        };
        write!(f, "{scheme}://")?;
        if let Some(c) = &self.credentials {
            write!(f, "{}:<redacted>@", c.user)?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Decodes `%XX` escapes (curl decodes the proxy URL's user and password).
fn percent_decode(input: &str, what: &str) -> Result<String, ProxyError> {
    let bad = || ProxyError::InvalidUrl(format!("the {what} is not valid percent-encoded UTF-8"));
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Opens the tunnel to `host:port` over `stream`, connected to `proxy`. Reads exactly what
/// the handshake says and nothing of what follows. Unbounded in time: the caller bounds it.
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
    user_agent: Option<&str>,
    max_head: usize,
) -> Result<(), ClientError> {
    let result = match proxy.kind {
        ProxyKind::Http => http::http_connect(stream, proxy, host, port, user_agent, max_head).await,
        ProxyKind::Socks5 => socks5::socks5_connect(stream, proxy, host, port).await,
    };
    result.map_err(|e| match e {
        Failure::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => ProxyError::Closed.into(),
        Failure::Io(e) => ClientError::io("proxy handshake", e),
        Failure::Proxy(e) => e.into(),
    })
}

/// What a handshake step can fail with.
enum Failure {
    Io(std::io::Error),
    Proxy(ProxyError),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Self {
        Failure::Proxy(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::{duplex, AsyncReadExt};

    use super::*;
    use crate::config::Target;

    fn target(uri: &str) -> Target {
        Target {
            uri: WsUri::parse(uri).expect("valid"),
        }
    }

    fn from_env(uri: &str, vars: &[(&str, &str)]) -> Result<Option<Proxy>, ProxyError> {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Proxy::from_env(&target(uri), |k| env.get(k).cloned())
    }

    /// The proxy URL `from_env` picked, as `Display` shows it.
    pub(super) fn picked(uri: &str, vars: &[(&str, &str)]) -> Option<String> {
        from_env(uri, vars).expect("valid").map(|p| p.to_string())
    }

    /// Runs `tunnel` against a scripted proxy: `script` gets the proxy's end.
    pub(super) async fn against<F, Fut>(proxy: &Proxy, host: &str, script: F) -> (Result<(), ClientError>, Vec<u8>)
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (mut ours, theirs) = duplex(64 * 1024);
        let peer = tokio::spawn(script(theirs));
        let result = tunnel(&mut ours, proxy, host, 443, Some("wsat/test"), 16 * 1024).await;
        peer.await.expect("script");
        // What the proxy sent after the handshake is still there for TLS and the upgrade.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), ours.read_to_end(&mut rest)).await;
        (result, rest)
    }

    #[test]
    fn urls_parse_as_curl_reads_them() {
        let p = Proxy::parse("http://alice:s3cret@proxy.example:3128").expect("valid");
        assert_eq!(
            (p.kind(), p.host(), p.port(), p.username()),
            (ProxyKind::Http, "proxy.example", 3128, Some("alice"))
        );
        let p = Proxy::parse("proxy.example").expect("no scheme: HTTP, port 1080");
        assert_eq!((p.kind(), p.port(), p.username()), (ProxyKind::Http, 1080, None));
        let p = Proxy::parse("socks5h://[::1]:9050/").expect("valid");
        assert_eq!((p.kind(), p.host(), p.port()), (ProxyKind::Socks5, "::1", 9050));
        assert_eq!(p.to_string(), "socks5://[::1]:9050");
        let p = Proxy::parse("SOCKS5://u%40corp:p%3Ass%25@h:1").expect("valid");
        assert_eq!(
            p.credentials.as_ref().map(|c| (c.user.as_str(), c.password.as_str())),
            Some(("u@corp", "p:ss%"))
        );
        assert_eq!(Proxy::parse(" http://h:8080/ ").expect("valid"), Proxy::http("h", 8080));
        let p = Proxy::parse("http://user@h:1").expect("no password: an empty one");
        assert_eq!(p.credentials.as_ref().map(|c| c.password.as_str()), Some(""));

        for (bad, why) in [
            ("https://h:1", "HTTPS proxies"),
            ("socks4://h:1", "unsupported proxy scheme \"socks4\""),
            ("http://h:99999", "invalid port"),
            ("http://u:p%zz@h:1", "password is not valid"),
            ("socks5://:pw@h:1", "empty"),
            ("http://", "missing host"),
        ] {
            let err = Proxy::parse(bad).expect_err(bad).to_string();
            assert!(
                err.starts_with("invalid proxy URL: ") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let long = "x".repeat(256);
        assert!(Proxy::parse(&format!("socks5://u:{long}@h:1")).is_err());
        assert!(Proxy::parse(&format!("http://u:{long}@h:1")).is_ok());
    }

    #[test]
    fn the_password_never_shows() {
        for url in [
            "http://alice:hunter2@h:1",
            "socks5://alice:hunter2@h:1",
            "http://alice:hunter2@h:99999",
        ] {
            let shown = match Proxy::parse(url) {
                Ok(p) => format!("{p} {p:?}"),
                Err(e) => format!("{e} {e:?}"),
            };
            assert!(!shown.contains("hunter2") && shown.contains("alice"), "{shown}");
        }
        let err = from_env("ws://h", &[("http_proxy", "ftp://alice:hunter2@h")]).expect_err("bad scheme");
        assert!(
            !err.to_string().contains("hunter2") && err.to_string().contains("(in http_proxy)"),
            "{err}"
        );
        let shown = format!("{:?}", Proxy::http("h", 1).with_credentials("alice", "hunter2"));
        assert!(
            shown.contains("password: Some(\"<redacted>\")") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
