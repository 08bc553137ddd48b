//! Differential fuzz of the lane-interleaved SHA-1 (the one crate with `unsafe` code):
//! the input is cut into up to eight messages, of equal or mixed lengths as its first
//! byte says, and `sha1_many` must give exactly the `sha1` crate's digest of each.

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
});
