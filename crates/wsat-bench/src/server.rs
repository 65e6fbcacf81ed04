//! The benchmark's echo server: one thread, a WebSocket echo and a plain TCP echo.
//!
//! The WebSocket side echoes frame by frame as the bytes arrive (header first, then the
//! unmasked payload chunks), on wsat-proto's decoder, so the server never holds a whole
//! message and costs little more than the TCP echo: what is measured is the client.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsat_proto::handshake::{accept_response, parse_request};
use wsat_proto::{ChunkPolicy, DecoderConfig, FrameDecoder, FrameHeader, Item, OpCode, Role};

const READ_CHUNK: usize = 256 * 1024;
/// Payload pieces above this are written straight from the read buffer, not copied.
const COPY_LIMIT: usize = 16 * 1024;

/// Binds both listeners on 127.0.0.1, prints `READY ws=ADDR tcp=ADDR` on stdout and
/// serves until stdin closes (the orchestrator ended).
pub async fn serve() -> io::Result<()> {
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    println!("READY ws={} tcp={}", ws.local_addr()?, tcp.local_addr()?);
    let accept_ws = async {
        loop {
            let (s, _) = ws.accept().await?;
            tokio::task::spawn_local(async move {
                if let Err(e) = ws_echo(s).await {
                    tracing::debug!("ws echo ended: {e}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), io::Error>(())
    };
    let accept_tcp = async {
        loop {
            let (s, _) = tcp.accept().await?;
            tokio::task::spawn_local(async move {
                let _ = tcp_echo(s).await;
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), io::Error>(())
    };
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        while std::io::Read::read(&mut std::io::stdin(), &mut sink).is_ok_and(|n| n > 0) {}
    });
    tokio::select! {
        r = accept_ws => r,
        r = accept_tcp => r,
        _ = stdin_closed => Ok(()),
    }
}

async fn tcp_echo(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

async fn ws_echo(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let request = loop {
        match parse_request(&buf) {
            Ok(Some(req)) => break req,
            Ok(None) if buf.len() < 16 * 1024 => {
                if s.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad upgrade request")),
        }
    };
    s.write_all(&accept_response(&request.key, None)).await?;
    let _ = buf.split_to(request.head_len);
    let mut decoder = FrameDecoder::new(DecoderConfig {
        role: Role::Server,
        strict: true,
        max_chunk: READ_CHUNK,
        chunk_policy: ChunkPolicy::Eager,
        max_frame_len: None,
    });
    let mut out = Vec::with_capacity(64 * 1024);
    let mut control: Option<(FrameHeader, Vec<u8>)> = None;
    loop {
        loop {
            let item = decoder
                .decode(&mut buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match item {
                None => break,
                Some(Item::Start(h)) if h.opcode.is_control() => control = Some((h, Vec::new())),
                Some(Item::Start(h)) => {
                    FrameHeader::new(h.fin, h.opcode, None, h.payload_len).encode(&mut out);
                }
                Some(Item::Payload(p)) => match control.as_mut() {
                    Some((_, data)) => data.extend_from_slice(&p),
                    None if p.len() > COPY_LIMIT => {
                        s.write_all(&out).await?;
                        out.clear();
                        s.write_all(&p).await?;
                    }
                    None => out.extend_from_slice(&p),
                },
                Some(Item::End) => {
                    if let Some((h, data)) = control.take() {
                        let reply = if h.opcode == OpCode::PING {
                            OpCode::PONG
                        } else {
                            h.opcode
                        };
                        if reply != OpCode::PONG || h.opcode == OpCode::PING {
                            wsat_proto::encode::encode_frame(&mut out, reply, true, None, &data);
                        }
                        if h.opcode == OpCode::CLOSE {
                            s.write_all(&out).await?;
                            return s.shutdown().await;
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        buf.reserve(READ_CHUNK);
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}
