//! Fuzz target bodies, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and the corpus replay
//! test `tests/fuzz_corpus.rs`, so that every checked-in input is re-checked by `cargo test`.
//!
//! Not part of the API: each function takes raw fuzz bytes, decodes a scenario from them by hand
//! (no `arbitrary` dependency) and panics when an invariant breaks.

use std::time::{Duration, Instant};

use crate::compression::INFLATE_STEP;
use crate::deflate::{self, DeflateConfig, NegotiatedDeflate};
use crate::handshake::{self, ClientHandshake, HandshakeRequest, HandshakeResponse};
use crate::{ChunkPolicy, Connection, ConnectionConfig, ConnectionState, DataChunk, Event, OpCode, Role};

/// Largest header (2 + 8 + 4 bytes): what the decoder may hold back besides a chunk or a
/// control payload.
const MAX_HEADER: usize = 14;
/// Steps after which the rest of the wire is fed at once (keeps every run fast).
const MAX_STEPS: usize = 4096;

/// One frame as seen in a connection's event stream: its chunks joined, and the payload
/// length its last chunk gave (a compressed frame's is known only there).
#[derive(Debug, PartialEq, Eq)]
struct SeenFrame {
    opcode: OpCode,
    fin: bool,
    payload_len: u64,
    data: Vec<u8>,
}

impl SeenFrame {
    fn complete(&self) -> bool {
        self.data.len() as u64 == self.payload_len
    }
}

/// The frames of an event stream up to (not including) the first event that stops the stream
/// from being comparable: a protocol error or a timer firing.
fn frames_until_cut(events: &[Event]) -> Vec<SeenFrame> {
    let mut frames: Vec<SeenFrame> = Vec::new();
    for ev in events {
        match ev {
            Event::Data(c) if c.offset == 0 => frames.push(SeenFrame {
                opcode: c.opcode,
                fin: c.fin,
                payload_len: c.payload_len,
                data: c.data.to_vec(),
            }),
            Event::Data(c) => {
                let frame = frames.last_mut().expect("chunk of a started frame");
                frame.data.extend_from_slice(&c.data);
                frame.payload_len = c.payload_len;
            }
            Event::CloseReceived(_) | Event::Closed => {}
            Event::ProtocolError(_) | Event::PongTimeout | Event::CloseTimeout => break,
        }
    }
    frames
}

