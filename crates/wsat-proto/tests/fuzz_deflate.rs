//! The `frame_decoder` fuzz body over streams with real permessage-deflate messages (which
//! random fuzz input rarely forms): compressed and plain messages, fragments, pings, a close,
//! then perhaps a corrupted byte or a cut, under every decoder setting the target's flags
//! select. Each run checks the body's invariants (bounded buffers, chunk bounds and
//! continuity, split runs agreeing with one-shot runs).

use std::time::Instant;

use proptest::prelude::*;
use wsat_proto::{Connection, ConnectionConfig, NegotiatedDeflate, OpCode, Role};

/// A server's frames (unmasked) carrying `messages` with permessage-deflate.
fn server_wire(messages: &[(Vec<u8>, bool, usize)], no_context_takeover: bool) -> Vec<u8> {
    let params = NegotiatedDeflate {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: None,
        client_max_window_bits: None,
        compression_level: 6,
    };
    let mut server = Connection::with_deflate(ConnectionConfig::rfc(Role::Server), Some(params), Instant::now());
    for (i, (data, text, frame_size)) in messages.iter().enumerate() {
        let opcode = if *text { OpCode::TEXT } else { OpCode::BINARY };
        server.send_fragmented(opcode, data, true, *frame_size).expect("open");
        if i % 3 == 1 {
            server.send_frame(OpCode::PING, true, b"ping").expect("open");
        }
    }
    server.close(Some(1000), "bye", Instant::now());
    let mut wire = Vec::new();
    while let Some(bytes) = server.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    wire
}

fn message() -> impl Strategy<Value = (Vec<u8>, bool, usize)> {
    (
        prop_oneof![
            // Text that compresses well (and is valid UTF-8).
            (0usize..3000).prop_map(|n| "{\"k\":\"value\",\"n\":12345}".bytes().cycle().take(n).collect()),
            proptest::collection::vec(any::<u8>(), 0..600),
        ],
        1usize..400,
    )
        .prop_map(|(data, frame_size)| {
            let text = std::str::from_utf8(&data).is_ok();
            (data, text, frame_size)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_frame_decoder_body_holds_on_compressed_streams(
        messages in proptest::collection::vec(message(), 1..6),
        no_context_takeover in any::<bool>(),
        other_flags in 0u8..64,
        chunk in any::<u8>(),
        schedule in proptest::collection::vec(any::<u8>(), 0..8),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut wire = server_wire(&messages, no_context_takeover);
        if let Some((at, xor)) = corrupt {
            let i = at.index(wire.len());
            wire[i] ^= xor;
        }
        if let Some(at) = cut {
            wire.truncate(at.index(wire.len() + 1));
        }
        // Deflate on, with the same context takeover as the sender.
        let flags = other_flags | 64 | if no_context_takeover { 128 } else { 0 };
        let mut input = vec![flags, chunk, schedule.len() as u8];
        input.extend_from_slice(&schedule);
        input.extend_from_slice(&wire);
        wsat_proto::fuzzing::frame_decoder(&input);
    }
}
