//! Reading a transport into a connection's receive buffer.

use tokio::io::{AsyncRead, AsyncReadExt};
use wsat_proto::Connection;

/// A read goes into the receive buffer's spare room if it has at least this much (or what
/// the decoder still needs, if more); otherwise room is made first.
const READ_MIN_ROOM: usize = 16 * 1024;

/// The room made for small reads: at least this much at a time.
const READ_RESERVE: usize = 64 * 1024;

/// Reads into a connection's receive buffer, keeping a large allocation for the next
/// large message.
///
/// Received messages are cut from the receive buffer without a copy, so its allocation is
/// shared until the application drops them. After a large message, making room at once
/// (while that message may still be alive) would allocate anew for every message and fault
/// fresh pages in; reading into a small scratch buffer first defers the decision until
/// bytes arrive, by when the message is usually gone and the buffer takes its allocation
/// back. Small messages skip that copy: a new small allocation is cheap.
pub(crate) struct Reader {
    scratch: Vec<u8>,
    /// The receive buffer's last allocation was made for a large chunk.
    large: bool,
}

impl Reader {
    pub(crate) fn new() -> Self {
        Reader {
            scratch: Vec::new(),
            large: false,
        }
    }

    /// Reads what the transport has into `connection`'s receive buffer (0 at its end).
    ///
    /// Cancel-safe, and safe to poll once and drop (the caller-task `WebSocket` does): until
    /// the read completes nothing has changed but the buffer's spare room; once it has, the
    /// bytes are in the buffer before the future returns.
    pub(crate) async fn read<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        rd: &mut R,
        connection: &mut Connection,
    ) -> std::io::Result<usize> {
        let hint = connection.read_hint();
        let buf = connection.read_buf();
        let need = hint.max(READ_MIN_ROOM);
        if buf.capacity() - buf.len() >= need || buf.try_reclaim(need) {
            return rd.read_buf(buf).await;
        }
        if hint > READ_RESERVE {
            // A large chunk is awaited: room for all of it at once, not by doubling.
            buf.reserve(hint);
            self.large = true;
            return rd.read_buf(buf).await;
        }
        if !self.large {
            buf.reserve(READ_RESERVE);
            return rd.read_buf(buf).await;
        }
        self.scratch.resize(READ_MIN_ROOM, 0);
        let n = rd.read(&mut self.scratch).await?;
        if !buf.try_reclaim(n) {
            // Still shared after all: a new, small allocation.
            buf.reserve(n.max(READ_RESERVE));
            self.large = false;
        }
        buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}
