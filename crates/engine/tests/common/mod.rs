//! Helpers shared by the engine's integration tests: test torrents written to a folder, and
//! adding them to a session.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use engine::session::Session;
use engine::torrent::{Torrent, TorrentConfig};
use metainfo::Metainfo;
use metainfo::create::{self, CreateOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// The torrent of the file or folder at `path`, with 16 KiB pieces.
pub fn torrent_of(path: &Path, private: bool) -> Metainfo {
    let opts = CreateOptions {
        piece_length: Some(16384),
        private,
        ..CreateOptions::default()
    };
    let bytes = create::create(path, &opts, &AtomicU64::new(0), &AtomicBool::new(false)).unwrap();
    Metainfo::from_bytes(&bytes).unwrap()
}

/// Bytes that differ with `seed` and repeat only every 128 KiB.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8)
        .collect()
}

/// Writes `len` bytes of [`data`] to `dir/name` and returns its public torrent.
pub fn make(dir: &Path, name: &str, len: usize, seed: u8) -> Metainfo {
    make_with(dir, name, len, seed, false)
}

/// [`make`], public or private (BEP 27).
pub fn make_with(dir: &Path, name: &str, len: usize, seed: u8, private: bool) -> Metainfo {
    std::fs::write(dir.join(name), data(len, seed)).unwrap();
    torrent_of(&dir.join(name), private)
}

/// Adds `meta` to `session`, its data in `dir`, dialling `peers`.
pub async fn add(
    session: &Session,
    meta: &Metainfo,
    dir: &Path,
    peers: Vec<SocketAddr>,
) -> Torrent {
    session
        .add_torrent(
            meta.clone(),
            TorrentConfig::new(dir, peers),
            Arc::new(AtomicU64::new(0)),
        )
        .await
        .unwrap()
}
