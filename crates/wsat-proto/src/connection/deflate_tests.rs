//! permessage-deflate in the connection: round trips under every parameter combination,
//! RSV1 rules, chunk semantics, context takeover, bounded inflation.

use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

use super::*;
use crate::deflate::DeflateConfig;
use crate::encode::encode_frame_rsv;
use crate::{Message, MessageAssembler};

/// The parameters both sides end up with when `client` offers to a default server.
fn negotiate(client: &DeflateConfig) -> (NegotiatedDeflate, NegotiatedDeflate) {
    let agreed = DeflateConfig::default()
        .accept_offers([client.offer().as_str()])
        .expect("the server accepts");
    let seen = client
        .accept_response([agreed.response().as_str()])
        .expect("a valid response")
        .expect("accepted");
    (seen, agreed)
}

fn client_offer(client_bits: u8, server_bits: u8, client_nct: bool, server_nct: bool, level: u32) -> DeflateConfig {
    DeflateConfig {
        client_max_window_bits: Some(client_bits),
        server_max_window_bits: (server_bits < 15).then_some(server_bits),
        client_no_context_takeover: client_nct,
        server_no_context_takeover: server_nct,
        compression_level: level,
    }
}

/// A client and a server connection with permessage-deflate, back to back, recording every
/// frame that crosses.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    /// The bytes from the client and from the server.
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

impl Pair {
    fn new(offer: &DeflateConfig, client: ConnectionConfig, server: ConnectionConfig) -> Self {
        let (seen, agreed) = negotiate(offer);
        let now = Instant::now();
        Pair {
            client: Connection::with_deflate(client, Some(seen), now),
            server: Connection::with_deflate(server, Some(agreed), now),
            now,
            to_server: Vec::new(),
            to_client: Vec::new(),
        }
    }

    fn with_offer(offer: &DeflateConfig) -> Self {
        Self::new(
            offer,
            ConnectionConfig::rfc(Role::Client),
            ConnectionConfig::rfc(Role::Server),
        )
    }

    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.to_server.extend_from_slice(&b);
                self.server.handle_bytes(&b, self.now);
                moved = true;
            }
            while let Some(b) = self.server.poll_transmit() {
                self.to_client.extend_from_slice(&b);
                self.client.handle_bytes(&b, self.now);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }
}

/// The frames in `bytes` (complete ones), unmasked.
fn wire_frames(bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut dec = FrameDecoder::new(DecoderConfig {
        role: Role::Server,
        strict: false,
        max_chunk: usize::MAX,
        chunk_policy: ChunkPolicy::Full,
        max_frame_len: None,
    });
    let mut buf = BytesMut::from(bytes);
    let mut out: Vec<(FrameHeader, Vec<u8>)> = Vec::new();
    while let Ok(Some(item)) = dec.decode(&mut buf) {
        match item {
            Item::Start(h) => out.push((h, Vec::new())),
            Item::Payload(p) => out.last_mut().expect("started").1.extend_from_slice(&p),
            Item::End => {}
        }
    }
    out
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
            Event::ProtocolError(err) => panic!("{err}"),
            _ => None,
        })
        .collect()
}

fn errors(evs: &[Event]) -> Vec<ProtocolError> {
    evs.iter()
        .filter_map(|e| match e {
            Event::ProtocolError(err) => Some(err.clone()),
            _ => None,
        })
        .collect()
}

