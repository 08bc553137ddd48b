//! Any bytes as a Transmission RPC request body: decoding never panics, and what it
//! gives is a method string and an arguments object.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(r) = webform::parse_rpc(data) {
        assert!(r.arguments.is_object());
        assert!(r.method.len() <= data.len());
    }
});
