//! Fuzzes the BEP 11 `ut_pex` decoder and the PEX state machine. Nothing may panic,
//! decoded lists stay within their bounds, a decoded message survives encode/decode
//! unchanged, and feeding its peers to a `PexState` never yields a message over the
//! BEP 11 cap.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wire::pex::{MAX_ADDED, MAX_DROPPED, MAX_PEERS_PER_MESSAGE, SEND_INTERVAL};
use wire::{PexMessage, PexState};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = PexMessage::decode(data) else {
        return;
    };
    assert!(msg.added.len() <= MAX_ADDED);
    assert!(msg.dropped.len() <= MAX_DROPPED);
    assert_eq!(PexMessage::decode(&msg.encode()).as_ref(), Ok(&msg));

    let t0 = Instant::now();
    let mut state = PexState::new();
    let mut current = msg.added.clone();
    for round in 0..6u32 {
        if let Some(out) = state.poll_message(t0 + SEND_INTERVAL * round, &current) {
            assert!(out.added.len() <= MAX_PEERS_PER_MESSAGE);
            assert!(out.dropped.len() <= MAX_PEERS_PER_MESSAGE);
        }
        assert!(
            state
                .poll_message(
                    t0 + SEND_INTERVAL * round + Duration::from_secs(1),
                    &current
                )
                .is_none()
        );
        current.retain(|(a, _)| !msg.dropped.contains(a));
        current.truncate(current.len() / 2);
    }
});
