//! Message Stream Encryption / Protocol Encryption (MSE/PE), the obfuscation layer most
//! BitTorrent clients speak under the peer protocol: a 768-bit Diffie-Hellman exchange,
//! the info-hash as a shared key (SKEY) proved without being sent, and RC4 (first 1024
//! bytes discarded) or plaintext for the rest of the stream.
//!
//! Sans-IO: [`Handshake`] takes the bytes received ([`Handshake::feed`]) and gives the
//! bytes to send ([`Handshake::take_output`]); when it is done, [`Established`] holds
//! the chosen method, the ciphers of both directions and the payload bytes already
//! received (decrypted). The caller owns the socket and the deadline.
//!
//! ```text
//! 1 A->B: Ya (96 bytes), PadA
//! 2 B->A: Yb (96 bytes), PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B: ENCRYPT2(payload)
//! ```
//!
//! Every pad is at most [`MAX_PAD`] bytes, so B finds `HASH('req1', S)` within 532 bytes
//! after Ya and A finds B's encrypted VC within 520 bytes after Yb; past that the
//! handshake fails. The initial payload (IA) is at most 65535 bytes by its length field.

mod dh;
#[doc(hidden)]
pub mod fuzzing;
mod rc4;

pub use dh::{KEY_LEN, KeyPair};
pub use rc4::Rc4;
use sha1::{Digest, Sha1};

/// Longest padding (PadA, PadB, PadC, PadD).
pub const MAX_PAD: usize = 512;
/// `crypto_provide`/`crypto_select` bit: plaintext after the handshake.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// `crypto_provide`/`crypto_select` bit: RC4 after the handshake.
pub const CRYPTO_RC4: u32 = 0x02;

const VC: [u8; 8] = [0; 8];

/// How the payload travels once the handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Plaintext,
    Rc4,
}

/// Why a handshake failed. Every one of them ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("degenerate Diffie-Hellman public key")]
    BadPublicKey,
    #[error("no synchronisation within the padding bound")]
    NoSync,
    #[error("the obfuscated info-hash names no torrent of ours")]
    UnknownSkey,
    #[error("bad verification constant")]
    BadVc,
    #[error("padding longer than {MAX_PAD} bytes ({0})")]
    PadTooLong(usize),
    #[error("no crypto method in common (offered {0:#x})")]
    NoCommonMethod(u32),
    #[error("crypto_select {0:#x} is not one of the methods we offered")]
    BadSelect(u32),
    #[error("the handshake is already over")]
    Finished,
    /// The peer answered Ya with a plaintext BitTorrent handshake: it does not speak MSE
    /// (a caller that allows plaintext dials again without it).
    #[error("the peer answered in plaintext")]
    PlaintextAnswer,
}

/// `HASH('req2', SKEY)`: how a receiver recognises an info-hash (it xors it with
/// `HASH('req3', S)`, which only the two ends know).
pub fn req2_hash(skey: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", skey])
}

