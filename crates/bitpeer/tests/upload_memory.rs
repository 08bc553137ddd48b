//! A peer that asks a `bitpeer seed` for one block of each of many large pieces must not
//! make it read all those pieces into memory at once: uploads read a few pieces per peer
//! and a bounded number of bytes per torrent at a time. Measured as the seeder's peak RSS
//! (`VmHWM`), against what reading every piece at once would cost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const PIECE: usize = 8 << 20;
const PIECES: usize = 40;

/// Read one message (length prefix and body), bounded.
fn read_msg(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let len = u32::from_be_bytes(len) as usize;
    assert!(len <= 1 << 20, "message of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn requests_for_many_large_pieces_do_not_read_them_all_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed").join("big.bin");
    write_random(&data, 99, PIECE * PIECES);
    let torrent = tmp.path().join("big.torrent");
    bitpeer_create(&data, &torrent, &["--piece-length", &PIECE.to_string()]);
    let (seeder, addr) = spawn_bitpeer_seed(&torrent, data.parent().unwrap(), &[]);
    let before = peak_rss_mib(seeder.pid());

    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(&info_hash_v1(&torrent));
    hs.extend_from_slice(b"-XX0000-bigreadsbigr");
    s.write_all(&hs).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    s.write_all(&[0, 0, 0, 1, 2]).unwrap(); // interested
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_msg(&mut s).first() != Some(&1) {
        assert!(Instant::now() < deadline, "never unchoked");
    }
    // One 16 KiB block at the start of every piece, all at once.
    let mut reqs = Vec::new();
    for piece in 0..PIECES as u32 {
        reqs.extend_from_slice(&13u32.to_be_bytes());
        reqs.push(6);
        reqs.extend_from_slice(&piece.to_be_bytes());
        reqs.extend_from_slice(&0u32.to_be_bytes());
        reqs.extend_from_slice(&16384u32.to_be_bytes());
    }
    s.write_all(&reqs).unwrap();
    let mut blocks = 0;
    while blocks < PIECES {
        let m = read_msg(&mut s);
        if m.first() == Some(&7) {
            assert_eq!(m.len(), 9 + 16384);
            blocks += 1;
        }
    }
    let peak = peak_rss_mib(seeder.pid());
    let everything = (PIECE * PIECES) as u64 >> 20;
    eprintln!(
        "seeder peak RSS {before} MiB before, {peak} MiB after serving one block of each of \
         {PIECES} pieces of {} MiB ({everything} MiB if read at once)",
        PIECE >> 20
    );
    // A few pieces per peer and the read cache, far from all of them.
    assert!(
        peak < before + everything / 3,
        "peak RSS {peak} MiB (from {before} MiB): the pieces were read all at once"
    );
}
