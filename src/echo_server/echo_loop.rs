//! One upgraded connection's echoes: every text or binary message is sent back with its
//! type, and reading pauses while more than a bound of echoes wait to be written, so a peer
//! that sends and never reads meets TCP backpressure instead of growing the server.
//!
//! With permessage-deflate agreed, messages arrive inflated and their echoes leave
//! compressed by the connection's own compressor. Every ping gets its own pong, in order,
//! however many arrive in one read: the echoes' bytes are taken from the connection after
//! each message or control frame, so no pong waits at the end of its queue for a newer one
//! to replace it (which RFC 6455 §5.5.3 allows, but peers such as Autobahn's 2.10 and 2.11
//! count every pong).

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsat_proto::{
    ChunkPolicy, Connection, ConnectionConfig, ConnectionState, Event, MessageAssembler, NegotiatedDeflate, Role,
};

use super::EchoOptions;

/// Echoes every message on an upgraded stream; `rest` holds bytes read with the request,
/// `deflate` the permessage-deflate parameters agreed in it.
pub(super) async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    rest: BytesMut,
    deflate: Option<NegotiatedDeflate>,
    options: &EchoOptions,
) -> io::Result<()> {
    let max_queued = options.max_queued_bytes;
    let config = ConnectionConfig {
        chunk_policy: ChunkPolicy::Eager,
        max_chunk: 1 << 20,
        max_message_len: Some(options.max_message as u64),
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut conn = Connection::with_deflate(config, deflate, Instant::now());
    conn.read_buf().extend_from_slice(&rest);
    let mut assembler = MessageAssembler::new();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Outbox::default();
    loop {
        queue_echoes(&mut conn, &mut assembler, &mut out);
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
/// echo is not lost to the closing handshake. What the connection has to send is taken
/// after every step (a message or a control frame), so each ping's pong is kept: left in
/// the connection, a pong would be replaced by the next ping's.
fn queue_echoes(conn: &mut Connection, assembler: &mut MessageAssembler, out: &mut Outbox) {
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
        out.take_from(conn);
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
/// on bytes, since one chunk may be a 64 MiB echo or a 2-byte pong. Small takes (pongs,
/// short echoes) are joined into buffers of up to [`Outbox::JOIN`] bytes, so a flood of
/// pings costs the server about the pongs' bytes, not a buffer per pong.
#[derive(Debug, Default)]
struct Outbox {
    chunks: VecDeque<BytesMut>,
    len: usize,
}

impl Outbox {
    /// Takes join the last buffer while it stays within this size.
    const JOIN: usize = 64 * 1024;

    /// Moves everything `conn` has to send to the back.
    fn take_from(&mut self, conn: &mut Connection) {
        while conn.wants_transmit() {
            let waiting = conn.transmit_len();
            let before = self.chunks.back().map_or(0, |b| b.len());
            match self.chunks.back_mut() {
                // Only a small take is copied onto the last buffer; a large one (an echo)
                // gets a buffer of its own, swapped out of the connection without a copy.
                Some(back) if before + waiting <= Self::JOIN => {
                    conn.transmit_into(back);
                    self.len += back.len() - before;
                }
                _ => {
                    let mut bytes = BytesMut::new();
                    conn.transmit_into(&mut bytes);
                    self.len += bytes.len();
                    self.chunks.push_back(bytes);
                }
            }
        }
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

    /// Runs the echo loop on what `send` queues on a client connection (after the upgrade
    /// request), all of it arriving in one read, and returns the events the client decodes
    /// from everything the server wrote until it closed.
    async fn one_read_exchange(send: impl FnOnce(&mut Connection)) -> Vec<Event> {
        let uri = WsUri::parse("ws://127.0.0.1/").expect("uri");
        let handshake = ClientHandshake::new(&HandshakeRequest::for_uri(&uri));
        let mut client = Connection::new(ConnectionConfig::rfc(Role::Client), Instant::now());
        send(&mut client);
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
        std::iter::from_fn(|| client.poll_event()).collect()
    }

    /// A message and a close that arrive in one read: the echo leaves before the close
    /// reply (a client closing right after its last send still gets its echo).
    #[tokio::test]
    async fn a_message_read_together_with_a_close_is_echoed_first() {
        let events = one_read_exchange(|client| {
            client.send_frame(OpCode::TEXT, true, b"last words").expect("send");
            client.close(Some(1000), "", Instant::now());
        })
        .await;
        let echo = events
            .iter()
            .position(|e| matches!(e, Event::Data(d) if d.opcode == OpCode::TEXT && &d.data[..] == b"last words"));
        let close = events
            .iter()
            .position(|e| matches!(e, Event::CloseReceived(Some(c)) if c.code == 1000));
        assert!(matches!((echo, close), (Some(e), Some(c)) if e < c), "{events:?}");
    }

    /// Ten pings that arrive in one read, then a close: ten pongs come back, each with its
    /// ping's payload, in order (Autobahn 2.10 and 2.11 count them), before the close reply.
    #[tokio::test]
    async fn every_ping_read_at_once_gets_its_pong() {
        const PINGS: u8 = 10;
        let events = one_read_exchange(|client| {
            for i in 0..PINGS {
                client.send_frame(OpCode::PING, true, &[b'p', i]).expect("send");
            }
            client.close(Some(1000), "", Instant::now());
        })
        .await;
        let mut pongs = Vec::new();
        let mut closed_after = None;
        for ev in events {
            match ev {
                Event::Data(d) if d.opcode == OpCode::PONG => pongs.push(d.data.to_vec()),
                Event::CloseReceived(_) => closed_after = Some(pongs.len()),
                _ => {}
            }
        }
        let expected: Vec<Vec<u8>> = (0..PINGS).map(|i| vec![b'p', i]).collect();
        assert_eq!(pongs, expected, "one pong per ping, in order");
        assert_eq!(
            closed_after,
            Some(PINGS as usize),
            "the close reply comes after every pong"
        );
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
