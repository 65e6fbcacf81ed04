//! The credentials that pass through the modem (the `auth` of AT+WSOPEN, a URI's password,
//! the values of AT+WSHEAD headers) and their replacement by `<redacted>`, the same way in
//! the `--trace` file and in the logs.

use std::fmt;

use wsat_at::OpenRequest;

/// What a credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// A set of credentials to hide. Its `Debug` shows how many, never which.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Each secret as given and, if different, as `Debug` shows it (`"` and `\` escaped).
    spellings: Vec<Vec<u8>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} spellings hidden)", self.spellings.len())
    }
}

impl Secrets {
    /// The credentials of one link: its `auth`, its URI's password and every header value.
    pub fn of_request(request: &OpenRequest) -> Self {
        let mut secrets = Secrets::default();
        secrets.add_uri_password(request.uri.as_bytes());
        if let Some(auth) = &request.authorization {
            secrets.add(auth.as_bytes());
        }
        for (_, value) in &request.headers {
            secrets.add_header_value(value.as_bytes());
        }
        secrets
    }

    /// Hides `secret`. One shorter than 3 bytes would redact half of everything; it is not
    /// worth hiding.
    pub fn add(&mut self, secret: &[u8]) {
        if secret.len() < 3 {
            return;
        }
        let escaped = String::from_utf8_lossy(secret).escape_debug().to_string().into_bytes();
        for spelling in [secret.to_vec(), escaped] {
            if !self.spellings.contains(&spelling) {
                self.spellings.push(spelling);
            }
        }
    }

    /// Hides a header value, as given (AT+WSHEAD keeps its leading space) and trimmed.
    pub fn add_header_value(&mut self, value: &[u8]) {
        self.add(value);
        self.add(value.trim_ascii());
    }

    /// Hides the password of a `scheme://user:password@host…` URI, if it has one.
    pub fn add_uri_password(&mut self, uri: &[u8]) {
        let Some(scheme_end) = uri.windows(3).position(|w| w == b"://") else {
            return;
        };
        let rest = &uri[scheme_end + 3..];
        let authority_end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.iter().rposition(|b| *b == b'@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.iter().position(|b| *b == b':') {
                self.add(&userinfo[colon + 1..]);
            }
        }
    }

    /// Which bytes of `bytes` belong to an occurrence of a secret.
    pub fn mask(&self, bytes: &[u8]) -> Vec<bool> {
        let mut mask = vec![false; bytes.len()];
        for secret in &self.spellings {
            for (at, window) in bytes.windows(secret.len()).enumerate() {
                if window == secret.as_slice() {
                    mask[at..at + secret.len()].fill(true);
                }
            }
        }
        mask
    }

    /// `bytes` with every occurrence of every secret replaced by [`REDACTED`].
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        render(bytes, &self.mask(bytes))
    }

    /// [`Secrets::redact`] for a log message, where `Debug` may have escaped a secret.
    pub fn redact_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }
}

/// `bytes` with each run of bytes flagged in `mask` replaced by one [`REDACTED`].
pub fn render(bytes: &[u8], mask: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &byte) in bytes.iter().enumerate() {
        match mask.get(i) {
            Some(true) if i > 0 && mask[i - 1] => {}
            Some(true) => out.extend_from_slice(REDACTED.as_bytes()),
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsat_at::LinkConfig;

    fn request() -> OpenRequest {
        OpenRequest {
            uri: "ws://user:pa\"ss@h:80/x".into(),
            subprotocol: Some("chat".into()),
            timeout_ms: 5000,
            authorization: Some("Bearer tok3n".into()),
            headers: vec![("X-Api-Key".into(), " k3y-value".into()), ("A".into(), "b".into())],
            config: LinkConfig::default(),
        }
    }

    #[test]
    fn a_requests_credentials_are_hidden_in_any_spelling() {
        let secrets = Secrets::of_request(&request());
        let line = format!("{:?} auth=Bearer tok3n key:k3y-value", "ws://user:pa\"ss@h:80/x");
        assert_eq!(
            secrets.redact_text(&line),
            "\"ws://user:<redacted>@h:80/x\" auth=<redacted> key:<redacted>"
        );
        // Short values ("b") are not worth hiding; the rest is untouched.
        assert_eq!(secrets.redact(b"A: b chat h:80"), b"A: b chat h:80");
        assert_eq!(format!("{secrets:?}"), "Secrets(5 spellings hidden)");
    }

    #[test]
    fn runs_of_secret_bytes_become_one_marker() {
        let mask = [false, true, true, false, true];
        assert_eq!(render(b"abcde", &mask), b"a<redacted>d<redacted>");
        // Overlapping and adjacent occurrences are one run.
        let mut secrets = Secrets::default();
        secrets.add(b"abab");
        assert_eq!(secrets.redact(b"xabababx"), b"x<redacted>x");
    }

    #[test]
    fn a_uri_without_a_password_has_no_secret() {
        let mut secrets = Secrets::default();
        for uri in [&b"ws://user@h/p:q@r"[..], b"ws://h:80", b"no scheme:pass@h"] {
            secrets.add_uri_password(uri);
        }
        assert!(secrets.spellings.is_empty(), "{secrets:?}");
    }
}
