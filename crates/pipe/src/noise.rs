//! The encrypted pipe: a Noise NK handshake over a byte stream, then Noise transport messages.
//!
//! Every message on the wire, handshake or transport, is one frame: a 2-byte big-endian
//! length and that many bytes (at most 65535, Noise's own limit). The initiator (the
//! connector) knows the responder's static key from its ed25519 identity:
//!
//! ```text
//! -> e, es        (frame 1, 48 bytes)
//! <- e, ee        (frame 2, 48 bytes)
//! ```
//!
//! After that each direction is a sequence of transport frames carrying up to
//! [`MAX_PLAINTEXT`] bytes each; a frame with an empty plaintext marks the end of the stream
//! (authenticated, so a forged TCP FIN or RST cannot pass for the end: a stream that stops
//! without it is reported as truncated). Each direction keeps its own nonce, so the two
//! directions run on two threads sharing one [`snow::StatelessTransportState`].
//!
//! Crypto: snow (the maintained Rust Noise implementation) with ring's ChaCha20-Poly1305 and
//! SHA-256 (ring is in the tree already, through rustls) and X25519 from curve25519-dalek
//! (also in the tree, through ed25519-dalek), plugged in with a small resolver.

use std::io::{self, Read, Write};
use std::sync::Arc;

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{SigningKey, VerifyingKey};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, StatelessTransportState};

/// The Noise protocol name.
pub const PROTOCOL: &str = "Noise_NK_25519_ChaChaPoly_SHA256";
/// Mixed into the handshake hash: both sides must speak this protocol.
pub const PROLOGUE: &[u8] = b"bitpeer pipe 1";
/// Largest frame (Noise's message limit).
pub const MAX_FRAME: usize = 65535;
/// ChaCha20-Poly1305's tag.
const TAG: usize = 16;
/// Most plaintext bytes in one transport frame.
pub const MAX_PLAINTEXT: usize = MAX_FRAME - TAG;
/// Size of both handshake frames (an ephemeral key and the tag of an empty payload).
const HANDSHAKE_FRAME: usize = 32 + TAG;

#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not an ed25519 public key")]
    BadKey,
    #[error("handshake failed: the peer does not hold the key, or is not a bitpeer pipe")]
    Handshake,
    #[error("a frame of {0} bytes where the handshake needs {HANDSHAKE_FRAME}")]
    BadHandshakeFrame(usize),
    #[error("the connection closed during the handshake")]
    ClosedInHandshake,
    #[error("a frame that does not decrypt: corrupted or forged data")]
    Decrypt,
    #[error("a frame of {0} bytes, shorter than its tag")]
    ShortFrame(usize),
    #[error("the stream ended without its end marker (truncated)")]
    Truncated,
    #[error("more than 2^64 frames")]
    NonceExhausted,
}

/// X25519 on curve25519-dalek, for snow.
#[derive(Default)]
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        if let Ok(k) = <[u8; 32]>::try_from(privkey) {
            self.secret = k;
            self.public = MontgomeryPoint::mul_base_clamped(k).to_bytes();
        }
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k)?;
        self.set(&k);
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.secret
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow hands over its whole key buffer (longer than 32 bytes for X448's sake).
        let p = pubkey
            .get(..32)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(snow::Error::Dh)?;
        let shared = MontgomeryPoint(p).mul_clamped(self.secret).to_bytes();
        // A low-order point gives an all-zero secret: refuse it (RFC 7748, section 6.1).
        if shared == [0u8; 32] || out.len() < 32 {
            return Err(snow::Error::Dh);
        }
        out[..32].copy_from_slice(&shared);
        Ok(())
    }
}

/// Our X25519; everything else from ring.
struct DalekDh;

impl CryptoResolver for DalekDh {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        matches!(choice, DHChoice::Curve25519).then(|| Box::new(X25519::default()) as Box<dyn Dh>)
    }
    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

fn builder<'a>() -> Builder<'a> {
    let params: NoiseParams = PROTOCOL.parse().expect("a valid Noise protocol name");
    let resolver: BoxedCryptoResolver = Box::new(FallbackResolver::new(
        Box::new(DalekDh),
        Box::new(RingResolver),
    ));
    Builder::with_resolver(params, resolver)
        .prologue(PROLOGUE)
        .expect("prologue set once")
}

/// The X25519 public key that an ed25519 public key stands for.
pub fn x25519_public(ed25519: &[u8; 32]) -> Result<[u8; 32], NoiseError> {
    let vk = VerifyingKey::from_bytes(ed25519).map_err(|_| NoiseError::BadKey)?;
    if vk.is_weak() {
        return Err(NoiseError::BadKey);
    }
    Ok(vk.to_montgomery().to_bytes())
}