/// `HASH(...)` of the specification: SHA-1 of the parts, one after another.
pub fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The random inputs of one handshake: the private exponent and our padding (PadA or
/// PadB; at most [`MAX_PAD`] bytes are used).
#[derive(Debug, Clone)]
pub struct Entropy {
    pub secret: [u8; 20],
    pub pad: Vec<u8>,
}

impl Entropy {
    /// From the operating system: a random exponent and 0 to `max_pad` random bytes of
    /// padding.
    pub fn random(max_pad: usize) -> Result<Entropy, getrandom::Error> {
        let mut secret = [0u8; 20];
        getrandom::fill(&mut secret)?;
        let mut n = [0u8; 2];
        getrandom::fill(&mut n)?;
        let len = usize::from(u16::from_be_bytes(n)) % (max_pad.min(MAX_PAD) + 1);
        let mut pad = vec![0u8; len];
        getrandom::fill(&mut pad)?;
        Ok(Entropy { secret, pad })
    }
}

/// The outcome of a finished handshake.
#[derive(Debug)]
pub struct Established {
    pub method: Method,
    /// The info-hash both sides proved they know.
    pub skey: [u8; 20],
    /// The ciphers for what we send and what we receive; `None` for plaintext.
    pub encrypt: Option<Rc4>,
    pub decrypt: Option<Rc4>,
    /// Payload already received, decrypted: the initial payload (IA) on the receiving
    /// side, and anything the peer sent after the handshake in the same reads.
    pub initial: Vec<u8>,
}

/// Given `HASH('req2', SKEY)`, the SKEY (info-hash) it stands for, if it is one of ours.
pub type SkeyLookup = Box<dyn FnMut(&[u8; 20]) -> Option<[u8; 20]> + Send>;

enum State {
    /// A: waiting for Yb.
    WaitYb,
    /// A: looking for B's encrypted VC after PadB.
    SyncVc {
        pattern: [u8; 8],
    },
    /// A: crypto_select and len(PadD).
    Select,
    /// A: PadD, then done.
    PadD {
        len: usize,
        select: u32,
    },
    /// B: waiting for Ya.
    WaitYa,
    /// B: looking for HASH('req1', S) after PadA.
    SyncReq1 {
        req1: [u8; 20],
    },
    /// B: the obfuscated SKEY.
    Skey,
    /// B: VC, crypto_provide, len(PadC).
    Provide,
    /// B: PadC and len(IA).
    PadC {
        len: usize,
        provide: u32,
    },
    /// B: IA, then done.
    Ia {
        len: usize,
        select: u32,
    },
    Done {
        method: Method,
    },
    Failed,
}

/// One MSE handshake, either role.
pub struct Handshake {
    state: State,
    keys: KeyPair,
    pad: Vec<u8>,
    /// What we offer (A) or accept (B).
    methods: u32,
    skey: Option<[u8; 20]>,
    lookup: Option<SkeyLookup>,
    ia: Vec<u8>,
    secret: Option<[u8; KEY_LEN]>,
    encrypt: Option<Rc4>,
    decrypt: Option<Rc4>,
    /// Received, not yet consumed.
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by the current state.
    pos: usize,
    out: Vec<u8>,
    /// Decrypted payload received (IA and after).
    initial: Vec<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.lookup.is_none())
            .field("buffered", &(self.buf.len() - self.pos))
            .finish_non_exhaustive()
    }
}

