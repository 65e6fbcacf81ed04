//! Scripted TCP peers on loopback, for the server behaviour real servers do not produce on
//! demand: a [`ScriptedPeer`] runs a test's handler for every accepted connection, and the
//! handler uses [`read_request`], [`accept_upgrade`], [`redirect`] and [`drain`] (and
//! [`crate::frames`] to send frames).
//!
//! A peer runs on a one-worker tokio runtime of its own, so synchronous tests (the blocking
//! AT host) and async tests (the client library) use it alike, and dropping it stops it and
//! every connection it holds, whenever the test drops it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsat_proto::handshake::{accept_response, parse_request, ServerRequest};

/// The longest request head [`read_request`] reads before giving up.
pub const MAX_HEAD: usize = 64 * 1024;

/// A scripted server on `127.0.0.1:0`; see the module documentation.
pub struct ScriptedPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl ScriptedPeer {
    /// Starts serving: `handler(stream, n)` runs as its own task for the n-th accepted
    /// connection (0, 1, …), with `TCP_NODELAY` set.
    pub fn start<F, Fut>(handler: F) -> ScriptedPeer
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the scripted peer's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("bound");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        rt.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let n = count.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(handler(tcp, n));
            }
        });
        ScriptedPeer {
            addr,
            accepted,
            rt: Some(rt),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT`
    pub fn uri(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        // Does not block, so it is fine inside an async test too.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// An HTTP request as [`read_request`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request head: request line, headers and the blank line that ends them.
    pub head: Vec<u8>,
    /// The bytes that followed the head in the same reads (e.g. frames a client sent
    /// before the `101`).
    pub after: Vec<u8>,
}

impl Request {
    /// The head as text (lossy).
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The head, asserting that nothing followed it: for a client that waits for the `101`
    /// before it sends frames (the modem does).
    pub fn head_only(self) -> Vec<u8> {
        assert!(
            self.after.is_empty(),
            "the client sent {} bytes before the 101",
            self.after.len()
        );
        self.head
    }

    /// The head parsed as a WebSocket upgrade request; `None` if it is not one.
    pub fn upgrade(&self) -> Option<ServerRequest> {
        parse_request(&self.head).ok().flatten()
    }
}

/// Reads an HTTP request head (up to the blank line, at most [`MAX_HEAD`] bytes); `None`
/// if the stream ends, fails or sends more than that first.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let after = buf.split_off(end + 4);
            return Some(Request { head: buf, after });
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Reads the client's upgrade request and answers `101` with the right
/// `Sec-WebSocket-Accept`; returns the request, whose [`Request::after`] holds the bytes
/// that followed it. Panics (ending the handler) if the client leaves first or does not send
/// an upgrade request.
pub async fn accept_upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Request {
    let request = read_request(stream).await.expect("the client left during the upgrade");
    let upgrade = request
        .upgrade()
        .unwrap_or_else(|| panic!("not an upgrade request: {:?}", request.head_text()));
    stream
        .write_all(&accept_response(&upgrade.key, None))
        .await
        .expect("write 101");
    request
}

/// A `302 Found` answer sending the client to `location`.
pub fn redirect_response(location: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// Writes [`redirect_response`]`(location)`; errors are ignored (the client may be gone).
pub async fn redirect<S: AsyncWrite + Unpin>(stream: &mut S, location: &str) {
    let _ = stream.write_all(&redirect_response(location)).await;
}

/// Reads and discards until the other side closes (or the stream fails); answers nothing,
/// not even pings.
pub async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_upgrades_and_reports_what_followed() {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let peer = ScriptedPeer::start(move |mut tcp, n| {
            let tx = tx.lock().expect("lock").clone();
            async move {
                let request = accept_upgrade(&mut tcp).await;
                let _ = tx.send((n, request));
                drain(&mut tcp).await;
            }
        });
        let mut tcp = std::net::TcpStream::connect(peer.addr()).expect("connect");
        let request = b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        std::io::Write::write_all(&mut tcp, &[&request[..], b"tail"].concat()).expect("write");
        let (n, got) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the peer reports");
        assert_eq!(
            (n, got.head.as_slice(), got.after.as_slice()),
            (0, &request[..], &b"tail"[..])
        );
        assert_eq!(got.upgrade().expect("an upgrade").target, "/x");
        let mut answer = [0u8; 12];
        std::io::Read::read_exact(&mut tcp, &mut answer).expect("the 101");
        assert_eq!(&answer, b"HTTP/1.1 101");
        assert_eq!(peer.accepted(), 1);
    }
}
