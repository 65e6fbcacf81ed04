//! The opening handshake (RFC 6455 §4): the client's request and the validation of the
//! server's answer, and the server side (parse a request, build the 101).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::deflate::{DeflateConfig, ExtensionError, NegotiatedDeflate};
use crate::uri::WsUri;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEADERS: usize = 64;

/// Every header as (name, trimmed value), in order.
fn collect_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect()
}

/// The values of every header called `name` (case-insensitively), in order.
fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn generate_key() -> String {
    BASE64.encode(rand::random::<[u8; 16]>())
}

/// `Basic base64(user:pass)` for an `Authorization` header.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

/// What goes into the client's upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// Path and query.
    pub target: String,
    /// The `Host` header value.
    pub host: String,
    /// The `User-Agent` header value; `None` omits it.
    pub user_agent: Option<String>,
    /// The `Sec-WebSocket-Protocol` value sent verbatim (may list several, comma-separated).
    pub subprotocol: Option<String>,
    /// The `Authorization` header value.
    pub authorization: Option<String>,
    /// Extra headers, sent in this order as `name: value` (the value verbatim).
    pub headers: Vec<(String, String)>,
    /// Offer permessage-deflate (RFC 7692) with these parameters: the request carries
    /// `Sec-WebSocket-Extensions: ` [`DeflateConfig::offer`], and the response's extensions
    /// are checked against the offer ([`ClientHandshake::parse_response`]). `None` offers
    /// no extension.
    pub deflate: Option<DeflateConfig>,
}

/// The ESP client's User-Agent, which the firmware sends.
pub const ESP_USER_AGENT: &str = "ESP32 Websocket Client";

impl HandshakeRequest {
    /// The request for `uri`: its target and `Host` (with port), the ESP user agent, and
    /// Basic auth when the URI carries a user and a password.
    pub fn for_uri(uri: &WsUri) -> Self {
        let authorization = match (&uri.username, &uri.password) {
            (Some(user), Some(pass)) => Some(basic_auth(user, pass)),
            _ => None,
        };
        HandshakeRequest {
            target: uri.request_target(),
            host: uri.host_header(),
            user_agent: Some(ESP_USER_AGENT.to_owned()),
            subprotocol: None,
            authorization,
            headers: Vec::new(),
            deflate: None,
        }
    }

    /// The subprotocols offered, split from the comma-separated list.
    pub fn offered_subprotocols(&self) -> Vec<String> {
        self.subprotocol
            .as_deref()
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Why the server's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an HTTP response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// A status other than 101 (and not a followed redirect); carries the response head.
    #[error("server answered HTTP {status} instead of 101 Switching Protocols")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The response head as received (status line and headers).
        head: String,
    },
    /// A redirect status without a `Location`.
    #[error("HTTP {0} redirect without a Location header")]
    RedirectWithoutLocation(u16),
    /// `Upgrade: websocket` missing.
    #[error("response lacks 'Upgrade: websocket'")]
    MissingUpgrade,
    /// `Connection: Upgrade` missing.
    #[error("response lacks 'Connection: Upgrade'")]
    MissingConnection,
    /// No `Sec-WebSocket-Accept`, or more than one.
    #[error("Sec-WebSocket-Accept missing or repeated (HTTP {status})")]
    MissingAccept {
        /// The HTTP status.
        status: u16,
    },
    /// The accept value does not match our key.
    #[error("Sec-WebSocket-Accept {got:?} does not match the expected {expected:?}")]
    WrongAccept {
        /// What RFC 6455 requires for our key.
        expected: String,
        /// What the server sent.
        got: String,
    },
    /// The server chose a subprotocol we did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedSubprotocol(String),
    /// The server enabled an extension we did not ask for (no extension was offered).
    #[error("server enabled extensions {0:?} that were not requested")]
    UnexpectedExtensions(String),
    /// The server's answer to our permessage-deflate offer cannot be accepted (RFC 7692
    /// §5): another extension, permessage-deflate twice, an unknown, repeated or invalid
    /// parameter, a window we did not allow or above the offered one, or a parameter we
    /// asked for missing. The client must fail the connection:
    /// [`HandshakeError::close_code`].
    #[error("unacceptable permessage-deflate response: {0}")]
    Extension(#[from] ExtensionError),
    /// The response head exceeded the size limit.
    #[error("response head larger than {0} bytes")]
    TooLarge(usize),
}

impl HandshakeError {
    /// The HTTP status of the response, where one was parsed.
    pub fn status(&self) -> Option<u16> {
        match self {
            HandshakeError::Status { status, .. } | HandshakeError::MissingAccept { status } => Some(*status),
            HandshakeError::RedirectWithoutLocation(s) => Some(*s),
            HandshakeError::Malformed(_) | HandshakeError::TooLarge(_) => None,
            _ => Some(101),
        }
    }

