//! Client configuration: the ESP client's options by URI with explicit overrides, plus
//! what its users ask for (whole messages, backoff, redirects, strictness).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use wsat_proto::handshake::{basic_auth, HandshakeRequest};
use wsat_proto::uri::{UriError, WsUri};
use wsat_proto::{ChunkPolicy, DeflateConfig};

use crate::proxy::Proxy;
use crate::tls::TlsConfig;

/// How received data reaches the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every frame in chunks of at most `buffer_size` bytes with offset, frame length,
    /// opcode and FIN: the ESP client's DATA events ([`crate::Event::Data`]).
    Chunks,
    /// Whole text and binary messages ([`crate::Event::Message`]); a message longer than
    /// `max_size` fails the connection with close code 1009.
    Messages {
        /// The largest message accepted, in bytes.
        max_size: usize,
    },
}

impl Delivery {
    /// Whole messages up to 64 MiB.
    pub const fn messages() -> Self {
        Delivery::Messages { max_size: 64 << 20 }
    }
}

/// What happens after the connection is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reconnect {
    /// Stop after the first disconnect (the ESP client's `disable_auto_reconnect`).
    Disabled,
    /// Wait this long before every new attempt (the ESP client's behaviour, 10 s default).
    Fixed(Duration),
    /// Exponential backoff with equal jitter: the n-th consecutive failure waits a random
    /// time in `[d/2, d]` with `d = min(max, initial × 2ⁿ)`; a successful connect resets n.
    Backoff {
        /// The first delay.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
}

impl Reconnect {
    /// The wait before attempt number `failures + 1`.
    pub fn delay(&self, failures: u32) -> Option<Duration> {
        match *self {
            Reconnect::Disabled => None,
            Reconnect::Fixed(d) => Some(d),
            Reconnect::Backoff { initial, max } => {
                let d = initial.saturating_mul(1u32 << failures.min(20)).min(max);
                let low = d / 2;
                let spread = (d - low).as_millis() as u64;
                Some(low + Duration::from_millis(rand::random_range(0..=spread)))
            }
        }
    }
}

/// TCP keep-alive probes (the ESP client's `keep_alive_*`, defaults 5 s / 5 s / 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for TcpKeepalive {
    fn default() -> Self {
        TcpKeepalive {
            idle: Duration::from_secs(5),
            interval: Duration::from_secs(5),
            count: 3,
        }
    }
}

