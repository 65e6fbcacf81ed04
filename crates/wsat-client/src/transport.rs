//! The byte stream under a connection: TCP, or TLS over TCP, directly or through a proxy's
//! tunnel, with bounded connects.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{ClientConfig, Target};
use crate::proxy;
use crate::ClientError;

/// A plain or TLS stream.
#[derive(Debug)]
pub enum Stream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens TCP (and TLS for `wss`) to `target`, each step bounded by the network timeout.
/// With a proxy: TCP to the proxy, the tunnel to `target`, then TLS through it.
pub async fn connect(
    target: &Target,
    config: &ClientConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Stream, ClientError> {
    let (host, port) = (target.uri.host.as_str(), target.uri.port_or_default());
    let tcp = match &config.proxy {
        None => open_tcp(config, host, port, "TCP connect").await?,
        Some(proxy) => {
            tracing::debug!(%proxy, to = %target.uri.host_header(), "opening a tunnel through the proxy");
            let mut tcp = open_tcp(config, proxy.host(), proxy.port(), "TCP connect to the proxy").await?;
            let tunnel = proxy::tunnel(
                &mut tcp,
                proxy,
                host,
                port,
                config.user_agent.as_deref(),
                config.max_response_head,
            );
            timeout(config.network_timeout, tunnel)
                .await
                .map_err(|_| ClientError::Timeout(proxy.step()))??;
            tcp
        }
    };
    if !target.tls() {
        return Ok(Stream::Plain(tcp));
    }
    let Some(tls) = tls else {
        return Err(ClientError::Uri(wsat_proto::uri::UriError::UnsupportedScheme(
            target.uri.scheme.clone(),
        )));
    };
    // SNI goes out only for names; an IP literal is sent as an IP "name" (no SNI).
    let name = ServerName::try_from(target.uri.host.clone())
        .map_err(|_| ClientError::Uri(wsat_proto::uri::UriError::Invalid(target.uri.host.clone())))?;
    let stream = timeout(
        config.network_timeout,
        TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| ClientError::Timeout("TLS handshake"))?
    .map_err(|e| ClientError::io("TLS handshake", e))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// TCP to `host:port` (through the configured connector, if any), bounded by the network
/// timeout, with `TCP_NODELAY` and keep-alive set.
async fn open_tcp(config: &ClientConfig, host: &str, port: u16, step: &'static str) -> Result<TcpStream, ClientError> {
    let connecting = match &config.connector {
        Some(connector) => connector.connect(host, port),
        None => Box::pin(TcpStream::connect((host.to_owned(), port))),
    };
    let tcp = timeout(config.network_timeout, connecting)
        .await
        .map_err(|_| ClientError::Timeout(step))?
        .map_err(|e| ClientError::io(step, e))?;
    tcp.set_nodelay(true).map_err(|e| ClientError::io("TCP setup", e))?;
    if let Some(ka) = config.tcp_keepalive {
        let params = socket2::TcpKeepalive::new()
            .with_time(ka.idle)
            .with_interval(ka.interval)
            .with_retries(ka.count);
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&params)
            .map_err(|e| ClientError::io("TCP keep-alive", e))?;
    }
    Ok(tcp)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