/// All events of a one-shot decode of `wire` (every byte at once, then the end of the
/// input, no timers) under `config`.
fn one_shot(config: &ConnectionConfig, deflate: &Option<NegotiatedDeflate>, wire: &[u8]) -> Vec<Event> {
    let t0 = Instant::now();
    let mut c = Connection::with_deflate(
        ConnectionConfig {
            ping_interval: None,
            pong_timeout: None,
            ..config.clone()
        },
        deflate.clone(),
        t0,
    );
    c.handle_bytes(wire, t0);
    c.handle_eof(t0);
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// `frame_decoder` target: bytes from a server (or client) split at fuzz-chosen boundaries and
/// fed to a [`Connection`] interleaved with timer calls.
///
/// Input: `flags, max_chunk - 1, n, schedule[n], wire...`. `flags`: bit 0 strict, bit 1 eager
/// chunks, bit 2 server role, bit 3 keepalive timers, bit 4 a 300-byte frame limit (and a
/// 700-byte message limit), bit 5 ping restarts on receive, bit 6 permessage-deflate
/// negotiated (RSV1 frames are inflated), bit 7 with no context takeover either way. Each schedule byte is one step, cycled until the wire is used up:
/// `0b11tttttt` runs the timers `t` × 250 ms later, otherwise `0bmmllllll` feeds the next `l`
/// bytes (0 = an empty feed) through `handle_bytes` (`m` = 0), `read_buf` + `process` (1) or
/// `read_buf` + `process_message` until it returns false (2). After the wire, the input ends
/// (`handle_eof`).
///
/// Checked: no panic; data chunks are at most `max_chunk` bytes (control frames come whole, at
/// most 125, or `max_chunk` when lenient), lie within their frame and follow each other without
/// gaps; the receive buffer never holds more than was fed, and while the stream is parsed, no
/// more than one header plus one chunk or control payload; decompressed bytes held back are at
/// most one chunk plus one inflate step; what was delivered matches a one-shot decode of the
/// same bytes (see [`check_against_one_shot`]).
pub fn frame_decoder(data: &[u8]) {
    let [flags, chunk, n, rest @ ..] = data else {
        return;
    };
    let (schedule, wire) = rest.split_at((*n as usize).min(rest.len()));
    let strict = flags & 1 != 0;
    let max_chunk = usize::from(*chunk) + 1;
    let config = ConnectionConfig {
        role: if flags & 4 != 0 { Role::Server } else { Role::Client },
        strict,
        max_chunk,
        chunk_policy: if flags & 2 != 0 {
            ChunkPolicy::Eager
        } else {
            ChunkPolicy::Full
        },
        max_frame_len: (flags & 16 != 0).then_some(300),
        max_message_len: (flags & 16 != 0).then_some(700),
        ping_interval: (flags & 8 != 0).then_some(Duration::from_secs(1)),
        pong_timeout: (flags & 8 != 0).then_some(Duration::from_millis(2500)),
        ping_resets_on_receive: flags & 32 != 0,
        close_timeout: Duration::from_secs(2),
        echo_close_code: strict,
    };
    let deflate = (flags & 64 != 0).then(|| NegotiatedDeflate {
        server_no_context_takeover: flags & 128 != 0,
        client_no_context_takeover: flags & 128 != 0,
        server_max_window_bits: None,
        client_max_window_bits: None,
        compression_level: 1,
    });
    let max_control = config.decoder_config().max_control_len() as usize;
    let t0 = Instant::now();
    let mut now = t0;
    let mut conn = Connection::with_deflate(config.clone(), deflate.clone(), now);
    let mut events = Vec::new();
    let (mut fed, mut sent) = (0usize, 0usize);
    let mut pos = 0;
    let mut steps = 0usize;
    let default_schedule = [0x3f];
    let schedule = if schedule.is_empty() {
        &default_schedule[..]
    } else {
        schedule
    };
    let mut cycle_fed = 0;
    for (i, &step) in schedule.iter().cycle().enumerate() {
        if i > 0 && i % schedule.len() == 0 {
            if cycle_fed == 0 || pos == wire.len() {
                break;
            }
            cycle_fed = 0;
        }
        steps += 1;
        if steps > MAX_STEPS {
            break;
        }
        let before = conn.state();
        let mut fed_now = 0;
        if step >> 6 == 3 {
            now += Duration::from_millis(250 * u64::from(step & 0x3f));
            conn.handle_timeout(now);
        } else {
            let piece = &wire[pos..(pos + usize::from(step & 0x3f)).min(wire.len())];
            pos += piece.len();
            fed_now = piece.len();
            match step >> 6 {
                0 => conn.handle_bytes(piece, now),
                1 => {
                    conn.read_buf().extend_from_slice(piece);
                    conn.process(now);
                }
                _ => {
                    conn.read_buf().extend_from_slice(piece);
                    while conn.process_message(now) {}
                }
            }
        }
        fed += fed_now;
        cycle_fed += fed_now;
        let new: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
        if matches!(before, ConnectionState::Closed | ConnectionState::Failed) {
            assert!(new.is_empty(), "events after the end: {new:?}");
        }
        events.extend(new);
        while let Some(bytes) = conn.poll_transmit() {
            sent += bytes.len();
        }
        let buffered = conn.read_buf().len();
        assert!(buffered <= fed, "{buffered} bytes buffered, {fed} fed");
        if matches!(conn.state(), ConnectionState::Open | ConnectionState::CloseSent) {
            // Whatever was left unparsed is at most one header or one chunk in the making.
            assert!(
                buffered < MAX_HEADER + max_chunk.max(max_control),
                "{buffered} bytes buffered with max_chunk {max_chunk}"
            );
        }
        let inflated = conn.inflated_pending_len();
        assert!(
            inflated <= max_chunk + INFLATE_STEP,
            "{inflated} decompressed bytes held back"
        );
        // Replies (pongs, pings, one close) are bounded by what came in plus a frame per step.
        assert!(sent <= 2 * fed + 256 * steps, "{sent} bytes sent for {fed} received");
    }
    // The rest, if the schedule stopped early (only timer steps, or nothing to feed).
    conn.handle_bytes(&wire[pos..], now);
    conn.handle_eof(now);
    assert!(
        matches!(conn.state(), ConnectionState::Closed | ConnectionState::Failed),
        "still {:?} after the end of the input",
        conn.state()
    );
    events.extend(std::iter::from_fn(|| conn.poll_event()));
    check_chunks(&events, max_chunk, max_control);
    check_against_one_shot(&config, &deflate, wire, &events);
}

/// Chunk sizes and offsets: each data chunk ≤ `max_chunk`, each control payload ≤
/// `max_control`, within its frame, contiguous; a frame's payload length is the same on every
/// chunk, or (compressed) unknown until its last.
fn check_chunks(events: &[Event], max_chunk: usize, max_control: usize) {
    let mut open: Option<(OpCode, bool, u64, u64)> = None; // opcode, fin, payload_len, next offset
    let mut failing = false;
    for ev in events {
        let c = match ev {
            Event::Data(c) => c,
            Event::ProtocolError(_) => {
                failing = true;
                continue;
            }
            _ => continue,
        };
        let len = c.data.len();
        if c.opcode.is_control() {
            assert!(len <= max_control && c.offset == 0 && c.ends_frame(), "{c:?}");
        } else {
            assert!(len <= max_chunk, "chunk of {len} > {max_chunk}");
        }
        assert!(c.offset + len as u64 <= c.payload_len, "chunk beyond its frame: {c:?}");
        assert!(len > 0 || c.payload_len == 0, "empty chunk of a non-empty frame: {c:?}");
        match open {
            Some((op, fin, plen, next)) if c.offset != 0 => {
                assert_eq!((c.opcode, c.fin, c.offset), (op, fin, next), "gap");
                assert!(
                    c.payload_len == plen || plen == DataChunk::UNKNOWN_LEN,
                    "payload length changed: {c:?}"
                );
            }
            Some(_) => assert!(failing, "frame cut short: {c:?}"),
            None => assert_eq!(c.offset, 0, "chunk without the start of its frame: {c:?}"),
        }
        if c.opcode.is_data() {
            open = (!c.ends_frame()).then_some((c.opcode, c.fin, c.payload_len, c.offset + len as u64));
        }
    }
}

/// Compares a split run's events with one-shot decodes of the same bytes. Timers only ever
/// end a run early (a ping is no event), so up to a timer's event the split run must match:
///
/// * full chunks: the one-shot run with the same configuration, event for event (chunk
///   boundaries do not depend on how the bytes arrived, and the end of the input hands out
///   the same rest), except where a timer ended the input early;
/// * eager chunks, or a timer: the same events but for the data chunks, whose boundaries
///   differ;
/// * either: frame by frame, up to the first protocol error, a prefix of what a lenient one-shot
///   decode with unlimited chunks delivers (lenient, because it also delivers the frame whose
///   payload a strict run rejects part-way), and the whole frame once the split run finished it
///   (a compressed frame's length, too, is compared only then);
///   without an error or a timer, everything that decode delivers, the bytes received of an
///   unfinished last frame included.
fn check_against_one_shot(
    config: &ConnectionConfig,
    deflate: &Option<NegotiatedDeflate>,
    wire: &[u8],
    events: &[Event],
) {
    let timer = events
        .iter()
        .position(|e| matches!(e, Event::PongTimeout | Event::CloseTimeout));
    let split = &events[..timer.unwrap_or(events.len())];
    let same = one_shot(config, deflate, wire);
    let comparable = |evs: &[Event]| -> Vec<Event> {
        if config.chunk_policy == ChunkPolicy::Full && timer.is_none() {
            return evs.to_vec();
        }
        evs.iter()
            .filter(|e| !matches!(e, Event::Data(c) if c.opcode.is_data()))
            .cloned()
            .collect()
    };
    let (split_cmp, same_cmp) = (comparable(split), comparable(&same));
    if timer.is_some() {
        assert!(
            same_cmp.starts_with(&split_cmp),
            "{split_cmp:?}\nvs one-shot {same_cmp:?}"
        );
    } else {
        assert_eq!(split_cmp, same_cmp, "split and one-shot runs differ");
    }

    let frames = frames_until_cut(split);
    let lenient = ConnectionConfig {
        strict: false,
        max_chunk: usize::MAX,
        chunk_policy: ChunkPolicy::Eager,
        ..config.clone()
    };
    let reference = frames_until_cut(&one_shot(&lenient, deflate, wire));
    assert!(frames.len() <= reference.len(), "{frames:?}\nvs one-shot {reference:?}");
    for (s, r) in frames.iter().zip(&reference) {
        assert_eq!((s.opcode, s.fin), (r.opcode, r.fin));
        // A compressed frame's length is known only once the split run has finished it.
        if s.payload_len != DataChunk::UNKNOWN_LEN {
            assert_eq!(s.payload_len, r.payload_len);
        }
        assert!(r.data.starts_with(&s.data), "{s:?}\nis no prefix of {r:?}");
        if s.complete() {
            assert_eq!(s, r);
        }
    }
    if !split.iter().any(|e| matches!(e, Event::ProtocolError(_))) && timer.is_none() {
        // Everything, a trailing frame in the making included.
        assert_eq!(frames, reference);
    }
}

/// The key of RFC 6455 §1.3, whose accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Piece lengths 1..=32 from a seed (xorshift), for incremental parsing.
fn pieces(seed: u8, len: usize) -> Vec<usize> {
    let mut x = u32::from(seed) | 0x100;
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        at = (at + 1 + (x % 32) as usize).min(len);
        cuts.push(at);
    }
    cuts
}

