//! Micro-benchmarks of the protocol core: masking against the plain byte loop, frame
//! encoding and decoding, UTF-8 validation, permessage-deflate. Run with
//! `cargo bench -p wsat-proto`.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wsat_proto::encode::encode_frame;
use wsat_proto::mask::{apply_mask, apply_mask_bytewise};
use wsat_proto::{
    ChunkPolicy, Connection, ConnectionConfig, DecoderConfig, Event, FrameDecoder, Item, NegotiatedDeflate, OpCode,
    Role, Utf8Validator,
};

const SIZES: [(&str, usize); 4] = [("16B", 16), ("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1 << 20)];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for (name, len) in SIZES {
        let mut buf = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("wsat", name), &len, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        group.bench_with_input(BenchmarkId::new("byte_loop", name), &len, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, len) in SIZES {
        let data = payload(len);
        let mut out = BytesMut::with_capacity(len + 14);
        group.throughput(Throughput::Bytes(len as u64));
        // A client frame: header, copy and mask (what every send costs).
        group.bench_with_input(BenchmarkId::new("masked", name), &len, |b, _| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, OpCode::BINARY, true, Some(black_box(KEY)), black_box(&data));
                black_box(out.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("unmasked", name), &len, |b, _| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, OpCode::BINARY, true, None, black_box(&data));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, len) in SIZES {
        let data = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        for (label, role, mask) in [
            ("server_frame", Role::Client, None),
            ("client_frame", Role::Server, Some(KEY)),
        ] {
            let mut wire = BytesMut::new();
            encode_frame(&mut wire, OpCode::BINARY, true, mask, &data);
            let config = DecoderConfig {
                role,
                strict: true,
                max_chunk: len.max(1),
                chunk_policy: ChunkPolicy::Full,
                max_frame_len: None,
            };
            group.bench_with_input(BenchmarkId::new(label, name), &len, |b, _| {
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| {
                        let mut dec = FrameDecoder::new(config);
                        let mut got = 0;
                        while let Some(item) = dec.decode(buf).expect("valid frame") {
                            if let Item::Payload(p) = item {
                                got += p.len();
                            }
                        }
                        black_box(got)
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let text = "Grüße, 世界! WebSocket ✓ ".repeat(1 << 16);
    for (name, len) in SIZES {
        // Cut on a character boundary at or below `len`.
        let end = (0..=len.min(text.len()))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let piece = &text.as_bytes()[..end];
        group.throughput(Throughput::Bytes(piece.len() as u64));
        group.bench_with_input(BenchmarkId::new("validator", name), &len, |b, _| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(piece)).expect("valid");
                v.finish().expect("complete")
            })
        });
        // The same bytes fed in 1 KiB chunks that cut characters apart.
        group.bench_with_input(BenchmarkId::new("validator_chunked_1000", name), &len, |b, _| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for part in black_box(piece).chunks(1000) {
                    v.feed(part).expect("valid");
                }
                v.finish().expect("complete")
            })
        });
        group.bench_with_input(BenchmarkId::new("std_from_utf8", name), &len, |b, _| {
            b.iter(|| std::str::from_utf8(black_box(piece)).is_ok())
        });
    }
    group.finish();
}

/// JSON-like text: what compression is for.
fn json(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"sensor-{}\",\"value\":{}}},",
                i % 17,
                (i * 7919) % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// permessage-deflate through the connection, default level, 15-bit windows: a text message
/// sent by a server (compressed, framed; no masking, context takeover), and received by a
/// client (inflated, validated, in one chunk; no context takeover, so the same frame can be
/// received again).
fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    let params = NegotiatedDeflate {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: None,
        client_max_window_bits: None,
        compression_level: 6,
    };
    let now = Instant::now();
    for (name, len) in SIZES {
        let data = json(len);
        group.throughput(Throughput::Bytes(len as u64));
        let mut sender = Connection::with_deflate(ConnectionConfig::rfc(Role::Server), Some(params.clone()), now);
        group.bench_with_input(BenchmarkId::new("send_json", name), &len, |b, _| {
            b.iter(|| {
                sender.send_frame(OpCode::TEXT, true, black_box(&data)).expect("open");
                black_box(sender.poll_transmit())
            })
        });
        // Without context takeover every message stands alone: the same frame can be
        // received again and again by one connection (steady state).
        let alone = NegotiatedDeflate {
            server_no_context_takeover: true,
            ..params.clone()
        };
        let mut sender = Connection::with_deflate(ConnectionConfig::rfc(Role::Server), Some(alone.clone()), now);
        sender.send_frame(OpCode::TEXT, true, &data).expect("open");
        let wire = sender.poll_transmit().expect("a frame");
        let mut receiver = Connection::with_deflate(
            ConnectionConfig {
                max_chunk: len,
                ..ConnectionConfig::rfc(Role::Client)
            },
            Some(alone),
            now,
        );
        group.bench_with_input(BenchmarkId::new("receive_json", name), &len, |b, _| {
            b.iter(|| {
                receiver.handle_bytes(black_box(&wire), now);
                let mut got = 0;
                while let Some(Event::Data(d)) = receiver.poll_event() {
                    got += d.data.len();
                }
                assert_eq!(got, len);
                black_box(got)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masking, encode, decode, utf8, deflate);
criterion_main!(benches);
