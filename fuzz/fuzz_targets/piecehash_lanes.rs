//! Differential fuzz of the lane-interleaved SHA-1 (the one crate with `unsafe` code):
//! the input is cut into up to eight messages, of equal or mixed lengths as its first
//! byte says, and `sha1_many` must give exactly the `sha1` crate's digest of each; then
//! each message is cut into parts (as a piece is into blocks) where its bytes say, and
//! `sha1_many_parts` must give the same digests.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(how & 7) + 1;
    let msgs: Vec<&[u8]> = if how & 8 == 0 {
        // Equal lengths (pieces): the lanes stay together to the end.
        let len = rest.len() / count;
        (0..count).map(|i| &rest[i * len..(i + 1) * len]).collect()
    } else {
        // Mixed lengths: cut where the bytes say.
        let mut msgs = Vec::new();
        let mut left = rest;
        for _ in 0..count {
            let cut = left.first().map_or(0, |&b| usize::from(b) * 3).min(left.len());
            let (m, r) = left.split_at(cut);
            msgs.push(m);
            left = r;
        }
        msgs
    };
    let want: Vec<[u8; 20]> = msgs.iter().map(|m| Sha1::digest(m).into()).collect();
    assert_eq!(piecehash::sha1_many(&msgs), want);
    // Parts: each message cut every few bytes, the step taken from its own bytes (a step
    // of 64 or more keeps whole blocks in the parts; smaller ones cut every block).
    let parts: Vec<Vec<&[u8]>> = msgs
        .iter()
        .map(|m| {
            let step = m.first().map_or(1, |&b| usize::from(b) + 1) * usize::from(how >> 4).max(1);
            m.chunks(step).collect()
        })
        .collect();
    let parts: Vec<&[&[u8]]> = parts.iter().map(Vec::as_slice).collect();
    assert_eq!(piecehash::sha1_many_parts(&parts), want);
});
