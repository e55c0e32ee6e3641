//! One connection's bytes through framing, decoding and parameter parsing; see
//! `flaskbbd_protocol::fuzzing::handle_stream` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flaskbbd_protocol::fuzzing::handle_stream(data);
});
