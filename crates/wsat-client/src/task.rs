//! The task behind a client: connect, run the connection, reconnect; one per client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use wsat_proto::{Connection, ConnectionState, Event as ProtoEvent, MessageAssembler, OpCode};

use crate::budget::EventBudget;
use crate::config::{ClientConfig, Delivery};
use crate::event::{DisconnectReason, Event, LinkState};
use crate::transport::Stream;
use crate::upgrade::{self, Upgraded};
use crate::ClientError;

/// A request from a [`crate::Client`] handle to its task.
pub(crate) enum Command {
    /// Queue frames; answer once they are written to the transport.
    Send {
        opcode: OpCode,
        payload: Bytes,
        fin: bool,
        fragment: bool,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    /// Start the closing handshake; answer whether the close frame was queued.
    /// Drop the connection as if the transport had failed (reconnect follows if enabled).
    Abort,
    Close {
        code: Option<u16>,
        reason: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// State shared between the task and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    state: watch::Sender<LinkState>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: watch::Sender::new(LinkState::Stopped),
        }
    }

    pub(crate) fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Resolves with the state once `wanted` holds for it (at once if it already does).
    pub(crate) async fn state_when(&self, wanted: impl Fn(LinkState) -> bool) -> LinkState {
        let mut changes = self.state.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let state = changes.wait_for(|s| wanted(*s)).await.map(|s| *s);
        state.unwrap_or_else(|_| self.state())
    }

    fn set(&self, state: LinkState) {
        self.state
            .send_if_modified(|current| std::mem::replace(current, state) != state);
    }
}

/// Where a send's reply goes: the payload length once written, or why not.
type SendReply = oneshot::Sender<Result<usize, ClientError>>;

/// A send whose frames are queued: done once this many bytes of the stream are written
/// and flushed; then its payload length goes to the reply.
type PendingSend = (u64, usize, SendReply);

/// At most this many commands are taken in one go, so a flood of sends cannot starve
/// reading and event delivery.
const COMMAND_BATCH: usize = 64;

/// How a connected session ended.
enum End {
    Stopped,
    Closed { code: Option<u16>, reason: String },
    Aborted(ClientError, DisconnectReason),
}

pub(crate) struct Task {
    pub config: Arc<ClientConfig>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Receiver<Command>,
    pub stop: watch::Receiver<bool>,
    pub events: mpsc::Sender<Event>,
    /// In lockstep delivery, one permit per outstanding `Events::recv` call.
    pub demand: Option<Arc<Semaphore>>,
    /// Payload bytes handed over and not yet taken (ClientConfig::max_event_bytes).
    pub budget: Arc<EventBudget>,
    /// Events not yet accepted by the channel, delivered in order.
    pub pending: VecDeque<Event>,
}

