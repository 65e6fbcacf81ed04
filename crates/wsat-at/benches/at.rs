//! Micro-benchmarks of the AT engine: command line parsing and `+WS_DATA` formatting.
//! Run with `cargo bench -p wsat-at`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wsat_at::{Action, Completion, Engine, EngineConfig, LinkEvent, LinkHandle};

fn drain(e: &mut Engine) -> usize {
    let mut n = 0;
    while let Some(piece) = e.poll_output() {
        n += piece.len();
    }
    n
}

/// An engine with echo off and link 0 connected.
fn engine_with_link() -> (Engine, LinkHandle) {
    let mut e = Engine::new(EngineConfig::default());
    e.boot();
    e.feed(b"ATE0\r\n");
    drain(&mut e);
    e.feed(b"AT+WSOPEN=0,\"ws://127.0.0.1:8765/\"\r\n");
    let link = match e.poll_action() {
        Some(Action::Open { link, .. }) => link,
        other => panic!("expected an Open action, got {other:?}"),
    };
    e.handle_link_event(link, LinkEvent::Connected);
    e.complete(Completion::Open { link, ok: true });
    drain(&mut e);
    (e, link)
}

fn at_lines(c: &mut Criterion) {
    let mut group = c.benchmark_group("at_line");
    let lines: [(&str, &[u8]); 4] = [
        ("AT", b"AT\r\n"),
        ("WSCFG", b"AT+WSCFG=0,30,600,4096\r\n"),
        ("WSHEAD_query", b"AT+WSHEAD?\r\n"),
        ("WSSTATE_query", b"AT+WSSTATE?\r\n"),
    ];
    let (mut e, _) = engine_with_link();
    for (name, line) in lines {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                e.feed(black_box(line));
                black_box(drain(&mut e))
            })
        });
    }
    // The same command arriving one byte per read, as from a slow UART.
    let line = b"AT+WSCFG=0,30,600,4096\r\n";
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("WSCFG_bytewise", |b| {
        b.iter(|| {
            for byte in line {
                e.feed(std::slice::from_ref(byte));
            }
            black_box(drain(&mut e))
        })
    });
    group.finish();
}

fn ws_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_data");
    let (mut e, link) = engine_with_link();
    for (name, len) in [("20B", 20usize), ("1KiB", 1024), ("4KiB", 4096)] {
        let chunk: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("format", name), &len, |b, _| {
            b.iter_batched(
                || chunk.clone(),
                |chunk| {
                    e.handle_link_event(
                        link,
                        LinkEvent::Data {
                            opcode: 1,
                            fin: true,
                            payload_len: len as u64,
                            offset: 0,
                            chunk,
                        },
                    );
                    black_box(drain(&mut e))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, at_lines, ws_data);
criterion_main!(benches);