    /// The close code to fail the connection with when the server's 101 is refused for its
    /// extensions: 1010 (RFC 6455 §7.4.1, "the server didn't return the extension the client
    /// needs"; RFC 6455 §4.1 and RFC 7692 §5 have the client fail the WebSocket connection).
    /// The connection is not a WebSocket for us yet, so a client may as well just close
    /// TCP; one that sends a close frame first uses this code. `None` for other errors.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            HandshakeError::Extension(_) | HandshakeError::UnexpectedExtensions(_) => Some(1010),
            _ => None,
        }
    }
}

/// A server answer that completed the handshake or asks to go elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeResponse {
    /// The connection is a WebSocket now; frames start at `head_len` in the buffer.
    Accepted {
        /// The HTTP status (101; the lenient check lets others through, as the firmware).
        status: u16,
        /// The subprotocol the server chose.
        subprotocol: Option<String>,
        /// Every response header, in order.
        headers: Vec<(String, String)>,
        /// Bytes of the response head; anything after it is frame data.
        head_len: usize,
    },
    /// A 301/302/303/307/308 with a `Location`.
    Redirect {
        /// The HTTP status.
        status: u16,
        /// The `Location` value.
        location: String,
        /// Every response header, in order.
        headers: Vec<(String, String)>,
    },
}

/// The client side of one handshake: the request with its key, and the answer's check.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    request: Vec<u8>,
    offered: Vec<String>,
    deflate: Option<DeflateConfig>,
}

impl ClientHandshake {
    /// Builds the request with a fresh random key.
    pub fn new(req: &HandshakeRequest) -> Self {
        Self::with_key(req, generate_key())
    }

    /// Builds the request with a given key (for tests and reproducible transcripts).
    /// Header order is the ESP client's: Connection, Host, User-Agent, Upgrade, Version,
    /// Key, then Protocol, Extensions (permessage-deflate, when offered), Authorization and
    /// the extra headers.
    pub fn with_key(req: &HandshakeRequest, key: String) -> Self {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nConnection: Upgrade\r\nHost: {}\r\n",
            req.target, req.host
        );
        if let Some(ua) = &req.user_agent {
            r.push_str(&format!("User-Agent: {ua}\r\n"));
        }
        r.push_str(&format!(
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
        ));
        if let Some(p) = &req.subprotocol {
            r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        if let Some(d) = &req.deflate {
            r.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", d.offer()));
        }
        if let Some(a) = &req.authorization {
            r.push_str(&format!("Authorization: {a}\r\n"));
        }
        for (name, value) in &req.headers {
            r.push_str(&format!("{name}: {value}\r\n"));
        }
        r.push_str("\r\n");
        ClientHandshake {
            key,
            request: r.into_bytes(),
            offered: req.offered_subprotocols(),
            deflate: req.deflate.clone(),
        }
    }

