//! permessage-deflate (RFC 7692): the configuration, the `Sec-WebSocket-Extensions`
//! negotiation on both sides, and what was agreed.
//!
//! The compression itself runs inside [`crate::Connection`] once it is built with
//! [`crate::Connection::with_deflate`]; this module only speaks the handshake.
//!
//! # Client
//!
//! 1. Put a [`DeflateConfig`] into [`crate::handshake::HandshakeRequest::deflate`]: the
//!    request then carries `Sec-WebSocket-Extensions: ` [`DeflateConfig::offer`].
//! 2. [`crate::handshake::ClientHandshake::parse_response`] refuses a response whose
//!    extensions the client cannot accept ([`crate::handshake::HandshakeError::Extension`]);
//!    [`crate::handshake::ClientHandshake::negotiated_deflate`] then gives the parameters
//!    (`None` when the server declined).
//! 3. [`crate::Connection::with_deflate`] with them.
//!
//! # Server
//!
//! 1. [`crate::handshake::ServerRequest::deflate`] (or [`DeflateConfig::accept_offers`])
//!    picks the first offer it can honour, or none.
//! 2. Answer with [`crate::handshake::accept_response_with_extensions`] and
//!    [`NegotiatedDeflate::response`].
//! 3. [`crate::Connection::with_deflate`] with the same parameters.
//!
//! # Window bits
//!
//! zlib (and zlib-rs) cannot compress raw DEFLATE with a 256-byte window: asked for 8, it
//! refuses (older zlib silently used 9, which a peer's 256-byte inflater may fail to
//! decode; RFC 7692 allows 8 all the same). So where 8 bits were
//! agreed for our direction, we send messages uncompressed (RSV1 clear), which RFC 7692
//! allows for any message; 9 to 15 compress with exactly that window. We always inflate with
//! a 32 KiB window, which decodes any stream, whatever window the peer announced. A server
//! prefers an offer it can answer with compression (server window 9 or more) to an earlier
//! one that limits it to 8, and takes the latter only when nothing else is acceptable.

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The largest LZ77 window, 2^15 bytes: what applies when no limit was negotiated.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window RFC 7692 allows, 2^8 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// What one side wants of permessage-deflate. The same fields serve both roles:
///
/// | field | client (offers) | server (answers) |
/// |---|---|---|
/// | `client_max_window_bits` | `Some(n)`: our compressor's window is at most `n` (offered as `client_max_window_bits=n`; `Some(15)` as a bare `client_max_window_bits`, which means the same: the server may limit us); `None`: not offered, the server may not limit our window | `Some(n)` below 15: ask the client to use at most `n` (only when its offer allows it) |
/// | `server_max_window_bits` | ask the server to compress with at most `n` | compress with at most `n` (announced in the response) |
/// | `client_no_context_takeover` | promise a fresh compressor per message | ask the client for that |
/// | `server_no_context_takeover` | ask the server for a fresh compressor per message | use one anyway |
///
/// Window bits are clamped to 8..=15. [`Default`] is what most clients send:
/// `permessage-deflate; client_max_window_bits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The client's LZ77 window limit, as log2 of its size (see the table above).
    pub client_max_window_bits: Option<u8>,
    /// The server's LZ77 window limit, as log2 of its size (see the table above).
    pub server_max_window_bits: Option<u8>,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// Our compression level, 0 (none) to 9 (best); not negotiated. Default 6.
    pub compression_level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            client_max_window_bits: Some(MAX_WINDOW_BITS),
            server_max_window_bits: None,
            client_no_context_takeover: false,
            server_no_context_takeover: false,
            compression_level: 6,
        }
    }
}

/// What client and server agreed on, as the server's response says it (plus, on the client,
/// the window limit the client offered for itself). Build it with
/// [`DeflateConfig::accept_offers`] (server) or [`DeflateConfig::accept_response`] (client)
/// and give it to [`crate::Connection::with_deflate`]; the connection picks the parameters
/// of its own direction by its [`crate::Role`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedDeflate {
    /// The server uses a fresh compressor for every message.
    pub server_no_context_takeover: bool,
    /// The client uses a fresh compressor for every message.
    pub client_no_context_takeover: bool,
    /// The server's window limit (`None`: 15, not announced). 8 means the server sends
    /// uncompressed messages (see the module documentation).
    pub server_max_window_bits: Option<u8>,
    /// The client's window limit (`None`: 15, not announced). 8 means the client sends
    /// uncompressed messages.
    pub client_max_window_bits: Option<u8>,
    /// Our compression level, 0 to 9 (local, from our [`DeflateConfig`]).
    pub compression_level: u32,
}

