//! Connect and upgrade, following redirects up to the hop limit.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wsat_proto::encode::encode_frame;
use wsat_proto::handshake::{ClientHandshake, HandshakeResponse};
use wsat_proto::uri::WsUri;
use wsat_proto::{close, Connection, ConnectionConfig, OpCode, Role};

use crate::config::{ClientConfig, Delivery, Target};
use crate::event::Connected;
use crate::transport::{self, Stream};
use crate::ClientError;

/// An open WebSocket: the stream, the protocol state (holding any bytes that came with
/// the 101) and what the server said.
pub(crate) struct Upgraded {
    pub stream: Stream,
    pub connection: Connection,
    pub info: Connected,
}

/// The protocol configuration a client's connections use.
pub(crate) fn connection_config(config: &ClientConfig) -> ConnectionConfig {
    ConnectionConfig {
        role: Role::Client,
        strict: config.strict,
        // Whole messages: a frame is decoded in one piece (up to the message limit) and,
        // unfragmented, becomes the message without a copy.
        max_chunk: match config.delivery {
            Delivery::Messages { max_size } => max_size.max(1),
            Delivery::Chunks => config.buffer_size.max(1),
        },
        chunk_policy: config.chunk_policy,
        max_frame_len: None,
        max_message_len: match config.delivery {
            Delivery::Messages { max_size } => Some(max_size as u64),
            Delivery::Chunks => None,
        },
        ping_interval: config.ping_interval,
        pong_timeout: config.pong_timeout,
        ping_resets_on_receive: config.ping_resets_on_receive,
        close_timeout: config.close_timeout,
        echo_close_code: config.echo_close_code,
    }
}

/// One connect attempt: TCP/TLS and the upgrade, then redirects. `before_hop` is called
/// before every hop after the first (the ESP client's BEFORE_CONNECT per hop).
pub(crate) async fn connect(
    config: &ClientConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    before_hop: impl FnMut(&Target),
) -> Result<Upgraded, ClientError> {
    connect_with_protocol(config, tls, connection_config(config), before_hop).await
}

/// [`connect`], the connection configured by `protocol` instead of by [`connection_config`]:
/// the one connect, redirect and upgrade path of both shapes, [`crate::Client`] (through
/// [`connect`]) and [`crate::WebSocket`], which bounds whole messages in every delivery
/// mode. `tls` is built here, on the first hop that needs it, when not given.
pub(crate) async fn connect_with_protocol(
    config: &ClientConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    protocol: ConnectionConfig,
    mut before_hop: impl FnMut(&Target),
) -> Result<Upgraded, ClientError> {
    let origin = config.target()?;
    let mut target = origin.clone();
    let mut hops = 0;
    // Built up front for a wss URI (a bad configuration fails at start); for a ws URI only
    // when a redirect leads to wss.
    let mut tls = tls.cloned();
    loop {
        if target.tls() && tls.is_none() {
            tls = Some(config.tls.build()?);
        }
        let mut stream = transport::connect(&target, config, tls.as_ref()).await?;
        let handshake = ClientHandshake::new(&config.request(&target, &origin));
        match exchange(&mut stream, &handshake, config).await? {
            (
                HandshakeResponse::Accepted {
                    status,
                    subprotocol,
                    headers,
                    head_len,
                },
                mut buf,
            ) => {
                // parse_response has checked the extensions already: this cannot fail.
                let deflate = handshake.negotiated_deflate(&headers)?;
                let mut connection = Connection::with_deflate(protocol, deflate.clone(), Instant::now());
                let _ = buf.split_to(head_len);
                connection.read_buf().extend_from_slice(&buf);
                let info = Connected {
                    uri: shown(&target.uri),
                    status,
                    subprotocol,
                    headers,
                    deflate,
                };
                return Ok(Upgraded {
                    stream,
                    connection,
                    info,
                });
            }
            (HandshakeResponse::Redirect { location, status, .. }, _) => {
                if hops >= config.max_redirects {
                    return Err(ClientError::TooManyRedirects(config.max_redirects));
                }
                hops += 1;
                let mut next = target.uri.resolve(&location)?;
                if target.tls() && !next.tls()? && !config.allow_insecure_redirect {
                    return Err(ClientError::InsecureRedirect {
                        from: shown(&target.uri),
                        to: shown(&next),
                    });
                }
                if next.same_origin(&origin.uri) && next.username.is_none() {
                    // A path-only redirect keeps the origin's URI credentials (curl does too).
                    (next.username, next.password) = (origin.uri.username.clone(), origin.uri.password.clone());
                }
                tracing::debug!(status, to = %shown(&next), "following redirect");
                target = Target { uri: next };
                before_hop(&target);
            }
        }
    }
}

/// A masked close frame with `code` and no reason, as a client sends it.
fn close_frame(code: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8);
    let mask = rand::random::<[u8; 4]>();
    encode_frame(
        &mut frame,
        OpCode::CLOSE,
        true,
        Some(mask),
        &close::encode_payload(code, ""),
    );
    frame
}

/// `uri` as events and errors show it: scheme, `Host` and request target, without
/// credentials.
pub(crate) fn shown(uri: &WsUri) -> String {
    format!("{}://{}{}", uri.scheme, uri.host_header(), uri.request_target())
}

/// Sends the request and reads the response head, bounded by the network timeout.
async fn exchange(
    stream: &mut Stream,
    handshake: &ClientHandshake,
    config: &ClientConfig,
) -> Result<(HandshakeResponse, BytesMut), ClientError> {
    let request = handshake.request();
    if let Some(limit) = config.max_request_len {
        if request.len() > limit {
            return Err(ClientError::RequestTooLarge {
                len: request.len(),
                limit,
            });
        }
    }
    let step = async {
        stream
            .write_all(request)
            .await
            .map_err(|e| ClientError::io("sending the upgrade request", e))?;
        stream
            .flush()
            .await
            .map_err(|e| ClientError::io("sending the upgrade request", e))?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            match handshake.parse_response(&buf, config.strict) {
                Ok(Some(resp)) => return Ok((resp, buf)),
                Ok(None) => {}
                Err(err) => {
                    if let Some(code) = err.close_code() {
                        // A 101 whose extensions we cannot accept: the server believes the
                        // connection is open, so tell it why we fail it (RFC 6455 §7.1.7).
                        let _ = stream.write_all(&close_frame(code)).await;
                        let _ = stream.flush().await;
                    }
                    return Err(err.into());
                }
            }
            if buf.len() > config.max_response_head {
                return Err(wsat_proto::handshake::HandshakeError::TooLarge(config.max_response_head).into());
            }
            buf.reserve(1024);
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| ClientError::io("reading the upgrade response", e))?;
            if n == 0 {
                return Err(ClientError::HandshakeEof);
            }
        }
    };
    timeout(config.network_timeout, step)
        .await
        .map_err(|_| ClientError::Timeout("WebSocket upgrade"))?
}
