//! BEP 9 (`ut_metadata`) and BEP 11 (`ut_pex`) against a real libtorrent on 127.0.0.1.
//!
//! `tests/interop/lt_metadata_pex.py` runs a libtorrent 2.x seed (Debian's
//! `python3-libtorrent`, run with `/usr/bin/python3`, or `$BITPEER_PYTHON`) whose info
//! dictionary spans four metadata pieces. The test opens two plain TCP connections to it,
//! speaking through this crate's handshake, framing and extended handshake; on the first
//! it fetches the info dictionary with [`MetadataAssembler`] (the SHA-1 must match the
//! info-hash libtorrent printed) and waits for libtorrent's PEX message, which must list
//! the second connection at the listen port it announced.
//!
//! The other way round, `tests/interop/lt_magnet.py` runs a libtorrent downloader that is
//! given only the info-hash and our address: it must fetch the info dictionary we serve
//! with [`metadata_piece`] and [`MetadataMessage::Data`] (libtorrent checks its SHA-1),
//! and dial the peer we announce in a PEX message built by [`PexState`].
//!
//! If libtorrent cannot be imported the test fails with a hint, unless
//! `BITPEER_SKIP_INTEROP=1` (then it prints why and passes), like the other interop tests.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sha1::{Digest as _, Sha1};
use wire::extended::{UT_METADATA, UT_PEX};
use wire::handshake::HANDSHAKE_LEN;
use wire::metadata::Progress;
use wire::metadata::metadata_piece;
use wire::{
    Decoder, DecoderConfig, ExtendedHandshake, Handshake, Message, MetadataAssembler,
    MetadataMessage, PexFlags, PexMessage, PexState,
};

/// Our extended message ids, as announced in our extended handshake.
const OUR_METADATA_ID: u8 = 3;
const OUR_PEX_ID: u8 = 4;
const DEADLINE: Duration = Duration::from_secs(60);

fn python() -> String {
    std::env::var("BITPEER_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned())
}

fn libtorrent_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let why = format!("{} cannot import libtorrent (python3-libtorrent)", python());
    if std::env::var("BITPEER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipping interop test: {why} (BITPEER_SKIP_INTEROP=1)");
        return false;
    }
    panic!(
        "{why}. Run scripts/test.sh (it installs python3-libtorrent) or `apt-get install \
         python3-libtorrent`, or set BITPEER_SKIP_INTEROP=1 to skip interop tests."
    );
}