    /// Our `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The permessage-deflate parameters the server agreed to, from the headers of an
    /// accepted response ([`HandshakeResponse::Accepted`]): give them to
    /// [`crate::Connection::with_deflate`]. `Ok(None)` when we offered nothing or the
    /// server declined; an error for a response [`ClientHandshake::parse_response`] refuses
    /// (so after it accepted, this cannot fail).
    pub fn negotiated_deflate(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<NegotiatedDeflate>, HandshakeError> {
        match &self.deflate {
            None => Ok(None),
            Some(config) => Ok(config.accept_response(values(headers, "Sec-WebSocket-Extensions"))?),
        }
    }

    /// The request bytes to send.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Checks the server's answer at the start of `buf`; `Ok(None)` until the whole head
    /// has arrived. `strict` checks everything RFC 6455 §4.1 asks of a client; lenient
    /// checks only what the ESP client checks (a status line and the accept value). When
    /// permessage-deflate was offered, the response's extensions are checked in either
    /// mode ([`HandshakeError::Extension`]); take the agreed parameters with
    /// [`ClientHandshake::negotiated_deflate`].
    pub fn parse_response(&self, buf: &[u8], strict: bool) -> Result<Option<HandshakeResponse>, HandshakeError> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut raw);
        let head_len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
        };
        let status = resp.code.unwrap_or(0);
        let headers = collect_headers(resp.headers);
        let get = |name: &'static str| values(&headers, name);

        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            let location = get("Location").next().map(str::to_owned);
            return match location {
                Some(location) => Ok(Some(HandshakeResponse::Redirect {
                    status,
                    location,
                    headers,
                })),
                None => Err(HandshakeError::RedirectWithoutLocation(status)),
            };
        }
        let head = || String::from_utf8_lossy(&buf[..head_len]).into_owned();
        if status == 0 || (strict && status != 101) {
            return Err(HandshakeError::Status { status, head: head() });
        }
        if strict {
            if !get("Upgrade").any(|v| v.eq_ignore_ascii_case("websocket")) {
                return Err(HandshakeError::MissingUpgrade);
            }
            if !get("Connection").any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))) {
                return Err(HandshakeError::MissingConnection);
            }
        }
        let accepts: Vec<&str> = get("Sec-WebSocket-Accept").collect();
        let [got] = accepts[..] else {
            return Err(if accepts.is_empty() && status != 101 {
                HandshakeError::Status { status, head: head() }
            } else {
                HandshakeError::MissingAccept { status }
            });
        };
        let expected = accept_key(&self.key);
        if got != expected {
            return Err(HandshakeError::WrongAccept {
                expected,
                got: got.to_owned(),
            });
        }
        let subprotocol = get("Sec-WebSocket-Protocol").next().map(str::to_owned);
        if strict {
            if let Some(p) = &subprotocol {
                if !self.offered.iter().any(|o| o == p) {
                    return Err(HandshakeError::UnexpectedSubprotocol(p.clone()));
                }
            }
        }
        match &self.deflate {
            Some(_) => {
                self.negotiated_deflate(&headers)?;
            }
            None if strict => {
                if let Some(ext) = get("Sec-WebSocket-Extensions").find(|v| !v.is_empty()) {
                    return Err(HandshakeError::UnexpectedExtensions(ext.to_owned()));
                }
            }
            None => {}
        }
        Ok(Some(HandshakeResponse::Accepted {
            status,
            subprotocol,
            headers,
            head_len,
        }))
    }
}

/// A client's upgrade request, as a server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRequest {
    /// The request target.
    pub target: String,
    /// The client's key.
    pub key: String,
    /// The subprotocols offered, in order.
    pub subprotocols: Vec<String>,
    /// Every request header, in order.
    pub headers: Vec<(String, String)>,
    /// Bytes of the request head; anything after it is frame data.
    pub head_len: usize,
}

impl ServerRequest {
    /// The permessage-deflate offer `config` accepts among the request's
    /// `Sec-WebSocket-Extensions` headers ([`DeflateConfig::accept_offers`]), or `None`. Answer
    /// with [`accept_response_with_extensions`] and [`NegotiatedDeflate::response`], and
    /// build the connection with [`crate::Connection::with_deflate`].
    pub fn deflate(&self, config: &DeflateConfig) -> Option<NegotiatedDeflate> {
        config.accept_offers(values(&self.headers, "Sec-WebSocket-Extensions"))
    }
}

/// Why a server refuses an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not an HTTP request.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// Not a valid WebSocket upgrade (missing or wrong method, headers or version).
    #[error("not a WebSocket upgrade request: {0}")]
    NotUpgrade(&'static str),
}

/// Parses a client's upgrade request; `Ok(None)` until the whole head has arrived.
pub fn parse_request(buf: &[u8]) -> Result<Option<ServerRequest>, RequestError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    if req.method != Some("GET") {
        return Err(RequestError::NotUpgrade("method is not GET"));
    }
    let headers = collect_headers(req.headers);
    let get = |name: &'static str| values(&headers, name);
    if !get("Upgrade").any(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(RequestError::NotUpgrade("no 'Upgrade: websocket'"));
    }
    if get("Sec-WebSocket-Version").next() != Some("13") {
        return Err(RequestError::NotUpgrade("Sec-WebSocket-Version is not 13"));
    }
    let key = get("Sec-WebSocket-Key")
        .next()
        .ok_or(RequestError::NotUpgrade("no Sec-WebSocket-Key"))?
        .to_owned();
    let subprotocols = get("Sec-WebSocket-Protocol")
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Some(ServerRequest {
        target: req.path.unwrap_or("/").to_owned(),
        key,
        subprotocols,
        headers,
        head_len,
    }))
}

/// The `101 Switching Protocols` answer to `key`, choosing `subprotocol` if given.
pub fn accept_response(key: &str, subprotocol: Option<&str>) -> Vec<u8> {
    accept_response_with_extensions(key, subprotocol, None)
}