/// JSON-like text of exactly `len` bytes: repetitive, as real messages are.
fn json(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    out.push(b'[');
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"sensor-{}\",\"value\":{}.{},\"ok\":{}}},",
                i % 17,
                (i * 7919) % 1000,
                i % 10,
                i % 3 == 0
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// The close code of the close frame at the start of `bytes` (a client's, masked).
fn close_code_sent(c: &mut Connection) -> u16 {
    let frames = wire_frames(&c.poll_transmit().expect("a close frame"));
    let close = frames
        .iter()
        .find(|(h, _)| h.opcode == OpCode::CLOSE)
        .expect("a close frame");
    u16::from_be_bytes([close.1[0], close.1[1]])
}

/// Which side sends in one direction of a [`Pair`].
#[derive(Clone, Copy, Debug)]
enum Dir {
    ClientToServer,
    ServerToClient,
}

impl Pair {
    fn sender(&mut self, dir: Dir) -> &mut Connection {
        match dir {
            Dir::ClientToServer => &mut self.client,
            Dir::ServerToClient => &mut self.server,
        }
    }

    fn receiver(&mut self, dir: Dir) -> &mut Connection {
        match dir {
            Dir::ClientToServer => &mut self.server,
            Dir::ServerToClient => &mut self.client,
        }
    }

    /// Every frame sent in direction `dir` so far.
    fn wire(&self, dir: Dir) -> Vec<(FrameHeader, Vec<u8>)> {
        wire_frames(match dir {
            Dir::ClientToServer => &self.to_server,
            Dir::ServerToClient => &self.to_client,
        })
    }
}

/// Every combination of window bits 8/9/15 and context takeover each way: messages of 0 B,
/// 1 B, 1 KiB of JSON (twice, so the second can refer to the first), 16 KiB of JSON in
/// 1 KiB fragments, and a message streamed in pieces with a ping between them (and an empty
/// last piece) arrive intact both ways; RSV1 is on each compressed message's first frame
/// only, and nowhere in a direction limited to 8 bits, which goes uncompressed. (1 MiB of
/// random data: [`a_mebibyte_of_random_data_round_trips`].)
#[test]
fn every_parameter_combination_round_trips_both_ways() {
    let small = json(1024);
    let fragmented = json(16 * 1024);
    let (part1, part2) = (json(3000), json(500));
    for client_bits in [8, 9, 15] {
        for server_bits in [8, 9, 15] {
            for (client_nct, server_nct) in [(false, false), (true, false), (false, true), (true, true)] {
                let offer = client_offer(client_bits, server_bits, client_nct, server_nct, 6);
                let mut p = Pair::with_offer(&offer);
                for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                    let label = format!("{offer:?} {dir:?}");
                    let bits = p.sender(dir).deflate().expect("negotiated").window_bits(match dir {
                        Dir::ClientToServer => Role::Client,
                        Dir::ServerToClient => Role::Server,
                    });
                    assert_eq!(
                        bits,
                        match dir {
                            Dir::ClientToServer => client_bits,
                            Dir::ServerToClient => server_bits,
                        },
                        "{label}"
                    );
                    let before = p.wire(dir).len();
                    let s = p.sender(dir);
                    s.send_frame(OpCode::BINARY, true, &[]).expect("open");
                    s.send_frame(OpCode::TEXT, true, b"x").expect("open");
                    s.send_frame(OpCode::TEXT, true, &small).expect("open");
                    s.send_frame_shared(OpCode::TEXT, true, &Bytes::from(small.clone()))
                        .expect("open");
                    s.send_fragmented(OpCode::BINARY, &fragmented, true, 1024)
                        .expect("open");
                    s.send_frame(OpCode::TEXT, false, &part1).expect("open");
                    s.send_frame(OpCode::PING, true, b"between").expect("open");
                    s.send_frame(OpCode::CONTINUATION, false, &part2).expect("open");
                    s.send_frame(OpCode::CONTINUATION, true, &[]).expect("open");
                    p.drive();
                    let got = messages(p.receiver(dir));
                    let expected: Vec<(OpCode, Vec<u8>)> = vec![
                        (OpCode::BINARY, vec![]),
                        (OpCode::TEXT, b"x".to_vec()),
                        (OpCode::TEXT, small.clone()),
                        (OpCode::TEXT, small.clone()),
                        (OpCode::BINARY, fragmented.clone()),
                        (OpCode::TEXT, [&part1[..], &part2[..]].concat()),
                    ];
                    let got: Vec<(OpCode, Vec<u8>)> = got.into_iter().map(|m| (m.opcode, m.payload.to_vec())).collect();
                    assert!(got == expected, "{label}: {} messages", got.len());
                    assert!(messages(p.sender(dir)).is_empty(), "{label}: the pong is no message");
                    // The wire: RSV1 on first frames only, when compressing.
                    let frames = &p.wire(dir)[before..];
                    let starts: Vec<usize> = (0..frames.len())
                        .filter(|&i| matches!(frames[i].0.opcode, OpCode::TEXT | OpCode::BINARY))
                        .collect();
                    let firsts: Vec<bool> = starts.iter().map(|&i| frames[i].0.rsv == RSV1).collect();
                    assert_eq!(firsts, vec![bits > 8; 6], "{label}");
                    assert!(
                        frames
                            .iter()
                            .filter(|(h, _)| !matches!(h.opcode, OpCode::TEXT | OpCode::BINARY))
                            .all(|(h, _)| h.rsv == 0),
                        "{label}: RSV1 on a continuation or control frame"
                    );
                    // The 16 KiB of JSON in frames of at most 1 KiB: far fewer bytes when
                    // compressed.
                    let fragments = &frames[starts[4]..starts[5]];
                    assert!(fragments.iter().all(|(_, p)| p.len() <= 1024));
                    let fragment_bytes: usize = fragments.iter().map(|(_, p)| p.len()).sum();
                    if bits > 8 {
                        assert!(fragment_bytes < fragmented.len() / 4, "{label}: {fragment_bytes}");
                    } else {
                        assert_eq!(fragment_bytes, fragmented.len(), "{label}");
                    }
                }
                assert_eq!(
                    (p.client.state(), p.server.state()),
                    (ConnectionState::Open, ConnectionState::Open)
                );
            }
        }
    }
}

