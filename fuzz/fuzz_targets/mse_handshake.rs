//! Fuzzes the MSE/PE handshake (crates/mse) in both roles with what a stranger can send:
//! raw bytes, and bytes behind a genuine key exchange so that the encrypted fields (VC,
//! crypto_provide/select, pad lengths, IA) are the fuzzer's. The driver is
//! `mse::fuzzing::run` (see there); nothing may panic and the buffer stays bounded.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mse::fuzzing::run(data);
});