/// Feeds growing prefixes of `buf` (cut at `seed`'s boundaries) to `parse` and returns the
/// first answer that is not "need more" (or "need more" at the end).
fn incremental<T, E>(buf: &[u8], seed: u8, parse: impl Fn(&[u8]) -> Result<Option<T>, E>) -> Option<usize> {
    for end in pieces(seed, buf.len()) {
        if !matches!(parse(&buf[..end]), Ok(None)) {
            return Some(end);
        }
    }
    None
}

/// `handshake_response` target: the client's check of the server's answer
/// ([`ClientHandshake::parse_response`], strict and lenient) and the server's parse of the
/// upgrade request ([`handshake::parse_request`]).
///
/// Input: `flags, seed, http...`. `flags` bit 0: parse a request (else a response); bit 1:
/// strict; bit 2: the client offers permessage-deflate (default parameters). The response is
/// checked against the RFC 6455 example key, with subprotocols `chat` and `superchat` offered.
///
/// Checked: no panic; parsing growing prefixes (cut by `seed`) gives "need more" until the
/// one-shot answer, which it then gives identically, at a prefix that contains the whole head;
/// an accepted response's head ends in a line break, its permessage-deflate parameters can be
/// taken, and the frames after it can be decoded (inflated, with deflate); an accepted
/// request round-trips: the 101 built for it (with the permessage-deflate offer a server
/// accepts, if any) passes the strict client check of a client with the same key,
/// subprotocols and deflate offer, both agree on the deflate parameters, and a request built
/// from its parts parses back to the same target, key and subprotocols.
pub fn handshake(data: &[u8]) {
    let [flags, seed, buf @ ..] = data else {
        return;
    };
    if flags & 1 != 0 {
        check_request(buf, *seed);
    } else {
        check_response(buf, *seed, flags & 2 != 0, flags & 4 != 0);
    }
}