/// The X25519 secret of an ed25519 secret seed (its clamping happens in every use).
pub fn x25519_secret(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).to_scalar_bytes()
}

/// Read one frame into `buf`: `Ok(None)` on a clean end of stream before its first byte.
pub fn read_frame<R: Read>(r: &mut R, buf: &mut [u8; MAX_FRAME]) -> io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = usize::from(u16::from_be_bytes(len));
    r.read_exact(&mut buf[..n])?;
    Ok(Some(n))
}

fn write_frame<W: Write>(w: &mut W, frame: &mut [u8], len: usize) -> io::Result<()> {
    // The caller left two bytes in front of the message for the length.
    let n = u16::try_from(len).expect("frames fit in 16 bits");
    frame[..2].copy_from_slice(&n.to_be_bytes());
    w.write_all(&frame[..2 + len])
}

fn handshake_frame<R: Read>(r: &mut R, buf: &mut [u8; MAX_FRAME]) -> Result<usize, NoiseError> {
    match read_frame(r, buf) {
        Ok(Some(HANDSHAKE_FRAME)) => Ok(HANDSHAKE_FRAME),
        Ok(Some(n)) => Err(NoiseError::BadHandshakeFrame(n)),
        Ok(None) => Err(NoiseError::ClosedInHandshake),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(NoiseError::ClosedInHandshake),
        Err(e) => Err(e.into()),
    }
}

/// Run the handshake as the connector, who knows the listener's ed25519 key.
pub fn connect<S: Read + Write>(
    stream: &mut S,
    listener_key: &[u8; 32],
) -> Result<(Sender, Receiver), NoiseError> {
    let remote = x25519_public(listener_key)?;
    let mut hs = builder()
        .remote_public_key(&remote)
        .and_then(Builder::build_initiator)
        .map_err(|_| NoiseError::Handshake)?;
    let mut buf = Box::new([0u8; MAX_FRAME]);
    let n = hs
        .write_message(&[], &mut buf[2..])
        .map_err(|_| NoiseError::Handshake)?;
    write_frame(stream, &mut buf[..], n)?;
    stream.flush()?;
    let n = handshake_frame(stream, &mut buf)?;
    let mut payload = [0u8; 64];
    hs.read_message(&buf[..n], &mut payload)
        .map_err(|_| NoiseError::Handshake)?;
    split(hs)
}

/// Run the handshake as the listener, with our ed25519 secret seed. Anything but a
/// connector who knows our public key fails here.
pub fn accept<S: Read + Write>(
    stream: &mut S,
    seed: &[u8; 32],
) -> Result<(Sender, Receiver), NoiseError> {
    let secret = x25519_secret(seed);
    let mut hs = builder()
        .local_private_key(&secret)
        .and_then(Builder::build_responder)
        .map_err(|_| NoiseError::Handshake)?;
    let mut buf = Box::new([0u8; MAX_FRAME]);
    let n = handshake_frame(stream, &mut buf)?;
    let mut payload = [0u8; 64];
    hs.read_message(&buf[..n], &mut payload)
        .map_err(|_| NoiseError::Handshake)?;
    let n = hs
        .write_message(&[], &mut buf[2..])
        .map_err(|_| NoiseError::Handshake)?;
    write_frame(stream, &mut buf[..], n)?;
    stream.flush()?;
    split(hs)
}

fn split(hs: snow::HandshakeState) -> Result<(Sender, Receiver), NoiseError> {
    let t = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(|_| NoiseError::Handshake)?,
    );
    Ok((
        Sender {
            t: t.clone(),
            nonce: 0,
            frame: vec![0u8; 2 + MAX_FRAME],
        },
        Receiver {
            t,
            nonce: 0,
            frame: Box::new([0u8; MAX_FRAME]),
            plain: vec![0u8; MAX_FRAME],
            ended: false,
        },
    ))
}

/// The sending half of a pipe.
pub struct Sender {
    t: Arc<StatelessTransportState>,
    nonce: u64,
    frame: Vec<u8>,
}

