//! The driver of the `mse_handshake` fuzz target, here so that `cargo test` runs the same
//! code over the checked-in seeds (tests/corpus.rs). Not part of the API.
//!
//! The first byte picks a mode, the second the size of the pieces the rest arrives in:
//!
//! - 0/1: raw bytes to a receiver / an initiator;
//! - 2: a receiver gets a genuine Ya, `HASH('req1', S)` and obfuscated SKEY, then the
//!   bytes encrypted with A's key stream, so VC, crypto_provide, len(PadC), PadC,
//!   len(IA) and IA are the input's;
//! - 3: an initiator gets a genuine Yb, then the bytes encrypted with B's key stream, so
//!   PadB, VC, crypto_select, len(PadD) and PadD are the input's.

use crate::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, Entropy, Established, Handshake, KEY_LEN, KeyPair, MseError, Rc4,
    hash, req2_hash,
};

/// The info-hash both sides know.
pub const SKEY: [u8; 20] = [0x42; 20];

fn entropy(seed: u8) -> Entropy {
    Entropy {
        secret: [seed; 20],
        pad: vec![seed; usize::from(seed)],
    }
}

fn receiver() -> Handshake {
    let known = req2_hash(&SKEY);
    Handshake::receiver(
        CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        Box::new(move |r| (*r == known).then_some(SKEY)),
        entropy(9),
    )
}

/// What became of one input.
#[derive(Debug)]
pub enum Outcome {
    /// Too short to say anything.
    Empty,
    /// Still waiting for more bytes.
    Pending,
    Failed(MseError),
    Done(Box<Established>),
}

fn feed(mut h: Handshake, data: &[u8], chunk: usize) -> Outcome {
    for c in data.chunks(chunk) {
        if let Err(e) = h.feed(c) {
            return Outcome::Failed(e);
        }
        let _ = h.take_output();
        assert!(h.buf.len() <= KEY_LEN + crate::MAX_PAD + 20 + usize::from(u16::MAX) + chunk);
    }
    if h.is_done() {
        h.finish()
            .map_or(Outcome::Pending, |e| Outcome::Done(Box::new(e)))
    } else {
        Outcome::Pending
    }
}

/// Run one input.
pub fn run(data: &[u8]) -> Outcome {
    if data.len() < 2 {
        return Outcome::Empty;
    }
    let chunk = usize::from(data[1]).max(1);
    let rest = &data[2..];
    match data[0] % 4 {
        0 => feed(receiver(), rest, chunk),
        1 => feed(
            Handshake::initiator(SKEY, CRYPTO_RC4, Vec::new(), entropy(3)),
            rest,
            chunk,
        ),
        2 => {
            let a = KeyPair::from_secret([7; 20]);
            let mut b = receiver();
            if let Err(e) = b.feed(a.public()) {
                return Outcome::Failed(e);
            }
            let mut yb = [0u8; KEY_LEN];
            yb.copy_from_slice(&b.take_output()[..KEY_LEN]);
            let Some(s) = a.shared(&yb) else {
                return Outcome::Empty;
            };
            let mut m = hash(&[b"req1", &s]).to_vec();
            let req3 = hash(&[b"req3", &s]);
            m.extend(req2_hash(&SKEY).iter().zip(req3).map(|(x, y)| x ^ y));
            let mut tail = rest.to_vec();
            Rc4::mse(&hash(&[b"keyA", &s, &SKEY])).apply(&mut tail);
            m.extend_from_slice(&tail);
            feed(b, &m, chunk)
        }
        _ => {
            let bk = KeyPair::from_secret([8; 20]);
            let mut a = Handshake::initiator(
                SKEY,
                CRYPTO_RC4 | CRYPTO_PLAINTEXT,
                b"ia".to_vec(),
                entropy(4),
            );
            let mut ya = [0u8; KEY_LEN];
            ya.copy_from_slice(&a.take_output()[..KEY_LEN]);
            let Some(s) = bk.shared(&ya) else {
                return Outcome::Empty;
            };
            if let Err(e) = a.feed(bk.public()) {
                return Outcome::Failed(e);
            }
            let mut tail = rest.to_vec();
            Rc4::mse(&hash(&[b"keyB", &s, &SKEY])).apply(&mut tail);
            feed(a, &tail, chunk)
        }
    }
}
