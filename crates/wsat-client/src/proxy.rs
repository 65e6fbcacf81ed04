//! Proxies under a connection: an HTTP proxy's `CONNECT` tunnel, or SOCKS5 (RFC 1928, with
//! RFC 1929 user name and password), and the proxy the environment asks for, by curl's
//! rules ([`Proxy::from_env`]).
//!
//! The tunnel is opened by the transport (TCP to the proxy, then this handshake); TLS for
//! `wss` and the upgrade then run through it to the target as they would without a proxy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsat_proto::uri::WsUri;

use crate::config::Target;
use crate::ClientError;

/// The port of a proxy URL without one (curl's default).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// The longest reason phrase of a refused `CONNECT` kept in the error (the proxy's text
/// ends up in terminals and logs).
const MAX_REASON: usize = 128;

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

/// RFC 1928 §6's meaning of a reply code.
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned",
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

    /// The proxy the environment asks for to reach `target`, read as curl 8 reads it
    /// (`env` looks a variable up; an empty value counts as unset):
    ///
    /// 1. `no_proxy`, else `NO_PROXY`: a comma-separated list of host names (matching the
    ///    name and its subdomains; a leading or trailing dot is ignored), IP addresses or
    ///    CIDR ranges (`10.0.0.0/8`), or `*` alone for every host. Ports are not part of
    ///    the match. A match means no proxy.
    /// 2. For `wss://`: `wss_proxy`, `WSS_PROXY`, `https_proxy`, `HTTPS_PROXY`; for
    ///    `ws://`: `ws_proxy`, `WS_PROXY`, `http_proxy` (lowercase only, as curl: a web
    ///    server's CGI environment sets `HTTP_PROXY` from a request's `Proxy:` header).
    /// 3. Then `all_proxy`, `ALL_PROXY`.
    ///
    /// The first one set is parsed with [`Proxy::parse`]; an invalid one is an error
    /// naming the variable (not its value).
    pub fn from_env(target: &Target, env: impl Fn(&str) -> Option<String>) -> Result<Option<Proxy>, ProxyError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(list) = get("no_proxy").or_else(|| get("NO_PROXY")) {
            if no_proxy_matches(&list, &target.uri.host) {
                tracing::debug!(host = %target.uri.host, "the host is in no_proxy: no proxy");
                return Ok(None);
            }
        }
        let names: &[&str] = if target.tls() {
            &[
                "wss_proxy",
                "WSS_PROXY",
                "https_proxy",
                "HTTPS_PROXY",
                "all_proxy",
                "ALL_PROXY",
            ]
        } else {
            &["ws_proxy", "WS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"]
        };
        let Some((name, value)) = names.iter().find_map(|n| get(n).map(|v| (*n, v))) else {
            return Ok(None);
        };
        let proxy = Proxy::parse(&value).map_err(|e| match e {
            ProxyError::InvalidUrl(why) => ProxyError::InvalidUrl(format!("{why} (in {name})")),
            other => other,
        })?;
        tracing::debug!(variable = name, %proxy, "proxy from the environment");
        Ok(Some(proxy))
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

    fn check_socks5_credentials(&self) -> Result<(), ProxyError> {
        match &self.credentials {
            Some(c) if c.user.is_empty() || c.user.len() > 255 => {
                Err(ProxyError::Socks5Limit("a user name that is empty or over 255 bytes"))
            }
            Some(c) if c.password.len() > 255 => Err(ProxyError::Socks5Limit("a password over 255 bytes")),
            _ => Ok(()),
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

/// Whether `host` is in a `no_proxy` list (curl's `Curl_check_noproxy`, see
/// [`Proxy::from_env`]).
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok();
    let name = host.strip_suffix('.').unwrap_or(host);
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .any(|token| match ip {
            Some(ip) => ip_matches(token, ip),
            None => {
                let token = token.strip_suffix('.').unwrap_or(token);
                let token = token.strip_prefix('.').unwrap_or(token);
                !token.is_empty()
                    && (name.eq_ignore_ascii_case(token)
                        || (name.len() > token.len()
                            && name.as_bytes()[name.len() - token.len() - 1] == b'.'
                            && name[name.len() - token.len()..].eq_ignore_ascii_case(token)))
            }
        })
}

/// An IP literal against a `no_proxy` token: an address or a CIDR range.
fn ip_matches(token: &str, ip: IpAddr) -> bool {
    let token = token.trim_start_matches('[').trim_end_matches(']');
    let (addr, bits) = match token.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(bits) => (a, Some(bits)),
            Err(_) => return false,
        },
        None => (token, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => prefix_matches(&ip.octets(), &net.octets(), bits.unwrap_or(32)),
        (IpAddr::V6(ip), IpAddr::V6(net)) => prefix_matches(&ip.octets(), &net.octets(), bits.unwrap_or(128)),
        _ => false,
    }
}

