//! A [`WebSocket`] split into a reader and a writer, for two tasks.
//!
//! Design: both halves share the one connection state (`Core`: the protocol, the transport,
//! the bytes waiting to be written) behind an `Arc<Mutex<..>>`. Every operation is a poll
//! function that locks, does what can be done without waiting (decode, one non-blocking
//! read or write, a flush), and unlocks before it returns `Pending`: the lock is never held
//! across an `.await`, so neither half ever waits for the other's I/O — a writer does not
//! block behind a pending read, and the reader writes its own pongs and close replies
//! while the writer is idle. Whichever half writes moves every queued byte (its own and the
//! other's, in order) and wakes the other half if it was waiting to write. A transport keeps
//! one write waker, the last poller's, so it is given one waker for both halves that wakes
//! each half waiting to write (as tokio-tungstenite's proxy waker does): neither half's
//! wake-up depends on the other polling again. A close sent by the writer wakes the reader,
//! which then watches the close timeout.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use wsat_proto::close::CloseFrame;
use wsat_proto::{ConnectionState, DataChunk, Message, OpCode};

use super::core::{Chunks, Core, Messages};
use super::{control_payload, WebSocket};
use crate::ClientError;

/// The receiving half of a [`WebSocket`] ([`WebSocket::split`]): `recv`, `recv_chunk`, a
/// `futures::Stream` of messages. It answers pings, runs the keepalive timers and
/// completes the closing handshake, whatever the writer half does; keep receiving until
/// `None`.
pub struct WebSocketReader<S> {
    shared: Arc<Mutex<Core<S>>>,
}

/// The sending half of a [`WebSocket`] ([`WebSocket::split`]): the send methods, `flush`,
/// `close` and a `futures::Sink` of messages. Its sends never wait for the reader.
pub struct WebSocketWriter<S> {
    shared: Arc<Mutex<Core<S>>>,
}

fn lock<S>(shared: &Mutex<Core<S>>) -> MutexGuard<'_, Core<S>> {
    // A panic while locked leaves no broken invariant worth a second panic: the state is
    // only ever changed by complete steps.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits the connection into a reader and a writer that two tasks can drive at once
    /// (see [`WebSocketReader`], [`WebSocketWriter`]); [`WebSocketReader::reunite`] puts
    /// them back together.
    pub fn split(self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        let shared = Arc::new(Mutex::new(self.core));
        (WebSocketReader { shared: shared.clone() }, WebSocketWriter { shared })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// [`WebSocket::recv`]: the next whole message; cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, ClientError>> {
        poll_fn(|cx| self.lock().poll_recv::<Messages>(cx)).await
    }

    /// [`WebSocket::recv_chunk`]: the next chunk of at most `buffer_size` bytes;
    /// cancel-safe.
    pub async fn recv_chunk(&mut self) -> Option<Result<DataChunk, ClientError>> {
        poll_fn(|cx| self.lock().poll_recv::<Chunks>(cx)).await
    }

    /// The server's close frame, once it came.
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.lock().close_frame().cloned()
    }

    /// Puts the halves back together; gives them back if they are not of one connection.
    pub fn reunite(self, writer: WebSocketWriter<S>) -> Result<WebSocket<S>, (Self, WebSocketWriter<S>)> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err((self, writer));
        }
        drop(writer);
        match Arc::try_unwrap(self.shared) {
            Ok(core) => Ok(WebSocket {
                core: core.into_inner().unwrap_or_else(PoisonError::into_inner),
            }),
            // Unreachable: the two halves held the only references.
            Err(shared) => Err((WebSocketReader { shared: shared.clone() }, WebSocketWriter { shared })),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Core<S>> {
        lock(&self.shared)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// [`WebSocket::send`]: one message, written and flushed.
    pub async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.send_frame(message.opcode, true, message.payload).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        self.send_frame(OpCode::TEXT, true, Bytes::from(text.into())).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        self.send_frame(OpCode::BINARY, true, data).await
    }

    /// [`WebSocket::send_frame`]: exactly one frame, nothing checked.
    pub async fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let mut frame = Some((opcode, fin, payload.into()));
        poll_fn(|cx| self.lock().poll_send(cx, &mut frame)).await
    }

    /// [`WebSocket::ping`]: a ping of at most 125 bytes.
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let payload = control_payload(payload.into())?;
        self.send_frame(OpCode::PING, true, payload).await
    }

    /// Writes and flushes everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        poll_fn(|cx| self.lock().poll_flush(cx)).await
    }

    /// Starts the closing handshake: sends a close frame with `code` (none sends an empty
    /// one) and `reason`, and flushes. The handshake completes in the reader half: its
    /// `recv` returns `None` once the server answered (or an error after `close_timeout`).
    pub async fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        self.lock().start_close(code, reason)?;
        self.flush().await
    }

    /// Whether frames may still be sent.
    pub fn is_open(&self) -> bool {
        self.lock().state() == ConnectionState::Open
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Core<S>> {
        lock(&self.shared)
    }
}

impl<S> fmt::Debug for WebSocketReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketReader").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WebSocketWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketWriter").finish_non_exhaustive()
    }
}
