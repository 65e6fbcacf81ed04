//! The state of one caller-task connection and its poll functions: everything a
//! [`super::WebSocket`] (or its two halves) does, as `poll_*` steps on `&mut self`.
//!
//! All state lives here, none in a future: the protocol ([`Connection`], which holds the
//! bytes read and not yet decoded and the frames queued and not yet taken), the bytes taken
//! and not yet written (`out`), a message being joined, a chunk being cut. A poll function
//! that returns `Pending` has changed nothing that the next call would not see, so the
//! futures built on them can be dropped at any point (cancel-safe `recv`), and the same
//! functions serve the `async fn`s, `Stream` and `Sink`, and both halves of a split.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wsat_proto::close::CloseFrame;
use wsat_proto::{Connection, ConnectionState, DataChunk, Event, Message, MessageAssembler, OpCode};

use crate::config::ClientConfig;
use crate::reader::Reader;
use crate::ClientError;

/// Who polls a write: the receiving side (pongs, close replies and keepalive pings go out
/// while the caller waits in `recv`) or the sending side (see [`WriteWakers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Recv = 0,
    Send = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Recv => Side::Send,
            Side::Send => Side::Recv,
        }
    }
}

/// The wakers of the writes that wait, one per [`Side`], behind the one waker the transport
/// gets for writes: a transport keeps one write waker (the last poller's), so with both
/// sides waiting (a split connection's writer, and its reader writing pongs) the other's
/// would be lost. Readiness wakes both; a side that writes the other's bytes (every write
/// moves all queued bytes, in order) wakes it too, as its wait may be over.
///
/// `waiting` mirrors which slots hold a waker (bit `1 << side`), so that a write with no
/// other side waiting (the common case) does not take the lock to find that out. It is set
/// with the slot, under the lock, and cleared with it; `register` and `wake_side` both run
/// under the connection's lock (or its `&mut`), so `wake_side` sees every registration made
/// before it. A transport's wake-up, from anywhere, only ever clears: a bit still set for
/// a slot it emptied costs one needless lock.
#[derive(Debug, Default)]
struct WriteWakers {
    slots: Mutex<[Option<Waker>; 2]>,
    waiting: AtomicU8,
}

impl WriteWakers {
    fn slots(&self) -> std::sync::MutexGuard<'_, [Option<Waker>; 2]> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, side: Side, waker: &Waker) {
        let mut slots = self.slots();
        let slot = &mut slots[side as usize];
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        self.waiting.fetch_or(1 << side as u8, Ordering::Relaxed);
    }

    #[inline]
    fn wake_side(&self, side: Side) {
        let bit = 1 << side as u8;
        if self.waiting.load(Ordering::Relaxed) & bit == 0 {
            return;
        }
        let waker = {
            let mut slots = self.slots();
            self.waiting.fetch_and(!bit, Ordering::Relaxed);
            slots[side as usize].take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Wake for WriteWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let [a, b] = {
            let mut slots = self.slots();
            self.waiting.store(0, Ordering::Relaxed);
            [slots[0].take(), slots[1].take()]
        };
        for waker in [a, b].into_iter().flatten() {
            waker.wake();
        }
    }
}

