//! The connection state machine: frame sequencing, UTF-8, automatic pong, keepalive
//! timers and the closing handshake. Time is an argument; output is pulled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::close::{self, CloseFrame};
use crate::compression::{Deflater, Inflater, INFLATE_STEP, RSV1, TAIL};
use crate::decode::{ChunkPolicy, DecoderConfig, FrameDecoder, Item};
use crate::deflate::NegotiatedDeflate;
use crate::encode::fragments;
use crate::transmit::TransmitQueue;
use crate::{FrameHeader, OpCode, ProtocolError, SendError, Utf8Validator};

/// Which end of the connection we are: clients mask what they send, servers must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The connecting side.
    Client,
    /// The accepting side.
    Server,
}

/// Behaviour of a [`Connection`]. [`ConnectionConfig::rfc`] is RFC 6455 to the letter;
/// [`ConnectionConfig::esp_firmware`] is what the ESP-AT firmware's client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Our side.
    pub role: Role,
    /// RFC 6455 validation: frame headers, fragment sequences, UTF-8 of text and close
    /// reasons, close codes. Violations fail the connection with a close frame carrying
    /// 1002/1007/1009. Without it, only what the firmware itself rejects is rejected, and
    /// failures drop the connection without a close frame; control frames may then be
    /// longer than 125 bytes, up to `max_chunk` ([`DecoderConfig::max_control_len`]).
    pub strict: bool,
    /// The largest payload chunk delivered in [`Event::Data`] (the ESP `buffer_size`); for a
    /// compressed message, of decompressed bytes.
    pub max_chunk: usize,
    /// When payload chunks are delivered.
    pub chunk_policy: ChunkPolicy,
    /// Frames longer than this fail the connection with 1009.
    pub max_frame_len: Option<u64>,
    /// Messages (all their frames together) longer than this fail the connection with
    /// 1009 as soon as a frame header announces the excess, before its payload arrives. A
    /// compressed message (permessage-deflate) counts its decompressed bytes, checked while
    /// it inflates, a bounded step at a time: it fails at the step that passes the limit,
    /// having delivered at most the limit.
    pub max_message_len: Option<u64>,
    /// Send an empty ping this often; `None` disables keepalive pings.
    pub ping_interval: Option<Duration>,
    /// Fail the connection when a ping stays unanswered this long; `None` disables.
    pub pong_timeout: Option<Duration>,
    /// Restart the ping interval on every received frame (ESP client ≤ 1.5, the firmware's
    /// version) instead of pinging on a fixed schedule (ESP client ≥ 1.6).
    pub ping_resets_on_receive: bool,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// Echo the peer's close code when answering its close (RFC practice); the ESP client
    /// answers with an empty close frame.
    pub echo_close_code: bool,
}

impl ConnectionConfig {
    /// A strict RFC 6455 configuration for `role`: deterministic 64 KiB chunks, no
    /// keepalive, a 5 s close timeout.
    pub fn rfc(role: Role) -> Self {
        ConnectionConfig {
            role,
            strict: true,
            max_chunk: 64 * 1024,
            chunk_policy: ChunkPolicy::Full,
            max_frame_len: None,
            max_message_len: None,
            ping_interval: None,
            pong_timeout: None,
            ping_resets_on_receive: false,
            close_timeout: Duration::from_secs(5),
            echo_close_code: true,
        }
    }

    /// The ESP-AT firmware's client: lenient receive, `buffer_size` chunks, ping after
    /// `ping_interval` without traffic, and the pong timeout of `AT+WSCFG`.
    pub fn esp_firmware(buffer_size: usize, ping_interval: Duration, pong_timeout: Duration) -> Self {
        ConnectionConfig {
            role: Role::Client,
            strict: false,
            max_chunk: buffer_size,
            chunk_policy: ChunkPolicy::Full,
            max_frame_len: None,
            max_message_len: None,
            ping_interval: Some(ping_interval),
            pong_timeout: Some(pong_timeout),
            ping_resets_on_receive: true,
            close_timeout: Duration::from_secs(1),
            echo_close_code: false,
        }
    }

    /// The configuration of the connection's frame decoder.
    pub(crate) fn decoder_config(&self) -> DecoderConfig {
        DecoderConfig {
            role: self.role,
            strict: self.strict,
            max_chunk: self.max_chunk,
            chunk_policy: self.chunk_policy,
            max_frame_len: self.max_frame_len,
        }
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Frames flow both ways.
    Open,
    /// We sent a close frame (asked for, or to fail the connection) and await the peer's.
    CloseSent,
    /// Both close frames were exchanged: the transport should be closed.
    Closed,
    /// The connection failed without a closing handshake (pong timeout, close timeout,
    /// lenient protocol error): drop the transport.
    Failed,
}

/// One chunk of a received frame: the ESP client's DATA event.
///
/// A frame of a compressed message (permessage-deflate) is delivered decompressed: its
/// chunks are the bytes that inflating this frame's part of the message produced, `offset`
/// counts them, and the whole decompressed length is known only at the frame's last chunk.
/// So `payload_len` is [`DataChunk::UNKNOWN_LEN`] on every chunk but the last, which carries
/// the frame's decompressed length ([`DataChunk::ends_frame`] and
/// [`DataChunk::ends_message`] work unchanged). A frame that inflates to nothing is one
/// empty chunk, as an empty frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk {
    /// The frame's opcode as on the wire (continuation frames say so).
    pub opcode: OpCode,
    /// The opcode of the message this frame belongs to (the first fragment's), or `None`
    /// for a continuation nobody started (lenient mode only).
    pub message_opcode: Option<OpCode>,
    /// The frame's FIN bit: the same on every chunk of the frame.
    pub fin: bool,
    /// The whole frame's payload length; decompressed, and [`DataChunk::UNKNOWN_LEN`] until
    /// the last chunk, for a compressed message.
    pub payload_len: u64,
    /// Where this chunk starts within the frame's (decompressed) payload.
    pub offset: u64,
    /// The chunk, unmasked (and inflated). Empty for an empty frame.
    pub data: Bytes,
}

impl DataChunk {
    /// [`DataChunk::payload_len`] of a compressed frame's chunks before its last one: the
    /// decompressed length is not known yet.
    pub const UNKNOWN_LEN: u64 = u64::MAX;

    /// Whether this is the frame's last chunk.
    pub fn ends_frame(&self) -> bool {
        self.offset + self.data.len() as u64 == self.payload_len
    }

    /// Whether this chunk ends a message (the last chunk of a FIN data frame).
    pub fn ends_message(&self) -> bool {
        self.fin && self.ends_frame() && self.opcode.is_data()
    }
}

/// What the connection reports; pull with [`Connection::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chunk of a received frame, control frames included.
    Data(DataChunk),
    /// The peer sent a close frame (after its [`Event::Data`]).
    CloseReceived(Option<CloseFrame>),
    /// The closing handshake is complete; close the transport.
    Closed,
    /// The peer broke the protocol. In strict mode a close frame with
    /// [`ProtocolError::close_code`] is queued; otherwise the connection is failed.
    ProtocolError(ProtocolError),
    /// A ping went unanswered for the pong timeout: the connection failed.
    PongTimeout,
    /// The peer did not answer our close frame in time: the connection failed.
    CloseTimeout,
}

/// Where the connection is, with the detail [`ConnectionState`] leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Our close frame is queued; the peer's is awaited.
    CloseSent {
        /// We closed to fail the connection (a protocol error): data that still arrives
        /// is dropped, only the peer's close frame counts.
        failed: bool,
        /// The byte stream could not be parsed any further (a framing error): not even
        /// the peer's close can be read, so the close timeout ends it.
        framing_lost: bool,
    },
    Closed,
    Failed,
}

impl State {
    fn public(self) -> ConnectionState {
        match self {
            State::Open => ConnectionState::Open,
            State::CloseSent { .. } => ConnectionState::CloseSent,
            State::Closed => ConnectionState::Closed,
            State::Failed => ConnectionState::Failed,
        }
    }

    /// Received bytes are still decoded.
    fn decodes(self) -> bool {
        matches!(
            self,
            State::Open
                | State::CloseSent {
                    framing_lost: false,
                    ..
                }
        )
    }

    /// Received data is dropped: we are failing the connection.
    fn drops_data(self) -> bool {
        matches!(self, State::CloseSent { failed: true, .. })
    }
}

#[derive(Debug)]
struct FrameInProgress {
    header: FrameHeader,
    message_opcode: Option<OpCode>,
    /// Payload bytes (decompressed ones, for a compressed frame) handed out so far.
    offset: u64,
    /// Whole payload of a control frame (delivered as one chunk).
    control_payload: Option<Bytes>,
    /// A frame of a compressed message: its payload is inflated.
    compressed: bool,
    /// The decoder reached the compressed frame's end; it ends once inflated.
    end_due: bool,
}