impl NegotiatedDeflate {
    /// The server's `Sec-WebSocket-Extensions` value for these parameters, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=10`.
    pub fn response(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            out.push_str(&format!("; client_max_window_bits={bits}"));
        }
        out
    }

    /// The window limit of what `role` sends.
    pub fn window_bits(&self, role: crate::Role) -> u8 {
        match role {
            crate::Role::Client => self.client_max_window_bits,
            crate::Role::Server => self.server_max_window_bits,
        }
        .unwrap_or(MAX_WINDOW_BITS)
    }

    /// Whether `role` resets its compressor after every message.
    pub fn no_context_takeover(&self, role: crate::Role) -> bool {
        match role {
            crate::Role::Client => self.client_no_context_takeover,
            crate::Role::Server => self.server_no_context_takeover,
        }
    }
}

/// Why an extension header was refused: by a client, the server's response (the handshake
/// fails, and RFC 7692 §5 has the client fail the connection, with close code 1010 where a
/// close frame is sent: [`crate::handshake::HandshakeError::close_code`]); by a server, one
/// offer, which it then declines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// Not a valid extension list (RFC 6455 §9.1).
    #[error("malformed Sec-WebSocket-Extensions: {0}")]
    Syntax(String),
    /// The response enables an extension the client did not offer.
    #[error("extension {0:?} was not offered")]
    NotOffered(String),
    /// permessage-deflate appears more than once in the response.
    #[error("permessage-deflate accepted more than once")]
    Repeated,
    /// A parameter RFC 7692 does not define (for an offer, or for a response).
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0:?} given twice")]
    DuplicateParameter(String),
    /// A value that is not allowed: window bits outside 8..=15 (or with a leading zero), a
    /// value on a parameter that takes none, or none where one is required.
    #[error("invalid value {value:?} for permessage-deflate parameter {name:?}")]
    InvalidValue {
        /// The parameter.
        name: String,
        /// The value as given; `None` when it was missing.
        value: Option<String>,
    },
    /// The response limits the client's window, which the client did not offer to allow.
    #[error("client_max_window_bits in the response, but the offer did not allow it")]
    ClientWindowNotOffered,
    /// A window larger than the one offered.
    #[error("{name}={got} in the response exceeds the {offered} offered")]
    WindowAboveOffer {
        /// `server_max_window_bits` or `client_max_window_bits`.
        name: &'static str,
        /// The value offered.
        offered: u8,
        /// The value in the response.
        got: u8,
    },
    /// The response lacks a parameter the offer asked for (`server_no_context_takeover`,
    /// `server_max_window_bits`): accepting an offer means accepting all of it.
    #[error("the response lacks {0}, which was offered")]
    MissingParameter(&'static str),
}

// ---------------------------------------------------------------------------------------
// The header grammar (RFC 6455 §9.1, RFC 7230 §3.2.6): a comma-separated list of
// `token *( ";" token [ "=" ( token / quoted-string ) ] )`.