/// Polls a write step of `io` with the shared write waker; if it must wait, registers
/// `cx`'s waker for `side` and polls once more, so that a wake-up between the two is not lost.
fn poll_write_step<S: Unpin, T>(
    io: &mut S,
    shared: &Waker,
    wakers: &WriteWakers,
    side: Side,
    cx: &mut Context<'_>,
    mut step: impl FnMut(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    let mut io_cx = Context::from_waker(shared);
    if let Poll::Ready(out) = step(Pin::new(io), &mut io_cx) {
        return Poll::Ready(out);
    }
    wakers.register(side, cx.waker());
    step(Pin::new(io), &mut io_cx)
}

/// What is received and not yet handed out: a message being joined, a decoded chunk
/// being cut into `buffer_size` pieces.
#[derive(Debug)]
pub(crate) struct Inbox {
    assembler: MessageAssembler,
    /// The assembler holds part of a message.
    joining: bool,
    /// The rest of a data chunk longer than `buffer_size`, cut on the next `recv_chunk`.
    pending: Option<DataChunk>,
    buffer_size: usize,
}

impl Inbox {
    /// Takes a data chunk into the message being joined; the message it completes, if any.
    /// A whole message in one chunk (the common case) skips the assembler: what it would
    /// return, without its bookkeeping.
    fn join(&mut self, chunk: DataChunk) -> Option<Message> {
        if !self.joining && chunk.ends_message() {
            return Some(Message {
                opcode: chunk.message_opcode.unwrap_or(chunk.opcode),
                payload: chunk.data,
            });
        }
        let message = self.assembler.push(&chunk);
        if chunk.opcode.is_data() {
            self.joining = message.is_none();
        }
        message
    }

    /// Forgets a partial message.
    fn reset(&mut self) {
        self.assembler.reset();
        self.joining = false;
    }

    /// The next piece of the pending chunk, at most `buffer_size` bytes (cut without a copy);
    /// control frames stay whole, as the ESP client delivers them.
    fn next_piece(&mut self) -> Option<DataChunk> {
        let chunk = self.pending.as_mut()?;
        if chunk.data.len() <= self.buffer_size || chunk.opcode.is_control() {
            return self.pending.take();
        }
        let piece = DataChunk {
            opcode: chunk.opcode,
            message_opcode: chunk.message_opcode,
            fin: chunk.fin,
            payload_len: chunk.payload_len,
            offset: chunk.offset,
            data: chunk.data.split_to(self.buffer_size),
        };
        chunk.offset += piece.data.len() as u64;
        Some(piece)
    }
}

/// What a receive hands out, chosen at compile time: [`Messages`], [`Chunks`] or
/// [`Discard`].
pub(crate) trait Intake {
    /// The item handed out.
    type Item;
    /// An item ready before anything more is decoded.
    fn ready(inbox: &mut Inbox) -> Option<Self::Item>;
    /// Takes a decoded chunk; the item it completes, if any.
    fn take(inbox: &mut Inbox, chunk: DataChunk) -> Option<Self::Item>;
}

/// Whole text and binary messages; control frames are handled inside.
pub(crate) struct Messages;

impl Intake for Messages {
    type Item = Message;

    fn ready(inbox: &mut Inbox) -> Option<Message> {
        // The rest of a chunk `recv_chunk` started joins the message.
        let rest = inbox.pending.take()?;
        inbox.join(rest)
    }

    fn take(inbox: &mut Inbox, chunk: DataChunk) -> Option<Message> {
        inbox.join(chunk)
    }
}

/// Chunks of at most `buffer_size` bytes, control frames included: the ESP client's DATA
/// events.
pub(crate) struct Chunks;

impl Intake for Chunks {
    type Item = DataChunk;

    fn ready(inbox: &mut Inbox) -> Option<DataChunk> {
        inbox.next_piece()
    }

    fn take(inbox: &mut Inbox, chunk: DataChunk) -> Option<DataChunk> {
        inbox.pending = Some(chunk);
        inbox.next_piece()
    }
}

/// Nothing: data that arrives during a closing handshake the caller waits for is dropped.
pub(crate) struct Discard;

impl Intake for Discard {
    type Item = ();

    fn ready(inbox: &mut Inbox) -> Option<()> {
        inbox.pending = None;
        inbox.reset();
        None
    }

    fn take(_: &mut Inbox, _: DataChunk) -> Option<()> {
        None
    }
}

/// After the closing handshake: write what is left (our close), give the server the linger
/// time to close TCP first (RFC 6455 §7.1.1), then shut our side down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linger {
    /// The handshake is not complete.
    Not,
    Flush(Instant),
    Drain(Instant),
    Shutdown(Instant),
    Done,
}

/// The bounds and timers of [`crate::ClientConfig`] a connection uses after the upgrade.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_write_buffer: usize,
    close_linger: Duration,
    pong_timeout_secs: u64,
}