/// permessage-deflate on one connection.
#[derive(Debug)]
struct DeflateState {
    params: NegotiatedDeflate,
    deflater: Deflater,
    inflater: Inflater,
    /// Between the first frame and the FIN of a message we send: whether it is compressed.
    sending: Option<bool>,
    /// The message being received is compressed.
    receiving: bool,
    /// Decompressed bytes of the current frame not yet handed out: at most one chunk, plus
    /// one inflate step. At least one byte is held back until the frame ends, so that the
    /// frame's last chunk carries its length.
    pending: BytesMut,
}

/// Where inflating stopped.
enum Pump {
    /// The budget of this call is spent and work is left.
    Paused,
    /// Everything handed over is inflated; the frame goes on.
    Drained,
    /// The frame ended; `true` if it ended its message.
    FrameEnded(bool),
}

/// A WebSocket connection after the opening handshake, without I/O.
///
/// Feed received bytes with [`Connection::read_buf`] + [`Connection::process`] (or
/// [`Connection::handle_bytes`]), send with the `send_*` and [`Connection::close`] methods,
/// take bytes to write with [`Connection::poll_transmit`], events with
/// [`Connection::poll_event`], and drive timers with [`Connection::handle_timeout`] at
/// [`Connection::poll_timeout`]. With permessage-deflate negotiated, build it with
/// [`Connection::with_deflate`].
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    decoder: FrameDecoder,
    rx: BytesMut,
    tx: TransmitQueue,
    events: VecDeque<Event>,
    state: State,
    frame: Option<FrameInProgress>,
    /// Opcode of the fragmented message in progress.
    message: Option<OpCode>,
    /// Payload bytes of the message in progress announced so far (all its frame headers).
    message_len: u64,
    utf8: Utf8Validator,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<DeflateState>>,
    /// Where masking keys come from (see [`Connection::mask`]); made on the first.
    mask_rng: Option<Box<StdRng>>,
}

impl Connection {
    /// A connection whose handshake completed at `now`.
    pub fn new(config: ConnectionConfig, now: Instant) -> Self {
        let decoder = FrameDecoder::new(config.decoder_config());
        let next_ping = config.ping_interval.map(|i| now + i);
        Connection {
            config,
            decoder,
            rx: BytesMut::new(),
            tx: TransmitQueue::default(),
            events: VecDeque::new(),
            state: State::Open,
            frame: None,
            message: None,
            message_len: 0,
            utf8: Utf8Validator::new(),
            next_ping,
            pong_deadline: None,
            close_deadline: None,
            deflate: None,
            mask_rng: None,
        }
    }

    /// [`Connection::new`] with permessage-deflate (RFC 7692) as negotiated in the handshake
    /// ([`crate::deflate`]); `None` is [`Connection::new`].
    ///
    /// Sent text and binary messages are compressed (RSV1 on their first frame; not when 8
    /// window bits were agreed for our direction, see [`crate::deflate`]), control frames
    /// never. A received message whose first frame has RSV1 is inflated and delivered
    /// decompressed ([`DataChunk`] says how its lengths read); RSV1 on a control or
    /// continuation frame fails the connection with 1002, data that does not inflate with
    /// 1007.
    pub fn with_deflate(config: ConnectionConfig, deflate: Option<NegotiatedDeflate>, now: Instant) -> Self {
        let mut conn = Connection::new(config, now);
        if let Some(params) = deflate {
            let ours = conn.config.role;
            let theirs = match ours {
                Role::Client => Role::Server,
                Role::Server => Role::Client,
            };
            conn.decoder.allow_rsv(RSV1);
            conn.deflate = Some(Box::new(DeflateState {
                deflater: Deflater::new(
                    params.window_bits(ours),
                    params.compression_level,
                    params.no_context_takeover(ours),
                ),
                inflater: Inflater::new(params.no_context_takeover(theirs)),
                params,
                sending: None,
                receiving: false,
                pending: BytesMut::new(),
            }));
        }
        conn
    }

    /// The permessage-deflate parameters in force, if it was negotiated.
    pub fn deflate(&self) -> Option<&NegotiatedDeflate> {
        self.deflate.as_ref().map(|d| &d.params)
    }

    /// Decompressed bytes held back, not yet in an event: at most `max_chunk` plus one
    /// inflate step (32 KiB). With [`Connection::process_message`], a call inflates at most
    /// about `max(max_chunk, 32 KiB)` bytes before it returns, so that a compressed
    /// message, whose size is not bounded by what was read, waits in the compressed input
    /// until the caller has taken the events.
    pub fn inflated_pending_len(&self) -> usize {
        self.deflate.as_ref().map_or(0, |d| d.pending.len())
    }

