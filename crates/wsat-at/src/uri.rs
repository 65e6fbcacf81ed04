//! Light URI sanity check for AT+WSOPEN, mirroring where the firmware fails (FIRMWARE.md §6.1 steps 3
//! and 5): an unparsable URI fails client creation (config kept); a parsable URI with a scheme
//! other than ws/wss fails at client start (clean(L), config lost). Everything deeper (DNS,
//! connect, TLS, handshake, request size) is the glue's.

/// Result of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriCheck {
    /// `ws://` or `wss://` (any case) with a host and a valid port.
    Ok,
    /// No scheme, no `//`, empty host, bad port, or a control/space byte: ERROR, config kept.
    Unparsable,
    /// Parsable but not ws/wss: ERROR after clean(L).
    BadScheme,
}

/// Checks the scheme, authority (userinfo, host or `[v6]`, optional port ≤ 65535) of a URI.
pub(crate) fn check(uri: &[u8]) -> UriCheck {
    if uri.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return UriCheck::Unparsable;
    }
    let Some(colon) = uri.iter().position(|&b| b == b':') else {
        return UriCheck::Unparsable;
    };
    let scheme = &uri[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let Some(after) = uri[colon + 1..].strip_prefix(b"//") else {
        return UriCheck::Unparsable;
    };
    if !scheme_ok {
        return UriCheck::Unparsable;
    }
    let end = after
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    let authority = &after[..end];
    let hostport = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix(b"[") {
        let Some(close) = v6.iter().position(|&b| b == b']') else {
            return UriCheck::Unparsable;
        };
        let tail = &v6[close + 1..];
        let port = match tail {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return UriCheck::Unparsable,
        };
        (&v6[..close], port)
    } else {
        match hostport.iter().position(|&b| b == b':') {
            Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return UriCheck::Unparsable;
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p <= 65_535);
        if !valid {
            return UriCheck::Unparsable;
        }
    }
    if scheme.eq_ignore_ascii_case(b"ws") || scheme.eq_ignore_ascii_case(b"wss") {
        UriCheck::Ok
    } else {
        UriCheck::BadScheme
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for u in [
            &b"ws://192.168.200.249:8765"[..],
            b"WSS://host",
            b"ws://user:pass@host:80/path?q=1#frag",
            b"ws://[::1]:9000/x",
            b"wss://h:65535",
            b"ws://h/",
        ] {
            assert_eq!(check(u), UriCheck::Ok, "{}", String::from_utf8_lossy(u));
        }
    }

    #[test]
    fn unparsable() {
        for u in [
            &b""[..],
            b"host:80",
            b"ws:host",
            b"ws://",
            b"ws://:80",
            b"ws://h:",
            b"ws://h:65536",
            b"ws://h:8a",
            b"ws://h p",
            b"ws://[::1",
            b"1ws://h",
        ] {
            assert_eq!(check(u), UriCheck::Unparsable, "{}", String::from_utf8_lossy(u));
        }
    }

    #[test]
    fn wrong_scheme() {
        assert_eq!(check(b"http://h"), UriCheck::BadScheme);
        assert_eq!(check(b"wsx://h:1"), UriCheck::BadScheme);
    }
}
