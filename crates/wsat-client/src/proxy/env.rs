//! The proxy the environment asks for, read as curl reads it: the `*_proxy` variables in
//! curl's order and the `no_proxy` list (host names and their subdomains, IP addresses, CIDR
//! ranges). Apart from the handshakes: this only decides which [`Proxy`], if any.

use std::net::IpAddr;

use super::{Proxy, ProxyError};
use crate::config::Target;

impl Proxy {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tests::picked;

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
}
