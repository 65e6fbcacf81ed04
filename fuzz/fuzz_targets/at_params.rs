#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsat_at::fuzzing::params(data));