/// [`accept_response`] enabling `extensions` (a `Sec-WebSocket-Extensions` value, e.g.
/// [`NegotiatedDeflate::response`]).
pub fn accept_response_with_extensions(key: &str, subprotocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = subprotocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(e) = extensions {
        r.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A plain HTTP error answer for a refused upgrade.
pub fn reject_response(status: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "x3JJHMbDL1EzLkh9GBhXDw==";

    fn request() -> HandshakeRequest {
        let mut r = HandshakeRequest::for_uri(&WsUri::parse("ws://u:p@127.0.0.1:8765/chat?x=1").expect("valid"));
        r.subprotocol = Some("chat, superchat".into());
        r.headers.push(("AUTHORIZATION".into(), " Basic x".into()));
        r
    }

    fn ok_response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(KEY)
        )
    }

    #[test]
    fn esp_test_vector() {
        assert_eq!(accept_key(KEY), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn request_in_the_firmware_order() {
        let hs = ClientHandshake::with_key(&request(), KEY.into());
        let text = String::from_utf8(hs.request().to_vec()).expect("ascii");
        assert_eq!(
            text,
            format!(
                "GET /chat?x=1 HTTP/1.1\r\nConnection: Upgrade\r\nHost: 127.0.0.1:8765\r\nUser-Agent: ESP32 Websocket Client\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
                 Sec-WebSocket-Protocol: chat, superchat\r\nAuthorization: Basic dTpw\r\nAUTHORIZATION:  Basic x\r\n\r\n"
            )
        );
        assert_eq!(generate_key().len(), 24);
    }

    #[test]
    fn accepted_with_piggybacked_frame_and_partial_input() {
        let hs = ClientHandshake::with_key(&request(), KEY.into());
        let mut bytes = ok_response("Sec-WebSocket-Protocol: superchat\r\n").into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x04, b'T', b'e', b's', b't']);
        for cut in 0..head {
            assert_eq!(hs.parse_response(&bytes[..cut], true), Ok(None), "cut {cut}");
        }
        match hs.parse_response(&bytes, true) {
            Ok(Some(HandshakeResponse::Accepted {
                status: 101,
                subprotocol,
                head_len,
                ..
            })) => {
                assert_eq!(subprotocol.as_deref(), Some("superchat"));
                assert_eq!(&bytes[head_len..], &[0x81, 0x04, b'T', b'e', b's', b't']);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validation_failures_one_by_one() {
        let hs = ClientHandshake::with_key(&request(), KEY.into());
        let check = |resp: String, strict: bool| hs.parse_response(resp.as_bytes(), strict);
        let accept = accept_key(KEY);
        assert!(matches!(
            check("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(), true),
            Err(HandshakeError::Status { status: 404, ref head }) if head.contains("Not Found")
        ));
        assert_eq!(
            check(
                format!("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
                true
            ),
            Err(HandshakeError::MissingUpgrade)
        );
        assert_eq!(
            check(
                format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
                true
            ),
            Err(HandshakeError::MissingConnection)
        );
        assert_eq!(
            check(
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
                true
            ),
            Err(HandshakeError::MissingAccept { status: 101 })
        );
        assert!(matches!(
            check(
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: HSmrc0s\r\n\r\n"
                    .into(),
                false
            ),
            Err(HandshakeError::WrongAccept { .. })
        ));
        assert_eq!(
            check(ok_response("Sec-WebSocket-Protocol: other\r\n"), true),
            Err(HandshakeError::UnexpectedSubprotocol("other".into()))
        );
        assert_eq!(
            check(ok_response("Sec-WebSocket-Protocol: other\r\n"), false).map(|r| r.is_some()),
            Ok(true)
        );
        assert!(matches!(
            check(ok_response("Sec-WebSocket-Extensions: permessage-deflate\r\n"), true),
            Err(HandshakeError::UnexpectedExtensions(_))
        ));
        assert!(matches!(
            check("garbage\r\n\r\n".into(), true),
            Err(HandshakeError::Malformed(_))
        ));
        assert_eq!(
            check("HTTP/1.1 302 Found\r\n\r\n".into(), true),
            Err(HandshakeError::RedirectWithoutLocation(302))
        );
        assert!(matches!(
            check("HTTP/1.1 307 Temporary\r\nLocation: /elsewhere\r\n\r\n".into(), true),
            Ok(Some(HandshakeResponse::Redirect { status: 307, ref location, .. })) if location == "/elsewhere"
        ));
        // The firmware lets a non-101 status through when the accept value is right.
        let lenient = format!("HTTP/1.1 200 OK\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        assert!(matches!(
            check(lenient.clone(), false),
            Ok(Some(HandshakeResponse::Accepted { status: 200, .. }))
        ));
        assert!(matches!(
            check(lenient, true),
            Err(HandshakeError::Status { status: 200, .. })
        ));
    }

    #[test]
    fn a_deflate_offer_goes_after_the_subprotocols_and_its_answer_is_checked() {
        let mut req = request();
        req.deflate = Some(DeflateConfig {
            server_max_window_bits: Some(10),
            ..DeflateConfig::default()
        });
        let hs = ClientHandshake::with_key(&req, KEY.into());
        let text = String::from_utf8(hs.request().to_vec()).expect("ascii");
        assert!(
            text.contains(
                "Sec-WebSocket-Protocol: chat, superchat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10\r\n\
                 Authorization: "
            ),
            "{text}"
        );
        for strict in [true, false] {
            // Accepted, with the parameters to build the connection with.
            let ok = ok_response("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n");
            let Ok(Some(HandshakeResponse::Accepted { headers, .. })) = hs.parse_response(ok.as_bytes(), strict) else {
                panic!("refused")
            };
            let agreed = hs.negotiated_deflate(&headers).expect("valid").expect("accepted");
            assert_eq!(agreed.server_max_window_bits, Some(9));
            // Declined: no extension, no deflate.
            let Ok(Some(HandshakeResponse::Accepted { headers, .. })) =
                hs.parse_response(ok_response("").as_bytes(), strict)
            else {
                panic!("refused")
            };
            assert_eq!(hs.negotiated_deflate(&headers), Ok(None));
            // Refused, in either mode: the client fails the connection with 1010.
            for (bad, err) in [
                (
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=11\r\n",
                    ExtensionError::WindowAboveOffer {
                        name: "server_max_window_bits",
                        offered: 10,
                        got: 11,
                    },
                ),
                (
                    "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                    ExtensionError::MissingParameter("server_max_window_bits"),
                ),
                (
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\
                     Sec-WebSocket-Extensions: x-other\r\n",
                    ExtensionError::NotOffered("x-other".into()),
                ),
            ] {
                let got = hs.parse_response(ok_response(bad).as_bytes(), strict);
                assert_eq!(got, Err(HandshakeError::Extension(err)), "{bad}");
                assert_eq!(got.unwrap_err().close_code(), Some(1010));
            }
        }
        // Without an offer: refused when strict (1010 as well), ignored when lenient.
        let plain = ClientHandshake::with_key(&request(), KEY.into());
        let with_ext = ok_response("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        let err = plain.parse_response(with_ext.as_bytes(), true).unwrap_err();
        assert_eq!(err.close_code(), Some(1010));
        let Ok(Some(HandshakeResponse::Accepted { headers, .. })) = plain.parse_response(with_ext.as_bytes(), false)
        else {
            panic!("refused")
        };
        assert_eq!(plain.negotiated_deflate(&headers), Ok(None));
        assert_eq!(HandshakeError::MissingUpgrade.close_code(), None);
    }

    /// A server reads offers from several header lines, picks one, and answers with it.
    #[test]
    fn a_server_answers_the_offer_it_picks() {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; bogus\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_no_context_takeover\r\n\r\n"
        );
        let req = parse_request(request.as_bytes()).expect("valid").expect("complete");
        let agreed = req.deflate(&DeflateConfig::default()).expect("accepted");
        assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover");
        let resp = accept_response_with_extensions(&req.key, None, Some(&agreed.response()));
        assert!(String::from_utf8(resp)
            .expect("ascii")
            .ends_with("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"));
        assert_eq!(
            accept_response(&req.key, None),
            accept_response_with_extensions(&req.key, None, None)
        );
        // No offer: nothing to accept.
        let plain = parse_request(
            ClientHandshake::with_key(
                &HandshakeRequest::for_uri(&WsUri::parse("ws://x/").expect("valid")),
                KEY.into(),
            )
            .request(),
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(plain.deflate(&DeflateConfig::default()), None);
    }

    #[test]
    fn server_side_round_trip() {
        let hs = ClientHandshake::with_key(&request(), KEY.into());
        let req = parse_request(hs.request()).expect("valid").expect("complete");
        assert_eq!(req.key, KEY);
        assert_eq!(req.subprotocols, ["chat", "superchat"]);
        assert_eq!(req.target, "/chat?x=1");
        let resp = accept_response(&req.key, Some("chat"));
        assert!(matches!(
            hs.parse_response(&resp, true),
            Ok(Some(HandshakeResponse::Accepted { .. }))
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(RequestError::NotUpgrade(_))
        ));
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None));
    }
}
