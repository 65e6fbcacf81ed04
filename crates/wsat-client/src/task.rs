//! The task behind a client: connect, run the connection, reconnect; one per client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use wsat_proto::{ConnectionState, Event as ProtoEvent, MessageAssembler, OpCode, ProtocolError};

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
    state: AtomicU8,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: AtomicU8::new(LinkState::Stopped as u8),
        }
    }

    pub(crate) fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// Where a send's reply goes: the payload length once written, or why not.
type SendReply = oneshot::Sender<Result<usize, ClientError>>;

/// A send whose frames are queued: done once `written` reaches the first element.
type PendingSend = (u64, usize, SendReply);

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
                        uri: format!("{}://{}{}", t.uri.scheme, t.uri.host_header(), t.uri.request_target()),
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
        // Deliver what is left unless stopped (a stop must not wait for a slow reader).
        if !*self.stop.borrow() {
            while let Some(ev) = self.pending.pop_front() {
                if self.events.send(ev).await.is_err() {
                    break;
                }
            }
        } else {
            while let Some(ev) = self.pending.pop_front() {
                if self.events.try_send(ev).is_err() {
                    break;
                }
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
                permit = delivery(&self.events, self.demand.as_deref()), if !self.pending.is_empty() => {
                    match (permit, self.pending.pop_front()) {
                        (Some(permit), Some(ev)) => permit.send(ev),
                        _ => self.pending.clear(),
                    }
                }
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
        self.pending.push_back(Event::Connected(info));
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut assembler = match self.config.delivery {
            Delivery::Messages { max_size } => Some(MessageAssembler::new(max_size)),
            Delivery::Chunks => None,
        };
        let mut out: VecDeque<Bytes> = VecDeque::new();
        let mut queued: u64 = 0;
        let mut written: u64 = 0;
        let mut needs_flush = false;
        let mut sends: VecDeque<PendingSend> = VecDeque::new();
        let mut close_frame = None;
        let mut failure: Option<(ClientError, DisconnectReason)> = None;
        let mut eof = false;
        // Bytes that came with the 101 are decoded at once (esp-protocols #396).
        let mut decodable = true;
        loop {
            // One message at a time, and only once the previous events are delivered (in
            // lockstep: asked for), so replies to them leave before later input is decoded.
            if decodable && self.pending.is_empty() && self.demand.as_ref().is_none_or(|d| d.available_permits() > 0) {
                decodable = connection.process_message(Instant::now());
            }
            while let Some(bytes) = connection.poll_transmit() {
                queued += bytes.len() as u64;
                out.push_back(bytes);
            }
            while let Some(ev) = connection.poll_event() {
                match ev {
                    ProtoEvent::Data(chunk) => match assembler.as_mut() {
                        None => self.pending.push_back(Event::Data(chunk)),
                        Some(asm) => match asm.push(&chunk) {
                            Ok(Some(message)) => self.pending.push_back(Event::Message(message)),
                            Ok(None) => {}
                            Err(_) => {
                                let limit = match self.config.delivery {
                                    Delivery::Messages { max_size } => max_size,
                                    Delivery::Chunks => 0,
                                };
                                connection.fail(ProtocolError::MessageTooBig(limit), Instant::now());
                            }
                        },
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
            match connection.state() {
                ConnectionState::Open => {}
                ConnectionState::CloseSent => self.shared.set(LinkState::Closing),
                ConnectionState::Failed => {
                    fail_sends(&mut sends);
                    let (err, reason) =
                        failure.unwrap_or((ClientError::ConnectionClosed, DisconnectReason::ConnectionLost));
                    return End::Aborted(err, reason);
                }
                ConnectionState::Closed => {
                    self.shared.set(LinkState::Closing);
                    self.linger(&mut rd, &mut wr, &mut out).await;
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
            // Decoded something that gave no event (a pong, a message still in pieces) with
            // more input buffered: decode on before waiting, or nothing would wake us.
            if decodable && self.pending.is_empty() && self.demand.as_ref().is_none_or(|d| d.available_permits() > 0) {
                continue;
            }
            if eof {
                fail_sends(&mut sends);
                let (err, reason) =
                    failure.unwrap_or((ClientError::ConnectionClosed, DisconnectReason::ConnectionLost));
                return End::Aborted(err, reason);
            }
            let deadline = connection.poll_timeout();
            tokio::select! {
                biased;
                _ = self.stop.changed() => return End::Stopped,
                permit = delivery(&self.events, self.demand.as_deref()), if !self.pending.is_empty() => {
                    match (permit, self.pending.pop_front()) {
                        (Some(permit), Some(ev)) => permit.send(ev),
                        // Nobody listens any more: events are dropped, the link keeps running.
                        _ => self.pending.clear(),
                    }
                }
                _ = wait_for_demand(self.demand.as_deref()), if decodable && self.pending.is_empty() => {}
                res = write_step(&mut wr, out.front(), needs_flush), if !out.is_empty() || needs_flush => match res {
                    Ok(Some(n)) => {
                        written += n as u64;
                        needs_flush = true;
                        if let Some(front) = out.front_mut() {
                            front.advance(n);
                            if front.is_empty() {
                                out.pop_front();
                            }
                        }
                    }
                    Ok(None) => {
                        needs_flush = false;
                        while sends.front().is_some_and(|(end, _, _)| *end <= written) {
                            if let Some((_, len, reply)) = sends.pop_front() {
                                let _ = reply.send(Ok(len));
                            }
                        }
                    }
                    Err(e) => {
                        fail_sends(&mut sends);
                        return End::Aborted(ClientError::io("writing", e), DisconnectReason::ConnectionLost);
                    }
                },
                res = read_some(&mut rd, &mut connection), if self.pending.is_empty() && !decodable && !eof => match res {
                    Ok(0) => eof = true,
                    Ok(_) => decodable = true,
                    Err(e) => {
                        fail_sends(&mut sends);
                        return End::Aborted(ClientError::io("reading", e), DisconnectReason::ConnectionLost);
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    None => return End::Stopped,
                    Some(Command::Send { opcode, payload, fin, fragment, reply }) => {
                        let sent = if fragment {
                            connection.send_fragmented(opcode, &payload, fin, self.config.buffer_size)
                        } else {
                            connection.send_frame(opcode, fin, &payload)
                        };
                        match sent {
                            Ok(()) => {
                                let end = queued + connection.poll_transmit().map_or(0, |b| {
                                    let len = b.len() as u64;
                                    out.push_back(b);
                                    len
                                });
                                queued = end;
                                sends.push_back((end, payload.len(), reply));
                            }
                            Err(_) => { let _ = reply.send(Err(ClientError::NotConnected)); }
                        }
                    }
                    Some(Command::Abort) => {
                        fail_sends(&mut sends);
                        return End::Aborted(ClientError::Aborted, DisconnectReason::Aborted);
                    }
                    Some(Command::Close { code, reason, reply }) => {
                        let ok = connection.state() == ConnectionState::Open;
                        connection.close(code, &reason, Instant::now());
                        let _ = reply.send(if ok { Ok(()) } else { Err(ClientError::NotConnected) });
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() => connection.handle_timeout(Instant::now()),
            }
        }
    }

    /// After the closing handshake: write what is left (our close) and give the server
    /// the linger time to close TCP first, as RFC 6455 §7.1.1 asks of clients.
    async fn linger(&mut self, rd: &mut ReadHalf<Stream>, wr: &mut WriteHalf<Stream>, out: &mut VecDeque<Bytes>) {
        let linger = self.config.close_linger;
        let work = async {
            for bytes in out.drain(..) {
                wr.write_all(&bytes).await?;
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

async fn read_some(rd: &mut ReadHalf<Stream>, connection: &mut wsat_proto::Connection) -> std::io::Result<usize> {
    let buf = connection.read_buf();
    buf.reserve(64 * 1024);
    rd.read_buf(buf).await
}

/// Writes some of `front` (`Some(n)`), or flushes once everything is written (`None`), so
/// that TLS records buffered inside the session reach the socket.
async fn write_step(
    wr: &mut WriteHalf<Stream>,
    front: Option<&Bytes>,
    needs_flush: bool,
) -> std::io::Result<Option<usize>> {
    match front {
        Some(bytes) => wr.write(bytes).await.map(Some),
        None if needs_flush => wr.flush().await.map(|()| None),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn fail_sends(sends: &mut VecDeque<PendingSend>) {
    for (_, _, reply) in sends.drain(..) {
        let _ = reply.send(Err(ClientError::NotConnected));
    }
}