/// Everything a [`crate::Client`] needs. Start from [`ClientConfig::new`] and override
/// fields; the defaults are the ESP client's unless said otherwise. Its `Debug` output
/// hides secrets: the password, `Authorization`, the URI's password, the proxy's password,
/// the client key and every custom header's value (an `X-Api-Key` is as secret as a
/// cookie; the names show).
#[derive(Clone)]
pub struct ClientConfig {
    /// `ws[s]://[user[:pass]@]host[:port][/path][?query]`.
    pub uri: String,
    /// Overrides the URI's host.
    pub host: Option<String>,
    /// Overrides the URI's port.
    pub port: Option<u16>,
    /// Overrides the URI's path (and query).
    pub path: Option<String>,
    /// Overrides the URI's user for Basic auth.
    pub username: Option<String>,
    /// Overrides the URI's password for Basic auth.
    pub password: Option<String>,
    /// An explicit `Authorization` value; wins over Basic auth from user and password.
    pub authorization: Option<String>,
    /// `Sec-WebSocket-Protocol` to offer (verbatim; a comma-separated list is fine).
    pub subprotocol: Option<String>,
    /// `User-Agent`; default `wsat/<version>`. The modem sends `ESP32 Websocket Client`.
    pub user_agent: Option<String>,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    /// Largest chunk delivered in [`Delivery::Chunks`] and largest frame sent by the
    /// fragmenting sends; default 1024.
    pub buffer_size: usize,
    /// Chunks (default) or whole messages.
    pub delivery: Delivery,
    /// When chunks are cut: full `buffer_size` chunks (default, deterministic) or as
    /// bytes arrive.
    pub chunk_policy: ChunkPolicy,
    /// RFC 6455 validation of what the server sends (default on); off is the firmware's
    /// leniency.
    pub strict: bool,
    /// Echo the server's close code when it closes (default on; the ESP client sends an
    /// empty close).
    pub echo_close_code: bool,
    /// Client ping interval; default 10 s, `None` disables.
    pub ping_interval: Option<Duration>,
    /// Pong timeout; default 120 s, `None` disables (pings are still sent).
    pub pong_timeout: Option<Duration>,
    /// Restart the ping interval on every received frame (the firmware's client version)
    /// instead of pinging on a fixed schedule (default).
    pub ping_resets_on_receive: bool,
    /// Bound on each network step: DNS + TCP connect, the proxy handshake, TLS, the
    /// upgrade; default 10 s.
    pub network_timeout: Duration,
    /// Reconnect policy; default fixed 10 s.
    pub reconnect: Reconnect,
    /// Reconnect even after a clean close (the ESP client's `enable_close_reconnect`).
    pub reconnect_after_close: bool,
    /// How long to wait for the server's close frame after ours; default 5 s.
    pub close_timeout: Duration,
    /// How long to wait for the server to close TCP after the closing handshake (1 s).
    pub close_linger: Duration,
    /// Redirects (301/302/303/307/308) followed per connect; default 5, 0 refuses them.
    /// As curl does, a redirect to another origin (scheme, host or port) is sent without
    /// credentials: no `Authorization` (explicit or from the URI's user and password), no
    /// `Cookie` and no `Proxy-Authorization` header.
    pub max_redirects: u32,
    /// Follow a redirect from `wss` to `ws` (default off: it fails with
    /// [`crate::ClientError::InsecureRedirect`]), which would move the connection out of TLS.
    pub allow_insecure_redirect: bool,
    /// Refuse to send an upgrade request longer than this (the firmware: 1024).
    pub max_request_len: Option<usize>,
    /// Largest upgrade response head accepted, and largest proxy `CONNECT` response head;
    /// default 16 KiB.
    pub max_response_head: usize,
    /// TCP keep-alive; default off.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// TLS roots, client certificate and verification level for `wss://`.
    pub tls: TlsConfig,
    /// Unwritten bytes above which the client takes no more frames from the protocol
    /// queue into its write buffer (default 256 KiB). While the peer does not read, the
    /// pongs it asks for then wait in that queue, where each newer ping's pong replaces the
    /// previous one (RFC 6455 §5.5.3): a peer that floods pings and never reads costs at
    /// most this plus one pong. Reading goes on (stopping it for our own sends would
    /// deadlock with a peer that stops reading while its echoes cannot be written).
    pub max_write_buffer: usize,
    /// Events delivered ahead of the application before the client stops reading from the
    /// socket (backpressure); default 64. 0 is lockstep, the way a pull-based client such
    /// as tungstenite behaves: one event per `Events::recv` call, and nothing received
    /// after an event is decoded until the next call, so replies sent while handling an
    /// event go out before, say, a protocol error in the next frame fails the connection.
    pub event_capacity: usize,
    /// Received payload bytes delivered ahead of the application (in events it has not
    /// taken yet) before the client stops reading from the socket; default 4 MiB. One
    /// event always goes through, so a message up to the message limit still arrives.
    /// With `event_capacity`, this bounds what a peer that sends faster than the
    /// application reads can make the client hold. During a closing handshake only
    /// `event_capacity` applies, for at most `close_timeout`: `Client::close` waits for the
    /// handshake, and the server's close frame must not wait behind unread messages.
    pub max_event_bytes: usize,
    /// Opens the TCP connections (name lookup and connect) — to the proxy when
    /// [`ClientConfig::proxy`] is set; `None` is the host's own network. The hook for a
    /// network that is not simply the host's: `wsat modem`'s simulated Wi-Fi outage, a
    /// tunnel.
    pub connector: Option<Arc<dyn Connector>>,
    /// Connect through this proxy; default none (the client never reads the environment:
    /// [`Proxy::from_env`] does, by curl's rules, for an application that wants it). Every
    /// connect, redirects included, opens TCP to the proxy (through `connector` if set),
    /// then the tunnel to the target — an HTTP `CONNECT` or SOCKS5, bounded by
    /// `network_timeout`, a `CONNECT` answer by `max_response_head` — then TLS to the
    /// target for `wss` (its name as SNI, its certificate verified) and the upgrade, as
    /// without a proxy. A refused tunnel fails the attempt with [`crate::ClientError::Proxy`]
    /// (the status of a refused `CONNECT`, the SOCKS5 reply code). The proxy's user and
    /// password go to the proxy only: they are not part of the upgrade request, and
    /// `Debug`, logs and errors never show the password.
    pub proxy: Option<Proxy>,
    /// Offer permessage-deflate (RFC 7692) with these parameters; default `None`, as the ESP
    /// client never offers it. The server may decline (the connection is then uncompressed)
    /// or accept ([`crate::Connected::deflate`] says what was agreed); an answer that breaks
    /// RFC 7692 §5 fails the upgrade ([`crate::ClientError::Handshake`], close code 1010).
    /// Compressed messages count their inflated bytes against the message limit while they
    /// are inflated, so a compression bomb ends with 1009, not with memory.
    pub compression: Option<DeflateConfig>,
}