/// One connection's state (see the module documentation).
pub(crate) struct Core<S> {
    io: S,
    connection: Connection,
    reader: Reader,
    inbox: Inbox,
    /// Bytes taken from the connection's queue, not yet written; reused from frame to frame.
    out: BytesMut,
    /// Written but not flushed (TLS records may wait inside the stream).
    needs_flush: bool,
    /// The receive buffer may hold something decodable (bytes that came with the 101 too).
    decodable: bool,
    /// The server's close frame, once it came.
    close_frame: Option<CloseFrame>,
    /// The first protocol-level failure (a protocol error, a timeout): the cause reported.
    failure: Option<ClientError>,
    /// The transport's failure or end, reported when no protocol failure came first.
    lost: Option<ClientError>,
    /// A write failed: nothing more is written.
    write_broken: bool,
    linger: Linger,
    /// The end was reported; every receive from now on returns `None`.
    finished: bool,
    /// One timer for the connection's deadlines and the linger, made on first use (inside
    /// the runtime) and moved rather than remade.
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// The wakers of waiting writes, and the one waker the transport gets for writes.
    write_wakers: Arc<WriteWakers>,
    write_waker: Waker,
    /// The waker of a waiting receive: a close started by the sending side re-arms its timer.
    recv_waker: Option<Waker>,
    limits: Limits,
}

