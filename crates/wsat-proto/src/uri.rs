//! `ws://` and `wss://` URIs, parsed as the ESP client's `http_parser` does: parts kept
//! verbatim (no normalisation), a scheme required, userinfo kept for Basic auth.

use std::fmt;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme://` prefix.
    #[error("missing scheme in {0:?}")]
    MissingScheme(String),
    /// Empty host.
    #[error("missing host in {0:?}")]
    MissingHost(String),
    /// A port that is not a number in 0..=65535.
    #[error("invalid port in {0:?}")]
    InvalidPort(String),
    /// Spaces, control characters or a broken IPv6 literal.
    #[error("invalid character or syntax in {0:?}")]
    Invalid(String),
    /// A scheme other than ws/wss (or http/https in a redirect).
    #[error("unsupported scheme {0:?}: use ws or wss")]
    UnsupportedScheme(String),
}

/// A parsed WebSocket URI: `scheme://[user[:pass]@]host[:port][/path][?query][#fragment]`.
#[derive(Clone, PartialEq, Eq)]
pub struct WsUri {
    /// The scheme as written.
    pub scheme: String,
    /// The host, without brackets for an IPv6 literal.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The path as written (starting with `/`), if any.
    pub path: Option<String>,
    /// The query without `?`, if any.
    pub query: Option<String>,
    /// The user name from the userinfo, if any.
    pub username: Option<String>,
    /// The password from the userinfo, if any.
    pub password: Option<String>,
}

impl WsUri {
    /// Parses `input`. The fragment is dropped, as the ESP client does.
    pub fn parse(input: &str) -> Result<WsUri, UriError> {
        // Errors travel into logs and terminals: never with the password.
        let err = |f: fn(String) -> UriError| f(without_password(input));
        if input.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(err(UriError::Invalid));
        }
        let (scheme, rest) = input.split_once("://").ok_or_else(|| err(UriError::MissingScheme))?;
        let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(err(UriError::MissingScheme));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| err(UriError::Invalid))?;
        if host.is_empty() {
            return Err(err(UriError::MissingHost));
        }
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| err(UriError::InvalidPort))?)
            }
            Some(_) => return Err(err(UriError::InvalidPort)),
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (tail, None),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        Ok(WsUri {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            path: (!path.is_empty()).then(|| path.to_owned()),
            query,
            username,
            password,
        })
    }

    /// Whether the scheme asks for TLS: `wss` (or `https`, as a redirect target may say)
    /// yes, `ws`/`http` no, case-insensitively; anything else is refused.
    pub fn tls(&self) -> Result<bool, UriError> {
        match self.scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => Ok(false),
            "wss" | "https" => Ok(true),
            _ => Err(UriError::UnsupportedScheme(self.scheme.clone())),
        }
    }

    /// The port to connect to: the explicit one, else 443 for TLS and 80 otherwise.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.tls() == Ok(true) { 443 } else { 80 })
    }

    /// Whether `other` is this URI's origin (RFC 6454): the same scheme (`http` counting as
    /// `ws` and `https` as `wss`), host (ASCII case-insensitively) and port (defaults
    /// applied). Credentials go only to the origin they were given for.
    pub fn same_origin(&self, other: &WsUri) -> bool {
        self.tls() == other.tls()
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port_or_default() == other.port_or_default()
    }

    /// The request target: path and query, `/?query` without a path, `/` with neither.
    pub fn request_target(&self) -> String {
        let path = self.path.as_deref().unwrap_or("/");
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }

    /// The `Host` header value, always with the port, as the ESP client sends it.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port_or_default())
        } else {
            format!("{}:{}", self.host, self.port_or_default())
        }
    }

    /// The target of a redirect `location` seen from this URI: absolute (`ws`, `wss`,
    /// `http`, `https`), scheme-relative (`//host/...`) or a path (`/...` or relative to
    /// this path's directory). Userinfo is not carried over.
    pub fn resolve(&self, location: &str) -> Result<WsUri, UriError> {
        if location.contains("://") {
            return WsUri::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return WsUri::parse(&format!("{}://{rest}", self.scheme));
        }
        let authority = match self.port {
            Some(p) => format!("{}:{p}", bracketed(&self.host)),
            None => bracketed(&self.host),
        };
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let base = self.path.as_deref().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            let dir = if dir.is_empty() { "/" } else { dir };
            format!("{dir}{location}")
        };
        WsUri::parse(&format!("{}://{authority}{path}", self.scheme))
    }
}