/// A TCP connection on its way: what a [`Connector`] returns.
pub type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

/// Opens the TCP connection to `host:port` for a connection attempt (see
/// [`ClientConfig::connector`]): the target's, or the proxy's when one is configured. The
/// client bounds it with its network timeout and sets `TCP_NODELAY` and keep-alive on the
/// stream it gets.
pub trait Connector: Send + Sync + 'static {
    /// Starts connecting to `host` (a name or an IP literal) on `port`: the target, or the
    /// proxy ([`ClientConfig::proxy`]).
    fn connect(&self, host: &str, port: u16) -> Connecting;
}

/// Shown instead of a secret in `Debug` output.
const REDACTED: &str = "<redacted>";

/// Header names whose values are credentials: never sent to another origin.
pub(crate) fn is_secret_header(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = match WsUri::parse(&self.uri) {
            Ok(u) if u.password.is_some() => {
                self.uri
                    .replacen(&format!(":{}@", u.password.unwrap_or_default()), ":<redacted>@", 1)
            }
            _ => self.uri.clone(),
        };
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, _)| (n.as_str(), REDACTED)).collect();
        f.debug_struct("ClientConfig")
            .field("uri", &uri)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("authorization", &self.authorization.as_ref().map(|_| REDACTED))
            .field("subprotocol", &self.subprotocol)
            .field("user_agent", &self.user_agent)
            .field("headers", &headers)
            .field("buffer_size", &self.buffer_size)
            .field("delivery", &self.delivery)
            .field("chunk_policy", &self.chunk_policy)
            .field("strict", &self.strict)
            .field("echo_close_code", &self.echo_close_code)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("ping_resets_on_receive", &self.ping_resets_on_receive)
            .field("network_timeout", &self.network_timeout)
            .field("reconnect", &self.reconnect)
            .field("reconnect_after_close", &self.reconnect_after_close)
            .field("close_timeout", &self.close_timeout)
            .field("close_linger", &self.close_linger)
            .field("max_redirects", &self.max_redirects)
            .field("allow_insecure_redirect", &self.allow_insecure_redirect)
            .field("max_request_len", &self.max_request_len)
            .field("max_response_head", &self.max_response_head)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("tls", &self.tls)
            .field("max_write_buffer", &self.max_write_buffer)
            .field("event_capacity", &self.event_capacity)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("connector", &self.connector.as_ref().map(|_| "custom"))
            .field("proxy", &self.proxy)
            .field("compression", &self.compression)
            .finish()
    }
}

impl ClientConfig {
    /// The ESP client's defaults for `uri`.
    pub fn new(uri: impl Into<String>) -> Self {
        ClientConfig {
            uri: uri.into(),
            host: None,
            port: None,
            path: None,
            username: None,
            password: None,
            authorization: None,
            subprotocol: None,
            user_agent: Some(concat!("wsat/", env!("CARGO_PKG_VERSION")).to_owned()),
            headers: Vec::new(),
            buffer_size: 1024,
            delivery: Delivery::Chunks,
            chunk_policy: ChunkPolicy::Full,
            strict: true,
            echo_close_code: true,
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Some(Duration::from_secs(120)),
            ping_resets_on_receive: false,
            network_timeout: Duration::from_secs(10),
            reconnect: Reconnect::Fixed(Duration::from_secs(10)),
            reconnect_after_close: false,
            close_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(1),
            max_redirects: 5,
            allow_insecure_redirect: false,
            max_request_len: None,
            max_response_head: 16 * 1024,
            tcp_keepalive: None,
            tls: TlsConfig::default(),
            max_write_buffer: 256 * 1024,
            event_capacity: 64,
            max_event_bytes: 4 << 20,
            connector: None,
            proxy: None,
            compression: None,
        }
    }

    /// Resolves the URI and the overrides into where to connect and what to send
    /// (ESP precedence: URI first, then explicit fields).
    pub fn target(&self) -> Result<Target, UriError> {
        let mut uri = WsUri::parse(&self.uri)?;
        if let Some(host) = &self.host {
            uri.host = host.clone();
        }
        if self.port.is_some() {
            uri.port = self.port;
        }
        if let Some(path) = &self.path {
            match path.split_once('?') {
                Some((p, q)) => (uri.path, uri.query) = (Some(p.to_owned()), Some(q.to_owned())),
                None => (uri.path, uri.query) = (Some(path.clone()), None),
            }
        }
        if self.username.is_some() {
            uri.username = self.username.clone();
        }
        if self.password.is_some() {
            uri.password = self.password.clone();
        }
        uri.tls()?;
        Ok(Target { uri })
    }

