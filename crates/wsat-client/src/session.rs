//! One connected session: the connection, its transport and what is in flight, driven in
//! named steps (as quinn's `ConnectionDriver`): [`Session::process`] what was read,
//! [`Session::check_state`], [`Session::transmit`] what is queued, then [`Session::wait`]
//! for the next thing to do (a read, a write, a command, a timer, the application).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;
use wsat_proto::close::CloseFrame;
use wsat_proto::{Connection, ConnectionState, Event as ProtoEvent, Message, MessageAssembler};

use crate::config::{ClientConfig, Delivery};
use crate::event::{DisconnectReason, Event, LinkState};
use crate::outlet::EventOutlet;
use crate::reader::Reader;
use crate::task::{refuse, Command, Shared};
use crate::transport::Stream;
use crate::upgrade::Upgraded;
use crate::ClientError;

/// Where a send's reply goes: the payload length once written, or why not.
type SendReply = oneshot::Sender<Result<usize, ClientError>>;

/// A send whose frames are queued: done once this many bytes of the stream are written
/// and flushed; then its payload length goes to the reply. Answered with `SendTimeout`
/// instead if it is not done by its deadline.
type PendingSend = (u64, usize, SendReply, Option<Instant>);

/// At most this many commands are taken in one go, so a flood of sends cannot starve
/// reading and event delivery.
const COMMAND_BATCH: usize = 64;

/// How a connected session ended.
pub(crate) enum End {
    /// The client was stopped (or every handle dropped).
    Stopped,
    /// The closing handshake completed.
    Closed { code: Option<u16>, reason: String },
    /// The connection failed or was aborted.
    Aborted(ClientError, DisconnectReason),
}

/// One connected session; see the module documentation.
pub(crate) struct Session<'t> {
    config: &'t ClientConfig,
    shared: &'t Shared,
    commands: &'t mut mpsc::Receiver<Command>,
    outlet: &'t mut EventOutlet,
    connection: Connection,
    rd: ReadHalf<Stream>,
    wr: WriteHalf<Stream>,
    reader: Reader,
    /// Joins chunks into messages in [`Delivery::Messages`]; the message limit is the
    /// connection's (`max_message_len`).
    assembler: Option<MessageAssembler>,
    /// The assembler holds part of a message.
    joining: bool,
    /// Bytes taken from the connection, not yet written.
    out: BytesMut,
    /// The stream's bytes on the wire (the offsets of `Connection::transmit_end`).
    written: u64,
    /// Written but not flushed (TLS records may wait inside the session).
    needs_flush: bool,
    /// Sends written but not yet answered, oldest first.
    sends: VecDeque<PendingSend>,
    /// One timer for the sends' deadlines, made on first use and moved, not remade: armed
    /// at `send_timer_at`, no later than the earliest deadline of `sends`. It is not moved
    /// when a send completes: it may fire for nothing, then it is armed anew.
    send_timer: Option<Pin<Box<Sleep>>>,
    send_timer_at: Option<Instant>,
    /// The server's close frame, once it came.
    close_frame: Option<CloseFrame>,
    /// The first failure seen; it, not what the transport says afterwards, is the cause.
    failure: Option<(ClientError, DisconnectReason)>,
    /// The transport's end was read.
    eof: bool,
    /// The receive buffer may hold something decodable.
    decodable: bool,
}

impl<'t> Session<'t> {
    /// A session on a completed upgrade; the task's parts it uses are borrowed for its life.
    pub(crate) fn new(
        upgraded: Upgraded,
        config: &'t ClientConfig,
        shared: &'t Shared,
        commands: &'t mut mpsc::Receiver<Command>,
        outlet: &'t mut EventOutlet,
    ) -> Self {
        let Upgraded {
            stream,
            connection,
            info,
        } = upgraded;
        shared.set(LinkState::Connected);
        outlet.budget.set_closing(false);
        outlet.push(Event::Connected(info));
        let (rd, wr) = tokio::io::split(stream);
        Session {
            config,
            shared,
            commands,
            outlet,
            connection,
            rd,
            wr,
            reader: Reader::new(),
            assembler: match config.delivery {
                Delivery::Messages { .. } => Some(MessageAssembler::new()),
                Delivery::Chunks => None,
            },
            joining: false,
            out: BytesMut::new(),
            written: 0,
            needs_flush: false,
            sends: VecDeque::new(),
            send_timer: None,
            send_timer_at: None,
            close_frame: None,
            failure: None,
            eof: false,
            // Bytes that came with the 101 are decoded at once (esp-protocols #396).
            decodable: true,
        }
    }