/// `input` with the password of its userinfo, if any, written `<redacted>`.
fn without_password(input: &str) -> String {
    let authority_start = input.find("://").map_or(0, |i| i + 3);
    let rest = &input[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
    {
        Some((user, _password)) => {
            let after = authority_start + authority.rfind('@').unwrap_or(0);
            format!("{}{user}:<redacted>{}", &input[..authority_start], &input[after..])
        }
        None => input.to_owned(),
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => Some((h, Some(p))),
            None => Some((hostport, None)),
        }
    }
}

impl fmt::Debug for WsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("WsUri")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_targets_and_host_headers() {
        let u = WsUri::parse("ws://user:pa:ss@example.com:8080/chat/room?x=1&y#frag").expect("valid");
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("user"), Some("pa:ss"))
        );
        assert_eq!(u.request_target(), "/chat/room?x=1&y");
        assert_eq!(u.host_header(), "example.com:8080");
        let u = WsUri::parse("WSS://h?only").expect("valid");
        assert_eq!(
            (u.tls(), u.request_target(), u.host_header()),
            (Ok(true), "/?only".into(), "h:443".into())
        );
        let u = WsUri::parse("ws://[::1]:9001").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.request_target(), u.host_header()),
            ("::1", "/".into(), "[::1]:9001".into())
        );
        assert_eq!(WsUri::parse("ws://h").expect("valid").port_or_default(), 80);
    }

    #[test]
    fn refusals() {
        assert!(matches!(WsUri::parse("INVALID"), Err(UriError::MissingScheme(_))));
        assert!(matches!(WsUri::parse(""), Err(UriError::MissingScheme(_))));
        assert!(matches!(WsUri::parse("ws://"), Err(UriError::MissingHost(_))));
        assert!(matches!(WsUri::parse("ws://h:99999"), Err(UriError::InvalidPort(_))));
        assert!(matches!(WsUri::parse("ws://h:"), Err(UriError::InvalidPort(_))));
        assert!(matches!(WsUri::parse("ws://h:8a"), Err(UriError::InvalidPort(_))));
        assert!(matches!(WsUri::parse("ws://a b"), Err(UriError::Invalid(_))));
        // The message names the URI, never its password.
        let shown = WsUri::parse("ws://u:s3cret@:80/").expect_err("no host").to_string();
        assert_eq!(shown, r#"missing host in "ws://u:<redacted>@:80/""#);
        let shown = WsUri::parse("ws://u:p@ss:w0rd@h:x/p")
            .expect_err("bad port")
            .to_string();
        assert!(!shown.contains("w0rd") && shown.contains("@h:x/p"), "{shown}");
        assert!(matches!(
            WsUri::parse("ftp://h").expect("parses").tls(),
            Err(UriError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn redirect_resolution() {
        let base = WsUri::parse("ws://h:1/a/b?q").expect("valid");
        let abs = |l: &str| {
            base.resolve(l)
                .map(|u| format!("{}://{}{}", u.scheme, u.host_header(), u.request_target()))
        };
        assert_eq!(abs("wss://other/x"), Ok("wss://other:443/x".into()));
        assert_eq!(abs("/top?z"), Ok("ws://h:1/top?z".into()));
        assert_eq!(abs("c"), Ok("ws://h:1/a/c".into()));
        assert_eq!(abs("//elsewhere:5/p"), Ok("ws://elsewhere:5/p".into()));
    }

    #[test]
    fn debug_hides_the_password() {
        let u = WsUri::parse("ws://u:secret@h").expect("valid");
        assert!(!format!("{u:?}").contains("secret"));
    }
}