fn check_response(buf: &[u8], seed: u8, strict: bool, offer_deflate: bool) {
    let hs = ClientHandshake::with_key(
        &HandshakeRequest {
            target: "/chat".into(),
            host: "server.example.com".into(),
            user_agent: None,
            subprotocol: Some("chat, superchat".into()),
            authorization: None,
            headers: Vec::new(),
            deflate: offer_deflate.then(DeflateConfig::default),
        },
        RFC_KEY.into(),
    );
    let all = hs.parse_response(buf, strict);
    match incremental(buf, seed, |b| hs.parse_response(b, strict)) {
        Some(end) => assert_eq!(hs.parse_response(&buf[..end], strict), all, "prefix of {end} bytes"),
        None => assert_eq!(all, Ok(None)),
    }
    if let Ok(Some(HandshakeResponse::Accepted { head_len, headers, .. })) = all {
        assert!(
            head_len <= buf.len() && buf[head_len - 1] == b'\n',
            "head_len {head_len}"
        );
        let deflate = hs
            .negotiated_deflate(&headers)
            .expect("an accepted response's extensions");
        assert!(offer_deflate || deflate.is_none());
        // Frames piggybacked on the 101 go to the connection, as the client does.
        let t0 = Instant::now();
        let mut conn = Connection::with_deflate(
            ConnectionConfig::esp_firmware(64, Duration::from_secs(10), Duration::from_secs(10)),
            deflate,
            t0,
        );
        conn.handle_bytes(&buf[head_len..], t0);
        while conn.poll_event().is_some() {}
    }
}

