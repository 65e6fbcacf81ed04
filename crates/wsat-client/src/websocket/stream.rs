//! `futures::Stream` and `Sink` for [`WebSocket`] and its halves (cargo feature `stream`):
//! the same poll steps as the `async fn`s.
//!
//! The stream yields whole messages like `recv` (cancel-safe, ends with `None`; an error
//! comes once before the end). The sink takes messages: `poll_ready` waits while more than
//! `max_write_buffer` bytes are unwritten, `start_send` queues a frame without writing, so
//! that `feed` after `feed` then one `flush` leaves in few writes; `poll_close` sends a
//! close frame with code 1000 and flushes. As with tokio-tungstenite, the closing handshake
//! then completes on the receiving side: keep polling the stream until it ends (or use
//! [`WebSocket::close`], which waits for it).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use wsat_proto::close::NORMAL;
use wsat_proto::{ConnectionState, Message};

use super::core::{Core, Messages};
use super::{WebSocket, WebSocketReader, WebSocketWriter};
use crate::ClientError;

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().core.poll_recv::<Messages>(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketReader<S> {
    type Item = Result<Message, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.lock().poll_recv::<Messages>(cx)
    }
}

/// `Sink::poll_close`: a close frame with 1000, flushed; nothing to do on a failed connection.
fn poll_close<S: AsyncRead + AsyncWrite + Unpin>(
    core: &mut Core<S>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), ClientError>> {
    if core.state() == ConnectionState::Failed {
        return Poll::Ready(Ok(()));
    }
    core.start_close(Some(NORMAL), "")?;
    ready!(core.poll_flush(cx))?;
    Poll::Ready(Ok(()))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = ClientError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.get_mut().core.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), ClientError> {
        self.get_mut().core.queue(message.opcode, true, &message.payload)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.get_mut().core.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        poll_close(&mut self.get_mut().core, cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<S> {
    type Error = ClientError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.lock().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), ClientError> {
        self.lock().queue(message.opcode, true, &message.payload)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.lock().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        poll_close(&mut self.lock(), cx)
    }
}