impl Sender {
    /// Encrypt and write `data` (in frames of at most [`MAX_PLAINTEXT`] bytes). Empty data
    /// writes nothing: only [`Sender::finish`] sends the end marker.
    pub fn send<W: Write>(&mut self, w: &mut W, data: &[u8]) -> Result<(), NoiseError> {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.frame_out(w, chunk)?;
        }
        Ok(())
    }

    /// Send the end-of-stream marker.
    pub fn finish<W: Write>(&mut self, w: &mut W) -> Result<(), NoiseError> {
        self.frame_out(w, &[])?;
        w.flush()?;
        Ok(())
    }

    fn frame_out<W: Write>(&mut self, w: &mut W, plain: &[u8]) -> Result<(), NoiseError> {
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(NoiseError::NonceExhausted)?;
        let n = self
            .t
            .write_message(nonce, plain, &mut self.frame[2..])
            .map_err(|_| NoiseError::Decrypt)?;
        write_frame(w, &mut self.frame, n)?;
        Ok(())
    }
}

/// The receiving half of a pipe.
pub struct Receiver {
    t: Arc<StatelessTransportState>,
    nonce: u64,
    frame: Box<[u8; MAX_FRAME]>,
    plain: Vec<u8>,
    ended: bool,
}

impl Receiver {
    /// The next plaintext chunk; `Ok(None)` once the peer's end marker came. A stream that
    /// ends without the marker, or a frame that does not decrypt, is an error.
    pub fn recv<R: Read>(&mut self, r: &mut R) -> Result<Option<&[u8]>, NoiseError> {
        if self.ended {
            return Ok(None);
        }
        let n = match read_frame(r, &mut self.frame) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(NoiseError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(NoiseError::Truncated);
            }
            Err(e) => return Err(e.into()),
        };
        if n < TAG {
            return Err(NoiseError::ShortFrame(n));
        }
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(NoiseError::NonceExhausted)?;
        let len = self
            .t
            .read_message(nonce, &self.frame[..n], &mut self.plain)
            .map_err(|_| NoiseError::Decrypt)?;
        if len == 0 {
            self.ended = true;
            return Ok(None);
        }
        Ok(Some(&self.plain[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn public(seed: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(seed).verifying_key().to_bytes()
    }

    #[test]
    fn derived_keys_agree() {
        let seed = [3u8; 32];
        let via_ed = x25519_public(&public(&seed)).unwrap();
        let via_secret = MontgomeryPoint::mul_base_clamped(x25519_secret(&seed)).to_bytes();
        assert_eq!(via_ed, via_secret);
    }

    #[test]
    fn round_trip_and_end_marker() {
        let seed = [9u8; 32];
        let key = public(&seed);
        let (mut c, mut s) = pair();
        let server = std::thread::spawn(move || {
            let (mut tx, mut rx) = accept(&mut s, &seed).unwrap();
            let mut got = Vec::new();
            while let Some(chunk) = rx.recv(&mut s).unwrap() {
                got.extend_from_slice(chunk);
            }
            tx.send(&mut s, b"pong").unwrap();
            tx.finish(&mut s).unwrap();
            got
        });
        let (mut tx, mut rx) = connect(&mut c, &key).unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        tx.send(&mut c, &big).unwrap();
        tx.finish(&mut c).unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = rx.recv(&mut c).unwrap() {
            got.extend_from_slice(chunk);
        }
        assert_eq!(got, b"pong");
        assert_eq!(server.join().unwrap(), big);
    }

    #[test]
    fn another_key_fails_the_handshake() {
        let (mut c, mut s) = pair();
        let server = std::thread::spawn(move || accept(&mut s, &[1u8; 32]).map(|_| ()));
        let wrong = public(&[2u8; 32]);
        let r = connect(&mut c, &wrong);
        assert!(matches!(server.join().unwrap(), Err(NoiseError::Handshake)));
        drop(c);
        assert!(r.is_err());
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let mut garbage: &[u8] =
            b"\x00\x30GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let mut sink = Vec::new();
        let mut s = ReadWrite(&mut garbage, &mut sink);
        assert!(matches!(
            accept(&mut s, &[1; 32]),
            Err(NoiseError::Handshake)
        ));
        let mut http: &[u8] = b"GET / HTTP/1.1\r\n";
        let mut s = ReadWrite(&mut http, &mut sink);
        assert!(accept(&mut s, &[1; 32]).is_err());
        let mut empty: &[u8] = b"";
        let mut s = ReadWrite(&mut empty, &mut sink);
        assert!(matches!(
            accept(&mut s, &[1; 32]),
            Err(NoiseError::ClosedInHandshake)
        ));
    }

    struct ReadWrite<'a, 'b>(&'a mut &'b [u8], &'a mut Vec<u8>);
    impl Read for ReadWrite<'_, '_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for ReadWrite<'_, '_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
