//! An echo server on wsat-proto's server role: every text or binary message comes back
//! with its type, like the seed examples' `ws-server.py` and `wss-server.py`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use wsat_proto::handshake::{accept_response, parse_request, reject_response};
use wsat_proto::{
    ChunkPolicy, Connection, ConnectionConfig, ConnectionState, Event, MessageAssembler, ProtocolError, Role,
};

/// The largest message echoed; longer ones close the connection with 1009.
pub const MAX_MESSAGE: usize = 64 << 20;
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A bound, not yet running echo server.
pub struct EchoServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl EchoServer {
    /// Binds to `addr`; with `tls`, every connection is wss.
    pub async fn bind(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        Ok(EchoServer {
            listener: TcpListener::bind(addr).await?,
            tls: tls.map(TlsAcceptor::from),
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until the task is dropped or aborted; each connection runs on
    /// its own task and a failing one never stops the server.
    pub async fn run(self) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            };
            let tls = self.tls.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(tcp, tls).await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
    }

    /// Runs the server on a task of its own.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }
}

async fn serve(tcp: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    match tls {
        None => echo(tcp).await,
        Some(acceptor) => echo(acceptor.accept(tcp).await?).await,
    }
}

/// Runs the upgrade and the echo loop on one stream.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let request = loop {
        match parse_request(&buf) {
            Ok(Some(req)) => break req,
            Ok(None) if buf.len() < MAX_REQUEST_HEAD => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            Ok(None) => return refuse(&mut stream, 431, "Request Header Fields Too Large").await,
            Err(e) => {
                tracing::debug!("refusing upgrade: {e}");
                return refuse(&mut stream, 400, "Bad Request").await;
            }
        }
    };
    stream.write_all(&accept_response(&request.key, None)).await?;
    let config = ConnectionConfig {
        chunk_policy: ChunkPolicy::Eager,
        max_chunk: 1 << 20,
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut conn = Connection::new(config, Instant::now());
    let _ = buf.split_to(request.head_len);
    conn.read_buf().extend_from_slice(&buf);
    let mut assembler = MessageAssembler::new(MAX_MESSAGE);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out: VecDeque<Bytes> = VecDeque::new();
    loop {
        // Message by message: a close read together with a message is answered only after
        // that message's echo is queued, so the echo is not lost to the closing handshake.
        loop {
            let more = conn.process_message(Instant::now());
            while let Some(ev) = conn.poll_event() {
                if let Event::Data(chunk) = ev {
                    match assembler.push(&chunk) {
                        Ok(Some(msg)) => {
                            let _ = conn.send_frame(msg.opcode, true, &msg.payload);
                        }
                        Ok(None) => {}
                        Err(_) => conn.fail(ProtocolError::MessageTooBig(MAX_MESSAGE), Instant::now()),
                    }
                }
            }
            if !more {
                break;
            }
        }
        while let Some(bytes) = conn.poll_transmit() {
            out.push_back(bytes);
        }
        if matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
            for bytes in out {
                wr.write_all(&bytes).await?;
            }
            wr.flush().await?;
            // The server closes TCP first (RFC 6455 §7.1.1).
            return wr.shutdown().await;
        }
        let deadline = conn.poll_timeout();
        tokio::select! {
            res = wr.write(out.front().map_or(&[][..], |b| &b[..])), if !out.is_empty() => {
                let n = res?;
                if let Some(front) = out.front_mut() {
                    front.advance(n);
                    if front.is_empty() {
                        out.pop_front();
                        if out.is_empty() {
                            wr.flush().await?;
                        }
                    }
                }
            }
            res = read_into(&mut rd, &mut conn), if out.len() < 64 => {
                if res? == 0 {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                conn.handle_timeout(Instant::now());
            }
        }
    }
}

async fn read_into<R: AsyncRead + Unpin>(rd: &mut R, conn: &mut Connection) -> io::Result<usize> {
    let buf = conn.read_buf();
    buf.reserve(64 * 1024);
    rd.read_buf(buf).await
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, reason: &str) -> io::Result<()> {
    stream.write_all(&reject_response(status, reason)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsat_proto::handshake::{ClientHandshake, HandshakeRequest, HandshakeResponse};
    use wsat_proto::uri::WsUri;
    use wsat_proto::OpCode;

    /// A message and a close that arrive in one read: the echo leaves before the close
    /// reply (a client closing right after its last send still gets its echo).
    #[tokio::test]
    async fn a_message_read_together_with_a_close_is_echoed_first() {
        let uri = WsUri::parse("ws://127.0.0.1/").expect("uri");
        let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
        let mut client = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
        client.send_frame(OpCode::TEXT, true, b"last words").expect("send");
        client.close(Some(1000), "", Instant::now());
        let mut input = handshake.request().to_vec();
        while let Some(bytes) = client.poll_transmit() {
            input.extend_from_slice(&bytes);
        }

        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(echo(far));
        near.write_all(&input).await.expect("write");
        let mut output = Vec::new();
        near.read_to_end(&mut output).await.expect("read");
        server.await.expect("join").expect("the echo loop");

        let Some(HandshakeResponse::Accepted { head_len, .. }) =
            handshake.parse_response(&output, true).expect("a 101")
        else {
            panic!("no 101: {:?}", String::from_utf8_lossy(&output));
        };
        client.handle_bytes(&output[head_len..], Instant::now());
        let mut events = Vec::new();
        while let Some(ev) = client.poll_event() {
            events.push(ev);
        }
        let echo = events
            .iter()
            .position(|e| matches!(e, Event::Data(d) if d.opcode == OpCode::TEXT && &d.data[..] == b"last words"));
        let close = events
            .iter()
            .position(|e| matches!(e, Event::CloseReceived(Some(c)) if c.code == 1000));
        assert!(matches!((echo, close), (Some(e), Some(c)) if e < c), "{events:?}");
    }
}
