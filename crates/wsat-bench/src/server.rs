//! The benchmark's echo server: one thread, a WebSocket echo and a plain TCP echo.
//!
//! The WebSocket side echoes frame by frame as the bytes arrive (header first, then the
//! unmasked payload chunks), on wsat-proto's decoder, so the server never holds a whole
//! message and costs little more than the TCP echo: what is measured is the client.
//!
//! permessage-deflate (RFC 7692) is accepted when a client offers it, and compressed frames
//! are echoed byte for byte with RSV1 kept: the client's compressed stream comes back to
//! it as it was sent. That is a valid server stream under the negotiated parameters (the
//! server keeps its context, as the client does, and the client's window is at most 15
//! bits, which its inflater takes), so the client's inflater sees exactly what its deflater
//! produced and the server never inflates nor deflates: with compression on, the figures
//! are still the client's.
//!
//! A third listener reports the bytes the echoes have read and written so far
//! ([`WireCounters`]), so that a client process can tell the bytes on the wire over its
//! measured interval.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsat_proto::handshake::{accept_response_with_extensions, parse_request};
use wsat_proto::{ChunkPolicy, DecoderConfig, DeflateConfig, FrameDecoder, FrameHeader, Item, OpCode, Role};

const READ_CHUNK: usize = 256 * 1024;
/// Payload pieces above this are written straight from the read buffer, not copied.
const COPY_LIMIT: usize = 16 * 1024;

/// The RSV bit of permessage-deflate (RSV1, as the low three bits of a header's `rsv`).
const RSV1: u8 = 0b100;

/// TCP payload bytes read from and written to clients by both echoes since the server
/// started (upgrade requests and responses included): one client process runs at a time,
/// so the difference over its measured interval is its traffic.
static WIRE_IN: AtomicU64 = AtomicU64::new(0);
static WIRE_OUT: AtomicU64 = AtomicU64::new(0);

/// What the stats listener answers: `in=N out=N` (bytes so far), one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireCounters {
    /// Bytes the echoes read from clients.
    pub bytes_in: u64,
    /// Bytes the echoes wrote to clients.
    pub bytes_out: u64,
}

impl WireCounters {
    /// The stats listener's line.
    pub fn to_line(self) -> String {
        format!("in={} out={}\n", self.bytes_in, self.bytes_out)
    }

    /// Parses [`WireCounters::to_line`].
    pub fn from_line(line: &str) -> Option<WireCounters> {
        let mut c = WireCounters::default();
        let mut seen = 0;
        for pair in line.split_whitespace() {
            match pair.split_once('=')? {
                ("in", v) => c.bytes_in = v.parse().ok()?,
                ("out", v) => c.bytes_out = v.parse().ok()?,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 2).then_some(c)
    }

    /// Both directions together.
    pub fn total(self) -> u64 {
        self.bytes_in + self.bytes_out
    }

    /// Asks the stats listener at `addr` (a client process does, at both ends of its
    /// measured interval).
    pub async fn query(addr: &str) -> io::Result<WireCounters> {
        let mut s = TcpStream::connect(addr).await?;
        let mut line = String::new();
        s.read_to_string(&mut line).await?;
        WireCounters::from_line(&line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, line))
    }
}

fn counted_in(n: usize) {
    WIRE_IN.fetch_add(n as u64, Ordering::Relaxed);
}

async fn write_counted(s: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    WIRE_OUT.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    s.write_all(bytes).await
}

/// Binds the three listeners on 127.0.0.1, prints `READY ws=ADDR tcp=ADDR stats=ADDR` on
/// stdout and serves until stdin closes (the orchestrator ended).
pub async fn serve() -> io::Result<()> {
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let stats = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "READY ws={} tcp={} stats={}",
        ws.local_addr()?,
        tcp.local_addr()?,
        stats.local_addr()?
    );
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
    let answer_stats = async {
        loop {
            let (mut s, _) = stats.accept().await?;
            let counters = WireCounters {
                bytes_in: WIRE_IN.load(Ordering::Relaxed),
                bytes_out: WIRE_OUT.load(Ordering::Relaxed),
            };
            // A line is far below the socket buffer: this write does not wait.
            let _ = s.write_all(counters.to_line().as_bytes()).await;
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
        r = answer_stats => r,
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
        counted_in(n);
        write_counted(&mut s, &buf[..n]).await?;
    }
}

async fn ws_echo(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let request = loop {
        match parse_request(&buf) {
            Ok(Some(req)) => break req,
            Ok(None) if buf.len() < 16 * 1024 => {
                let n = s.read_buf(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                counted_in(n);
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad upgrade request")),
        }
    };
    // Accept permessage-deflate when offered (the default answer: no window limits asked of
    // the client, no context reset), and echo its compressed frames as they are.
    let deflate = request.deflate(&DeflateConfig::default());
    let extensions = deflate.as_ref().map(|d| d.response());
    write_counted(
        &mut s,
        &accept_response_with_extensions(&request.key, None, extensions.as_deref()),
    )
    .await?;
    let _ = buf.split_to(request.head_len);
    let mut decoder = FrameDecoder::new(DecoderConfig {
        role: Role::Server,
        strict: true,
        max_chunk: READ_CHUNK,
        chunk_policy: ChunkPolicy::Eager,
        max_frame_len: None,
    });
    if deflate.is_some() {
        // RSV1 marks a compressed message (on its first frame); other RSV bits still fail.
        decoder.allow_rsv(RSV1);
    }
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
                    // RSV1 as it came: a compressed message goes back compressed.
                    FrameHeader {
                        rsv: h.rsv,
                        ..FrameHeader::new(h.fin, h.opcode, None, h.payload_len)
                    }
                    .encode(&mut out);
                }
                Some(Item::Payload(p)) => match control.as_mut() {
                    Some((_, data)) => data.extend_from_slice(&p),
                    None if p.len() > COPY_LIMIT => {
                        write_counted(&mut s, &out).await?;
                        out.clear();
                        write_counted(&mut s, &p).await?;
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
                            write_counted(&mut s, &out).await?;
                            return s.shutdown().await;
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            write_counted(&mut s, &out).await?;
            out.clear();
        }
        buf.reserve(READ_CHUNK);
        let n = s.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        counted_in(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_counters_line_round_trips() {
        let c = WireCounters {
            bytes_in: 12,
            bytes_out: 34,
        };
        assert_eq!(c.to_line(), "in=12 out=34\n");
        assert_eq!(WireCounters::from_line(&c.to_line()), Some(c));
        assert_eq!(c.total(), 46);
        for bad in ["", "in=1", "in=1 out=x", "in=1 out=2 up=3"] {
            assert_eq!(WireCounters::from_line(bad), None, "{bad:?}");
        }
    }
}