    /// The upgrade request for `target`, reached from the configured `origin` (the same
    /// target unless redirected): credentials (`Authorization`, explicit or from the URI's
    /// user and password, `Cookie`, `Proxy-Authorization`) go only to `origin`'s origin,
    /// as curl does.
    pub fn request(&self, target: &Target, origin: &Target) -> HandshakeRequest {
        let mut req = self.request_with_credentials(target);
        if !origin.uri.same_origin(&target.uri) {
            req.authorization = None;
            req.headers.retain(|(name, _)| !is_secret_header(name));
        }
        req
    }

    fn request_with_credentials(&self, target: &Target) -> HandshakeRequest {
        let mut req = HandshakeRequest::for_uri(&target.uri);
        if let Some(auth) = &self.authorization {
            req.authorization = Some(auth.clone());
        } else if let (Some(u), Some(p)) = (&target.uri.username, &target.uri.password) {
            req.authorization = Some(basic_auth(u, p));
        }
        req.user_agent = self.user_agent.clone();
        req.subprotocol = self.subprotocol.clone();
        req.headers = self.headers.clone();
        req.deflate = self.compression.clone();
        req
    }
}

/// A resolved connection target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URI with every override applied.
    pub uri: WsUri,
}

impl Target {
    /// Whether TLS is used.
    pub fn tls(&self) -> bool {
        self.uri.tls() == Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_fields_override_the_uri() {
        let mut c = ClientConfig::new("ws://u:p@x:123/a?b");
        c.port = Some(4567);
        c.path = Some("/other?q=1".into());
        let t = c.target().expect("valid");
        assert_eq!(
            (t.uri.host_header(), t.uri.request_target()),
            ("x:4567".into(), "/other?q=1".into())
        );
        assert_eq!(c.request(&t, &t).authorization.as_deref(), Some("Basic dTpw"));
        c.authorization = Some("Bearer t".into());
        assert_eq!(c.request(&t, &t).authorization.as_deref(), Some("Bearer t"));
        assert!(ClientConfig::new("INVALID").target().is_err());
        assert!(ClientConfig::new("http2://h").target().is_err());
    }

    /// curl's rule: a redirect to another scheme, host or port loses every credential; the
    /// same origin (default port spelled out, host in other case) keeps them.
    #[test]
    fn credentials_stay_with_their_origin() {
        let mut c = ClientConfig::new("ws://u:p@Example.com/a");
        c.headers = vec![
            ("Cookie".into(), "s=1".into()),
            ("proxy-authorization".into(), "Basic eA==".into()),
            ("X-Trace".into(), "t".into()),
        ];
        let origin = c.target().expect("valid");
        let at = |uri: &str| Target {
            uri: WsUri::parse(uri).expect("valid"),
        };
        let same = c.request(&at("ws://u:p@example.COM:80/b"), &origin);
        assert_eq!(same.authorization.as_deref(), Some("Basic dTpw"));
        assert_eq!(same.headers.len(), 3);
        for other in [
            "ws://u:p@example.com:81/a",
            "ws://u:p@other.example/a",
            "wss://u:p@example.com/a",
        ] {
            let req = c.request(&at(other), &origin);
            assert_eq!(req.authorization, None, "{other}");
            assert_eq!(req.headers, [("X-Trace".to_owned(), "t".to_owned())], "{other}");
        }
        c.authorization = Some("Bearer t".into());
        assert_eq!(c.request(&at("ws://elsewhere/"), &origin).authorization, None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut c = ClientConfig::new("ws://user:hunter2@h/x");
        c.authorization = Some("Bearer s3cret".into());
        c.headers.push(("Cookie".into(), "session=abc123".into()));
        c.headers.push(("X-Trace".into(), "visible".into()));
        c.tls.client_key_pem = Some(b"-----BEGIN PRIVATE KEY-----\nMIIkey".to_vec());
        c.proxy = Some("http://proxyuser:pr0xy-pw@proxy.example:3128".parse().expect("valid"));
        let shown = format!("{c:?}");
        for secret in ["hunter2", "s3cret", "abc123", "MIIkey", "pr0xy-pw"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(!shown.contains("visible"), "every header value is hidden: {shown}");
        assert!(shown.contains("X-Trace") && shown.contains("user"), "{shown}");
        assert!(
            shown.contains("proxyuser") && shown.contains("proxy.example"),
            "{shown}"
        );
        assert_eq!(ClientConfig::new("ws://h").proxy, None, "no proxy by default");
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Reconnect::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for (n, hi) in [(0, 100), (1, 200), (3, 800), (10, 2000)] {
            let d = b.delay(n).expect("enabled").as_millis() as u64;
            assert!((hi / 2..=hi).contains(&d), "failure {n}: {d} ms");
        }
        assert_eq!(Reconnect::Disabled.delay(0), None);
    }
}
