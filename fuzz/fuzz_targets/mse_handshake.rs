//! Fuzzes the MSE/PE handshake (crates/mse) in both roles, with what a stranger can send:
//!
//! - mode 0/1: raw bytes to a receiver / an initiator;
//! - mode 2: a receiver gets a genuine Ya, HASH('req1', S) and obfuscated SKEY, then the
//!   fuzz bytes encrypted with the right key stream, so VC, crypto_provide, len(PadC),
//!   PadC, len(IA) and IA are the fuzzer's;
//! - mode 3: an initiator gets a genuine Yb, then the fuzz bytes encrypted with B's key
//!   stream, so PadB, VC, crypto_select, len(PadD) and PadD are the fuzzer's.
//!
//! The second byte chooses the size of the pieces the input arrives in. Nothing may panic,
//! and the handshake's buffer stays bounded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mse::{CRYPTO_PLAINTEXT, CRYPTO_RC4, Entropy, Handshake, KeyPair, Rc4};
use sha1::{Digest, Sha1};

const SKEY: [u8; 20] = [0x42; 20];

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn entropy(seed: u8) -> Entropy {
    Entropy {
        secret: [seed; 20],
        pad: vec![seed; usize::from(seed)],
    }
}

fn receiver() -> Handshake {
    let known = mse::req2_hash(&SKEY);
    Handshake::receiver(
        CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        Box::new(move |r| (*r == known).then_some(SKEY)),
        entropy(9),
    )
}

fn feed(h: &mut Handshake, data: &[u8], chunk: usize) {
    for c in data.chunks(chunk) {
        if h.feed(c).is_err() {
            return;
        }
        let _ = h.take_output();
        if h.is_done() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mode = data[0] % 4;
    let chunk = usize::from(data[1]).max(1);
    let rest = &data[2..];
    match mode {
        0 => feed(&mut receiver(), rest, chunk),
        1 => {
            let mut a = Handshake::initiator(SKEY, CRYPTO_RC4, Vec::new(), entropy(3));
            feed(&mut a, rest, chunk);
        }
        2 => {
            let a = KeyPair::from_secret([7; 20]);
            let mut b = receiver();
            if b.feed(a.public()).is_err() {
                return;
            }
            let out = b.take_output();
            let Ok(yb) = <[u8; 96]>::try_from(&out[..96]) else {
                return;
            };
            let Some(s) = a.shared(&yb) else { return };
            let mut m = hash(&[b"req1", &s]).to_vec();
            let req3 = hash(&[b"req3", &s]);
            m.extend(mse::req2_hash(&SKEY).iter().zip(req3).map(|(x, y)| x ^ y));
            let mut tail = rest.to_vec();
            Rc4::mse(&hash(&[b"keyA", &s, &SKEY])).apply(&mut tail);
            m.extend_from_slice(&tail);
            feed(&mut b, &m, chunk);
            if b.is_done() {
                let _ = b.finish();
            }
        }
        _ => {
            let bk = KeyPair::from_secret([8; 20]);
            let mut a = Handshake::initiator(SKEY, CRYPTO_RC4 | CRYPTO_PLAINTEXT, b"ia".to_vec(), entropy(4));
            let out = a.take_output();
            let Ok(ya) = <[u8; 96]>::try_from(&out[..96]) else {
                return;
            };
            let Some(s) = bk.shared(&ya) else { return };
            if a.feed(bk.public()).is_err() {
                return;
            }
            let mut tail = rest.to_vec();
            Rc4::mse(&hash(&[b"keyB", &s, &SKEY])).apply(&mut tail);
            feed(&mut a, &tail, chunk);
            if a.is_done() {
                let _ = a.finish();
            }
        }
    }
});