/// A libtorrent helper process and its work directory; both go away when the test ends.
struct Helper {
    child: Child,
    dir: PathBuf,
    /// The helper's stdout, line by line.
    lines: Receiver<String>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Helper {
    fn spawn(script: &str, args: &[&str]) -> Helper {
        let dir = std::env::temp_dir().join(format!(
            "bitpeer-wire-interop-{}-{}",
            std::process::id(),
            script.trim_end_matches(".py")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = Command::new(python())
            .arg(&script)
            .arg(&dir)
            .args(args)
            .args(["--deadline", "90"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn libtorrent helper");
        let stdout = child.stdout.take().unwrap();
        // A reader thread, so that every wait on the helper can have a deadline.
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper { child, dir, lines }
    }
}

/// Starts the libtorrent seed; returns it with its port, info-hash and metadata size.
fn start_seed() -> (Helper, u16, [u8; 20], u64) {
    let seed = Helper::spawn("lt_metadata_pex.py", &[]);
    let line = seed
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("libtorrent helper printed nothing in 30 s");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "unexpected helper output {line:?}");
    let port = fields[0].parse().unwrap();
    let hex = fields[1];
    assert_eq!(hex.len(), 40, "bad info-hash {hex:?}");
    let mut info_hash = [0u8; 20];
    for (i, b) in info_hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let size = fields[2].parse().unwrap();
    (seed, port, info_hash, size)
}

/// One connection to libtorrent, after both handshakes.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    /// libtorrent's extended handshake.
    theirs: ExtendedHandshake,
}

impl Conn {
    fn open(port: u16, info_hash: [u8; 20], peer_id: [u8; 20], listen_port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to libtorrent");
        let mut ours = ExtendedHandshake {
            v: Some("bitpeer-wire interop test".into()),
            p: Some(listen_port),
            ..Default::default()
        };
        ours.m.insert(UT_METADATA.into(), OUR_METADATA_ID);
        ours.m.insert(UT_PEX.into(), OUR_PEX_ID);
        Conn::handshake(stream, info_hash, peer_id, &ours)
    }

    /// Sends our handshake and extended handshake, then reads libtorrent's. Works in
    /// both directions: who sends first does not matter on a buffered socket.
    fn handshake(
        stream: TcpStream,
        info_hash: [u8; 20],
        peer_id: [u8; 20],
        ours: &ExtendedHandshake,
    ) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut hs = Handshake::new(info_hash, peer_id);
        hs.set_extension_protocol(true);
        let mut conn = Conn {
            stream,
            decoder: Decoder::new(DecoderConfig::default()),
            buf: BytesMut::new(),
            theirs: ExtendedHandshake::default(),
        };
        conn.stream.write_all(&hs.encode()).unwrap();
        conn.send(&Message::Extended {
            id: 0,
            payload: Bytes::from(ours.encode()),
        });

        let deadline = Instant::now() + Duration::from_secs(20);
        while conn.buf.len() < HANDSHAKE_LEN {
            conn.fill(deadline);
        }
        let theirs = Handshake::parse(&conn.buf[..HANDSHAKE_LEN])
            .expect("libtorrent's handshake parses")
            .expect("complete");
        assert_eq!(theirs.info_hash, info_hash);
        assert!(theirs.supports_extension_protocol());
        let _ = conn.buf.split_to(HANDSHAKE_LEN);
        loop {
            if let Message::Extended { id: 0, payload } = conn.next(deadline) {
                conn.theirs = ExtendedHandshake::decode(&payload).expect("extended handshake");
                return conn;
            }
        }
    }

    fn send(&mut self, msg: &Message) {
        self.stream.write_all(&msg.to_vec()).unwrap();
    }

    /// Reads more bytes; panics at the deadline or when libtorrent hangs up.
    fn fill(&mut self, deadline: Instant) {
        assert!(Instant::now() < deadline, "libtorrent went quiet");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("libtorrent closed the connection"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read from libtorrent: {e}"),
        }
    }

    /// The next message, waiting until `deadline`.
    fn next(&mut self, deadline: Instant) -> Message {
        loop {
            if let Some(m) = self
                .decoder
                .decode(&mut self.buf)
                .expect("libtorrent's framing")
            {
                return m;
            }
            self.fill(deadline);
        }
    }

    /// Like [`next`](Self::next) but returns `None` at the deadline.
    fn try_next(&mut self, deadline: Instant) -> Option<Message> {
        loop {
            if let Some(m) = self
                .decoder
                .decode(&mut self.buf)
                .expect("libtorrent's framing")
            {
                return Some(m);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.fill(deadline + Duration::from_secs(1));
        }
    }
}

#[test]
fn fetches_metadata_and_receives_pex_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let (_seed, port, info_hash, size) = start_seed();
    let deadline = Instant::now() + DEADLINE;

    // Real listening sockets stand for the listen ports our two "peers" announce.
    let listen_a = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_b = TcpListener::bind("127.0.0.1:0").unwrap();
    let port_b = listen_b.local_addr().unwrap().port();
    let mut a = Conn::open(
        port,
        info_hash,
        *b"-BW0001-aaaaaaaaaaaa",
        listen_a.local_addr().unwrap().port(),
    );
    let _b = Conn::open(port, info_hash, *b"-BW0001-bbbbbbbbbbbb", port_b);

    assert_eq!(a.theirs.metadata_size, Some(size));
    let lt_metadata = a
        .theirs
        .extension_id(UT_METADATA)
        .expect("libtorrent offers ut_metadata");
    assert!(
        a.theirs.extension_id(UT_PEX).is_some(),
        "libtorrent offers ut_pex"
    );

    let mut asm = MetadataAssembler::new(info_hash, size).unwrap();
    assert_eq!(
        asm.piece_count(),
        4,
        "the helper's info dictionary spans four pieces"
    );
    // A piece past the end first: libtorrent must reject it.
    let past_end = asm.piece_count() + 5;
    a.send(&Message::Extended {
        id: lt_metadata,
        payload: MetadataMessage::Request { piece: past_end }.encode().into(),
    });
    while let Some(piece) = asm.next_request() {
        a.send(&Message::Extended {
            id: lt_metadata,
            payload: MetadataMessage::Request { piece }.encode().into(),
        });
    }

    let mut rejected = false;
    let mut pex: Option<PexMessage> = None;
    let want_b: SocketAddr = ([127, 0, 0, 1], port_b).into();
    while !(asm.is_complete() && rejected && pex.is_some()) {
        let Message::Extended { id, payload } = a.next(deadline) else {
            continue;
        };
        match id {
            OUR_METADATA_ID => match MetadataMessage::decode(&payload).expect("ut_metadata") {
                MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                } => {
                    let p = asm
                        .on_data(1, piece, total_size, &data)
                        .expect("valid piece");
                    assert_ne!(p, Progress::Duplicate);
                }
                MetadataMessage::Reject { piece } => {
                    assert_eq!(piece, past_end);
                    rejected = true;
                }
                other => panic!("unexpected {other:?}"),
            },
            OUR_PEX_ID => {
                let m = PexMessage::decode(&payload).expect("ut_pex");
                // Our encoding of what libtorrent sent decodes to the same thing.
                assert_eq!(PexMessage::decode(&m.encode()).as_ref(), Ok(&m));
                if m.added.iter().any(|(addr, _)| *addr == want_b) {
                    pex = Some(m);
                }
            }
            _ => {}
        }
    }

    let info = asm.finish().expect("metadata hashes to the info-hash");
    assert_eq!(info.len() as u64, size);
    let value = bencode::decode(&info).expect("the info dictionary is bencode");
    let dict = value.as_dict().expect("a dictionary");
    assert_eq!(
        dict.get(b"piece length").and_then(|v| v.as_int()),
        Some(16384)
    );

    let pex = pex.unwrap();
    let (_, flags) = pex.added.iter().find(|(addr, _)| *addr == want_b).unwrap();
    // B connected to libtorrent, so libtorrent must not claim it dialed B.
    assert!(
        !flags.contains(wire::PexFlags::REACHABLE),
        "flags {flags:?}"
    );
    // libtorrent 2.0's first (full) PEX message also lists the recipient itself, so we
    // do not assert A's absence: the engine must drop its own address from what it hears.

    // Nothing else arrives on A that breaks our decoders within a short while.
    let quiet = Instant::now() + Duration::from_millis(500);
    while let Some(m) = a.try_next(quiet) {
        if let Message::Extended {
            id: OUR_PEX_ID,
            payload,
        } = m
        {
            PexMessage::decode(&payload).expect("ut_pex");
        }
    }
}

/// A v1 info dictionary spanning two metadata pieces, with made-up piece hashes.
fn make_info() -> Vec<u8> {
    let pieces: Vec<u8> = (0..1500u32 * 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut e = bencode::Encoder::new();
    e.dict(|d| {
        d.int(b"length", 1500 * 16384);
        d.bytes(b"name", b"bitpeer-served-metadata.bin");
        d.int(b"piece length", 16384);
        d.bytes(b"pieces", &pieces);
    });
    e.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn serves_metadata_and_pex_to_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let info = make_info();
    let info_hash: [u8; 20] = Sha1::digest(&info).into();
    assert_eq!(wire::metadata::piece_count(info.len() as u64), 2);

    // libtorrent dials us with a magnet link; the address we give it in PEX is another
    // listener of ours, and libtorrent dialing it proves it understood our PEX message.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pex_target = TcpListener::bind("127.0.0.1:0").unwrap();
    pex_target.set_nonblocking(true).unwrap();
    let pex_addr = pex_target.local_addr().unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let helper = Helper::spawn("lt_magnet.py", &[&hex(&info_hash), &port]);

    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "libtorrent never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut ours = ExtendedHandshake {
        v: Some("bitpeer-wire interop test".into()),
        metadata_size: Some(info.len() as u64),
        ..Default::default()
    };
    ours.m.insert(UT_METADATA.into(), OUR_METADATA_ID);
    ours.m.insert(UT_PEX.into(), OUR_PEX_ID);
    let mut conn = Conn::handshake(stream, info_hash, *b"-BW0001-cccccccccccc", &ours);
    let lt_metadata = conn.theirs.extension_id(UT_METADATA).expect("ut_metadata");
    let lt_pex = conn.theirs.extension_id(UT_PEX).expect("ut_pex");

    let mut pex = PexState::new();
    let t0 = Instant::now();
    let current = [(pex_addr, PexFlags::SEED | PexFlags::REACHABLE)];
    let first = pex
        .poll_message(t0, &current)
        .expect("a first PEX message is due");
    conn.send(&Message::Extended {
        id: lt_pex,
        payload: first.encode().into(),
    });

    let mut served = Vec::new();
    let mut have_metadata = false;
    let mut dialed = false;
    while !(have_metadata && dialed) {
        if let Some(Message::Extended {
            id: OUR_METADATA_ID,
            payload,
        }) = conn.try_next(Instant::now() + Duration::from_millis(50))
        {
            let reply = match MetadataMessage::decode(&payload).expect("libtorrent's request") {
                MetadataMessage::Request { piece } => match metadata_piece(&info, piece) {
                    Some(data) => {
                        served.push(piece);
                        MetadataMessage::Data {
                            piece,
                            total_size: info.len() as u32,
                            data: Bytes::copy_from_slice(data),
                        }
                    }
                    None => MetadataMessage::Reject { piece },
                },
                other => panic!("unexpected {other:?}"),
            };
            conn.send(&Message::Extended {
                id: lt_metadata,
                payload: reply.encode().into(),
            });
        }
        if let Ok(line) = helper.lines.try_recv() {
            assert_eq!(line, "metadata bitpeer-served-metadata.bin");
            have_metadata = true;
        }
        match pex_target.accept() {
            Ok(_) => dialed = true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "libtorrent: metadata {have_metadata}, dialed the PEX peer {dialed}"
        );
    }
    served.sort();
    served.dedup();
    assert_eq!(served, [0, 1]);
}