impl<S> Core<S> {
    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    pub(crate) fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.connection.state()
    }

    pub(crate) fn close_frame(&self) -> Option<&CloseFrame> {
        self.close_frame.as_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Core<S> {
    /// A connection on `io` after the upgrade; `connection` holds any bytes that came with
    /// the 101.
    pub(crate) fn new(io: S, connection: Connection, config: &ClientConfig) -> Self {
        let write_wakers = Arc::new(WriteWakers::default());
        Core {
            io,
            connection,
            reader: Reader::new(),
            inbox: Inbox {
                assembler: MessageAssembler::new(),
                joining: false,
                pending: None,
                buffer_size: config.buffer_size.max(1),
            },
            out: BytesMut::new(),
            needs_flush: false,
            decodable: true,
            close_frame: None,
            failure: None,
            lost: None,
            write_broken: false,
            linger: Linger::Not,
            finished: false,
            timer: None,
            armed: None,
            write_waker: Waker::from(write_wakers.clone()),
            write_wakers,
            recv_waker: None,
            limits: Limits {
                max_write_buffer: config.max_write_buffer,
                close_linger: config.close_linger,
                pong_timeout_secs: config.pong_timeout.map_or(0, |d| d.as_secs()),
            },
        }
    }

    /// Receives the next item `I` hands out: `Some(Ok)`, then at the end `Some(Err)` once
    /// if the connection failed, then `None` for good. Keeps output moving, answers pings,
    /// runs the keepalive and close timers, completes the closing handshake and lingers.
    pub(crate) fn poll_recv<I: Intake>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<I::Item, ClientError>>> {
        // The clock, read when first needed and again after each read and each timer that
        // fired: nothing else here waits, so it stays current enough for the timers.
        let mut clock = None;
        loop {
            if let Some(item) = self.take_ready::<I>() {
                return Poll::Ready(Some(Ok(item)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            // Pongs, close replies and keepalive pings leave while the caller waits here. A
            // transport that takes nothing now does not stop reading (a peer that stops
            // reading until its echoes are read must not deadlock us); a failed write fails
            // the connection, which the state below reports.
            if self.write_pending() {
                let _ = self.poll_write_all(cx, Side::Recv);
            }
            match self.connection.state() {
                ConnectionState::Closed => {
                    ready!(self.poll_linger(cx));
                    self.finished = true;
                    return Poll::Ready(self.failure.take().map(Err));
                }
                ConnectionState::Failed => {
                    // What was read of an unfinished frame is handed out before the end.
                    self.connection.handle_eof(Instant::now());
                    if let Some(item) = self.take_ready::<I>() {
                        return Poll::Ready(Some(Ok(item)));
                    }
                    self.finished = true;
                    let err = self.failure.take().or(self.lost.take());
                    return Poll::Ready(Some(Err(err.unwrap_or(ClientError::ConnectionClosed))));
                }
                ConnectionState::Open | ConnectionState::CloseSent => {}
            }
            let now = *clock.get_or_insert_with(Instant::now);
            if self.decodable {
                // One message (or control frame) at a time: the caller's reply to it goes
                // out before anything later is decoded.
                self.decodable = self.connection.process_message(now);
                continue;
            }
            let deadline = self.connection.poll_timeout();
            if deadline.is_some_and(|at| now >= at) {
                self.connection.handle_timeout(now);
                continue;
            }
            let read = pin!(self.reader.read(&mut self.io, &mut self.connection)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) => self.transport_lost(ClientError::ConnectionClosed),
                Poll::Ready(Ok(_)) => {
                    // Time may have passed in the read (a call can read on and on).
                    self.decodable = true;
                    clock = None;
                }
                Poll::Ready(Err(e)) => self.transport_lost(ClientError::io("reading", e)),
                Poll::Pending => {
                    if let Some(at) = deadline {
                        if self.poll_deadline(cx, at).is_ready() {
                            clock = Some(Instant::now().max(at));
                            continue;
                        }
                    }
                    if !self.recv_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        self.recv_waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// The next item already received, taking the connection's events in order.
    fn take_ready<I: Intake>(&mut self) -> Option<I::Item> {
        if let Some(item) = I::ready(&mut self.inbox) {
            return Some(item);
        }
        while let Some(event) = self.connection.poll_event() {
            match event {
                Event::Data(chunk) => {
                    if let Some(item) = I::take(&mut self.inbox, chunk) {
                        return Some(item);
                    }
                }
                Event::CloseReceived(frame) => self.close_frame = frame,
                Event::Closed => {}
                Event::ProtocolError(err) => self.fail(ClientError::Protocol(err)),
                Event::PongTimeout => self.fail(ClientError::PongTimeout(self.limits.pong_timeout_secs)),
                Event::CloseTimeout => self.fail(ClientError::CloseTimeout),
            }
        }
        None
    }

    fn fail(&mut self, err: ClientError) {
        self.failure.get_or_insert(err);
    }

    /// The transport ended or failed: the connection is over (what it still holds is
    /// decoded and handed out first).
    fn transport_lost(&mut self, err: ClientError) {
        self.lost.get_or_insert(err);
        self.connection.handle_eof(Instant::now());
        if let Some(waker) = self.recv_waker.take() {
            waker.wake();
        }
    }

    /// Polls the one timer for `at`.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        if self.armed != Some(at) {
            timer.as_mut().reset(at.into());
            self.armed = Some(at);
        }
        timer.as_mut().poll(cx)
    }

    /// The linger after a completed closing handshake (see [`Linger`]).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let linger = self.limits.close_linger;
            match self.linger {
                Linger::Not => self.linger = Linger::Flush(Instant::now() + linger),
                Linger::Flush(until) => match self.poll_write_all(cx, Side::Recv) {
                    Poll::Ready(Ok(())) => self.linger = Linger::Drain(until),
                    Poll::Ready(Err(_)) => self.linger = Linger::Done,
                    Poll::Pending => {
                        ready!(self.poll_deadline(cx, until));
                        self.linger = Linger::Shutdown(Instant::now() + linger);
                    }
                },
                Linger::Drain(until) => {
                    let mut sink = [0u8; 1024];
                    let mut buf = ReadBuf::new(&mut sink);
                    match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() && Instant::now() < until => {}
                        Poll::Ready(_) => self.linger = Linger::Shutdown(Instant::now() + linger),
                        Poll::Pending => {
                            ready!(self.poll_deadline(cx, until));
                            self.linger = Linger::Shutdown(Instant::now() + linger);
                        }
                    }
                }
                Linger::Shutdown(until) => match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Ready(_) => self.linger = Linger::Done,
                    Poll::Pending => {
                        ready!(self.poll_deadline(cx, until));
                        self.linger = Linger::Done;
                    }
                },
                Linger::Done => return Poll::Ready(()),
            }
        }
    }

    /// Something is left to write or flush: `poll_write_all` has work.
    fn write_pending(&self) -> bool {
        !self.out.is_empty() || self.needs_flush || self.connection.wants_transmit()
    }

    /// Bytes queued and not yet written.
    fn unwritten(&self) -> usize {
        self.out.len() + self.connection.transmit_len()
    }

    /// Ready to take a frame: the connection is open and at most `max_write_buffer` bytes
    /// wait to be written (else this writes until they are).
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        if self.connection.state() != ConnectionState::Open {
            return Poll::Ready(Err(ClientError::NotConnected));
        }
        if self.unwritten() <= self.limits.max_write_buffer {
            return Poll::Ready(Ok(()));
        }
        match self.poll_write_all(cx, Side::Send) {
            Poll::Pending if self.unwritten() > self.limits.max_write_buffer => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Queues one frame (masked; a large payload is masked as it is written, not copied
    /// whole first). Nothing is written until a flush.
    pub(crate) fn queue(&mut self, opcode: OpCode, fin: bool, payload: &Bytes) -> Result<(), ClientError> {
        self.connection
            .send_frame_shared(opcode, fin, payload)
            .map_err(|_| ClientError::NotConnected)
    }

    /// Sends one frame: waits until it may be queued, queues it (`frame` becomes `None`),
    /// then writes and flushes everything queued. Cancelled before it returns, the frame
    /// is either not queued or queued whole; a queued frame goes out with the next write.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        frame: &mut Option<(OpCode, bool, Bytes)>,
    ) -> Poll<Result<(), ClientError>> {
        if let Some((opcode, fin, payload)) = frame {
            ready!(self.poll_ready(cx))?;
            self.queue(*opcode, *fin, payload)?;
            *frame = None;
        }
        self.poll_flush(cx)
    }

    /// Writes and flushes everything queued.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        self.poll_write_all(cx, Side::Send)
    }

    /// Starts the closing handshake: queues our close frame (nothing if closing already).
    pub(crate) fn start_close(&mut self, code: Option<u16>, reason: &str) -> Result<(), ClientError> {
        match self.connection.state() {
            ConnectionState::Open => {
                self.connection.close(code, reason, Instant::now());
                // A receive waiting elsewhere must now watch the close timeout.
                if let Some(waker) = self.recv_waker.take() {
                    waker.wake();
                }
                Ok(())
            }
            ConnectionState::CloseSent | ConnectionState::Closed => Ok(()),
            ConnectionState::Failed => Err(ClientError::NotConnected),
        }
    }

    /// Moves the connection's queued frames to `out` and writes (then flushes) what the
    /// transport takes: `Ready(Ok)` once everything is written and flushed. While `out`
    /// holds `max_write_buffer` bytes, frames stay in the connection's queue, where a ping
    /// flood's pongs collapse into one.
    fn poll_write_all(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<Result<(), ClientError>> {
        if self.write_broken {
            return Poll::Ready(Err(ClientError::NotConnected));
        }
        loop {
            if self.out.len() < self.limits.max_write_buffer && self.connection.wants_transmit() {
                self.connection.transmit_into(&mut self.out);
            }
            if self.out.is_empty() {
                break;
            }
            let out = &self.out;
            let written = poll_write_step(
                &mut self.io,
                &self.write_waker,
                &self.write_wakers,
                side,
                cx,
                |io, cx| io.poll_write(cx, out),
            );
            match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(self.write_failed(std::io::ErrorKind::WriteZero.into()))),
                Poll::Ready(Ok(n)) => {
                    if n == self.out.len() {
                        // All written: the buffer is reused from its start, without the
                        // reclaim a fully advanced one needs before its next frame.
                        self.out.clear();
                    } else {
                        self.out.advance(n);
                    }
                    self.needs_flush = true;
                    self.write_wakers.wake_side(side.other());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.write_failed(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.needs_flush {
            let flushed = poll_write_step(
                &mut self.io,
                &self.write_waker,
                &self.write_wakers,
                side,
                cx,
                |io, cx| io.poll_flush(cx),
            );
            match flushed {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    self.write_wakers.wake_side(side.other());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.write_failed(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn write_failed(&mut self, e: std::io::Error) -> ClientError {
        let err = ClientError::io("writing", e);
        self.write_broken = true;
        self.out.clear();
        self.transport_lost(err.clone());
        self.write_wakers.wake_by_ref();
        err
    }
}