/// No context takeover: the sender starts afresh for every message (two equal messages
/// compress to the same bytes; with takeover the second one is much shorter).
#[test]
fn context_takeover_is_honoured_when_sending() {
    let msg = json(2000);
    for nct in [false, true] {
        let mut p = Pair::with_offer(&client_offer(15, 15, nct, nct, 6));
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let before = p.wire(dir).len();
            p.sender(dir).send_frame(OpCode::TEXT, true, &msg).expect("open");
            p.sender(dir).send_frame(OpCode::TEXT, true, &msg).expect("open");
            p.drive();
            let frames = &p.wire(dir)[before..];
            let (first, second) = (&frames[0].1, &frames[1].1);
            if nct {
                assert_eq!(first, second, "{dir:?}: a fresh context each time");
            } else {
                assert!(
                    second.len() * 4 < first.len(),
                    "{dir:?}: {} vs {}",
                    second.len(),
                    first.len()
                );
            }
            assert_eq!(messages(p.receiver(dir)).len(), 2);
        }
    }
}

/// No context takeover on the peer's side resets our inflater after each message: a second
/// message that refers to the first (compressed with takeover) does not inflate then.
#[test]
fn context_takeover_is_honoured_when_receiving() {
    let mut deflater = Deflater::new(15, 6, false);
    let mut wire = Vec::new();
    for _ in 0..2 {
        encode_frame_rsv(
            &mut wire,
            OpCode::TEXT,
            true,
            RSV1,
            None,
            &deflater.compress(b"Hello", true),
        );
    }
    for (server_nct, ok) in [(false, true), (true, false)] {
        let params = NegotiatedDeflate {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            compression_level: 6,
        };
        let mut c = Connection::with_deflate(ConnectionConfig::rfc(Role::Client), Some(params), Instant::now());
        c.handle_bytes(&wire, Instant::now());
        let evs = events(&mut c);
        let texts: Vec<&[u8]> = evs
            .iter()
            .filter_map(|e| match e {
                Event::Data(d) => Some(&d.data[..]),
                _ => None,
            })
            .collect();
        if ok {
            assert_eq!(texts, [b"Hello", b"Hello"]);
        } else {
            assert_eq!(texts, [b"Hello"]);
            assert!(
                matches!(&errors(&evs)[..], [ProtocolError::InvalidCompressedData(_)]),
                "{evs:?}"
            );
            assert_eq!(close_code_sent(&mut c), 1007);
        }
    }
}