/// The one method both sides allow: plaintext when both sides allow it, as libtorrent
/// does by default (`prefer_rc4` off). The handshake itself is encrypted either way (the
/// info-hash and the BitTorrent handshake are hidden); RC4 over the whole transfer costs
/// about 1.6 CPU-seconds per GiB on each side, so it is used only when one side requires it.
fn choose(provide: u32, allowed: u32) -> Option<u32> {
    let common = provide & allowed;
    if common & CRYPTO_PLAINTEXT != 0 {
        Some(CRYPTO_PLAINTEXT)
    } else if common & CRYPTO_RC4 != 0 {
        Some(CRYPTO_RC4)
    } else {
        None
    }
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Handshake {
    /// The connecting side (A), which knows the info-hash `skey`. `provide` is a set of
    /// `CRYPTO_*` bits; `ia` is the initial payload sent with step 3 (at most 65535
    /// bytes; usually the BitTorrent handshake, or empty).
    pub fn initiator(skey: [u8; 20], provide: u32, ia: Vec<u8>, entropy: Entropy) -> Handshake {
        let mut h = Handshake::new(entropy, provide, None);
        h.skey = Some(skey);
        h.ia = ia;
        h.ia.truncate(usize::from(u16::MAX));
        h.state = State::WaitYb;
        h.send_key();
        h
    }

    /// The accepting side (B): `allowed` is the set of `CRYPTO_*` bits it accepts, and
    /// `lookup` maps `HASH('req2', SKEY)` to the torrents it serves.
    pub fn receiver(allowed: u32, lookup: SkeyLookup, entropy: Entropy) -> Handshake {
        let mut h = Handshake::new(entropy, allowed, Some(lookup));
        h.state = State::WaitYa;
        h
    }

    fn new(entropy: Entropy, methods: u32, lookup: Option<SkeyLookup>) -> Handshake {
        let mut pad = entropy.pad;
        pad.truncate(MAX_PAD);
        Handshake {
            state: State::Failed,
            keys: KeyPair::from_secret(entropy.secret),
            pad,
            methods,
            skey: None,
            lookup,
            ia: Vec::new(),
            secret: None,
            encrypt: None,
            decrypt: None,
            buf: Vec::new(),
            pos: 0,
            out: Vec::new(),
            initial: Vec::new(),
        }
    }

    fn send_key(&mut self) {
        self.out.extend_from_slice(self.keys.public());
        let pad = std::mem::take(&mut self.pad);
        self.out.extend_from_slice(&pad);
    }

    /// Bytes to send now (empty when there is nothing).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the handshake is over (then [`Handshake::finish`]).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// Take bytes received from the peer. `Ok(true)` when the handshake is done (send
    /// what [`Handshake::take_output`] gives first), `Ok(false)` when more input is
    /// needed. After an error the handshake is dead.
    pub fn feed(&mut self, input: &[u8]) -> Result<bool, MseError> {
        match self.state {
            State::Failed => return Err(MseError::Finished),
            State::Done { .. } => {
                // Late payload: decrypt it into `initial`.
                let mut more = input.to_vec();
                if let Some(d) = self.decrypt.as_mut() {
                    d.apply(&mut more);
                }
                self.initial.extend_from_slice(&more);
                return Ok(true);
            }
            _ => {}
        }
        self.buf.extend_from_slice(input);
        let r = self.run();
        if r.is_err() {
            self.state = State::Failed;
            self.buf = Vec::new();
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        r
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Take `n` bytes decrypted with the peer's key stream, if they are there.
    fn take_decrypted(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.avail().len() < n {
            return None;
        }
        let mut v = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        if let Some(d) = self.decrypt.as_mut() {
            d.apply(&mut v);
        }
        Some(v)
    }

    fn take_plain(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.avail().len() < n {
            return None;
        }
        let v = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(v)
    }

    fn secret_of(&self, theirs: &[u8]) -> Result<[u8; KEY_LEN], MseError> {
        let mut y = [0u8; KEY_LEN];
        y.copy_from_slice(theirs);
        self.keys.shared(&y).ok_or(MseError::BadPublicKey)
    }

    fn run(&mut self) -> Result<bool, MseError> {
        loop {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::WaitYb => {
                    // A Yb that starts like a plaintext handshake has odds of 2^-160.
                    let a = self.avail();
                    if a.len() >= 20 && a[0] == 19 && &a[1..20] == b"BitTorrent protocol" {
                        return Err(MseError::PlaintextAnswer);
                    }
                    let Some(yb) = self.take_plain(KEY_LEN) else {
                        self.state = State::WaitYb;
                        return Ok(false);
                    };
                    let s = self.secret_of(&yb)?;
                    let skey = self.skey.unwrap_or_default();
                    let mut enc = Rc4::mse(&hash(&[b"keyA", &s, &skey]));
                    let mut dec = Rc4::mse(&hash(&[b"keyB", &s, &skey]));
                    self.out.extend_from_slice(&hash(&[b"req1", &s]));
                    let req2 = req2_hash(&skey);
                    let req3 = hash(&[b"req3", &s]);
                    self.out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
                    let mut tail = Vec::with_capacity(16 + self.ia.len());
                    tail.extend_from_slice(&VC);
                    tail.extend_from_slice(&self.methods.to_be_bytes());
                    tail.extend_from_slice(&0u16.to_be_bytes()); // len(PadC)
                    tail.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
                    tail.extend_from_slice(&std::mem::take(&mut self.ia));
                    enc.apply(&mut tail);
                    self.out.extend_from_slice(&tail);
                    let mut pattern = VC;
                    dec.apply(&mut pattern);
                    self.secret = Some(s);
                    self.encrypt = Some(enc);
                    self.decrypt = Some(dec);
                    self.state = State::SyncVc { pattern };
                }
                State::SyncVc { pattern } => {
                    let a = self.avail();
                    let window = a.len().min(MAX_PAD + pattern.len());
                    if let Some(at) = a[..window].windows(8).position(|w| w == pattern) {
                        self.pos += at + 8;
                        self.state = State::Select;
                    } else if a.len() >= MAX_PAD + pattern.len() {
                        return Err(MseError::NoSync);
                    } else {
                        self.state = State::SyncVc { pattern };
                        return Ok(false);
                    }
                }
                State::Select => {
                    let Some(b) = self.take_decrypted(6) else {
                        self.state = State::Select;
                        return Ok(false);
                    };
                    let select = be32(&b);
                    if select.count_ones() != 1 || select & self.methods == 0 {
                        return Err(MseError::BadSelect(select));
                    }
                    let len = be16(&b[4..]);
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    self.state = State::PadD { len, select };
                }
                State::PadD { len, select } => {
                    if self.take_decrypted(len).is_none() {
                        self.state = State::PadD { len, select };
                        return Ok(false);
                    }
                    return Ok(self.done(select));
                }
                State::WaitYa => {
                    let Some(ya) = self.take_plain(KEY_LEN) else {
                        self.state = State::WaitYa;
                        return Ok(false);
                    };
                    let s = self.secret_of(&ya)?;
                    self.send_key();
                    self.secret = Some(s);
                    self.state = State::SyncReq1 {
                        req1: hash(&[b"req1", &s]),
                    };
                }
                State::SyncReq1 { req1 } => {
                    let a = self.avail();
                    let window = a.len().min(MAX_PAD + req1.len());
                    if let Some(at) = a[..window].windows(20).position(|w| w == req1) {
                        self.pos += at + 20;
                        self.state = State::Skey;
                    } else if a.len() >= MAX_PAD + req1.len() {
                        return Err(MseError::NoSync);
                    } else {
                        self.state = State::SyncReq1 { req1 };
                        return Ok(false);
                    }
                }
                State::Skey => {
                    let Some(x) = self.take_plain(20) else {
                        self.state = State::Skey;
                        return Ok(false);
                    };
                    let s = self.secret.unwrap_or([0; KEY_LEN]);
                    let req3 = hash(&[b"req3", &s]);
                    let mut req2 = [0u8; 20];
                    for (o, (a, b)) in req2.iter_mut().zip(x.iter().zip(req3)) {
                        *o = a ^ b;
                    }
                    let lookup = self.lookup.as_mut().ok_or(MseError::UnknownSkey)?;
                    let skey = lookup(&req2).ok_or(MseError::UnknownSkey)?;
                    self.skey = Some(skey);
                    self.decrypt = Some(Rc4::mse(&hash(&[b"keyA", &s, &skey])));
                    self.encrypt = Some(Rc4::mse(&hash(&[b"keyB", &s, &skey])));
                    self.state = State::Provide;
                }
                State::Provide => {
                    let Some(b) = self.take_decrypted(14) else {
                        self.state = State::Provide;
                        return Ok(false);
                    };
                    if b[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    let provide = be32(&b[8..]);
                    let len = be16(&b[12..]);
                    if len > MAX_PAD {
                        return Err(MseError::PadTooLong(len));
                    }
                    self.state = State::PadC { len, provide };
                }
                State::PadC { len, provide } => {
                    let Some(b) = self.take_decrypted(len + 2) else {
                        self.state = State::PadC { len, provide };
                        return Ok(false);
                    };
                    let select =
                        choose(provide, self.methods).ok_or(MseError::NoCommonMethod(provide))?;
                    // Step 4: VC, crypto_select, len(PadD) = 0.
                    let mut reply = Vec::with_capacity(14);
                    reply.extend_from_slice(&VC);
                    reply.extend_from_slice(&select.to_be_bytes());
                    reply.extend_from_slice(&0u16.to_be_bytes());
                    if let Some(e) = self.encrypt.as_mut() {
                        e.apply(&mut reply);
                    }
                    self.out.extend_from_slice(&reply);
                    self.state = State::Ia {
                        len: be16(&b[len..]),
                        select,
                    };
                }
                State::Ia { len, select } => {
                    let Some(ia) = self.take_decrypted(len) else {
                        self.state = State::Ia { len, select };
                        return Ok(false);
                    };
                    self.initial = ia;
                    return Ok(self.done(select));
                }
                State::Done { method } => {
                    self.state = State::Done { method };
                    return Ok(true);
                }
                State::Failed => return Err(MseError::Finished),
            }
        }
    }

    /// The handshake is over with `select`: what is left in the buffer is payload.
    fn done(&mut self, select: u32) -> bool {
        let method = if select == CRYPTO_RC4 {
            Method::Rc4
        } else {
            self.encrypt = None;
            self.decrypt = None;
            Method::Plaintext
        };
        let mut rest = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        if let Some(d) = self.decrypt.as_mut() {
            d.apply(&mut rest);
        }
        self.initial.extend_from_slice(&rest);
        self.state = State::Done { method };
        true
    }

    /// The outcome, once [`Handshake::is_done`]; `None` before.
    pub fn finish(self) -> Option<Established> {
        let State::Done { method } = self.state else {
            return None;
        };
        Some(Established {
            method,
            skey: self.skey?,
            encrypt: self.encrypt,
            decrypt: self.decrypt,
            initial: self.initial,
        })
    }
}

#[cfg(test)]
mod tests;
