//! The HTTP proxy's tunnel: the `CONNECT` request (with `Proxy-Authorization: Basic` when
//! the proxy has credentials) and its response head, read byte-exactly so that nothing of
//! what follows it (TLS, the upgrade) is consumed.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Failure, Proxy, ProxyError};

/// The longest reason phrase of a refused `CONNECT` kept in the error (the proxy's text
/// ends up in terminals and logs).
const MAX_REASON: usize = 128;

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

pub(super) async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
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

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;
    use crate::proxy::tests::against;
    use crate::proxy::tunnel;
    use crate::ClientError;

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
}
