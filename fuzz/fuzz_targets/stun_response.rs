//! Fuzzes the STUN Binding response parser (what a configured STUN server, or anyone who
//! can send to a session's socket before it knows its peer, can send us): no panic; the
//! first 12 bytes are the transaction id waited for, so the id check passes as often as it
//! fails; an address it returns, written back as a response, parses to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use webtorrent::stun::{binding_success, parse_binding_response, request_tid};

fuzz_target!(|data: &[u8]| {
    let Some((tid, msg)) = data.split_first_chunk::<12>() else {
        return;
    };
    let _ = request_tid(msg);
    if let Ok(addr) = parse_binding_response(msg, tid) {
        assert_eq!(parse_binding_response(&binding_success(tid, addr), tid), Ok(addr));
    }
});