    /// The configuration in force.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state.public()
    }

    /// The receive buffer, to read into directly (bytes left over from the handshake
    /// belong here too). Call [`Connection::process`] afterwards.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// How many more received bytes the next decoding step needs (0 if it needs none):
    /// reserve at least this much in [`Connection::read_buf`] so that a large chunk is
    /// read into one allocation.
    pub fn read_hint(&self) -> usize {
        if self.inflating() {
            return 0;
        }
        self.decoder.next_item_len().saturating_sub(self.rx.len())
    }

    /// Appends received bytes and processes them.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) {
        self.rx.extend_from_slice(data);
        self.process(now);
    }

    /// Decodes everything decodable in the receive buffer into events and replies.
    pub fn process(&mut self, now: Instant) {
        while self.process_message(now) {}
    }

    /// Decodes until a message or a control frame has been reported, or the input runs
    /// out. Returns `true` when it stopped at such a boundary with input left, so that a
    /// caller can act on the events (e.g. reply to the message) before anything later is
    /// decoded: a protocol error in the next frame then cannot overtake the reply.
    ///
    /// A compressed message also stops it, with `true`, once it has inflated about
    /// `max(max_chunk, 32 KiB)` bytes and has more to inflate: its decompressed size is not
    /// bounded by what was read, so the rest waits, compressed, until the caller has taken
    /// the events and calls again.
    pub fn process_message(&mut self, now: Instant) -> bool {
        if let Some(more) = self.process_whole_message(now) {
            return more;
        }
        let mut budget = self.config.max_chunk.max(INFLATE_STEP);
        while self.state.decodes() {
            if self.inflating() {
                match self.pump_inflate(&mut budget) {
                    Ok(Pump::Paused) => return true,
                    Ok(Pump::FrameEnded(true)) => return !self.rx.is_empty(),
                    Ok(Pump::Drained | Pump::FrameEnded(false)) => {}
                    Err(err) => self.fail(err, now, false),
                }
                continue;
            }
            match self.decoder.decode(&mut self.rx) {
                Ok(Some(item)) => match self.on_item(item, now) {
                    Ok(true) => return !self.rx.is_empty(),
                    Ok(false) => {}
                    Err(err) => self.fail(err, now, false),
                },
                Ok(None) => break,
                // Framing is lost: nothing after this can be parsed, not even a close.
                Err(err) => self.fail(err, now, true),
            }
        }
        if !self.state.decodes() {
            self.rx.clear();
            self.stop_inflating();
        }
        false
    }

    /// The fast path of [`Connection::process_message`] for the common case: an open
    /// connection between messages (no deflate), and a whole message of one frame of at
    /// most `max_chunk` bytes at the front of the receive buffer (see
    /// [`FrameDecoder::decode_whole_frame`]). It is taken as one [`Event::Data`], with the
    /// general path's checks (message size, strict mode's UTF-8 of text) and timer update;
    /// `None`, with nothing done, for anything else (a check that fails included: the
    /// general path reports it).
    #[inline]
    fn process_whole_message(&mut self, now: Instant) -> Option<bool> {
        if self.state != State::Open || self.frame.is_some() || self.message.is_some() || self.deflate.is_some() {
            return None;
        }
        let max_len = self.config.max_message_len.unwrap_or(u64::MAX);
        let (header, data) = self
            .decoder
            .decode_whole_frame(&mut self.rx, max_len, self.config.strict)?;
        if self.config.ping_resets_on_receive {
            if let Some(interval) = self.config.ping_interval {
                self.next_ping = Some(now + interval);
            }
        }
        self.message_len = header.payload_len;
        self.events.push_back(Event::Data(DataChunk {
            opcode: header.opcode,
            message_opcode: Some(header.opcode),
            fin: true,
            payload_len: header.payload_len,
            offset: 0,
            data,
        }));
        Some(!self.rx.is_empty())
    }

    /// The transport is gone: its end was read, reading or writing failed, or the caller
    /// drops it (an abort). Decodes what the receive buffer still holds and hands out the
    /// bytes received of an unfinished data frame as a last, short [`Event::Data`] (under
    /// [`ChunkPolicy::Full`] they would wait for a full chunk that never comes), so that
    /// every payload byte received is reported, as the ESP client reports what each read
    /// returned. The start of a header or of a control frame is dropped. Then the
    /// connection is [`ConnectionState::Failed`], unless the closing handshake completed.
    ///
    /// Of a compressed message, what the received bytes inflate to is handed out, the last
    /// chunk not ending its frame. This does not pause as [`Connection::process_message`]
    /// does: it is bounded by `max_message_len`, and without one by what those bytes
    /// inflate to (DEFLATE expands at most about 1000 times).
    pub fn handle_eof(&mut self, now: Instant) {
        self.drain_received(now);
        if self.state != State::Closed {
            self.state = State::Failed;
        }
    }

    /// Decodes everything left in the receive buffer as input that has ended (see
    /// [`Connection::handle_eof`]), then drops what cannot be decoded.
    fn drain_received(&mut self, now: Instant) {
        let mut budget = usize::MAX;
        while self.state.decodes() {
            if self.inflating() {
                if let Err(err) = self.pump_inflate(&mut budget) {
                    self.fail(err, now, false);
                }
                continue;
            }
            match self.decoder.decode_eof(&mut self.rx) {
                Ok(Some(item)) => {
                    if let Err(err) = self.on_item(item, now) {
                        self.fail(err, now, false);
                    }
                }
                Ok(None) => break,
                Err(err) => self.fail(err, now, true),
            }
        }
        // What an unfinished compressed frame inflated to, as a last chunk that does not
        // end the frame.
        if self.state.decodes() && !self.state.drops_data() {
            while self.inflated_pending_len() > 0 {
                self.emit_inflated(self.config.max_chunk.max(1), false);
            }
        }
        self.rx.clear();
        self.stop_inflating();
    }

    /// Fails the connection for `err`: strict mode queues a close frame with its code and
    /// waits for the peer's close (unless `framing_lost`, when that close cannot be read);
    /// lenient mode fails at once.
    fn fail(&mut self, err: ProtocolError, now: Instant, framing_lost: bool) {
        let close_sent = match self.state {
            State::Open => false,
            State::CloseSent { failed: false, .. } => true,
            State::CloseSent { failed: true, .. } => {
                // Already failing: only a lost framing is news (decoding must stop).
                if framing_lost {
                    self.state = State::CloseSent {
                        failed: true,
                        framing_lost,
                    };
                }
                return;
            }
            State::Closed | State::Failed => return,
        };
        self.events.push_back(Event::ProtocolError(err.clone()));
        if !self.config.strict {
            self.state = State::Failed;
            return;
        }
        if !close_sent {
            self.queue_close(Some(err.close_code()), &err.to_string(), now);
        }
        self.state = State::CloseSent {
            failed: true,
            framing_lost,
        };
    }

    /// Sends one frame exactly as given: any opcode, any FIN, any length, nothing checked.
    /// A close frame sent this way does not start the closing handshake (as with the
    /// firmware's `AT+WSSEND` opcode 8).
    ///
    /// With permessage-deflate ([`Connection::with_deflate`]) a text or binary frame starts
    /// a compressed message (RSV1 set, its payload compressed with a sync flush) and
    /// continuation frames continue it; FIN ends it (the flush's `00 00 ff ff` removed).
    /// Control frames and reserved opcodes still go out as given.
    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        match self.compress(opcode, fin, payload) {
            Some((rsv, data)) => {
                let mask = self.mask();
                self.tx.push_frame(opcode, fin, rsv, mask, &data, None);
            }
            None => self.write_frame(opcode, fin, payload),
        }
        Ok(())
    }

    /// [`Connection::send_frame`] for a payload the caller shares: a large one on a client
    /// connection is not copied whole but masked a chunk at a time as it is transmitted
    /// (less memory, and each chunk is still in cache when the transport copies it).
    pub fn send_frame_shared(&mut self, opcode: OpCode, fin: bool, payload: &Bytes) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        match self.compress(opcode, fin, payload) {
            Some((rsv, data)) => {
                let data = Bytes::from(data);
                let mask = self.mask();
                self.tx.push_frame(opcode, fin, rsv, mask, &data, Some(&data));
            }
            None => {
                let mask = self.mask();
                self.tx.push_frame(opcode, fin, 0, mask, payload, Some(payload));
            }
        }
        Ok(())
    }

    /// Sends `payload` split into frames of at most `frame_size` bytes, the ESP client's
    /// way: `opcode` on the first frame, continuations after, FIN on the last if `fin`.
    /// With permessage-deflate, the payload is compressed first and the compressed bytes
    /// are split (RSV1 on the first frame only).
    pub fn send_fragmented(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        fin: bool,
        frame_size: usize,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::NotOpen);
        }
        if let Some((rsv, data)) = self.compress(opcode, fin, payload) {
            for (i, f) in fragments(opcode, &data, fin, frame_size).enumerate() {
                let rsv = if i == 0 { rsv } else { 0 };
                let mask = self.mask();
                self.tx.push_frame(f.opcode, f.fin, rsv, mask, f.payload, None);
            }
            return Ok(());
        }
        for f in fragments(opcode, payload, fin, frame_size) {
            self.write_frame(f.opcode, f.fin, f.payload);
        }
        Ok(())
    }

    /// With permessage-deflate, a data frame's compressed payload and RSV bits; `None` for
    /// a frame that goes out as given (no extension, a control frame or reserved opcode, a
    /// message not compressed).
    fn compress(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Option<(u8, Vec<u8>)> {
        let d = self.deflate.as_mut()?;
        let (compressed, first) = match opcode {
            OpCode::TEXT | OpCode::BINARY => (d.deflater.compresses(), true),
            OpCode::CONTINUATION => (d.sending == Some(true), false),
            _ => return None,
        };
        d.sending = (!fin).then_some(compressed);
        if !compressed {
            return None;
        }
        let rsv = if first { RSV1 } else { 0 };
        Some((rsv, d.deflater.compress(payload, fin)))
    }

    /// Starts the closing handshake with `code` (none sends an empty close frame) and
    /// `reason` (cut to fit 125 bytes). Does nothing unless the connection is open.
    pub fn close(&mut self, code: Option<u16>, reason: &str, now: Instant) {
        if self.state == State::Open {
            self.queue_close(code, reason, now);
        }
    }

    /// The next chunk of bytes to write to the transport; call until `None`.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        self.tx.take_into(&mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Moves the next bytes waiting to be written to the end of `out`: all of them, or,
    /// while a large shared payload is being masked, up to one chunk of it (call again
    /// once `out` is written, while [`Connection::wants_transmit`]). When `out` is empty
    /// the buffers are swapped instead of copied, so a writer that drains `out` and hands
    /// it back keeps reusing two allocations rather than allocating one per frame.
    pub fn transmit_into(&mut self, out: &mut BytesMut) {
        self.tx.take_into(out);
    }

    /// Bytes are waiting to be written.
    pub fn wants_transmit(&self) -> bool {
        !self.tx.is_empty()
    }

    /// How many bytes are waiting to be written (not yet taken with
    /// [`Connection::transmit_into`] or [`Connection::poll_transmit`]). Pongs count at most
    /// once while they wait at the end of the queue: a newer ping's pong replaces the
    /// previous one there (RFC 6455 §5.5.3), so a peer that floods pings and never reads
    /// cannot make this grow while the caller stops taking bytes.
    pub fn transmit_len(&self) -> usize {
        self.tx.len()
    }

    /// The stream offset just past the last byte queued for transmission so far (every
    /// frame ever queued, written or not). A send is on the wire once this many bytes
    /// have been written.
    pub fn transmit_end(&self) -> u64 {
        self.tx.end()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open => [self.next_ping, self.pong_deadline].into_iter().flatten().min(),
            State::CloseSent { .. } => self.close_deadline,
            State::Closed | State::Failed => None,
        }
    }

    /// Runs the timers due at `now`: keepalive pings, the pong timeout, the close timeout.
    /// A timeout fails the connection as [`Connection::handle_eof`] does, after reporting
    /// what was received before it (the bytes of an unfinished frame included), then
    /// reports itself ([`Event::PongTimeout`], [`Event::CloseTimeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Open => {
                if self.pong_deadline.is_some_and(|d| now >= d) {
                    self.time_out(Event::PongTimeout, now);
                    return;
                }
                if let (Some(at), Some(interval)) = (self.next_ping, self.config.ping_interval) {
                    if now >= at {
                        self.write_frame(OpCode::PING, true, &[]);
                        self.next_ping = Some(now + interval);
                        if self.pong_deadline.is_none() {
                            self.pong_deadline = self.config.pong_timeout.map(|t| now + t);
                        }
                    }
                }
            }
            State::CloseSent { .. } => {
                if self.close_deadline.is_some_and(|d| now >= d) {
                    self.time_out(Event::CloseTimeout, now);
                }
            }
            State::Closed | State::Failed => {}
        }
    }

    /// Fails the connection for a timer that ran out (`event`), after reporting what was
    /// received before it; nothing is read after a timeout.
    fn time_out(&mut self, event: Event, now: Instant) {
        self.drain_received(now);
        if matches!(self.state, State::Open | State::CloseSent { .. }) {
            self.state = State::Failed;
            self.events.push_back(event);
        }
    }

    /// Handles one decoded item; `Ok(true)` when a message or control frame ended. A
    /// compressed frame's payload and end go to the inflater, and [`Connection::pump_inflate`]
    /// reports its end.
    fn on_item(&mut self, item: Item, now: Instant) -> Result<bool, ProtocolError> {
        match item {
            Item::Start(header) => self.on_frame_start(header, now).map(|()| false),
            Item::Payload(data) => self.on_payload(data).map(|()| false),
            Item::End => {
                if let (Some(frame), Some(d)) = (self.frame.as_mut(), self.deflate.as_mut()) {
                    if frame.compressed {
                        frame.end_due = true;
                        if frame.header.fin && !self.state.drops_data() {
                            d.inflater.push(Bytes::from_static(&TAIL));
                        }
                        return Ok(false);
                    }
                }
                self.on_frame_end(now)
            }
        }
    }

    /// A compressed frame has work left: input to inflate, or its end to report.
    fn inflating(&self) -> bool {
        match (&self.frame, &self.deflate) {
            (Some(frame), Some(d)) => frame.compressed && (frame.end_due || d.inflater.busy()),
            _ => false,
        }
    }

    /// Inflates what the current compressed frame handed over, a step at a time, while
    /// `budget` (decompressed bytes) lasts; then ends the frame if its end was decoded.
    fn pump_inflate(&mut self, budget: &mut usize) -> Result<Pump, ProtocolError> {
        loop {
            let Some(d) = self.deflate.as_mut() else {
                return Ok(Pump::Drained);
            };
            if d.inflater.busy() {
                if *budget == 0 {
                    return Ok(Pump::Paused);
                }
                let start = d.pending.len();
                let (produced, inflated) = d.inflater.step(&mut d.pending);
                *budget = budget.saturating_sub(produced);
                // What inflated before bad data is delivered before the error.
                if let Err(err) = self.on_inflated(start, produced).and(inflated) {
                    self.stop_inflating();
                    return Err(err);
                }
                continue;
            }
            if self.frame.as_ref().is_some_and(|f| f.end_due) {
                return self.end_compressed_frame().map(Pump::FrameEnded);
            }
            return Ok(Pump::Drained);
        }
    }

    /// Takes `produced` new decompressed bytes at `pending[start..]`: counts them against
    /// the message limit (a step that passes it is cut at the limit, so that where it fails
    /// does not depend on how the input was cut), checks text, hands out full chunks.
    fn on_inflated(&mut self, start: usize, produced: usize) -> Result<(), ProtocolError> {
        if produced == 0 {
            return Ok(());
        }
        let mut accepted = produced;
        let mut too_big = None;
        self.message_len = self.message_len.saturating_add(produced as u64);
        if let Some(max) = self.config.max_message_len.filter(|&max| self.message_len > max) {
            // The excess is at most this step (the previous one was within the limit).
            let excess = usize::try_from(self.message_len - max).unwrap_or(usize::MAX);
            accepted = produced.saturating_sub(excess);
            too_big = Some(ProtocolError::MessageTooBig(max));
        }
        let text = self
            .frame
            .as_ref()
            .is_some_and(|f| f.message_opcode == Some(OpCode::TEXT));
        if let Some(d) = self.deflate.as_mut() {
            d.pending.truncate(start + accepted);
            if self.config.strict && text {
                self.utf8
                    .feed(&d.pending[start..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        loop {
            let (held, max) = (self.inflated_pending_len(), self.config.max_chunk.max(1));
            // A chunk goes out once something follows it: a full one, or under
            // `ChunkPolicy::Eager` all but the last byte.
            let n = if held > max {
                max
            } else if self.config.chunk_policy == ChunkPolicy::Eager && held > 1 {
                held - 1
            } else {
                break;
            };
            self.emit_inflated(n, false);
        }
        too_big.map_or(Ok(()), Err)
    }

    /// Hands out the next `n` held-back decompressed bytes as a chunk of the current frame;
    /// `last` makes it the frame's last chunk (its length known).
    fn emit_inflated(&mut self, n: usize, last: bool) {
        let (Some(d), Some(frame)) = (self.deflate.as_mut(), self.frame.as_mut()) else {
            return;
        };
        let n = n.min(d.pending.len());
        // A small chunk is copied rather than split off: split off, it would keep the whole
        // inflate buffer (a step, 32 KiB, or more) alive for as long as the application
        // holds it, and the next step would need a new buffer.
        let data = if n.saturating_mul(8) < d.pending.capacity() {
            let data = Bytes::copy_from_slice(&d.pending[..n]);
            d.pending.advance(n);
            data
        } else {
            d.pending.split_to(n).freeze()
        };
        let len = data.len() as u64;
        let chunk = DataChunk {
            opcode: frame.header.opcode,
            message_opcode: frame.message_opcode,
            fin: frame.header.fin,
            payload_len: if last {
                frame.offset + len
            } else {
                DataChunk::UNKNOWN_LEN
            },
            offset: frame.offset,
            data,
        };
        frame.offset += len;
        if !self.state.drops_data() {
            self.events.push_back(Event::Data(chunk));
        }
    }

    /// A compressed frame is inflated to its end: its last chunk (what is held back, or an
    /// empty chunk for a frame that inflated to nothing), and the end of its message.
    /// `Ok(true)` if it ended the message.
    fn end_compressed_frame(&mut self) -> Result<bool, ProtocolError> {
        let max = self.config.max_chunk.max(1);
        while self.inflated_pending_len() > max {
            self.emit_inflated(max, false);
        }
        self.emit_inflated(max, true);
        let Some(frame) = self.frame.take() else {
            return Ok(false);
        };
        if !frame.header.fin {
            return Ok(false);
        }
        if let Some(d) = self.deflate.as_mut() {
            d.inflater.end_message();
            d.receiving = false;
        }
        if self.config.strict && frame.message_opcode == Some(OpCode::TEXT) {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(true)
    }

    /// Drops the compressed input and decompressed bytes not handed out (the connection
    /// stops decoding, or failed on them).
    fn stop_inflating(&mut self) {
        if let Some(d) = self.deflate.as_mut() {
            d.inflater.clear();
            d.pending.clear();
        }
    }

    fn on_frame_start(&mut self, header: FrameHeader, now: Instant) -> Result<(), ProtocolError> {
        if self.config.ping_resets_on_receive {
            if let Some(interval) = self.config.ping_interval {
                self.next_ping = Some(now + interval);
            }
        }
        let op = header.opcode;
        let mut compressed = false;
        if let Some(d) = self.deflate.as_ref() {
            let rsv1 = header.rsv & RSV1 != 0;
            if rsv1 && op.is_control() {
                return Err(ProtocolError::CompressedControl(op));
            }
            if rsv1 && op == OpCode::CONTINUATION {
                return Err(ProtocolError::CompressedContinuation);
            }
            compressed = match op {
                OpCode::TEXT | OpCode::BINARY => rsv1,
                OpCode::CONTINUATION => self.message.is_some() && d.receiving,
                _ => false,
            };
        }
        let message_opcode = if op.is_control() {
            Some(op)
        } else if op == OpCode::CONTINUATION {
            match self.message {
                Some(m) => Some(m),
                None if self.config.strict => return Err(ProtocolError::UnexpectedContinuation),
                None => None,
            }
        } else {
            if self.config.strict && self.message.is_some() {
                return Err(ProtocolError::ExpectedContinuation(op));
            }
            if op == OpCode::TEXT {
                self.utf8 = Utf8Validator::new();
            }
            Some(op)
        };
        if op.is_data() {
            self.message = if header.fin { None } else { message_opcode };
            if op != OpCode::CONTINUATION {
                self.message_len = 0;
                if let Some(d) = self.deflate.as_mut() {
                    d.receiving = compressed;
                }
            }
            // A compressed message counts its decompressed bytes, as they come.
            if !compressed {
                self.message_len = self.message_len.saturating_add(header.payload_len);
                if let Some(max) = self.config.max_message_len.filter(|&max| self.message_len > max) {
                    return Err(ProtocolError::MessageTooBig(max));
                }
            }
        }
        self.frame = Some(FrameInProgress {
            header,
            message_opcode,
            offset: 0,
            control_payload: None,
            compressed,
            end_due: false,
        });
        Ok(())
    }

    fn on_payload(&mut self, data: Bytes) -> Result<(), ProtocolError> {
        let strict = self.config.strict;
        let Some(frame) = self.frame.as_mut() else {
            return Ok(());
        };
        if frame.header.opcode.is_control() {
            frame.control_payload = Some(data);
            return Ok(());
        }
        if frame.compressed {
            if let Some(d) = self.deflate.as_mut().filter(|_| !self.state.drops_data()) {
                d.inflater.push(data);
            }
            return Ok(());
        }
        if strict && frame.message_opcode == Some(OpCode::TEXT) {
            self.utf8.feed(&data).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let chunk = DataChunk {
            opcode: frame.header.opcode,
            message_opcode: frame.message_opcode,
            fin: frame.header.fin,
            payload_len: frame.header.payload_len,
            offset: frame.offset,
            data,
        };
        frame.offset += chunk.data.len() as u64;
        if !self.state.drops_data() {
            self.events.push_back(Event::Data(chunk));
        }
        Ok(())
    }

    fn on_frame_end(&mut self, now: Instant) -> Result<bool, ProtocolError> {
        let Some(frame) = self.frame.take() else {
            return Ok(false);
        };
        let h = frame.header;
        if h.opcode.is_data() {
            if self.config.strict && h.fin && frame.message_opcode == Some(OpCode::TEXT) {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            if h.payload_len == 0 && !self.state.drops_data() {
                self.events.push_back(Event::Data(DataChunk {
                    opcode: h.opcode,
                    message_opcode: frame.message_opcode,
                    fin: h.fin,
                    payload_len: 0,
                    offset: 0,
                    data: Bytes::new(),
                }));
            }
            return Ok(h.fin);
        }
        let payload = frame.control_payload.unwrap_or_default();
        let close = if h.opcode == OpCode::CLOSE {
            Some(close::parse_payload(&payload, self.config.strict)?)
        } else {
            None
        };
        if !self.state.drops_data() || close.is_some() {
            self.events.push_back(Event::Data(DataChunk {
                opcode: h.opcode,
                message_opcode: Some(h.opcode),
                fin: h.fin,
                payload_len: h.payload_len,
                offset: 0,
                data: payload.clone(),
            }));
        }
        match h.opcode {
            OpCode::PING if self.state == State::Open => {
                let mask = self.mask();
                self.tx.push_pong(mask, &payload);
            }
            OpCode::PONG => self.pong_deadline = None,
            OpCode::CLOSE => self.on_close(close.flatten(), now),
            _ => {}
        }
        Ok(true)
    }

    fn on_close(&mut self, frame: Option<CloseFrame>, now: Instant) {
        let echo_code = frame.as_ref().filter(|_| self.config.echo_close_code).map(|f| f.code);
        self.events.push_back(Event::CloseReceived(frame));
        if self.state == State::Open {
            self.queue_close(echo_code, "", now);
        }
        self.state = State::Closed;
        self.events.push_back(Event::Closed);
    }

    fn queue_close(&mut self, code: Option<u16>, reason: &str, now: Instant) {
        let payload = code.map(|c| close::encode_payload(c, reason)).unwrap_or_default();
        self.write_frame(OpCode::CLOSE, true, &payload);
        self.state = State::CloseSent {
            failed: false,
            framing_lost: false,
        };
        self.close_deadline = Some(now + self.config.close_timeout);
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.mask();
        self.tx.push_frame(opcode, fin, 0, mask, payload, None);
    }

    /// A fresh masking key for a client's frame; none for a server's. The keys come from
    /// the connection's own ChaCha generator, seeded from the thread's (which the OS
    /// seeds) on first use: as unpredictable as `rand::random`'s (RFC 6455 §5.3), without
    /// its thread-local look-up on every frame, and 32 bits at once rather than a byte at a
    /// time.
    fn mask(&mut self) -> Option<[u8; 4]> {
        match self.config.role {
            Role::Client => Some(
                self.mask_rng
                    .get_or_insert_with(|| Box::new(StdRng::from_rng(&mut rand::rng())))
                    .next_u32()
                    .to_le_bytes(),
            ),
            Role::Server => None,
        }
    }
}

#[cfg(test)]
mod deflate_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, MessageAssembler};

    fn client_cfg(max_chunk: usize) -> ConnectionConfig {
        ConnectionConfig {
            max_chunk,
            ..ConnectionConfig::rfc(Role::Client)
        }
    }

    /// A client and a server connection wired back to back.
    struct Pair {
        client: Connection,
        server: Connection,
        now: Instant,
    }

    impl Pair {
        fn new(client: ConnectionConfig) -> Self {
            let now = Instant::now();
            Pair {
                client: Connection::new(client, now),
                server: Connection::new(ConnectionConfig::rfc(Role::Server), now),
                now,
            }
        }

        /// Moves bytes both ways until nothing is left in flight.
        fn drive(&mut self) {
            loop {
                let mut moved = false;
                while let Some(b) = self.client.poll_transmit() {
                    self.server.handle_bytes(&b, self.now);
                    moved = true;
                }
                while let Some(b) = self.server.poll_transmit() {
                    self.client.handle_bytes(&b, self.now);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
        }
    }

    #[test]
    fn transmit_into_reuses_the_callers_buffer_and_counts_the_stream() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        let mut out = BytesMut::with_capacity(4096);
        c.send_frame(OpCode::BINARY, true, &[1; 100]).unwrap();
        let first = c.transmit_end();
        assert_eq!(first, 2 + 4 + 100, "header, mask key, payload");
        c.transmit_into(&mut out);
        assert_eq!(out.len() as u64, first);
        // The caller's empty buffer went to the connection: the next frame is encoded into
        // its allocation, and appended to a non-empty `out` in order.
        c.send_frame(OpCode::TEXT, true, b"hi").unwrap();
        assert_eq!(c.transmit_end(), first + 2 + 4 + 2);
        c.transmit_into(&mut out);
        assert_eq!(out.len() as u64, c.transmit_end());
        assert_eq!(out[first as usize], 0x81);
        let mut empty = BytesMut::new();
        c.transmit_into(&mut empty);
        assert!(empty.is_empty(), "nothing is transmitted twice");
        // Automatic replies count too.
        c.handle_bytes(&[0x89, 0x00], Instant::now());
        let before = out.len() as u64;
        c.transmit_into(&mut out);
        assert_eq!(c.transmit_end() - before, 2 + 4, "an empty pong");
        assert_eq!(out.len() as u64, c.transmit_end());
    }

    #[test]
    fn read_hint_asks_for_the_rest_of_the_chunk() {
        let mut c = Connection::new(client_cfg(1 << 20), Instant::now());
        assert_eq!(c.read_hint(), 2);
        // A 100 000-byte binary frame header (127 = 64-bit length) and 10 payload bytes.
        let mut bytes = vec![0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x86, 0xa0];
        bytes.extend_from_slice(&[5; 10]);
        c.handle_bytes(&bytes, Instant::now());
        assert_eq!(c.read_hint(), 100_000 - 10);
        assert!(events(&mut c).is_empty(), "a full chunk is not there yet");
    }

    fn events(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn messages(c: &mut Connection) -> Vec<Message> {
        let mut asm = MessageAssembler::new();
        events(c)
            .into_iter()
            .filter_map(|e| match e {
                Event::Data(chunk) => asm.push(&chunk),
                _ => None,
            })
            .collect()
    }

    fn raw_frames(bytes: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
        let mut dec = FrameDecoder::new(DecoderConfig {
            role: Role::Server,
            strict: false,
            max_chunk: usize::MAX,
            chunk_policy: ChunkPolicy::Full,
            max_frame_len: None,
        });
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(Some(item)) = dec.decode(&mut buf) {
            match item {
                Item::Start(h) => out.push((h.opcode, h.fin, Vec::new())),
                Item::Payload(p) => out.last_mut().expect("started").2.extend_from_slice(&p),
                Item::End => {}
            }
        }
        out
    }

    #[test]
    fn echo_of_five_texts() {
        let mut p = Pair::new(client_cfg(1024));
        for i in 0..5 {
            p.client
                .send_frame(OpCode::TEXT, true, format!("hello {i:04}").as_bytes())
                .expect("open");
        }
        p.drive();
        for m in messages(&mut p.server) {
            p.server.send_frame(m.opcode, true, &m.payload).expect("open");
        }
        p.drive();
        let got: Vec<_> = messages(&mut p.client)
            .into_iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).expect("utf8"))
            .collect();
        assert_eq!(got, (0..5).map(|i| format!("hello {i:04}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_2000_byte_frame_gives_chunks_at_offsets_0_and_1024() {
        let mut p = Pair::new(client_cfg(1024));
        p.server.send_frame(OpCode::TEXT, true, &[b'a'; 2000]).expect("open");
        p.drive();
        let chunks: Vec<_> = events(&mut p.client)
            .into_iter()
            .map(|e| match e {
                Event::Data(c) => (c.offset, c.data.len(), c.payload_len, c.fin),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(chunks, [(0, 1024, 2000, true), (1024, 976, 2000, true)]);
    }

    #[test]
    fn long_send_leaves_as_two_frames_and_fragmented_sends_join() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        c.send_fragmented(OpCode::TEXT, &[b'a'; 2000], true, 1024)
            .expect("open");
        let frames = raw_frames(&c.poll_transmit().expect("bytes"));
        let shape: Vec<_> = frames.iter().map(|(op, fin, p)| (*op, *fin, p.len())).collect();
        assert_eq!(shape, [(OpCode::TEXT, false, 1024), (OpCode::CONTINUATION, true, 976)]);

        let mut p = Pair::new(client_cfg(1024));
        p.client.send_frame(OpCode::TEXT, false, &[b'a'; 32]).expect("open");
        p.client
            .send_frame(OpCode::CONTINUATION, false, &[b'b'; 32])
            .expect("open");
        p.client.send_frame(OpCode::CONTINUATION, true, &[]).expect("open");
        p.client.send_frame(OpCode::BINARY, false, &[0; 5]).expect("open");
        p.client.send_frame(OpCode::CONTINUATION, false, &[1; 5]).expect("open");
        p.client.send_frame(OpCode::CONTINUATION, true, &[]).expect("open");
        p.drive();
        let got = messages(&mut p.server);
        assert_eq!(got[0].payload, [&[b'a'; 32][..], &[b'b'; 32][..]].concat());
        assert_eq!(
            (got[1].opcode, &got[1].payload[..]),
            (OpCode::BINARY, &[0, 0, 0, 0, 0, 1, 1, 1, 1, 1][..])
        );
    }

    #[test]
    fn client_frames_are_masked_with_fresh_keys() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        c.send_frame(OpCode::TEXT, true, b"same").expect("open");
        c.send_frame(OpCode::TEXT, true, b"same").expect("open");
        let bytes = c.poll_transmit().expect("bytes");
        assert_eq!(bytes[1] & 0x80, 0x80);
        assert_ne!(
            &bytes[2..6],
            &bytes[12..16],
            "two frames, two keys (1 in 2^32 to collide)"
        );
    }

    #[test]
    fn ping_is_answered_with_its_payload() {
        let mut p = Pair::new(client_cfg(1024));
        p.server.send_frame(OpCode::PING, true, b"hi").expect("open");
        p.drive();
        let ev = events(&mut p.server);
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Data(c) if c.opcode == OpCode::PONG && &c.data[..] == b"hi")),
            "{ev:?}"
        );
    }

    /// Pongs of a ping flood that nobody takes collapse into one, the newest (RFC 6455
    /// §5.5.3); a pong behind other frames, or already taken, is never touched.
    #[test]
    fn an_untaken_pong_is_replaced_by_the_newest_ping_s() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        let now = Instant::now();
        for i in 0..10_000u32 {
            let mut ping = vec![0x89, 4];
            ping.extend_from_slice(&i.to_be_bytes());
            c.handle_bytes(&ping, now);
        }
        assert_eq!(c.transmit_len(), 2 + 4 + 4, "one masked pong of 4 bytes waits");
        assert_eq!(c.transmit_end(), 10, "the offsets count the one pong");
        let mut server = Connection::new(ConnectionConfig::rfc(Role::Server), now);
        server.handle_bytes(&c.poll_transmit().expect("a pong"), now);
        let pongs: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                Event::Data(d) if d.opcode == OpCode::PONG => Some(d.data),
                _ => None,
            })
            .collect();
        assert_eq!(pongs, [Bytes::copy_from_slice(&9_999u32.to_be_bytes())]);

        // Taken: the next pong is queued anew. Behind a data frame: both stay, in order.
        c.handle_bytes(&[0x89, 1, b'a'], now);
        assert!(c.poll_transmit().is_some());
        c.handle_bytes(&[0x89, 1, b'b'], now);
        c.send_frame(OpCode::TEXT, true, b"data").expect("open");
        c.handle_bytes(&[0x89, 1, b'c'], now);
        server.handle_bytes(&c.poll_transmit().expect("frames"), now);
        let seen: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                Event::Data(d) => Some((d.opcode, d.data)),
                _ => None,
            })
            .collect();
        assert_eq!(
            seen,
            [
                (OpCode::PONG, Bytes::from_static(b"b")),
                (OpCode::TEXT, Bytes::from_static(b"data")),
                (OpCode::PONG, Bytes::from_static(b"c")),
            ]
        );
    }

    /// The message limit counts every frame of a message and fails with 1009 at the header
    /// that passes it, before that frame's payload is read; control frames in between and
    /// the next message start afresh.
    #[test]
    fn a_message_past_the_limit_fails_at_the_announcing_header() {
        let config = ConnectionConfig {
            max_message_len: Some(10),
            ..ConnectionConfig::rfc(Role::Client)
        };
        let now = Instant::now();
        let mut c = Connection::new(config.clone(), now);
        c.handle_bytes(&[0x81, 10], now);
        c.handle_bytes(&[b'a'; 10], now);
        assert!(events(&mut c).iter().all(|e| !matches!(e, Event::ProtocolError(_))));
        // 6 + 4 bytes with a ping between: exactly the limit.
        c.handle_bytes(&[0x02, 6, 0, 0, 0, 0, 0, 0, 0x89, 0, 0x80, 4, 1, 2, 3, 4], now);
        assert!(events(&mut c).iter().all(|e| !matches!(e, Event::ProtocolError(_))));
        assert_eq!(c.state(), ConnectionState::Open);
        assert!(c.poll_transmit().is_some(), "the pong");
        // 6 + a header announcing 5 more: fails before the 5 bytes arrive.
        c.handle_bytes(&[0x02, 6, 0, 0, 0, 0, 0, 0, 0x80, 5], now);
        let ev = events(&mut c);
        assert!(
            ev.contains(&Event::ProtocolError(ProtocolError::MessageTooBig(10))),
            "{ev:?}"
        );
        assert_eq!(c.state(), ConnectionState::CloseSent);
        let close = c.poll_transmit().expect("a close frame");
        assert_eq!(close[0], 0x88);
        let code_at = 2 + 4;
        let mut code = [close[code_at], close[code_at + 1]];
        crate::mask::apply_mask(&mut code, [close[2], close[3], close[4], close[5]], 0);
        assert_eq!(u16::from_be_bytes(code), 1009);
    }

    /// A framing error while already failing still stops decoding (the fuzz corpus found
    /// a loop here): invalid UTF-8 fails the connection, then a frame with reserved bits
    /// loses the framing, and nothing after it is decoded.
    #[test]
    fn a_framing_error_after_a_protocol_error_stops_decoding() {
        let now = Instant::now();
        let mut c = Connection::new(client_cfg(1024), now);
        c.handle_bytes(&[0x81, 1, 0xff, 0xf1, 0, 0x81, 1, b'a'], now);
        let errors = events(&mut c)
            .into_iter()
            .filter(|e| matches!(e, Event::ProtocolError(_)))
            .count();
        assert_eq!(errors, 1, "only the first failure is reported");
        assert_eq!(c.state(), ConnectionState::CloseSent);
        assert!(c.read_buf().is_empty(), "the unparseable rest is dropped");
    }

    #[test]
    fn close_started_by_the_client_completes() {
        let mut p = Pair::new(client_cfg(1024));
        p.client.close(None, "", p.now);
        assert_eq!(p.client.state(), ConnectionState::CloseSent);
        assert_eq!(
            p.client.send_frame(OpCode::TEXT, true, b"late"),
            Err(SendError::NotOpen)
        );
        p.drive();
        assert_eq!(
            (p.client.state(), p.server.state()),
            (ConnectionState::Closed, ConnectionState::Closed)
        );
        let ev = events(&mut p.client);
        // The server echoes an empty close: no code.
        assert!(
            matches!(&ev[..], [Event::Data(c), Event::CloseReceived(None), Event::Closed] if c.opcode == OpCode::CLOSE),
            "{ev:?}"
        );
    }

    #[test]
    fn close_started_by_the_server_is_echoed_with_its_code_or_empty_for_the_firmware() {
        for (cfg, echoed) in [
            (client_cfg(1024), vec![0x03, 0xE9]),
            (
                ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(120)),
                vec![],
            ),
        ] {
            let mut c = Connection::new(cfg, Instant::now());
            c.handle_bytes(&[0x88, 0x02, 0x03, 0xE9], Instant::now());
            let ev = events(&mut c);
            assert!(
                matches!(&ev[1], Event::CloseReceived(Some(CloseFrame { code: 1001, .. }))),
                "{ev:?}"
            );
            assert_eq!(c.state(), ConnectionState::Closed);
            let frames = raw_frames(&c.poll_transmit().expect("echo"));
            assert_eq!(frames, [(OpCode::CLOSE, true, echoed)]);
        }
    }

    #[test]
    fn strict_protocol_errors_queue_a_close_with_their_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x80, 0x01, b'x'], 1002),                   // continuation without a start
            (vec![0x01, 0x01, b'a', 0x81, 0x01, b'b'], 1002), // new text inside a fragmented one
            (vec![0x01, 0x02, b'a', 0xCE, 0x80, 0x02, 0xBA, 0xFF], 1007), // bad UTF-8 split over fragments
            (vec![0x81, 0x02, 0xC3, 0x28], 1007),
            (vec![0x88, 0x01, 0x03], 1002),             // 1-byte close payload
            (vec![0x88, 0x02, 0x03, 0xED], 1002),       // close code 1005 on the wire
            (vec![0x88, 0x03, 0x03, 0xE8, 0xFF], 1007), // close reason not UTF-8
        ];
        for (bytes, code) in cases {
            let mut c = Connection::new(client_cfg(1024), Instant::now());
            c.handle_bytes(&bytes, Instant::now());
            let ev = events(&mut c);
            let err = ev.iter().find_map(|e| match e {
                Event::ProtocolError(err) => Some(err.clone()),
                _ => None,
            });
            assert_eq!(err.map(|e| e.close_code()), Some(code), "{bytes:02x?}: {ev:?}");
            assert_eq!(c.state(), ConnectionState::CloseSent);
            let sent = raw_frames(&c.poll_transmit().expect("close"));
            assert_eq!(sent[0].0, OpCode::CLOSE);
            assert_eq!(u16::from_be_bytes([sent[0].2[0], sent[0].2[1]]), code);
            // Data after the failure is dropped; the peer's close completes the handshake.
            c.handle_bytes(&[0x82, 0x01, 0x00, 0x88, 0x02, 0x03, 0xEA], Instant::now());
            let after = events(&mut c);
            assert!(
                !after
                    .iter()
                    .any(|e| matches!(e, Event::Data(d) if d.opcode == OpCode::BINARY)),
                "{after:?}"
            );
            assert_eq!(c.state(), ConnectionState::Closed);
        }
    }

    #[test]
    fn a_framing_error_stops_parsing_until_the_close_timeout() {
        let t0 = Instant::now();
        let mut c = Connection::new(client_cfg(1024), t0);
        c.handle_bytes(&[0xA2, 0x00, 0x88, 0x02, 0x03, 0xE8], t0); // RSV2, then a close
        assert!(matches!(
            events(&mut c)[..],
            [Event::ProtocolError(ProtocolError::ReservedBits(0b010))]
        ));
        assert_eq!(raw_frames(&c.poll_transmit().expect("close"))[0].2[..2], [0x03, 0xEA]);
        c.handle_bytes(&[0x88, 0x00], t0);
        assert_eq!(
            c.state(),
            ConnectionState::CloseSent,
            "nothing after a framing error is parsed"
        );
        c.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(c.state(), ConnectionState::Failed);
    }

    #[test]
    fn invalid_utf8_fails_at_the_bad_chunk_not_at_the_end() {
        let cfg = ConnectionConfig {
            chunk_policy: ChunkPolicy::Eager,
            ..client_cfg(1024)
        };
        let mut c = Connection::new(cfg, Instant::now());
        // A 10-byte text frame whose third byte is invalid; only 3 bytes have arrived.
        c.handle_bytes(&[0x81, 0x0A, b'o', b'k', 0xFF], Instant::now());
        assert!(events(&mut c)
            .iter()
            .any(|e| matches!(e, Event::ProtocolError(ProtocolError::InvalidUtf8))));
    }

    #[test]
    fn lenient_mode_delivers_what_strict_refuses_and_drops_on_real_failures() {
        let mut c = Connection::new(
            ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(60)),
            Instant::now(),
        );
        c.handle_bytes(&[0x80, 0x01, b'x', 0x83, 0x00, 0x81, 0x01, 0xFF], Instant::now());
        let ops: Vec<_> = events(&mut c)
            .into_iter()
            .map(|e| match e {
                Event::Data(d) => d.opcode.value(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ops, [0, 3, 1]);
        // A ping that does not fit the 1024-byte buffer: the firmware aborts.
        c.handle_bytes(&[0x89, 0x7E, 0x04, 0x01], Instant::now());
        assert_eq!(c.state(), ConnectionState::Failed);
        assert!(c.poll_transmit().is_none(), "no close frame when the firmware aborts");
    }

    /// A 200-byte ping, a 300-byte pong and a close with 202 payload bytes, as a firmware
    /// tester's server sends them: the firmware's profile answers the ping with a pong
    /// echoing all 200 bytes, takes the pong as one, delivers the data after them and
    /// finishes the closing handshake; strict mode fails at the ping with 1002.
    #[test]
    fn control_frames_over_125_bytes_pass_in_the_firmware_profile_and_fail_strict() {
        let t0 = Instant::now();
        let firmware = ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(5));
        let mut wire = Vec::new();
        crate::encode::encode_frame(&mut wire, OpCode::PING, true, None, &[b'p'; 200]);
        crate::encode::encode_frame(&mut wire, OpCode::PONG, true, None, &[b'q'; 300]);
        crate::encode::encode_frame(&mut wire, OpCode::TEXT, true, None, b"after");
        let close: Vec<u8> = [&[0x03, 0xE8][..], &[b'r'; 200]].concat();
        crate::encode::encode_frame(&mut wire, OpCode::CLOSE, true, None, &close);

        let mut c = Connection::new(firmware, t0);
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert!(c.poll_transmit().is_some(), "our keepalive ping");
        c.handle_bytes(&wire[..wire.len() - close.len() - 4], t0 + Duration::from_secs(11));
        assert_eq!(
            raw_frames(&c.poll_transmit().expect("the pong")),
            [(OpCode::PONG, true, vec![b'p'; 200])]
        );
        let seen: Vec<_> = events(&mut c)
            .into_iter()
            .map(|e| match e {
                Event::Data(d) => (d.opcode, d.data.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seen, [(OpCode::PING, 200), (OpCode::PONG, 300), (OpCode::TEXT, 5)]);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(21)),
            "the big pong cleared the pong deadline"
        );
        c.handle_bytes(&wire[wire.len() - close.len() - 4..], t0 + Duration::from_secs(12));
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [Event::Data(d), Event::CloseReceived(Some(CloseFrame { code: 1000, .. })), Event::Closed]
                if d.opcode == OpCode::CLOSE && d.data.len() == 202),
            "{ev:?}"
        );
        assert_eq!(c.state(), ConnectionState::Closed);

        let mut strict = Connection::new(client_cfg(1024), t0);
        strict.handle_bytes(&wire, t0);
        assert_eq!(
            events(&mut strict),
            [Event::ProtocolError(ProtocolError::ControlTooLong {
                len: 200,
                max: 125
            })]
        );
        let sent = raw_frames(&strict.poll_transmit().expect("a close"));
        assert_eq!((sent[0].0, &sent[0].2[..2]), (OpCode::CLOSE, &[0x03, 0xEA][..]));
    }

    /// Pongs for pings over 125 bytes coalesce like any other: one pong, the newest.
    #[test]
    fn pongs_to_long_pings_are_replaced_by_the_newest() {
        let now = Instant::now();
        let mut c = Connection::new(
            ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(5)),
            now,
        );
        for fill in 0..100u8 {
            let mut ping = Vec::new();
            crate::encode::encode_frame(&mut ping, OpCode::PING, true, None, &[fill; 600]);
            c.handle_bytes(&ping, now);
        }
        assert_eq!(c.transmit_len(), 4 + 4 + 600, "one masked pong with a 16-bit length");
        assert_eq!(
            raw_frames(&c.poll_transmit().expect("a pong")),
            [(OpCode::PONG, true, vec![99; 600])]
        );
    }

    /// Under full chunks, the bytes of an unfinished frame wait for a whole chunk; when the
    /// transport ends they come out as a last short chunk (not the frame's end), so every
    /// byte received is reported. Whole messages never see an unfinished one.
    #[test]
    fn the_transport_end_hands_out_the_bytes_of_an_unfinished_frame() {
        let now = Instant::now();
        let mut c = Connection::new(client_cfg(1024), now);
        c.handle_bytes(&[0x82, 0x7E, 0x0B, 0xB8], now); // binary, 3000 bytes
        c.handle_bytes(&[5; 1500], now);
        let chunks = |c: &mut Connection| -> Vec<(u64, usize, bool)> {
            events(c)
                .into_iter()
                .map(|e| match e {
                    Event::Data(d) => (d.offset, d.data.len(), d.ends_frame()),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(chunks(&mut c), [(0, 1024, false)]);
        c.handle_eof(now);
        assert_eq!(chunks(&mut c), [(1024, 476, false)]);
        assert_eq!(c.state(), ConnectionState::Failed);
        c.handle_eof(now);
        assert!(events(&mut c).is_empty(), "once");

        let mut c = Connection::new(client_cfg(1024), now);
        c.handle_bytes(&[0x82, 0x7E, 0x0B, 0xB8], now);
        c.handle_bytes(&[5; 1500], now);
        c.handle_eof(now);
        assert!(messages(&mut c).is_empty());

        // A closed connection stays closed.
        let mut c = Connection::new(client_cfg(1024), now);
        c.handle_bytes(&[0x88, 0x00], now);
        c.handle_eof(now);
        assert_eq!(c.state(), ConnectionState::Closed);
    }

    /// A pong timeout reports what arrived before it first: the bytes of an unfinished frame,
    /// then the timeout.
    #[test]
    fn a_pong_timeout_reports_the_bytes_received_before_it() {
        let t0 = Instant::now();
        let cfg = ConnectionConfig {
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Some(Duration::from_secs(5)),
            ..client_cfg(1024)
        };
        let mut c = Connection::new(cfg, t0);
        c.handle_timeout(t0 + Duration::from_secs(10));
        c.handle_bytes(&[0x82, 0x7E, 0x0B, 0xB8], t0 + Duration::from_secs(11));
        c.handle_bytes(&[5; 100], t0 + Duration::from_secs(11));
        assert!(events(&mut c).is_empty());
        c.handle_timeout(t0 + Duration::from_secs(15));
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [Event::Data(d), Event::PongTimeout] if d.data.len() == 100 && d.offset == 0),
            "{ev:?}"
        );
        assert_eq!(c.state(), ConnectionState::Failed);
    }

    #[test]
    fn pings_on_schedule_and_pong_timeout() {
        let t0 = Instant::now();
        let cfg = ConnectionConfig {
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Some(Duration::from_secs(25)),
            ..client_cfg(1024)
        };
        let mut c = Connection::new(cfg, t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(
            raw_frames(&c.poll_transmit().expect("ping")),
            [(OpCode::PING, true, vec![])]
        );
        // A second ping does not restart the pong deadline, which runs from the first.
        c.handle_timeout(t0 + Duration::from_secs(20));
        assert!(c.poll_transmit().is_some());
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        c.handle_timeout(t0 + Duration::from_secs(34));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(35)));
        c.handle_timeout(t0 + Duration::from_secs(35));
        assert_eq!(
            (c.state(), events(&mut c)),
            (ConnectionState::Failed, vec![Event::PongTimeout])
        );
    }

    #[test]
    fn any_pong_clears_the_deadline_and_firmware_pings_wait_for_silence() {
        let t0 = Instant::now();
        let mut c = Connection::new(
            ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(5)),
            t0,
        );
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert!(c.poll_transmit().is_some());
        c.handle_bytes(&[0x8A, 0x00], t0 + Duration::from_secs(12));
        // The pong reset the ping timer too (received frame), and cleared the deadline.
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(22)));
        c.handle_bytes(&[0x81, 0x01, b'x'], t0 + Duration::from_secs(20));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        c.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(c.state(), ConnectionState::Open);
    }

    #[test]
    fn unanswered_close_times_out() {
        let t0 = Instant::now();
        let mut c = Connection::new(client_cfg(1024), t0);
        c.close(Some(1000), "bye", t0);
        c.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            (c.state(), events(&mut c)),
            (ConnectionState::Failed, vec![Event::CloseTimeout])
        );
    }

    #[test]
    fn raw_close_opcode_does_not_start_the_handshake() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        c.send_frame(OpCode::CLOSE, true, &[0x03, 0xE8]).expect("open");
        assert_eq!(c.state(), ConnectionState::Open);
        c.send_frame(OpCode::from_bits(0x3), false, b"reserved")
            .expect("anything goes");
    }

    #[test]
    fn process_message_stops_at_message_boundaries() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        c.read_buf()
            .extend_from_slice(&[0x81, 0x01, b'a', 0x01, 0x01, b'b', 0x80, 0x01, b'c', 0xB1, 0x00]);
        assert!(c.process_message(Instant::now()));
        assert_eq!(events(&mut c).len(), 1);
        // The fragmented message ends only with its last frame.
        assert!(c.process_message(Instant::now()));
        assert_eq!(events(&mut c).len(), 2);
        assert!(!c.process_message(Instant::now()));
        assert!(matches!(
            events(&mut c)[..],
            [Event::ProtocolError(ProtocolError::ReservedBits(_))]
        ));
    }

    /// A whole small message takes `process_message`'s fast path when the buffer holds it
    /// all; fed a byte at a time it takes the general one. Both give the same events,
    /// replies, state and timers, for valid input and for each check the fast path leaves
    /// to the general path.
    #[test]
    fn whole_messages_decode_as_the_general_path_does() {
        let frame = |op: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]| {
            let mut out = Vec::new();
            crate::encode::encode_frame(&mut out, OpCode::from_bits(op), fin, mask, payload);
            out
        };
        let key = Some([0x11, 0x22, 0x33, 0x44]);
        let inputs: Vec<Vec<u8>> = vec![
            [frame(1, true, None, b"hello"), frame(2, true, None, &[1, 2, 3])].concat(),
            [
                frame(1, true, None, b""),
                frame(2, true, None, b""),
                frame(1, true, None, b"x"),
            ]
            .concat(),
            frame(1, true, None, &[b'a', 0xC3, 0x28, b'b']),
            [frame(1, true, None, "é€".as_bytes()), frame(2, true, None, &[7; 2000])].concat(),
            [
                frame(1, false, None, b"ab"),
                frame(9, true, None, b"p"),
                frame(0, true, None, b"cd"),
                frame(2, true, None, b"whole"),
            ]
            .concat(),
            [frame(2, true, key, b"masked"), frame(1, true, key, b"text")].concat(),
            [frame(0, true, None, b"lone"), frame(2, true, None, b"after")].concat(),
            [frame(2, true, None, b"toolong"), frame(2, true, None, b"ok")].concat(),
            [frame(2, true, None, b"abc"), frame(8, true, None, &[0x03, 0xE8])].concat(),
        ];
        let configs = [
            client_cfg(1024),
            ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(5)),
            ConnectionConfig::rfc(Role::Server),
            ConnectionConfig {
                max_message_len: Some(5),
                ..client_cfg(1024)
            },
            ConnectionConfig {
                max_frame_len: Some(4),
                ..client_cfg(1024)
            },
        ];
        let t0 = Instant::now();
        for config in configs {
            for input in &inputs {
                let run = |bytes_per_step: usize| {
                    let mut c = Connection::new(config.clone(), t0);
                    let mut seen = Vec::new();
                    let mut sent = Vec::new();
                    let now = t0 + Duration::from_secs(1);
                    for piece in input.chunks(bytes_per_step) {
                        c.read_buf().extend_from_slice(piece);
                        while c.process_message(now) {
                            seen.extend(events(&mut c));
                        }
                        seen.extend(events(&mut c));
                        while let Some(bytes) = c.poll_transmit() {
                            sent.extend(raw_frames(&bytes));
                        }
                    }
                    (seen, sent, c.state(), c.poll_timeout())
                };
                assert_eq!(run(input.len()), run(1), "{config:?} {input:02x?}");
            }
        }
    }

    #[test]
    fn empty_frames_are_reported() {
        let mut c = Connection::new(client_cfg(1024), Instant::now());
        c.handle_bytes(&[0x81, 0x00, 0x89, 0x00], Instant::now());
        let ev = events(&mut c);
        assert!(matches!(&ev[0], Event::Data(d) if d.opcode == OpCode::TEXT && d.data.is_empty() && d.ends_message()));
        assert!(matches!(&ev[1], Event::Data(d) if d.opcode == OpCode::PING));
    }
}