impl Task {
    /// Runs until stopped, closed for good, or disconnected without reconnect.
    pub(crate) async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            self.shared.set(LinkState::Connecting);
            self.pending.push_back(Event::BeforeConnect {
                uri: self.config.uri.clone(),
            });
            let connected = {
                let config = self.config.clone();
                let tls = self.tls.clone();
                let mut hops = Vec::new();
                let attempt = upgrade::connect(&config, tls.as_ref(), |t| {
                    hops.push(Event::BeforeConnect {
                        uri: upgrade::shown(&t.uri),
                    })
                });
                let outcome = self.while_waiting(attempt).await;
                self.pending.extend(hops);
                outcome
            };
            let end = match connected {
                None => break,
                Some(Err(err)) => End::Aborted(err, DisconnectReason::ConnectFailed),
                Some(Ok(upgraded)) => {
                    failures = 0;
                    self.session(upgraded).await
                }
            };
            match end {
                End::Stopped => break,
                End::Closed { code, reason } => {
                    self.pending.push_back(Event::Closed { code, reason });
                    if !self.config.reconnect_after_close {
                        break;
                    }
                }
                End::Aborted(err, reason) => {
                    tracing::debug!(%err, ?reason, "connection aborted");
                    self.pending.push_back(Event::Error(err));
                    self.pending.push_back(Event::Disconnected(reason));
                }
            }
            let Some(delay) = self.config.reconnect.delay(failures) else {
                break;
            };
            failures = failures.saturating_add(1);
            self.shared.set(LinkState::WaitingToReconnect);
            if self.while_waiting(tokio::time::sleep(delay)).await.is_none() {
                break;
            }
        }
        self.shared.set(LinkState::Stopped);
        self.pending.push_back(Event::Finish);
        // Deliver what is left, without waiting for a slow reader once stopped. The event
        // budget no longer holds anything up: nothing is read any more.
        let stopped = *self.stop.borrow();
        while let Some(ev) = self.pending.pop_front() {
            self.budget.hand_over(ev.payload_len());
            let sent = if stopped {
                self.events.try_send(ev).is_ok()
            } else {
                self.events.send(ev).await.is_ok()
            };
            if !sent {
                break;
            }
        }
    }

    /// Runs `work` while not connected: delivers events, refuses sends and closes, and
    /// gives up (`None`) on stop.
    async fn while_waiting<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => return None,
                permit = delivery(&self.events, self.demand.as_deref()), if self.front_fits() => {
                    hand_over(&mut self.pending, &self.budget, permit);
                }
                _ = self.budget.wait_taken(), if !self.pending.is_empty() && !self.front_fits() => {}
                cmd = self.commands.recv() => match cmd {
                    None => return None,
                    Some(Command::Send { reply, .. }) => { let _ = reply.send(Err(ClientError::NotConnected)); }
                    Some(Command::Close { reply, .. }) => { let _ = reply.send(Err(ClientError::NotConnected)); }
                    Some(Command::Abort) => {}
                },
                out = &mut work => return Some(out),
            }
        }
    }

    async fn session(&mut self, upgraded: Upgraded) -> End {
        let Upgraded {
            stream,
            mut connection,
            info,
        } = upgraded;
        self.shared.set(LinkState::Connected);
        self.budget.set_closing(false);
        self.pending.push_back(Event::Connected(info));
        let (mut rd, mut wr) = tokio::io::split(stream);
        // The message limit is the connection's (max_message_len): the assembler only joins.
        let mut assembler = match self.config.delivery {
            Delivery::Messages { .. } => Some(MessageAssembler::new()),
            Delivery::Chunks => None,
        };
        // Bytes taken from the connection, not yet written; `written` counts the stream's
        // bytes on the wire (the same offsets as `Connection::transmit_end`).
        let mut out = BytesMut::new();
        let mut written: u64 = 0;
        let mut reader = Reader::new();
        let mut needs_flush = false;
        let mut sends: VecDeque<PendingSend> = VecDeque::new();
        let mut close_frame = None;
        let mut failure: Option<(ClientError, DisconnectReason)> = None;
        let mut eof = false;
        // Bytes that came with the 101 are decoded at once (esp-protocols #396).
        let mut decodable = true;
        // One stop future for the whole session: made anew every round, it would register
        // and unregister a waiter each time.
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.changed().await;
        };
        tokio::pin!(stopped);
        loop {
            // One message at a time, and only once the previous events are delivered (in
            // lockstep: asked for), so replies to them leave before later input is decoded.
            if decodable && self.pending.is_empty() && self.demand.as_ref().is_none_or(|d| d.available_permits() > 0) {
                decodable = connection.process_message(Instant::now());
            }
            while let Some(ev) = connection.poll_event() {
                match ev {
                    ProtoEvent::Data(chunk) => match assembler.as_mut() {
                        None => self.pending.push_back(Event::Data(chunk)),
                        Some(asm) => self.pending.extend(asm.push(&chunk).map(Event::Message)),
                    },
                    ProtoEvent::CloseReceived(frame) => close_frame = frame,
                    ProtoEvent::Closed => {}
                    ProtoEvent::ProtocolError(err) => {
                        failure.get_or_insert((ClientError::Protocol(err), DisconnectReason::ProtocolError));
                    }
                    ProtoEvent::PongTimeout => {
                        let secs = self.config.pong_timeout.map_or(0, |d| d.as_secs());
                        failure.get_or_insert((ClientError::PongTimeout(secs), DisconnectReason::PongTimeout));
                    }
                    ProtoEvent::CloseTimeout => {
                        failure.get_or_insert((ClientError::CloseTimeout, DisconnectReason::CloseTimeout));
                    }
                }
            }
            self.deliver_ready();
            match connection.state() {
                ConnectionState::Open => {}
                ConnectionState::CloseSent => {
                    self.shared.set(LinkState::Closing);
                    self.budget.set_closing(true);
                }
                ConnectionState::Failed => {
                    return lost(&mut sends, failure, ClientError::ConnectionClosed);
                }
                ConnectionState::Closed => {
                    self.shared.set(LinkState::Closing);
                    self.linger(&mut rd, &mut wr, &mut connection, &mut out).await;
                    fail_sends(&mut sends);
                    return match failure {
                        Some((err, reason)) => End::Aborted(err, reason),
                        None => {
                            let (code, reason) =
                                close_frame.map_or((None, String::new()), |f| (Some(f.code), f.reason));
                            End::Closed { code, reason }
                        }
                    };
                }
            }
            // Whatever is queued goes out now if the transport takes it, so that a send is
            // written (and answered) in the round that queued it; a large payload comes
            // a chunk at a time.
            loop {
                // A full write buffer leaves frames in the connection's queue, where a
                // ping flood's pongs collapse into one (ClientConfig::max_write_buffer).
                if out.len() < self.config.max_write_buffer {
                    connection.transmit_into(&mut out);
                }
                if let Err(e) = write_now(&mut wr, &mut out, &mut written, &mut needs_flush) {
                    return lost(&mut sends, failure, ClientError::io("writing", e));
                }
                if !out.is_empty() || !connection.wants_transmit() {
                    break;
                }
            }
            complete_sends(&mut sends, written, needs_flush);
            // Decoded something that gave no event (a pong, a message still in pieces) with
            // more input buffered: decode on before waiting, or nothing would wake us.
            if decodable && self.pending.is_empty() && self.demand.as_ref().is_none_or(|d| d.available_permits() > 0) {
                continue;
            }
            if eof {
                return lost(&mut sends, failure, ClientError::ConnectionClosed);
            }
            let deadline = connection.poll_timeout();
            tokio::select! {
                biased;
                _ = &mut stopped => return End::Stopped,
                permit = delivery(&self.events, self.demand.as_deref()), if self.front_fits() => {
                    hand_over(&mut self.pending, &self.budget, permit);
                }
                _ = self.budget.wait_taken(), if !self.pending.is_empty() && !self.front_fits() => {}
                _ = wait_for_demand(self.demand.as_deref()), if decodable && self.pending.is_empty() => {}
                res = write_step(&mut wr, &out, needs_flush), if !out.is_empty() || needs_flush => match res {
                    Ok(Some(n)) => {
                        written += n as u64;
                        needs_flush = true;
                        out.advance(n);
                    }
                    Ok(None) => {
                        needs_flush = false;
                        complete_sends(&mut sends, written, needs_flush);
                    }
                    Err(e) => return lost(&mut sends, failure, ClientError::io("writing", e)),
                },
                res = reader.read(&mut rd, &mut connection), if self.pending.is_empty() && !decodable && !eof => match res {
                    Ok(0) => eof = true,
                    Ok(_) => decodable = true,
                    Err(e) => return lost(&mut sends, failure, ClientError::io("reading", e)),
                },
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return End::Stopped };
                    // Take what else is queued too: the sends leave in one write.
                    let mut next = Some(cmd);
                    let mut taken = 0;
                    while let Some(cmd) = next {
                        if let Some(end) = self.on_command(cmd, &mut connection, &mut sends) {
                            return end;
                        }
                        taken += 1;
                        next = if taken < COMMAND_BATCH { self.commands.try_recv().ok() } else { None };
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => connection.handle_timeout(Instant::now()),
            }
        }
    }

    /// Hands pending events over while the channel has room and the event budget allows,
    /// without waiting: each would otherwise take a round through the session's select
    /// loop. Not in lockstep, where an event also needs an outstanding `recv`.
    fn deliver_ready(&mut self) {
        if self.demand.is_some() {
            return;
        }
        while self.front_fits() {
            match self.events.try_reserve() {
                Ok(permit) => hand_over(&mut self.pending, &self.budget, Some(permit)),
                Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => hand_over(&mut self.pending, &self.budget, None),
            }
        }
    }

    /// Whether an event is pending and the event budget lets it go now.
    fn front_fits(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|ev| self.budget.admits(ev.payload_len()))
    }

    /// Carries out one command during a session; `Some` ends the session.
    fn on_command(&self, cmd: Command, connection: &mut Connection, sends: &mut VecDeque<PendingSend>) -> Option<End> {
        match cmd {
            Command::Send {
                opcode,
                payload,
                fin,
                fragment,
                reply,
            } => {
                let sent = if fragment {
                    connection.send_fragmented(opcode, &payload, fin, self.config.buffer_size)
                } else {
                    connection.send_frame_shared(opcode, fin, &payload)
                };
                match sent {
                    Ok(()) => sends.push_back((connection.transmit_end(), payload.len(), reply)),
                    Err(_) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
                }
                None
            }
            Command::Abort => {
                fail_sends(sends);
                Some(End::Aborted(ClientError::Aborted, DisconnectReason::Aborted))
            }
            Command::Close { code, reason, reply } => {
                let ok = connection.state() == ConnectionState::Open;
                connection.close(code, &reason, Instant::now());
                let _ = reply.send(if ok { Ok(()) } else { Err(ClientError::NotConnected) });
                None
            }
        }
    }

    /// After the closing handshake: write what is left (our close) and give the server
    /// the linger time to close TCP first, as RFC 6455 §7.1.1 asks of clients.
    async fn linger(
        &mut self,
        rd: &mut ReadHalf<Stream>,
        wr: &mut WriteHalf<Stream>,
        connection: &mut Connection,
        out: &mut BytesMut,
    ) {
        let linger = self.config.close_linger;
        let work = async {
            loop {
                connection.transmit_into(out);
                if out.is_empty() {
                    break;
                }
                wr.write_all(out).await?;
                out.clear();
            }
            wr.flush().await?;
            let mut sink = [0u8; 1024];
            while rd.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(linger, work).await;
        let _ = tokio::time::timeout(linger, wr.shutdown()).await;
    }
}