/// 1 MiB of random (incompressible) data, many inflate steps and chunks long, with windows
/// 8, 9 and 15, with and without context takeover, both ways; chunks stay within
/// `max_chunk` (decompressed). (A 9-bit window slides every 250 bytes, which costs an
/// unoptimized build about 2 s per MiB: hence only one 9-bit run; the window's effect on
/// matches is tested with JSON in [`every_parameter_combination_round_trips_both_ways`].)
#[test]
fn a_mebibyte_of_random_data_round_trips() {
    let data = random(1 << 20, 7);
    for (bits, nct, dir) in [
        (8, false, Dir::ClientToServer),
        (9, true, Dir::ServerToClient),
        (15, true, Dir::ClientToServer),
        (15, false, Dir::ServerToClient),
    ] {
        let offer = client_offer(bits, bits, nct, nct, 1);
        let config = |role| ConnectionConfig {
            max_chunk: 64 * 1024,
            ..ConnectionConfig::rfc(role)
        };
        let mut p = Pair::new(&offer, config(Role::Client), config(Role::Server));
        {
            p.sender(dir).send_frame(OpCode::BINARY, true, &data).expect("open");
            p.drive();
            let evs = events(p.receiver(dir));
            let mut got = Vec::new();
            for e in &evs {
                let Event::Data(d) = e else { panic!("{e:?}") };
                assert!(d.data.len() <= 64 * 1024);
                got.extend_from_slice(&d.data);
            }
            assert!(got == data, "{bits} {nct} {dir:?}: {} bytes", got.len());
            let Some(Event::Data(last)) = evs.last() else {
                unreachable!()
            };
            assert!(last.ends_message());
        }
    }
}

