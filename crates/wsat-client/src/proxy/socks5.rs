//! The SOCKS5 proxy's tunnel (RFC 1928), with user name and password authentication
//! (RFC 1929) when the proxy has credentials, and the limits SOCKS5 puts on them.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Failure, Proxy, ProxyError};

/// RFC 1928 §6's meaning of a reply code.
pub(super) fn socks5_reply_text(code: u8) -> &'static str {
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
    pub(super) fn check_socks5_credentials(&self) -> Result<(), ProxyError> {
        match &self.credentials {
            Some(c) if c.user.is_empty() || c.user.len() > 255 => {
                Err(ProxyError::Socks5Limit("a user name that is empty or over 255 bytes"))
            }
            Some(c) if c.password.len() > 255 => Err(ProxyError::Socks5Limit("a password over 255 bytes")),
            _ => Ok(()),
        }
    }
}

pub(super) async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
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
    use super::*;
    use crate::proxy::tests::against;

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
