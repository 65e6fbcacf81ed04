//! Replays the checked-in fuzz inputs (`fuzz/corpus/<target>/` seeds and
//! `fuzz/regressions/<target>/` crashes that were fixed) through the same functions the
//! cargo-fuzz targets call, so `cargo test` on stable re-checks every one of them.
//! Long fuzzing runs: `scripts/fuzz.sh`.

use wsat_testkit::replay_fuzz_inputs as replay;

#[test]
fn at_engine_corpus() {
    let n = replay("at_engine", wsat_at::fuzzing::engine);
    println!("{n} at_engine inputs");
}

#[test]
fn at_params_corpus() {
    let n = replay("at_params", wsat_at::fuzzing::params);
    println!("{n} at_params inputs");
}
