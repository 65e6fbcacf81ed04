//! One upgraded connection's echoes: every text or binary message is sent back with its
//! type, and reading pauses while more than a bound of echoes wait to be written, so a peer
//! that sends and never reads meets TCP backpressure instead of growing the server.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsat_proto::{ChunkPolicy, Connection, ConnectionConfig, ConnectionState, Event, MessageAssembler, Role};

use super::MAX_MESSAGE;

/// Echoes every message on an upgraded stream; `rest` holds bytes read with the request.
pub(super) async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    rest: BytesMut,
    max_queued: usize,
) -> io::Result<()> {
    let config = ConnectionConfig {
        chunk_policy: ChunkPolicy::Eager,
        max_chunk: 1 << 20,
        max_message_len: Some(MAX_MESSAGE as u64),
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut conn = Connection::new(config, Instant::now());
    conn.read_buf().extend_from_slice(&rest);
    let mut assembler = MessageAssembler::new();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Outbox::default();
    loop {
        queue_echoes(&mut conn, &mut assembler);
        out.take_from(&mut conn);
        if matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed) {
            return finish(&mut wr, out).await;
        }
        let deadline = conn.poll_timeout();
        // Reading stops while the echoes not yet written pass the bound. Writing never
        // stops, and when reading does there is something to write: the loop always waits
        // for progress it can make.
        let may_read = out.len() <= max_queued;
        tokio::select! {
            res = wr.write(out.front()), if !out.is_empty() => {
                if out.advance(res?)? {
                    wr.flush().await?;
                }
            }
            res = read_into(&mut rd, &mut conn), if may_read => {
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

/// Decodes what was read and queues each message's echo, message by message: a close read
/// together with a message is answered only after that message's echo is queued, so the
/// echo is not lost to the closing handshake.
fn queue_echoes(conn: &mut Connection, assembler: &mut MessageAssembler) {
    loop {
        let more = conn.process_message(Instant::now());
        while let Some(ev) = conn.poll_event() {
            if let Some(msg) = match ev {
                Event::Data(chunk) => assembler.push(&chunk),
                _ => None,
            } {
                let _ = conn.send_frame(msg.opcode, true, &msg.payload);
            }
        }
        if !more {
            break;
        }
    }
}

/// Writes what is left and closes TCP: the server closes first (RFC 6455 §7.1.1).
async fn finish<W: AsyncWrite + Unpin>(wr: &mut W, out: Outbox) -> io::Result<()> {
    for bytes in out.chunks {
        wr.write_all(&bytes).await?;
    }
    wr.flush().await?;
    wr.shutdown().await
}

/// Bytes taken from the connection and not yet written, with their total: the bound is
/// on bytes, since one chunk may be a 64 MiB echo or a 2-byte pong.
#[derive(Debug, Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Outbox {
    /// Moves everything `conn` has to send to the back.
    fn take_from(&mut self, conn: &mut Connection) {
        while let Some(bytes) = conn.poll_transmit() {
            self.push(bytes);
        }
    }

    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Bytes waiting.
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The next bytes to write (empty when nothing waits).
    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |b| &b[..])
    }

    /// Marks `n` bytes of [`Outbox::front`] written; `true` once nothing waits. A write of
    /// nothing from a non-empty buffer is an error (the transport is gone).
    fn advance(&mut self, n: usize) -> io::Result<bool> {
        let Some(front) = self.chunks.front_mut() else {
            return Ok(true);
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        front.advance(n);
        self.len -= n;
        if front.is_empty() {
            self.chunks.pop_front();
        }
        Ok(self.chunks.is_empty())
    }
}

async fn read_into<R: AsyncRead + Unpin>(rd: &mut R, conn: &mut Connection) -> io::Result<usize> {
    let buf = conn.read_buf();
    buf.reserve(64 * 1024);
    rd.read_buf(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo_server::{echo, echo_with, EchoOptions};
    use wsat_proto::handshake::{ClientHandshake, HandshakeRequest, HandshakeResponse};
    use wsat_proto::uri::WsUri;
    use wsat_proto::OpCode;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

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

    /// A peer that writes and does not read: the server stops reading near the bound (the
    /// peer's writes stall), and once the peer reads every echo arrives, in order.
    #[tokio::test]
    async fn a_peer_that_does_not_read_stalls_near_the_bound_and_loses_nothing() {
        const MESSAGES: usize = 64;
        const SIZE: usize = 64 * 1024;
        let (near, far) = tokio::io::duplex(16 * 1024);
        let options = EchoOptions {
            max_queued_bytes: SIZE,
            ..EchoOptions::default()
        };
        let server = tokio::spawn(async move { echo_with(far, &options).await });
        let (mut rd, mut wr) = tokio::io::split(near);
        let uri = WsUri::parse("ws://127.0.0.1/").expect("uri");
        let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
        wr.write_all(handshake.request()).await.expect("write");
        let mut client = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
        let mut head = BytesMut::new();
        let head_len = loop {
            rd.read_buf(&mut head).await.expect("read");
            if let Some(HandshakeResponse::Accepted { head_len, .. }) =
                handshake.parse_response(&head, true).expect("ok")
            {
                break head_len;
            }
        };
        client.read_buf().extend_from_slice(&head[head_len..]);

        let written = Arc::new(AtomicUsize::new(0));
        let progress = written.clone();
        let writer = tokio::spawn(async move {
            let mut sender = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
            for i in 0..MESSAGES {
                sender
                    .send_frame(OpCode::BINARY, true, &vec![i as u8; SIZE])
                    .expect("open");
                while let Some(bytes) = sender.poll_transmit() {
                    wr.write_all(&bytes).await?;
                    progress.fetch_add(bytes.len(), Ordering::Relaxed);
                }
            }
            io::Result::Ok(wr)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stalled_at = written.load(Ordering::Relaxed);
        assert!(
            stalled_at < 8 * SIZE,
            "the server read {stalled_at} bytes nobody took back"
        );

        let mut assembler = MessageAssembler::new();
        let mut echoed = 0;
        while echoed < MESSAGES {
            client.process(Instant::now());
            while let Some(ev) = client.poll_event() {
                if let Event::Data(chunk) = ev {
                    if let Some(msg) = assembler.push(&chunk) {
                        assert!(msg.payload[..] == vec![echoed as u8; SIZE][..], "echo {echoed}");
                        echoed += 1;
                    }
                }
            }
            if echoed < MESSAGES {
                let read = tokio::time::timeout(Duration::from_secs(5), rd.read_buf(client.read_buf()));
                assert!(
                    read.await.expect("an echo in time").expect("read") > 0,
                    "the server left"
                );
            }
        }
        drop(writer.await.expect("join").expect("the whole upload is written"));
        drop(rd);
        server.await.expect("join").expect("a clean end");
    }
}