/// Whether the first `bits` bits of `a` and `b` agree (`bits` past their length: never).
fn prefix_matches(a: &[u8], b: &[u8], bits: u32) -> bool {
    let bits = bits as usize;
    if bits > a.len() * 8 {
        return false;
    }
    let (whole, rest) = (bits / 8, bits % 8);
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) & (0xFF << (8 - rest)) == 0)
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
        ProxyKind::Http => http_connect(stream, proxy, host, port, user_agent, max_head).await,
        ProxyKind::Socks5 => socks5_connect(stream, proxy, host, port).await,
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

/// `host:port` as a request target and `Host` value: an IPv6 literal in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `CONNECT` request.
fn connect_request(proxy: &Proxy, host: &str, port: u16, user_agent: Option<&str>) -> String {
    let target = authority(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    if let Some(ua) = user_agent {
        req.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    req.push_str("\r\n");
    req
}

async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
    user_agent: Option<&str>,
    max_head: usize,
) -> Result<(), Failure> {
    stream
        .write_all(connect_request(proxy, host, port, user_agent).as_bytes())
        .await?;
    stream.flush().await?;
    let head = read_head(stream, max_head).await?;
    check_connect_response(&head)?;
    Ok(())
}

/// Reads a response head up to and including the blank line, never past it: the bytes
/// after it belong to the tunnel. At most `limit` bytes.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, limit: usize) -> Result<Vec<u8>, Failure> {
    const END: &[u8] = b"\r\n\r\n";
    let mut head = Vec::with_capacity(256);
    loop {
        // How much of the terminator the head already ends with: the head cannot end
        // before `4 - matched` more bytes, so reading that many never reads past it.
        let matched = (1..=END.len()).rev().find(|&k| head.ends_with(&END[..k])).unwrap_or(0);
        if matched == END.len() {
            return Ok(head);
        }
        let want = END.len() - matched;
        if head.len() + want > limit {
            return Err(ProxyError::HeadTooLarge(limit).into());
        }
        let start = head.len();
        head.resize(start + want, 0);
        let n = stream.read(&mut head[start..]).await?;
        head.truncate(start + n);
        if n == 0 {
            return Err(ProxyError::Closed.into());
        }
    }
}

/// Accepts a 2xx status line; anything else is a refusal or not HTTP.
fn check_connect_response(head: &[u8]) -> Result<(), ProxyError> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let status = match (version, code) {
        (Some(v), Some(c)) if v.starts_with("HTTP/1.") && c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()) => {
            c.parse::<u16>().unwrap_or(0)
        }
        _ => return Err(ProxyError::BadResponse(printable(&line))),
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ProxyError::Refused {
            status,
            reason: printable(reason.trim()),
        })
    }
}