/// A compressed frame's chunks: full ones with the length unknown, then the last one with
/// the frame's decompressed length; eager chunks hand out all but the last byte as it
/// comes; a frame that inflates to nothing is one empty chunk; fragments restart offsets.
#[test]
fn chunks_of_a_compressed_frame_carry_its_decompressed_length_at_the_end() {
    let msg = json(2500);
    let chunks = |policy: ChunkPolicy, send: &dyn Fn(&mut Connection)| -> Vec<(OpCode, bool, u64, usize, u64)> {
        let server = ConnectionConfig {
            max_chunk: 1000,
            chunk_policy: policy,
            ..ConnectionConfig::rfc(Role::Server)
        };
        let mut p = Pair::new(&DeflateConfig::default(), ConnectionConfig::rfc(Role::Client), server);
        send(&mut p.client);
        p.drive();
        events(&mut p.server)
            .into_iter()
            .map(|e| match e {
                Event::Data(d) => (d.opcode, d.fin, d.offset, d.data.len(), d.payload_len),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    const U: u64 = DataChunk::UNKNOWN_LEN;
    let whole = |c: &mut Connection| c.send_frame(OpCode::TEXT, true, &msg).expect("open");
    assert_eq!(
        chunks(ChunkPolicy::Full, &whole),
        [
            (OpCode::TEXT, true, 0, 1000, U),
            (OpCode::TEXT, true, 1000, 1000, U),
            (OpCode::TEXT, true, 2000, 500, 2500)
        ]
    );
    let eager = chunks(ChunkPolicy::Eager, &whole);
    assert!(eager.iter().all(|c| c.3 <= 1000));
    assert_eq!(eager.iter().map(|c| c.3).sum::<usize>(), 2500);
    let last = eager.last().expect("chunks");
    assert_eq!((last.2 + last.3 as u64, last.4), (2500, 2500));
    assert!(eager[..eager.len() - 1].iter().all(|c| c.4 == U));

    let empty = |c: &mut Connection| c.send_frame(OpCode::BINARY, true, &[]).expect("open");
    assert_eq!(chunks(ChunkPolicy::Full, &empty), [(OpCode::BINARY, true, 0, 0, 0)]);

    // Two wire frames: each frame's chunks, offsets from 0, lengths at each frame's end.
    let two = |c: &mut Connection| {
        c.send_frame(OpCode::TEXT, false, &msg[..1500]).expect("open");
        c.send_frame(OpCode::CONTINUATION, true, &msg[1500..]).expect("open");
    };
    assert_eq!(
        chunks(ChunkPolicy::Full, &two),
        [
            (OpCode::TEXT, false, 0, 1000, U),
            (OpCode::TEXT, false, 1000, 500, 1500),
            (OpCode::CONTINUATION, true, 0, 1000, 1000)
        ]
    );
}

/// RSV1 may only mark a data message's first frame, and only with the extension; RSV2 and
/// RSV3 stay reserved. An uncompressed message (RSV1 clear) passes as is.
#[test]
fn rsv1_rules() {
    let deflate = Some(NegotiatedDeflate {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: None,
        client_max_window_bits: None,
        compression_level: 6,
    });
    let hello = Deflater::new(15, 6, false).compress(b"Hello", true);
    let frame = |op: OpCode, fin: bool, rsv: u8, payload: &[u8]| {
        let mut out = Vec::new();
        encode_frame_rsv(&mut out, op, fin, rsv, None, payload);
        out
    };
    let cases: Vec<(Option<NegotiatedDeflate>, Vec<u8>, ProtocolError)> = vec![
        (
            deflate.clone(),
            [
                frame(OpCode::TEXT, false, RSV1, &hello),
                frame(OpCode::CONTINUATION, true, RSV1, &[0x00]),
            ]
            .concat(),
            ProtocolError::CompressedContinuation,
        ),
        (
            deflate.clone(),
            frame(OpCode::PING, true, RSV1, b""),
            ProtocolError::CompressedControl(OpCode::PING),
        ),
        (
            deflate.clone(),
            frame(OpCode::CLOSE, true, RSV1, &[0x03, 0xE8]),
            ProtocolError::CompressedControl(OpCode::CLOSE),
        ),
        (
            deflate.clone(),
            frame(OpCode::TEXT, true, 0b110, &hello),
            ProtocolError::ReservedBits(0b110),
        ),
        (
            None,
            frame(OpCode::TEXT, true, RSV1, &hello),
            ProtocolError::ReservedBits(0b100),
        ),
        (
            deflate.clone(),
            frame(OpCode::BINARY, true, RSV1, &[0xff, 0xff, 0xff]),
            ProtocolError::InvalidCompressedData("invalid block type".into()),
        ),
    ];
    for (params, wire, expected) in cases {
        let mut c = Connection::with_deflate(ConnectionConfig::rfc(Role::Client), params, Instant::now());
        c.handle_bytes(&wire, Instant::now());
        let evs = events(&mut c);
        let errs = errors(&evs);
        assert_eq!(errs.len(), 1, "{wire:02x?}: {evs:?}");
        if let (ProtocolError::InvalidCompressedData(_), ProtocolError::InvalidCompressedData(_)) =
            (&errs[0], &expected)
        {
        } else {
            assert_eq!(errs[0], expected, "{wire:02x?}");
        }
        assert_eq!(close_code_sent(&mut c), expected.close_code(), "{expected}");
    }
    // With the extension, an uncompressed message and a compressed one, and a ping between
    // the fragments of a compressed message.
    let mut c = Connection::with_deflate(ConnectionConfig::rfc(Role::Client), deflate, Instant::now());
    let mut deflater = Deflater::new(15, 6, false);
    let wire = [
        frame(OpCode::TEXT, true, 0, b"plain"),
        frame(OpCode::TEXT, false, RSV1, &deflater.compress(b"Hel", false)),
        frame(OpCode::PING, true, 0, b"p"),
        frame(OpCode::CONTINUATION, true, 0, &deflater.compress(b"lo", true)),
    ]
    .concat();
    c.handle_bytes(&wire, Instant::now());
    let got: Vec<(OpCode, Vec<u8>)> = messages(&mut c)
        .into_iter()
        .map(|m| (m.opcode, m.payload.to_vec()))
        .collect();
    assert_eq!(
        got,
        [(OpCode::TEXT, b"plain".to_vec()), (OpCode::TEXT, b"Hello".to_vec())]
    );
    assert!(c.poll_transmit().is_some(), "the pong");
}

/// Lenient mode without the extension delivers an RSV1 frame as it is (the firmware's way).
#[test]
fn without_the_extension_a_lenient_client_delivers_rsv1_frames_raw() {
    let mut c = Connection::new(
        ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(10)),
        Instant::now(),
    );
    let mut wire = Vec::new();
    encode_frame_rsv(
        &mut wire,
        OpCode::TEXT,
        true,
        RSV1,
        None,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    );
    c.handle_bytes(&wire, Instant::now());
    assert!(matches!(&events(&mut c)[..], [Event::Data(d)] if d.data.len() == 7));
}

fn compressed_frame(data: &[u8], level: u32) -> Vec<u8> {
    let mut wire = Vec::new();
    let payload = Deflater::new(15, level, true).compress(data, true);
    encode_frame_rsv(&mut wire, OpCode::BINARY, true, RSV1, None, &payload);
    wire
}

/// Decompressed bytes a connection holds: in events not yet taken, and held back.
fn buffered(c: &Connection) -> usize {
    let in_events: usize = c
        .events
        .iter()
        .map(|e| match e {
            Event::Data(d) => d.data.len(),
            _ => 0,
        })
        .sum();
    in_events + c.inflated_pending_len()
}

/// A compression bomb: 10 MiB of zeros in about 10 KiB, against a 1 MiB limit. The
/// connection fails with 1009 while inflating, having inflated no more than the limit plus
/// one step, and having delivered no more than the limit; at no point does it hold more.
/// With eager chunks, compressed bytes are inflated as they arrive, so it fails while the
/// message is still arriving (after less than half of it).
#[test]
fn a_compression_bomb_fails_with_1009_while_inflating() {
    const LIMIT: u64 = 1 << 20;
    let wire = compressed_frame(&vec![0u8; 10 << 20], 6);
    assert!(wire.len() < 12 * 1024, "{} bytes", wire.len());
    for (policy, max_chunk) in [
        (ChunkPolicy::Eager, 64 * 1024),
        (ChunkPolicy::Full, 64 * 1024),
        (ChunkPolicy::Full, LIMIT as usize),
    ] {
        let config = ConnectionConfig {
            max_chunk,
            chunk_policy: policy,
            max_message_len: Some(LIMIT),
            ..ConnectionConfig::rfc(Role::Client)
        };
        let params = negotiate(&DeflateConfig::default()).0;
        let mut c = Connection::with_deflate(config, Some(params), Instant::now());
        let mut fed = 0;
        let mut peak = 0;
        for piece in wire.chunks(64) {
            c.handle_bytes(piece, Instant::now());
            fed += piece.len();
            peak = peak.max(buffered(&c));
            assert!(
                c.message_len <= LIMIT + INFLATE_STEP as u64,
                "inflated {} bytes",
                c.message_len
            );
            if c.state() != ConnectionState::Open {
                break;
            }
        }
        if policy == ChunkPolicy::Eager {
            assert!(fed < wire.len() / 2, "failed after {fed} of {} bytes", wire.len());
        }
        assert!(peak as u64 <= LIMIT + INFLATE_STEP as u64, "peak {peak}");
        let evs = events(&mut c);
        assert_eq!(errors(&evs), [ProtocolError::MessageTooBig(LIMIT)]);
        let delivered: usize = evs
            .iter()
            .map(|e| match e {
                Event::Data(d) => d.data.len(),
                _ => 0,
            })
            .sum();
        // The chunks that something followed, up to the limit: all but its last byte when
        // eager; full chunks otherwise.
        let expected = match policy {
            ChunkPolicy::Eager => LIMIT - 1,
            ChunkPolicy::Full => (LIMIT - 1) / max_chunk as u64 * max_chunk as u64,
        };
        assert_eq!(delivered as u64, expected, "{policy:?} {max_chunk}");
        assert_eq!(close_code_sent(&mut c), 1009);
        assert_eq!(c.inflated_pending_len(), 0, "the rest is dropped");
    }
}

/// `process_message` inflates a bounded amount per call: a 2 MiB message compressed into
/// a few KiB, read at once, comes out over many calls, each of which leaves at most about
/// `max(max_chunk, 32 KiB)` plus a step in the connection for the caller to take.
#[test]
fn process_message_hands_back_between_inflate_steps() {
    let wire = compressed_frame(&vec![b'z'; 2 << 20], 6);
    let config = ConnectionConfig {
        max_chunk: 1024,
        ..ConnectionConfig::rfc(Role::Client)
    };
    let params = negotiate(&DeflateConfig::default()).0;
    let mut c = Connection::with_deflate(config, Some(params), Instant::now());
    c.read_buf().extend_from_slice(&wire);
    assert_eq!(c.read_hint(), 0);
    let mut calls = 0;
    let mut total = 0;
    let mut asm = MessageAssembler::new();
    let mut message = None;
    loop {
        let more = c.process_message(Instant::now());
        calls += 1;
        assert!(
            buffered(&c) <= 2 * INFLATE_STEP + 1024,
            "{} bytes after a call",
            buffered(&c)
        );
        for e in events(&mut c) {
            let Event::Data(d) = e else { panic!("{e:?}") };
            total += d.data.len();
            if let Some(m) = asm.push(&d) {
                message = Some(m);
            }
        }
        if !more {
            break;
        }
        assert_eq!(c.read_hint(), 0, "nothing to read while inflating");
    }
    assert_eq!(total, 2 << 20);
    assert!(calls >= (2 << 20) / (2 * INFLATE_STEP), "{calls} calls");
    assert!(message.is_some_and(|m| m.payload.iter().all(|&b| b == b'z')));
}

/// Whole-message delivery (`max_chunk` = the message limit, as wsat-client configures it):
/// a compressed message is one chunk, the assembler's message without a copy.
#[test]
fn whole_messages_come_as_one_chunk() {
    let msg = json(300 * 1024);
    let server = ConnectionConfig {
        max_chunk: 1 << 20,
        max_message_len: Some(1 << 20),
        ..ConnectionConfig::rfc(Role::Server)
    };
    let mut p = Pair::new(&DeflateConfig::default(), ConnectionConfig::rfc(Role::Client), server);
    p.client
        .send_fragmented(OpCode::TEXT, &msg, true, 1 << 20)
        .expect("open");
    p.drive();
    let evs = events(&mut p.server);
    assert!(
        matches!(&evs[..], [Event::Data(d)] if d.ends_message() && d.data[..] == msg[..] && d.payload_len == msg.len() as u64),
        "{} events",
        evs.len()
    );
}

/// Invalid UTF-8 inside a compressed text message fails with 1007, as uncompressed text
/// does; a lenient connection delivers it.
#[test]
fn invalid_utf8_in_compressed_text_fails_with_1007() {
    let mut wire = Vec::new();
    let payload = Deflater::new(15, 6, true).compress(&[b'a', 0xff, b'b'], true);
    encode_frame_rsv(&mut wire, OpCode::TEXT, true, RSV1, None, &payload);
    let params = negotiate(&DeflateConfig::default()).0;
    let mut c = Connection::with_deflate(
        ConnectionConfig::rfc(Role::Client),
        Some(params.clone()),
        Instant::now(),
    );
    c.handle_bytes(&wire, Instant::now());
    assert_eq!(errors(&events(&mut c)), [ProtocolError::InvalidUtf8]);
    assert_eq!(close_code_sent(&mut c), 1007);
    let lenient = ConnectionConfig::esp_firmware(1024, Duration::from_secs(10), Duration::from_secs(10));
    let mut c = Connection::with_deflate(lenient, Some(params), Instant::now());
    c.handle_bytes(&wire, Instant::now());
    assert!(matches!(&events(&mut c)[..], [Event::Data(d)] if d.data[..] == [b'a', 0xff, b'b']));
}

/// When the transport ends inside a compressed frame, what its received part inflated to
/// comes out as a last chunk that does not end the frame.
#[test]
fn the_transport_end_hands_out_what_an_unfinished_compressed_frame_inflated_to() {
    let msg = json(5000);
    let wire = compressed_frame(&msg, 6);
    let params = negotiate(&DeflateConfig::default()).0;
    let config = ConnectionConfig {
        max_chunk: 1024,
        ..ConnectionConfig::rfc(Role::Client)
    };
    let mut c = Connection::with_deflate(config, Some(params), Instant::now());
    c.handle_bytes(&wire[..wire.len() - 20], Instant::now());
    let mut got = Vec::new();
    for e in events(&mut c) {
        let Event::Data(d) = e else { panic!("{e:?}") };
        assert!(!d.ends_frame());
        got.extend_from_slice(&d.data);
    }
    let before_eof = got.len();
    c.handle_eof(Instant::now());
    let evs = events(&mut c);
    for e in &evs {
        let Event::Data(d) = e else { panic!("{e:?}") };
        assert!(!d.ends_frame() && d.data.len() <= 1024);
        got.extend_from_slice(&d.data);
    }
    assert!(!evs.is_empty() && got.len() > before_eof);
    assert!(msg.starts_with(&got), "{} bytes", got.len());
    assert_eq!(c.state(), ConnectionState::Failed);
}

/// The handshake and the connection together: a client offering deflate to a server that
/// accepts it, both built from what the handshake said.
#[test]
fn handshake_to_connection() {
    use crate::handshake::{accept_response_with_extensions, parse_request, ClientHandshake, HandshakeRequest};
    let mut req = HandshakeRequest::for_uri(&crate::uri::WsUri::parse("ws://127.0.0.1:9/").expect("valid"));
    req.deflate = Some(DeflateConfig {
        server_no_context_takeover: true,
        ..DeflateConfig::default()
    });
    let hs = ClientHandshake::new(&req);
    let request = parse_request(hs.request()).expect("valid").expect("complete");
    let agreed = request.deflate(&DeflateConfig::default());
    let response = accept_response_with_extensions(
        &request.key,
        None,
        agreed.as_ref().map(NegotiatedDeflate::response).as_deref(),
    );
    let Ok(Some(crate::handshake::HandshakeResponse::Accepted { headers, .. })) = hs.parse_response(&response, true)
    else {
        panic!("refused")
    };
    let seen = hs.negotiated_deflate(&headers).expect("valid");
    assert_eq!(seen, agreed);
    let now = Instant::now();
    let mut client = Connection::with_deflate(ConnectionConfig::rfc(Role::Client), seen, now);
    let mut server = Connection::with_deflate(ConnectionConfig::rfc(Role::Server), agreed, now);
    client
        .send_frame(OpCode::TEXT, true, b"hello hello hello")
        .expect("open");
    server.handle_bytes(&client.poll_transmit().expect("bytes"), now);
    assert_eq!(
        messages(&mut server)[0].payload,
        Bytes::from_static(b"hello hello hello")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any messages (compressible or not, sent whole, fragmented or in pieces), any
    /// parameters and chunking: what arrives is what was sent, in order.
    #[test]
    fn any_messages_round_trip(
        client_bits in 8u8..=15, server_bits in 8u8..=15,
        client_nct in any::<bool>(), server_nct in any::<bool>(), level in 0u32..=9,
        max_chunk in 1usize..3000, eager in any::<bool>(),
        msgs in proptest::collection::vec(
            (0usize..6000, any::<bool>(), 0u8..3, 1usize..2000, any::<u64>()), 1..8),
    ) {
        let offer = client_offer(client_bits, server_bits, client_nct, server_nct, level);
        let server = ConnectionConfig {
            max_chunk,
            chunk_policy: if eager { ChunkPolicy::Eager } else { ChunkPolicy::Full },
            ..ConnectionConfig::rfc(Role::Server)
        };
        let mut p = Pair::new(&offer, ConnectionConfig::rfc(Role::Client), server);
        let mut sent = Vec::new();
        for (len, compressible, how, frame_size, seed) in msgs {
            let data = if compressible { json(len) } else { random(len, seed) };
            let opcode = if compressible { OpCode::TEXT } else { OpCode::BINARY };
            match how {
                0 => p.client.send_frame(opcode, true, &data).expect("open"),
                1 => p.client.send_fragmented(opcode, &data, true, frame_size).expect("open"),
                _ => {
                    let mut pieces = data.chunks(frame_size).peekable();
                    let first = pieces.next().unwrap_or(&[]);
                    p.client.send_frame(opcode, pieces.peek().is_none(), first).expect("open");
                    while let Some(piece) = pieces.next() {
                        p.client.send_frame(OpCode::CONTINUATION, pieces.peek().is_none(), piece).expect("open");
                    }
                }
            }
            sent.push((opcode, data));
            p.drive();
        }
        let mut asm = MessageAssembler::new();
        let mut got = Vec::new();
        for e in events(&mut p.server) {
            let Event::Data(d) = e else { panic!("{e:?}") };
            prop_assert!(d.data.len() <= max_chunk);
            prop_assert!(d.offset + d.data.len() as u64 <= d.payload_len);
            if let Some(m) = asm.push(&d) {
                got.push((m.opcode, m.payload.to_vec()));
            }
        }
        prop_assert!(got == sent, "{} of {} messages", got.len(), sent.len());
    }
}

/// A connection moves between threads (and is shared by reference) as before the extension.
#[test]
fn a_connection_is_still_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Connection>();
}
