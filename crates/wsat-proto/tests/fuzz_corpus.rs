//! Replays the checked-in fuzz inputs (`fuzz/corpus/<target>/` seeds and
//! `fuzz/regressions/<target>/` crashes that were fixed) through the same functions the
//! cargo-fuzz targets call, so `cargo test` on stable re-checks every one of them.
//! Long fuzzing runs: `scripts/fuzz.sh`.

use wsat_testkit::replay_fuzz_inputs as replay;

#[test]
fn frame_decoder_corpus() {
    let n = replay("frame_decoder", wsat_proto::fuzzing::frame_decoder);
    println!("{n} frame_decoder inputs");
}

#[test]
fn handshake_response_corpus() {
    let n = replay("handshake_response", wsat_proto::fuzzing::handshake);
    println!("{n} handshake_response inputs");
}