/// Hands the first of `pending` over through `permit`, counting it into `budget`; with no
/// permit nobody listens any more: the events are dropped, the link keeps running.
fn hand_over(pending: &mut VecDeque<Event>, budget: &EventBudget, permit: Option<mpsc::Permit<'_, Event>>) {
    match (permit, pending.pop_front()) {
        (Some(permit), Some(ev)) => {
            budget.hand_over(ev.payload_len());
            permit.send(ev);
        }
        _ => pending.clear(),
    }
}

/// Waits until an event may be handed over: channel room, and in lockstep an outstanding
/// `recv` (whose permit is consumed only together with the channel slot).
async fn delivery<'a>(events: &'a mpsc::Sender<Event>, demand: Option<&Semaphore>) -> Option<mpsc::Permit<'a, Event>> {
    let asked = match demand {
        Some(d) => Some(d.acquire().await.ok()?),
        None => None,
    };
    let slot = events.reserve().await.ok()?;
    if let Some(p) = asked {
        p.forget();
    }
    Some(slot)
}

/// In lockstep, resolves once the application asks for an event (decoding may go on);
/// otherwise never (decoding is not gated).
async fn wait_for_demand(demand: Option<&Semaphore>) {
    match demand {
        Some(d) if d.available_permits() == 0 => {
            let _ = d.acquire().await;
        }
        _ => std::future::pending().await,
    }
}

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
struct Reader {
    scratch: Vec<u8>,
    /// The receive buffer's last allocation was made for a large chunk.
    large: bool,
}