fn check_request(buf: &[u8], seed: u8) {
    let all = handshake::parse_request(buf);
    match incremental(buf, seed, handshake::parse_request) {
        Some(end) => assert_eq!(handshake::parse_request(&buf[..end]), all, "prefix of {end} bytes"),
        None => assert_eq!(all, Ok(None)),
    }
    let Ok(Some(req)) = all else {
        return;
    };
    assert!(req.head_len <= buf.len() && buf[req.head_len - 1] == b'\n');
    // The deflate offer a default server takes, and the client that made it.
    let server = DeflateConfig::default();
    let agreed = req.deflate(&server);
    let offer = agreed.as_ref().map(|agreed| {
        req.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .flat_map(|(_, value)| deflate::parse_offers(value))
            .filter_map(Result::ok)
            .find(|offer| server.answer(offer) == *agreed)
            .expect("the accepted offer is among the offers")
    });
    // A client offering the same subprotocols (and deflate offer) accepts the 101 built for
    // this request.
    let client_req = HandshakeRequest {
        target: req.target.clone(),
        host: "h".into(),
        user_agent: None,
        subprotocol: (!req.subprotocols.is_empty()).then(|| req.subprotocols.join(", ")),
        authorization: None,
        headers: Vec::new(),
        deflate: offer.clone(),
    };
    let client = ClientHandshake::with_key(&client_req, req.key.clone());
    let chosen = req.subprotocols.first().map(String::as_str);
    let extensions = agreed.as_ref().map(NegotiatedDeflate::response);
    let resp = handshake::accept_response_with_extensions(&req.key, chosen, extensions.as_deref());
    match client.parse_response(&resp, true) {
        Ok(Some(HandshakeResponse::Accepted {
            subprotocol, headers, ..
        })) => {
            assert_eq!(subprotocol.as_deref(), chosen);
            let seen = client.negotiated_deflate(&headers).expect("own deflate response");
            match (&seen, &agreed, &offer) {
                (None, None, _) => {}
                (Some(seen), Some(agreed), Some(offer)) => {
                    assert_eq!(seen.window_bits(Role::Server), agreed.window_bits(Role::Server));
                    assert_eq!(
                        seen.window_bits(Role::Client),
                        agreed
                            .window_bits(Role::Client)
                            .min(offer.client_max_window_bits.unwrap_or(15))
                    );
                    assert_eq!(seen.server_no_context_takeover, agreed.server_no_context_takeover);
                }
                other => panic!("deflate disagreement: {other:?}"),
            }
        }
        other => panic!("own 101 refused: {other:?}"),
    }
    // The client's request for the same parts parses back to them.
    match handshake::parse_request(client.request()) {
        Ok(Some(back)) => assert_eq!(
            (&back.target, &back.key, &back.subprotocols),
            (&req.target, &req.key, &req.subprotocols)
        ),
        other => panic!("own request refused: {other:?}"),
    }
}