/// A peer's text made safe for a terminal: control characters replaced, length capped.
fn printable(text: &str) -> String {
    text.chars()
        .take(MAX_REASON)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Failure> {
    proxy.check_socks5_credentials()?;
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).map_err(|_| ProxyError::Socks5Limit("a host name over 255 bytes"))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());

    // Method selection: no authentication, and user/password when we have credentials.
    let greeting: &[u8] = match proxy.credentials {
        Some(_) => &[5, 2, 0, 2],
        None => &[5, 1, 0],
    };
    stream.write_all(greeting).await?;
    stream.flush().await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != 5 {
        return Err(ProxyError::Socks5BadReply(format!("version {} instead of 5", choice[0])).into());
    }
    match (choice[1], &proxy.credentials) {
        (0, _) => {}
        (2, Some(c)) => {
            // RFC 1929: lengths checked above.
            let mut auth = vec![1, c.user.len() as u8];
            auth.extend_from_slice(c.user.as_bytes());
            auth.push(c.password.len() as u8);
            auth.extend_from_slice(c.password.as_bytes());
            stream.write_all(&auth).await?;
            stream.flush().await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(ProxyError::AuthFailed(status[1]).into());
            }
        }
        (0xFF, creds) => {
            return Err(ProxyError::NoAcceptableMethod {
                offered: match creds {
                    Some(_) => "none, user name and password",
                    None => "none; give a user name and password",
                },
            }
            .into())
        }
        (m, _) => return Err(ProxyError::Socks5BadReply(format!("method {m:#04x}, which was not offered")).into()),
    }

    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[0] != 5 {
        return Err(ProxyError::Socks5BadReply(format!("version {} instead of 5", reply[0])).into());
    }
    if reply[1] != 0 {
        return Err(ProxyError::Socks5Refused { code: reply[1] }.into());
    }
    // The bound address, which we do not need; read exactly its length.
    let addr_len = match reply[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0])
        }
        t => return Err(ProxyError::Socks5BadReply(format!("address type {t}")).into()),
    };
    let mut bound = [0u8; 255 + 2];
    stream.read_exact(&mut bound[..addr_len + 2]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::duplex;

    use super::*;

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
    fn picked(uri: &str, vars: &[(&str, &str)]) -> Option<String> {
        from_env(uri, vars).expect("valid").map(|p| p.to_string())
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

    #[test]
    fn the_environment_is_read_as_curl_reads_it() {
        let all = [
            ("wss_proxy", "http://wss-lower:1"),
            ("WSS_PROXY", "http://wss-upper:1"),
            ("https_proxy", "http://https-lower:1"),
            ("HTTPS_PROXY", "http://https-upper:1"),
            ("ws_proxy", "http://ws-lower:1"),
            ("WS_PROXY", "http://ws-upper:1"),
            ("http_proxy", "http://http-lower:1"),
            ("HTTP_PROXY", "http://http-upper:1"),
            ("all_proxy", "socks5://all-lower:1"),
            ("ALL_PROXY", "socks5://all-upper:1"),
        ];
        // Each variable in turn, from the most specific: drop the winner, see the next one.
        let mut env = all.to_vec();
        let mut seen = Vec::new();
        while let Some(p) = picked("wss://t", &env) {
            seen.push(p.clone());
            env.retain(|(_, v)| Proxy::parse(v).expect("valid").to_string() != p);
        }
        assert_eq!(
            seen,
            [
                "http://wss-lower:1",
                "http://wss-upper:1",
                "http://https-lower:1",
                "http://https-upper:1",
                "socks5://all-lower:1",
                "socks5://all-upper:1"
            ]
        );
        let mut env = all.to_vec();
        let mut seen = Vec::new();
        while let Some(p) = picked("ws://t", &env) {
            seen.push(p.clone());
            env.retain(|(_, v)| Proxy::parse(v).expect("valid").to_string() != p);
        }
        // HTTP_PROXY is never read (curl's rule).
        assert_eq!(
            seen,
            [
                "http://ws-lower:1",
                "http://ws-upper:1",
                "http://http-lower:1",
                "socks5://all-lower:1",
                "socks5://all-upper:1"
            ]
        );
        assert_eq!(picked("ws://t", &[("HTTP_PROXY", "http://p:1")]), None);
        assert_eq!(picked("ws://t", &[]), None);
        // Empty counts as unset.
        assert_eq!(
            picked("wss://t", &[("https_proxy", ""), ("HTTPS_PROXY", "http://p:2")]).as_deref(),
            Some("http://p:2")
        );
        // no_proxy first, then NO_PROXY; an empty one counts as unset.
        let p = [("http_proxy", "http://p:1")];
        assert_eq!(picked("ws://h.example", &[p[0], ("no_proxy", "example")]), None);
        assert_eq!(picked("ws://h.example", &[p[0], ("NO_PROXY", "example")]), None);
        assert!(picked(
            "ws://h.example",
            &[p[0], ("no_proxy", "other"), ("NO_PROXY", "example")]
        )
        .is_some());
        assert_eq!(
            picked("ws://h.example", &[p[0], ("no_proxy", " "), ("NO_PROXY", "example")]),
            None
        );
    }

    #[test]
    fn no_proxy_matches_names_suffixes_addresses_and_ranges() {
        let yes = [
            ("*", "anything.example"),
            (" * ", "10.1.2.3"),
            ("example.com", "example.com"),
            ("example.com", "www.EXAMPLE.com"),
            (".example.com", "www.example.com"),
            (".example.com", "example.com"),
            ("example.com.", "example.com."),
            ("other, localhost ,x", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("10.0.0.0/8", "10.200.3.4"),
            ("::1", "::1"),
            ("[::1]", "[::1]"),
            ("fd00::/8", "fd12:3456::1"),
        ];
        for (list, host) in yes {
            assert!(no_proxy_matches(list, host), "{list:?} should match {host:?}");
        }
        let no = [
            ("", "example.com"),
            ("example.com", "nonexample.com"),
            ("www.example.com", "example.com"),
            ("*.example.com", "www.example.com"), // curl has no wildcards but a lone `*`
            ("a,*", "example.com"),
            ("localhost:8080", "localhost"), // no ports
            ("127.0.0.1", "127.0.0.2"),
            ("10.0.0.0/8", "11.0.0.1"),
            ("10.0.0.0/33", "10.0.0.1"),
            ("localhost", "127.0.0.1"), // names do not match addresses
            ("127.0.0.1", "::ffff:127.0.0.1"),
        ];
        for (list, host) in no {
            assert!(!no_proxy_matches(list, host), "{list:?} should not match {host:?}");
        }
    }

    /// Runs `tunnel` against a scripted proxy: `script` gets the proxy's end.
    async fn against<F, Fut>(proxy: &Proxy, host: &str, script: F) -> (Result<(), ClientError>, Vec<u8>)
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

    async fn read_until_blank(s: &mut tokio::io::DuplexStream) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.expect("request");
            head.push(b[0]);
        }
        String::from_utf8(head).expect("ASCII")
    }

    #[tokio::test]
    async fn connect_sends_host_and_credentials_and_reads_only_the_head() {
        let proxy = Proxy::parse("http://alice:s3cret@p:1").expect("valid");
        let (result, rest) = against(&proxy, "::1", |mut s| async move {
            let head = read_until_blank(&mut s).await;
            assert_eq!(
                head,
                "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\
                 User-Agent: wsat/test\r\n\r\n"
            );
            s.write_all(b"HTTP/1.0 200 Connection established\r\nX: y\r\n\r\n\x16\x03\x01tls")
                .await
                .expect("write");
        })
        .await;
        result.expect("tunnel open");
        assert_eq!(rest, b"\x16\x03\x01tls", "nothing after the head was consumed");
    }

    #[tokio::test]
    async fn a_refused_connect_names_the_status() {
        let proxy = Proxy::http("p", 1);
        let (result, _) = against(&proxy, "h", |mut s| async move {
            let head = read_until_blank(&mut s).await;
            assert!(!head.contains("Proxy-Authorization"), "{head}");
            let _ = s
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")
                .await;
        })
        .await;
        let err = result.expect_err("refused");
        assert_eq!(
            err.to_string(),
            "proxy refused CONNECT: 407 Proxy Authentication Required"
        );
        assert!(
            matches!(&err, ClientError::Proxy(p) if p.status() == Some(407)),
            "{err:?}"
        );

        for (answer, expect) in [
            (
                &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
                "invalid CONNECT response: \"SSH-2.0-OpenSSH\"",
            ),
            (b"HTTP/1.1 502 Bad\x1b[31m Gateway\r\n\r\n", "502 Bad?[31m Gateway"),
            (b"HTTP/1.1 200 OK\r\n", "closed the connection during the handshake"),
        ] {
            let (result, _) = against(&proxy, "h", move |mut s| async move {
                let _ = read_until_blank(&mut s).await;
                let _ = s.write_all(answer).await;
            })
            .await;
            let err = result.expect_err("refused").to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[tokio::test]
    async fn a_connect_head_over_the_limit_is_refused() {
        let proxy = Proxy::http("p", 1);
        let (mut ours, mut theirs) = duplex(64 * 1024);
        let peer = tokio::spawn(async move {
            let _ = read_until_blank(&mut theirs).await;
            let _ = theirs.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
            while theirs.write_all(line.as_bytes()).await.is_ok() {}
        });
        let err = tunnel(&mut ours, &proxy, "h", 80, None, 4096)
            .await
            .expect_err("too large");
        assert_eq!(err.to_string(), "proxy CONNECT response head exceeds 4096 bytes");
        drop(ours);
        peer.await.expect("peer");
    }

    #[tokio::test]
    async fn socks5_sends_names_to_the_proxy_and_addresses_as_addresses() {
        for (host, expect) in [
            ("example.com", &b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"[..]),
            ("10.1.2.3", b"\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb"),
            ("::1", b"\x05\x01\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x01\xbb"),
        ] {
            let proxy = Proxy::socks5("p", 1);
            let (result, rest) = against(&proxy, host, move |mut s| async move {
                let mut greeting = [0u8; 3];
                s.read_exact(&mut greeting).await.expect("greeting");
                assert_eq!(greeting, [5, 1, 0]);
                s.write_all(&[5, 0]).await.expect("choice");
                let mut req = vec![0u8; expect.len()];
                s.read_exact(&mut req).await.expect("request");
                assert_eq!(req, expect);
                // A bound address given as a name, then tunnel bytes.
                s.write_all(b"\x05\x00\x00\x03\x04bndx\x12\x34after")
                    .await
                    .expect("reply");
            })
            .await;
            result.expect("tunnel open");
            assert_eq!(rest, b"after");
        }
    }

    #[tokio::test]
    async fn socks5_authenticates_and_names_failures() {
        let proxy = Proxy::parse("socks5://alice:s3cret@p").expect("valid");
        let (result, _) = against(&proxy, "h", |mut s| async move {
            let mut greeting = [0u8; 4];
            s.read_exact(&mut greeting).await.expect("greeting");
            assert_eq!(greeting, [5, 2, 0, 2]);
            s.write_all(&[5, 2]).await.expect("choice");
            let mut auth = [0u8; 14];
            s.read_exact(&mut auth).await.expect("auth");
            assert_eq!(&auth, b"\x01\x05alice\x06s3cret");
            s.write_all(&[1, 0]).await.expect("auth ok");
            let mut req = [0u8; 8];
            s.read_exact(&mut req).await.expect("request");
            s.write_all(b"\x05\x05\x00\x01").await.expect("refused");
        })
        .await;
        assert_eq!(
            result.expect_err("refused").to_string(),
            "SOCKS5 proxy refused the connection: reply 5 (connection refused)"
        );

        let (result, _) = against(&proxy, "h", |mut s| async move {
            let mut greeting = [0u8; 4];
            s.read_exact(&mut greeting).await.expect("greeting");
            s.write_all(&[5, 2]).await.expect("choice");
            let mut auth = [0u8; 14];
            s.read_exact(&mut auth).await.expect("auth");
            s.write_all(&[1, 1]).await.expect("auth refused");
        })
        .await;
        let err = result.expect_err("refused").to_string();
        assert_eq!(err, "SOCKS5 proxy rejected the user name and password (status 1)");

        let (result, _) = against(&Proxy::socks5("p", 1), "h", |mut s| async move {
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).await.expect("greeting");
            s.write_all(&[5, 0xFF]).await.expect("no method");
        })
        .await;
        let err = result.expect_err("refused").to_string();
        assert!(
            err.contains("accepts none of the offered authentication methods"),
            "{err}"
        );

        let long = "h".repeat(256);
        let (result, _) = against(&Proxy::socks5("p", 1), &long, |_| async {}).await;
        assert!(result.expect_err("too long").to_string().contains("host name over 255"));
    }
}
