//! One connection up to its echo loop: TLS (if any) and the upgrade request, answered or
//! refused, all before a deadline so a peer that stalls cannot hold a descriptor and a slot;
//! also [`echo`] and [`echo_with`], the same for a stream accepted elsewhere.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use wsat_proto::handshake::{accept_response_with_extensions, parse_request, reject_response};
use wsat_proto::{DeflateConfig, NegotiatedDeflate};

use super::echo_loop::echo_loop;
use super::slots::{evicted, Slot};
use super::EchoOptions;

const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// One accepted connection: TLS (if any) and the upgrade before `deadline`, unless evicted
/// first, then the echo loop.
pub(super) async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    slot: Slot,
    deadline: Instant,
    options: &EchoOptions,
) -> io::Result<()> {
    let Slot { permit: _permit, evict } = slot;
    tcp.set_nodelay(true)?;
    let deflate = options.deflate.as_ref();
    match tls {
        None => echo_after(upgrade(tcp, deflate), deadline, Some(evict), options).await,
        Some(acceptor) => {
            let opening = async move { upgrade(acceptor.accept(tcp).await?, deflate).await };
            echo_after(opening, deadline, Some(evict), options).await
        }
    }
}

/// Runs the upgrade and the echo loop on one stream with the default [`EchoOptions`]: the
/// upgrade must complete within
/// [`DEFAULT_HANDSHAKE_TIMEOUT`](super::DEFAULT_HANDSHAKE_TIMEOUT), and echoes queue up
/// to [`DEFAULT_MAX_QUEUED_BYTES`](super::DEFAULT_MAX_QUEUED_BYTES) (the connection limit
/// is the server's business).
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> io::Result<()> {
    echo_with(stream, &EchoOptions::default()).await
}

/// [`echo`] with `options`: the upgrade must complete within `handshake_timeout` of this
/// call (else an error of kind `TimedOut`), reading pauses while more than
/// `max_queued_bytes` of echoes wait to be written, messages are limited to `max_message`,
/// and permessage-deflate is negotiated with `deflate`.
pub async fn echo_with<S: AsyncRead + AsyncWrite + Unpin>(stream: S, options: &EchoOptions) -> io::Result<()> {
    let deadline = deadline_after(options.handshake_timeout);
    echo_after(upgrade(stream, options.deflate.as_ref()), deadline, None, options).await
}

/// The instant `timeout` from now; a timeout too long to represent is taken as 30 years.
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    Instant::now() + timeout.min(FAR)
}

/// A stream whose upgrade completed, with the bytes that followed the request and the
/// permessage-deflate parameters agreed, if any.
struct Upgraded<S> {
    stream: S,
    rest: BytesMut,
    deflate: Option<NegotiatedDeflate>,
}

/// Runs `opening` until `deadline` (an error of kind `TimedOut` after it), or until
/// `evict` fires, then echoes on the upgraded stream.
async fn echo_after<S, F>(
    opening: F,
    deadline: Instant,
    evict: Option<oneshot::Receiver<()>>,
    options: &EchoOptions,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = io::Result<Option<Upgraded<S>>>>,
{
    let upgraded = tokio::select! {
        res = tokio::time::timeout_at(deadline.into(), opening) => {
            res.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timeout"))??
        }
        () = evicted(evict) => return Err(io::Error::other("closed in its handshake to make room")),
    };
    match upgraded {
        Some(Upgraded { stream, rest, deflate }) => echo_loop(stream, rest, deflate, options).await,
        None => Ok(()),
    }
}

/// Reads the upgrade request and answers it: the upgraded stream, or `None` when the peer
/// left or was refused (400, 431). With `deflate`, the first permessage-deflate offer it can
/// honour is accepted (malformed ones are declined); without, every offer is declined.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    deflate: Option<&DeflateConfig>,
) -> io::Result<Option<Upgraded<S>>> {
    let mut buf = BytesMut::with_capacity(4096);
    let request = loop {
        match parse_request(&buf) {
            Ok(Some(req)) => break req,
            Ok(None) if buf.len() < MAX_REQUEST_HEAD => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(None);
                }
            }
            Ok(None) => {
                refuse(&mut stream, 431, "Request Header Fields Too Large").await?;
                return Ok(None);
            }
            Err(e) => {
                tracing::debug!("refusing upgrade: {e}");
                refuse(&mut stream, 400, "Bad Request").await?;
                return Ok(None);
            }
        }
    };
    let negotiated = deflate.and_then(|config| request.deflate(config));
    let extensions = negotiated.as_ref().map(|n| n.response());
    let response = accept_response_with_extensions(&request.key, None, extensions.as_deref());
    stream.write_all(&response).await?;
    stream.flush().await?;
    let _ = buf.split_to(request.head_len);
    Ok(Some(Upgraded {
        stream,
        rest: buf,
        deflate: negotiated,
    }))
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, reason: &str) -> io::Result<()> {
    stream.write_all(&reject_response(status, reason)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handshake_timeout_ends_a_half_sent_request() {
        let (mut near, far) = tokio::io::duplex(4096);
        let options = EchoOptions {
            handshake_timeout: Duration::from_millis(100),
            ..EchoOptions::default()
        };
        let started = Instant::now();
        let server = tokio::spawn(async move { echo_with(far, &options).await });
        near.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        let ended = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server gave up")
            .expect("join");
        assert_eq!(ended.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(100));
        let mut rest = Vec::new();
        near.read_to_end(&mut rest).await.expect("the stream ends");
        assert_eq!(rest, b"", "nothing is answered");
    }

    /// A request head that never ends is answered 431 at 16 KiB, not buffered on.
    #[tokio::test]
    async fn an_endless_request_head_is_refused_at_its_limit() {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { echo(far).await });
        near.write_all(b"GET / HTTP/1.1\r\nX-Filler: ").await.expect("write");
        let filler = vec![b'x'; MAX_REQUEST_HEAD];
        near.write_all(&filler).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), near.read_to_end(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        assert!(
            answer.starts_with(b"HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        server.await.expect("join").expect("a refusal is no error");
    }
}