/// One extension of a `Sec-WebSocket-Extensions` list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: String,
    /// Parameter names (lower-cased) and values (unquoted).
    params: Vec<(String, Option<String>)>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn skip_ows(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ExtensionError> {
        // At the opening quote.
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ExtensionError::Syntax("unterminated quoted string".into())),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let Some(&c) = self.s.get(self.pos + 1) else {
                        return Err(ExtensionError::Syntax("unterminated quoted string".into()));
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn error(&self, what: &str) -> ExtensionError {
        ExtensionError::Syntax(format!("{what} at byte {}", self.pos))
    }
}

/// Parses one header value into its extensions; empty list elements are skipped.
fn parse_list(value: &str) -> Result<Vec<Element>, ExtensionError> {
    let mut sc = Scanner {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        sc.skip_ows();
        match sc.peek() {
            None => return Ok(out),
            Some(b',') => {
                sc.pos += 1;
                continue;
            }
            _ => {}
        }
        let name = sc.token().ok_or_else(|| sc.error("expected an extension name"))?;
        let mut params = Vec::new();
        loop {
            sc.skip_ows();
            match sc.peek() {
                None | Some(b',') => break,
                Some(b';') => sc.pos += 1,
                Some(_) => return Err(sc.error("expected ';' or ','")),
            }
            sc.skip_ows();
            let pname = sc.token().ok_or_else(|| sc.error("expected a parameter name"))?;
            sc.skip_ows();
            let pvalue = if sc.peek() == Some(b'=') {
                sc.pos += 1;
                sc.skip_ows();
                let v = if sc.peek() == Some(b'"') {
                    let v = sc.quoted()?;
                    // RFC 6455 §9.1: a quoted value must be a token once unquoted.
                    if v.is_empty() || !v.bytes().all(is_tchar) {
                        return Err(ExtensionError::Syntax(format!("quoted value {v:?} is not a token")));
                    }
                    v
                } else {
                    sc.token().ok_or_else(|| sc.error("expected a parameter value"))?
                };
                Some(v)
            } else {
                None
            };
            params.push((pname.to_ascii_lowercase(), pvalue));
        }
        out.push(Element { name, params });
    }
}

/// The permessage-deflate parameters of one offer or response, each at most once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Window bits: a decimal 8..=15 without a leading zero (RFC 7692 §7.1.2.1).
fn window_bits(name: &str, value: &str) -> Result<u8, ExtensionError> {
    let invalid = || ExtensionError::InvalidValue {
        name: name.to_owned(),
        value: Some(value.to_owned()),
    };
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return Err(invalid());
    }
    match value.parse::<u8>() {
        Ok(bits @ MIN_WINDOW_BITS..=MAX_WINDOW_BITS) => Ok(bits),
        _ => Err(invalid()),
    }
}

/// Reads the parameters of a permessage-deflate element; `offer` allows a bare
/// `client_max_window_bits`.
fn params(element: &Element, offer: bool) -> Result<Params, ExtensionError> {
    let mut p = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &element.params {
        if seen.contains(&name.as_str()) {
            return Err(ExtensionError::DuplicateParameter(name.clone()));
        }
        seen.push(name);
        let no_value = || match value {
            None => Ok(true),
            Some(v) => Err(ExtensionError::InvalidValue {
                name: name.clone(),
                value: Some(v.clone()),
            }),
        };
        let required = || {
            value.as_deref().ok_or_else(|| ExtensionError::InvalidValue {
                name: name.clone(),
                value: None,
            })
        };
        match name.as_str() {
            "server_no_context_takeover" => p.server_no_context_takeover = no_value()?,
            "client_no_context_takeover" => p.client_no_context_takeover = no_value()?,
            "server_max_window_bits" => p.server_max_window_bits = Some(window_bits(name, required()?)?),
            "client_max_window_bits" => {
                p.client_max_window_bits = Some(match value {
                    None if offer => None,
                    _ => Some(window_bits(name, required()?)?),
                })
            }
            _ => return Err(ExtensionError::UnknownParameter(name.clone())),
        }
    }
    Ok(p)
}

