#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsat_proto::fuzzing::handshake(data));