    /// Runs the session to its end; `stop` ends it at once when it changes.
    pub(crate) async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) -> End {
        // One stop future for the whole session: made anew every round, it would register
        // and unregister a waiter each time.
        let stopped = async move {
            let _ = stop.changed().await;
        };
        tokio::pin!(stopped);
        loop {
            self.process();
            self.outlet.deliver_ready();
            if let Some(end) = self.check_state().await {
                return end;
            }
            if let Err(end) = self.transmit() {
                return end;
            }
            // Decoded something that gave no event (a pong, a message still in pieces) with
            // more input buffered: decode on before waiting, or nothing would wake us.
            if self.decodable && self.outlet.may_decode() {
                continue;
            }
            if self.eof {
                return self.lost(ClientError::ConnectionClosed);
            }
            if let Some(end) = self.wait(&mut stopped).await {
                return end;
            }
        }
    }

    /// Decodes one message (or control frame) of what was read, once the previous events
    /// are handed over (in lockstep: asked for), so replies to them leave before later
    /// input is decoded; its events go to the outlet.
    fn process(&mut self) {
        if self.decodable && self.outlet.may_decode() {
            self.decodable = self.connection.process_message(Instant::now());
        }
        self.take_events();
    }

    /// Moves the connection's events to the outlet (and records a failure among them).
    fn take_events(&mut self) {
        while let Some(ev) = self.connection.poll_event() {
            match ev {
                ProtoEvent::Data(chunk) => match self.assembler.as_mut() {
                    None => self.outlet.push(Event::Data(chunk)),
                    // A whole message in one chunk (the common case) skips the assembler:
                    // what it would return, without its bookkeeping.
                    Some(_) if !self.joining && chunk.ends_message() => self.outlet.push(Event::Message(Message {
                        opcode: chunk.message_opcode.unwrap_or(chunk.opcode),
                        payload: chunk.data,
                    })),
                    Some(asm) => {
                        let message = asm.push(&chunk);
                        if chunk.opcode.is_data() {
                            self.joining = message.is_none();
                        }
                        if let Some(message) = message {
                            self.outlet.push(Event::Message(message));
                        }
                    }
                },
                ProtoEvent::CloseReceived(frame) => self.close_frame = frame,
                ProtoEvent::Closed => {}
                ProtoEvent::ProtocolError(err) => {
                    self.failed(ClientError::Protocol(err), DisconnectReason::ProtocolError)
                }
                ProtoEvent::PongTimeout => {
                    let secs = self.config.pong_timeout.map_or(0, |d| d.as_secs());
                    self.failed(ClientError::PongTimeout(secs), DisconnectReason::PongTimeout);
                }
                ProtoEvent::CloseTimeout => self.failed(ClientError::CloseTimeout, DisconnectReason::CloseTimeout),
            }
        }
    }

    /// Follows the connection's state: `Some` once the session is over.
    async fn check_state(&mut self) -> Option<End> {
        match self.connection.state() {
            ConnectionState::Open => None,
            ConnectionState::CloseSent => {
                self.shared.set(LinkState::Closing);
                self.outlet.budget.set_closing(true);
                None
            }
            ConnectionState::Failed => Some(self.lost(ClientError::ConnectionClosed)),
            ConnectionState::Closed => {
                self.shared.set(LinkState::Closing);
                // Nothing more is written but what is queued: the sends still waiting are
                // answered now, not after the linger.
                fail_sends(&mut self.sends);
                self.linger().await;
                Some(match self.failure.take() {
                    Some((err, reason)) => End::Aborted(err, reason),
                    None => {
                        let (code, reason) = self
                            .close_frame
                            .take()
                            .map_or((None, String::new()), |f| (Some(f.code), f.reason));
                        End::Closed { code, reason }
                    }
                })
            }
        }
    }

    /// Writes whatever is queued now if the transport takes it, so that a send is written
    /// (and answered) in the round that queued it; a large payload goes a chunk at a time.
    fn transmit(&mut self) -> Result<(), End> {
        loop {
            // A full write buffer leaves frames in the connection's queue, where a ping
            // flood's pongs collapse into one (ClientConfig::max_write_buffer).
            if self.out.len() < self.config.max_write_buffer {
                self.connection.transmit_into(&mut self.out);
            }
            if let Err(e) = write_now(&mut self.wr, &mut self.out, &mut self.written, &mut self.needs_flush) {
                return Err(self.lost(ClientError::io("writing", e)));
            }
            if !self.out.is_empty() || !self.connection.wants_transmit() {
                break;
            }
        }
        complete_sends(&mut self.sends, self.written, self.needs_flush);
        Ok(())
    }

    /// Waits for the next thing to do and does it: `Some` ends the session.
    async fn wait(&mut self, stopped: &mut Pin<&mut impl std::future::Future<Output = ()>>) -> Option<End> {
        let deadline = self.connection.poll_timeout();
        let may_read = self.outlet.is_empty() && !self.decodable && !self.eof;
        let wants_write = !self.out.is_empty() || self.needs_flush;
        let demanded = self.outlet.demanded();
        tokio::select! {
            biased;
            _ = stopped.as_mut() => return Some(End::Stopped),
            _ = self.outlet.deliver_one() => {}
            _ = demanded, if self.decodable && self.outlet.is_empty() => {}
            res = write_step(&mut self.wr, &self.out, self.needs_flush), if wants_write => match res {
                Ok(Some(n)) => {
                    self.written += n as u64;
                    self.needs_flush = true;
                    self.out.advance(n);
                }
                Ok(None) => {
                    self.needs_flush = false;
                    complete_sends(&mut self.sends, self.written, self.needs_flush);
                }
                Err(e) => return Some(self.lost(ClientError::io("writing", e))),
            },
            _ = send_timer(&mut self.send_timer), if self.send_timer_at.is_some() => self.expire_sends(),
            res = self.reader.read(&mut self.rd, &mut self.connection), if may_read => match res {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    self.decodable = true;
                    // Commands are taken after every read too, so that a peer that keeps
                    // the socket readable cannot hold a send back past its deadline.
                    if let Ok(cmd) = self.commands.try_recv() {
                        return self.take_commands(cmd);
                    }
                }
                Err(e) => return Some(self.lost(ClientError::io("reading", e))),
            },
            cmd = self.commands.recv() => {
                let Some(cmd) = cmd else { return Some(End::Stopped) };
                return self.take_commands(cmd);
            }
            _ = sleep_until(deadline), if deadline.is_some() => self.connection.handle_timeout(Instant::now()),
        }
        None
    }

    /// Carries out `first` and what else is queued (up to a batch), so that the sends
    /// leave in one write; `Some` ends the session.
    fn take_commands(&mut self, first: Command) -> Option<End> {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(cmd) = next {
            if let Some(end) = self.on_command(cmd) {
                return Some(end);
            }
            taken += 1;
            next = if taken < COMMAND_BATCH {
                self.commands.try_recv().ok()
            } else {
                None
            };
        }
        None
    }

    /// Arms the send timer for `deadline`, unless it goes off earlier already.
    fn arm_send_timer(&mut self, deadline: Instant) {
        if self.send_timer_at.is_some_and(|at| at <= deadline) {
            return;
        }
        match self.send_timer.as_mut() {
            Some(timer) => timer.as_mut().reset(deadline.into()),
            None => self.send_timer = Some(Box::pin(tokio::time::sleep_until(deadline.into()))),
        }
        self.send_timer_at = Some(deadline);
    }

    /// The send timer went off: answers the sends whose deadline passed with
    /// `SendTimeout` (their frames stay queued and go out as any others), and arms the
    /// timer for the earliest deadline left.
    fn expire_sends(&mut self) {
        self.send_timer_at = None;
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        let mut kept = VecDeque::with_capacity(self.sends.len());
        for (end, len, reply, deadline) in self.sends.drain(..) {
            match deadline {
                Some(at) if at <= now => {
                    let _ = reply.send(Err(ClientError::SendTimeout));
                }
                _ => {
                    if let Some(at) = deadline {
                        earliest = Some(earliest.map_or(at, |e| e.min(at)));
                    }
                    kept.push_back((end, len, reply, deadline));
                }
            }
        }
        self.sends = kept;
        if let Some(at) = earliest {
            self.arm_send_timer(at);
        }
    }

    /// Carries out one command; `Some` ends the session.
    fn on_command(&mut self, cmd: Command) -> Option<End> {
        match cmd {
            Command::Send {
                opcode,
                payload,
                fin,
                fragment,
                deadline,
                reply,
            } => {
                let sent = if fragment {
                    self.connection
                        .send_fragmented(opcode, &payload, fin, self.config.buffer_size)
                } else {
                    self.connection.send_frame_shared(opcode, fin, &payload)
                };
                match sent {
                    Ok(()) => {
                        self.sends
                            .push_back((self.connection.transmit_end(), payload.len(), reply, deadline));
                        if let Some(at) = deadline {
                            self.arm_send_timer(at);
                        }
                    }
                    Err(_) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
                }
                None
            }
            Command::Abort => {
                self.end_input();
                fail_sends(&mut self.sends);
                Some(End::Aborted(ClientError::Aborted, DisconnectReason::Aborted))
            }
            Command::Close { code, reason, reply } => {
                let ok = self.connection.state() == ConnectionState::Open;
                self.connection.close(code, &reason, Instant::now());
                let _ = reply.send(if ok { Ok(()) } else { Err(ClientError::NotConnected) });
                None
            }
        }
    }

    /// Records the first failure: the cause that the session's end reports.
    fn failed(&mut self, err: ClientError, reason: DisconnectReason) {
        self.failure.get_or_insert((err, reason));
    }

    /// How a session whose transport failed or ended ends: with the protocol failure that
    /// came first, if any (a peer that broke the protocol often resets the connection right
    /// after, and the reset is not the cause), else with `transport`'s error. What was read
    /// and not yet reported is reported first.
    fn lost(&mut self, transport: ClientError) -> End {
        self.end_input();
        fail_sends(&mut self.sends);
        let (err, reason) = self
            .failure
            .take()
            .unwrap_or((transport, DisconnectReason::ConnectionLost));
        End::Aborted(err, reason)
    }

    /// The transport is gone (ended, failed or aborted): every byte read is reported before
    /// the session's end, the bytes of an unfinished frame as a last short chunk, as the
    /// ESP client has reported each read by then ([`Connection::handle_eof`]). Whole
    /// messages never include an unfinished one.
    fn end_input(&mut self) {
        self.connection.handle_eof(Instant::now());
        self.take_events();
    }

    /// After the closing handshake: write what is left (our close) and give the server
    /// the linger time to close TCP first, as RFC 6455 §7.1.1 asks of clients.
    /// Commands that come meanwhile are refused, as while not connected: their callers
    /// hold no timer of their own.
    async fn linger(&mut self) {
        let linger = self.config.close_linger;
        let (connection, out, rd, wr) = (&mut self.connection, &mut self.out, &mut self.rd, &mut self.wr);
        let work = async {
            let flushed = async {
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
            let _ = tokio::time::timeout(linger, flushed).await;
            let _ = tokio::time::timeout(linger, wr.shutdown()).await;
        };
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                () = &mut work => return,
                Some(cmd) = self.commands.recv() => refuse(cmd),
            }
        }
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
    while sends.front().is_some_and(|(end, ..)| *end <= written) {
        if let Some((_, len, reply, _)) = sends.pop_front() {
            let _ = reply.send(Ok(len));
        }
    }
}

/// Waits for the send timer (see [`Session::send_timer`]).
async fn send_timer(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Answers every send still waiting: the connection is gone.
fn fail_sends(sends: &mut VecDeque<PendingSend>) {
    for (_, _, reply, _) in sends.drain(..) {
        let _ = reply.send(Err(ClientError::NotConnected));
    }
}