fn is_deflate(element: &Element) -> bool {
    element.name.eq_ignore_ascii_case(EXTENSION_NAME)
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Every permessage-deflate offer in one `Sec-WebSocket-Extensions` value, in order, each
/// as the [`DeflateConfig`] that would have sent it (compression level: the default), or why
/// it is malformed. Other extensions are skipped; a value that is not a valid extension
/// list gives one error.
pub fn parse_offers(value: &str) -> Vec<Result<DeflateConfig, ExtensionError>> {
    match parse_list(value) {
        Err(err) => vec![Err(err)],
        Ok(elements) => elements
            .iter()
            .filter(|e| is_deflate(e))
            .map(|e| {
                params(e, true).map(|p| DeflateConfig {
                    client_max_window_bits: p.client_max_window_bits.map(|v| v.unwrap_or(MAX_WINDOW_BITS)),
                    server_max_window_bits: p.server_max_window_bits,
                    client_no_context_takeover: p.client_no_context_takeover,
                    server_no_context_takeover: p.server_no_context_takeover,
                    ..DeflateConfig::default()
                })
            })
            .collect(),
    }
}

impl DeflateConfig {
    /// The client's `Sec-WebSocket-Extensions` value offering permessage-deflate, e.g.
    /// `permessage-deflate; client_max_window_bits; server_max_window_bits=10`.
    pub fn offer(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        match self.client_max_window_bits.map(clamp_bits) {
            Some(MAX_WINDOW_BITS) => out.push_str("; client_max_window_bits"),
            Some(bits) => out.push_str(&format!("; client_max_window_bits={bits}")),
            None => {}
        }
        if let Some(bits) = self.server_max_window_bits.map(clamp_bits) {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        out
    }

    /// Server: the answer to one (valid) offer under this configuration. Every offer can
    /// be honoured: what the offer asks is granted, what this configuration asks on top
    /// is added where RFC 7692 lets a server add it.
    pub fn answer(&self, offer: &DeflateConfig) -> NegotiatedDeflate {
        let server_max_window_bits = match (
            offer.server_max_window_bits.map(clamp_bits),
            self.server_max_window_bits.map(clamp_bits),
        ) {
            (Some(asked), Some(ours)) => Some(asked.min(ours)),
            (asked, ours) => asked.or(ours),
        };
        // Only an offer with client_max_window_bits lets the server limit the client.
        let client_max_window_bits = match (
            offer.client_max_window_bits.map(clamp_bits),
            self.client_max_window_bits.map(clamp_bits),
        ) {
            (Some(allowed), Some(ours)) if ours < MAX_WINDOW_BITS => Some(allowed.min(ours)),
            _ => None,
        };
        NegotiatedDeflate {
            server_no_context_takeover: offer.server_no_context_takeover || self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
            compression_level: self.compression_level,
        }
    }

    /// Server: picks an offer from the request's `Sec-WebSocket-Extensions` values (one
    /// header may list several offers, and there may be several headers) and answers it
    /// ([`DeflateConfig::answer`]); `None` declines permessage-deflate. Malformed offers
    /// (unknown or repeated parameters, bad values) are declined (RFC 7692 §5), and so is a
    /// header line that is not a valid extension list. The first offer that leaves the
    /// server a window of at least 9 bits wins; failing that, the first valid one (with 8,
    /// the server then sends uncompressed, see the module documentation).
    pub fn accept_offers<'a, I>(&self, extension_headers: I) -> Option<NegotiatedDeflate>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let answers: Vec<NegotiatedDeflate> = extension_headers
            .into_iter()
            .flat_map(parse_offers)
            .filter_map(Result::ok)
            .map(|offer| self.answer(&offer))
            .collect();
        let compresses = |a: &&NegotiatedDeflate| a.window_bits(crate::Role::Server) > MIN_WINDOW_BITS;
        answers.iter().find(compresses).or(answers.first()).cloned()
    }

    /// Client: checks the response's `Sec-WebSocket-Extensions` values against this offer
    /// ([`DeflateConfig::offer`]). `Ok(None)`: the server declined (no extension);
    /// `Ok(Some)`: the parameters to use; `Err`: the handshake must fail (RFC 7692 §5):
    /// another extension, permessage-deflate twice, an unknown, repeated or invalid
    /// parameter, `client_max_window_bits` we did not offer, a window above the offered
    /// one, or the lack of a parameter we asked for.
    pub fn accept_response<'a, I>(&self, extension_headers: I) -> Result<Option<NegotiatedDeflate>, ExtensionError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut accepted: Option<Params> = None;
        for value in extension_headers {
            for element in parse_list(value)? {
                if !is_deflate(&element) {
                    return Err(ExtensionError::NotOffered(element.name));
                }
                if accepted.is_some() {
                    return Err(ExtensionError::Repeated);
                }
                accepted = Some(params(&element, false)?);
            }
        }
        let Some(p) = accepted else {
            return Ok(None);
        };
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(ExtensionError::MissingParameter("server_no_context_takeover"));
        }
        if let Some(offered) = self.server_max_window_bits.map(clamp_bits) {
            match p.server_max_window_bits {
                None => return Err(ExtensionError::MissingParameter("server_max_window_bits")),
                Some(got) if got > offered => {
                    return Err(ExtensionError::WindowAboveOffer {
                        name: "server_max_window_bits",
                        offered,
                        got,
                    })
                }
                Some(_) => {}
            }
        }
        let response_client_bits = p.client_max_window_bits.flatten();
        let client_max_window_bits = match (self.client_max_window_bits.map(clamp_bits), response_client_bits) {
            (None, Some(_)) => return Err(ExtensionError::ClientWindowNotOffered),
            (Some(offered), Some(got)) if got > offered => {
                return Err(ExtensionError::WindowAboveOffer {
                    name: "client_max_window_bits",
                    offered,
                    got,
                })
            }
            (_, Some(got)) => Some(got),
            // Our own limit binds us even when the server did not repeat it.
            (Some(offered), None) if offered < MAX_WINDOW_BITS => Some(offered),
            _ => None,
        };
        Ok(Some(NegotiatedDeflate {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits: p.server_max_window_bits,
            client_max_window_bits,
            compression_level: self.compression_level,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    #[test]
    fn offers_carry_every_parameter() {
        assert_eq!(cfg().offer(), "permessage-deflate; client_max_window_bits");
        let all = DeflateConfig {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(12),
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            compression_level: 1,
        };
        assert_eq!(
            all.offer(),
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12; \
             client_no_context_takeover; server_no_context_takeover"
        );
        let none = DeflateConfig {
            client_max_window_bits: None,
            ..cfg()
        };
        assert_eq!(none.offer(), "permessage-deflate");
        // Clamped into 8..=15.
        let wild = DeflateConfig {
            client_max_window_bits: Some(3),
            server_max_window_bits: Some(99),
            ..cfg()
        };
        assert_eq!(
            wild.offer(),
            "permessage-deflate; client_max_window_bits=8; server_max_window_bits=15"
        );
        // An offer parses back to the configuration that made it.
        for c in [cfg(), all, none] {
            let back = parse_offers(&c.offer());
            assert_eq!(
                back,
                vec![Ok(DeflateConfig {
                    compression_level: 6,
                    ..c.clone()
                })]
            );
        }
    }

    #[test]
    fn the_grammar_tolerates_spacing_case_and_quotes() {
        let offers = parse_offers(
            " Permessage-Deflate ;Client_Max_Window_Bits = \"10\" ;server_no_context_takeover , x-other; a=b,, \
             permessage-deflate",
        );
        assert_eq!(
            offers,
            vec![
                Ok(DeflateConfig {
                    client_max_window_bits: Some(10),
                    server_no_context_takeover: true,
                    ..cfg()
                }),
                Ok(DeflateConfig {
                    client_max_window_bits: None,
                    ..cfg()
                }),
            ]
        );
        for bad in [
            "permessage-deflate; client_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate x",
            "permessage-deflate; =10",
            "; permessage-deflate",
        ] {
            assert!(
                matches!(parse_offers(bad)[..], [Err(ExtensionError::Syntax(_))]),
                "{bad}: {:?}",
                parse_offers(bad)
            );
        }
    }

    #[test]
    fn malformed_offers_are_refused_with_their_reason() {
        let one = |s: &str| parse_offers(s).remove(0);
        assert_eq!(
            one("permessage-deflate; foo"),
            Err(ExtensionError::UnknownParameter("foo".into()))
        );
        assert_eq!(
            one("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            Err(ExtensionError::DuplicateParameter("server_no_context_takeover".into()))
        );
        for value in ["7", "16", "08", "x", "150", "1"] {
            assert_eq!(
                one(&format!("permessage-deflate; server_max_window_bits={value}")),
                Err(ExtensionError::InvalidValue {
                    name: "server_max_window_bits".into(),
                    value: Some(value.into())
                }),
                "{value}"
            );
        }
        assert_eq!(
            one("permessage-deflate; server_max_window_bits"),
            Err(ExtensionError::InvalidValue {
                name: "server_max_window_bits".into(),
                value: None
            })
        );
        assert_eq!(
            one("permessage-deflate; client_no_context_takeover=1"),
            Err(ExtensionError::InvalidValue {
                name: "client_no_context_takeover".into(),
                value: Some("1".into())
            })
        );
        for bits in 8..=15 {
            assert!(one(&format!("permessage-deflate; client_max_window_bits={bits}")).is_ok());
        }
    }

    #[test]
    fn a_server_picks_the_first_acceptable_offer_across_headers() {
        let server = cfg();
        // A malformed first offer is declined, the next one taken.
        let got = server.accept_offers([
            "permessage-deflate; bogus, permessage-deflate; server_no_context_takeover",
            "permessage-deflate",
        ]);
        assert_eq!(
            got,
            Some(NegotiatedDeflate {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: None,
                client_max_window_bits: None,
                compression_level: 6
            })
        );
        assert_eq!(
            got.as_ref().map(NegotiatedDeflate::response).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        // Across header lines, and past a line that is not a valid list.
        let got = server.accept_offers(["x-webkit-deflate-frame", "permessage-deflate; \"", "permessage-deflate"]);
        assert_eq!(got.map(|n| n.response()).as_deref(), Some("permessage-deflate"));
        // Nothing acceptable: declined.
        assert_eq!(
            server.accept_offers(["permessage-deflate; server_max_window_bits=16"]),
            None
        );
        assert_eq!(server.accept_offers(["x-other"]), None);
        assert_eq!(server.accept_offers([]), None);
    }

    /// Autobahn 13.7's offers: (no context takeover, 8 bits), (no context takeover), plain.
    /// The 8-bit one would leave the server unable to compress, so the second one wins; an
    /// 8-bit offer alone is still accepted (the server then sends uncompressed).
    #[test]
    fn a_server_prefers_an_offer_it_can_compress_for() {
        let server = cfg();
        let got = server
            .accept_offers([
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                 server_no_context_takeover; server_max_window_bits=8, \
                 permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, \
                 permessage-deflate; client_no_context_takeover; client_max_window_bits",
            ])
            .expect("accepted");
        assert_eq!(got.response(), "permessage-deflate; server_no_context_takeover");
        let only_8 = server
            .accept_offers(["permessage-deflate; server_max_window_bits=8"])
            .expect("accepted");
        assert_eq!(only_8.response(), "permessage-deflate; server_max_window_bits=8");
        assert_eq!(only_8.window_bits(crate::Role::Server), 8);
    }

    #[test]
    fn a_server_grants_what_is_asked_and_adds_its_own_limits() {
        let offer = |s: &str| parse_offers(s).remove(0).expect("valid");
        let strict = DeflateConfig {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(11),
            client_no_context_takeover: true,
            server_no_context_takeover: false,
            compression_level: 6,
        };
        // The offer allows limiting the client: both limits and both flags.
        let a = strict.answer(&offer(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=13; server_no_context_takeover",
        ));
        assert_eq!(
            a.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=11; client_max_window_bits=10"
        );
        // The client's own smaller hint, and the server's smaller asked window.
        let a = strict.answer(&offer(
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9",
        ));
        assert_eq!((a.client_max_window_bits, a.server_max_window_bits), (Some(9), Some(9)));
        // Without client_max_window_bits in the offer, the client cannot be limited.
        let a = strict.answer(&offer("permessage-deflate"));
        assert_eq!(a.client_max_window_bits, None);
        // A plain server answers a plain offer plainly.
        assert_eq!(
            cfg().answer(&offer("permessage-deflate")).response(),
            "permessage-deflate"
        );
    }

    #[test]
    fn a_client_accepts_valid_responses() {
        let client = cfg();
        let ok = |c: &DeflateConfig, r: &str| c.accept_response([r]).expect("valid").expect("accepted");
        let n = ok(&client, "permessage-deflate");
        assert_eq!(
            (n.window_bits(crate::Role::Client), n.window_bits(crate::Role::Server)),
            (15, 15)
        );
        let n = ok(
            &client,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=8",
        );
        assert_eq!(
            n,
            NegotiatedDeflate {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(9),
                client_max_window_bits: Some(8),
                compression_level: 6
            }
        );
        // No extension (or an empty header): declined, not an error.
        assert_eq!(client.accept_response([]), Ok(None));
        assert_eq!(client.accept_response([""]), Ok(None));
        // Our own window limit binds us whatever the response says; a smaller one wins.
        let limited = DeflateConfig {
            client_max_window_bits: Some(11),
            server_max_window_bits: Some(12),
            client_no_context_takeover: true,
            ..cfg()
        };
        let n = ok(&limited, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(
            (
                n.client_max_window_bits,
                n.server_max_window_bits,
                n.client_no_context_takeover
            ),
            (Some(11), Some(10), true)
        );
        let n = ok(
            &limited,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
        );
        assert_eq!(n.client_max_window_bits, Some(9));
    }

    #[test]
    fn a_client_refuses_each_malformed_response_with_its_reason() {
        let client = cfg();
        let no_client_window = DeflateConfig {
            client_max_window_bits: None,
            ..cfg()
        };
        let asks = DeflateConfig {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(10),
            server_no_context_takeover: true,
            ..cfg()
        };
        let cases: Vec<(&DeflateConfig, &str, ExtensionError)> = vec![
            (
                &client,
                "x-webkit-deflate-frame",
                ExtensionError::NotOffered("x-webkit-deflate-frame".into()),
            ),
            (
                &client,
                "permessage-deflate, x-other",
                ExtensionError::NotOffered("x-other".into()),
            ),
            (
                &client,
                "permessage-deflate, permessage-deflate",
                ExtensionError::Repeated,
            ),
            (
                &client,
                "permessage-deflate; mystery",
                ExtensionError::UnknownParameter("mystery".into()),
            ),
            (
                &client,
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                ExtensionError::DuplicateParameter("server_max_window_bits".into()),
            ),
            (
                &client,
                "permessage-deflate; server_max_window_bits=7",
                ExtensionError::InvalidValue {
                    name: "server_max_window_bits".into(),
                    value: Some("7".into()),
                },
            ),
            (
                &client,
                "permessage-deflate; client_max_window_bits=16",
                ExtensionError::InvalidValue {
                    name: "client_max_window_bits".into(),
                    value: Some("16".into()),
                },
            ),
            // A response must give client_max_window_bits a value.
            (
                &client,
                "permessage-deflate; client_max_window_bits",
                ExtensionError::InvalidValue {
                    name: "client_max_window_bits".into(),
                    value: None,
                },
            ),
            (
                &client,
                "permessage-deflate; server_no_context_takeover=yes",
                ExtensionError::InvalidValue {
                    name: "server_no_context_takeover".into(),
                    value: Some("yes".into()),
                },
            ),
            (
                &no_client_window,
                "permessage-deflate; client_max_window_bits=10",
                ExtensionError::ClientWindowNotOffered,
            ),
            (
                &asks,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
                ExtensionError::WindowAboveOffer {
                    name: "client_max_window_bits",
                    offered: 10,
                    got: 11,
                },
            ),
            (
                &asks,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
                ExtensionError::WindowAboveOffer {
                    name: "server_max_window_bits",
                    offered: 10,
                    got: 12,
                },
            ),
            (
                &asks,
                "permessage-deflate; server_no_context_takeover",
                ExtensionError::MissingParameter("server_max_window_bits"),
            ),
            (
                &asks,
                "permessage-deflate; server_max_window_bits=10",
                ExtensionError::MissingParameter("server_no_context_takeover"),
            ),
            (
                &client,
                "permessage-deflate; client_max_window_bits=\"9",
                ExtensionError::Syntax("unterminated quoted string".into()),
            ),
        ];
        for (config, response, err) in cases {
            assert_eq!(config.accept_response([response]), Err(err), "{response}");
        }
        // Repeated across two header lines too.
        assert_eq!(
            client.accept_response(["permessage-deflate", "permessage-deflate"]),
            Err(ExtensionError::Repeated)
        );
    }

    /// Whatever valid offer a client makes, the server's answer passes that client's check
    /// and both sides agree on every parameter.
    #[test]
    fn every_offer_round_trips_through_the_server_answer() {
        let windows = [None, Some(8), Some(9), Some(12), Some(15)];
        let mut n = 0;
        for client_bits in windows {
            for server_bits in windows {
                for flags in 0..4u8 {
                    let client = DeflateConfig {
                        client_max_window_bits: client_bits,
                        server_max_window_bits: server_bits,
                        client_no_context_takeover: flags & 1 != 0,
                        server_no_context_takeover: flags & 2 != 0,
                        compression_level: 6,
                    };
                    for server in [
                        cfg(),
                        DeflateConfig {
                            client_max_window_bits: Some(9),
                            server_max_window_bits: Some(10),
                            client_no_context_takeover: true,
                            server_no_context_takeover: true,
                            compression_level: 1,
                        },
                    ] {
                        let agreed = server.accept_offers([client.offer().as_str()]).expect("accepted");
                        let seen = client
                            .accept_response([agreed.response().as_str()])
                            .expect("valid")
                            .expect("accepted");
                        for role in [crate::Role::Client, crate::Role::Server] {
                            assert_eq!(
                                seen.window_bits(role),
                                agreed.window_bits(role).min(if role == crate::Role::Client {
                                    client_bits.unwrap_or(15)
                                } else {
                                    15
                                }),
                                "{client:?} / {server:?}"
                            );
                            assert_eq!(
                                seen.no_context_takeover(role),
                                agreed.no_context_takeover(role)
                                    || (role == crate::Role::Client && client.client_no_context_takeover)
                            );
                        }
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 5 * 5 * 4 * 2);
    }
}