impl Reader {
    fn new() -> Self {
        Reader {
            scratch: Vec::new(),
            large: false,
        }
    }

    async fn read(&mut self, rd: &mut ReadHalf<Stream>, connection: &mut Connection) -> std::io::Result<usize> {
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

/// Writes some of `out` (`Some(n)`), or flushes once everything is written (`None`), so
/// that TLS records buffered inside the session reach the socket.
async fn write_step(wr: &mut WriteHalf<Stream>, out: &[u8], needs_flush: bool) -> std::io::Result<Option<usize>> {
    if !out.is_empty() {
        wr.write(out).await.map(Some)
    } else if needs_flush {
        wr.flush().await.map(|()| None)
    } else {
        std::future::pending().await
    }
}

/// Writes and flushes as much of `out` as the transport takes right now, without waiting:
/// whatever is left is written by [`write_step`] once the transport is ready again.
fn write_now(
    wr: &mut WriteHalf<Stream>,
    out: &mut BytesMut,
    written: &mut u64,
    needs_flush: &mut bool,
) -> std::io::Result<()> {
    // A no-op waker: `Pending` leaves nothing to wake; the select loop polls `write_step`
    // with the task's own waker before it sleeps.
    let mut cx = Context::from_waker(Waker::noop());
    while !out.is_empty() {
        match Pin::new(&mut *wr).poll_write(&mut cx, out) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                *written += n as u64;
                *needs_flush = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(()),
        }
    }
    if *needs_flush {
        match Pin::new(&mut *wr).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(())
}

/// Answers the sends whose last byte is written and flushed.
fn complete_sends(sends: &mut VecDeque<PendingSend>, written: u64, needs_flush: bool) {
    if needs_flush {
        return;
    }
    while sends.front().is_some_and(|(end, _, _)| *end <= written) {
        if let Some((_, len, reply)) = sends.pop_front() {
            let _ = reply.send(Ok(len));
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How a session whose transport failed or ended ended: with the protocol failure that
/// came first, if any (a peer that broke the protocol often resets the connection right
/// after, and the reset is not the cause), else with `transport`'s error.
fn lost(
    sends: &mut VecDeque<PendingSend>,
    failure: Option<(ClientError, DisconnectReason)>,
    transport: ClientError,
) -> End {
    fail_sends(sends);
    let (err, reason) = failure.unwrap_or((transport, DisconnectReason::ConnectionLost));
    End::Aborted(err, reason)
}

fn fail_sends(sends: &mut VecDeque<PendingSend>) {
    for (_, _, reply) in sends.drain(..) {
        let _ = reply.send(Err(ClientError::NotConnected));
    }
}
