//! Magnet links and metadata exchange (BEP 9 over BEP 10) with libtorrent on 127.0.0.1.
//!
//! - libtorrent seeds; `bitpeer download MAGNET` (the peer given as the link's `x.pe`)
//!   fetches the info dictionary from it, then the data;
//! - bitpeer seeds; libtorrent, given only the magnet link and bitpeer's address, fetches
//!   the metadata from bitpeer, then the data;
//! - a peer that serves metadata which does not hash to the info-hash is banned, and the
//!   metadata comes from an honest libtorrent seeder all the same.
//!
//! Every transfer is compared byte for byte. The tests fail when libtorrent is missing,
//! unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A multi-file folder `root/seed/album` whose info dictionary spans several 16 KiB
/// metadata pieces (many files, small pieces).
fn make_album(root: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join("seed").join("album");
    for i in 0..60u64 {
        write_random(
            &dir.join(format!("disc {}/track {i:02} with a long name.flac", i % 3)),
            i,
            (20_000 + i * 7_919) as usize,
        );
    }
    let torrent = root.join("album.torrent");
    bitpeer_create(&dir, &torrent, &["--piece-length", "16384"]);
    (torrent, root.join("seed"))
}

fn magnet(torrent: &Path, peers: &[String]) -> String {
    let mut m = format!(
        "magnet:?xt=urn:btih:{}&dn=album",
        hex(&info_hash_v1(torrent))
    );
    for p in peers {
        m.push_str("&x.pe=");
        m.push_str(p);
    }
    m
}

fn bitpeer_download_magnet(link: &str, out: &Path) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download").arg(link).arg("-o").arg(out).args([
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--no-lsd",
    ]);
    Proc::spawn(cmd, DOWNLOAD_TIMEOUT)
}

fn metadata_size(torrent: &Path) -> usize {
    // The info dictionary is what `bitpeer info --json` hashes; its length is what a
    // peer announces as metadata_size. Read it from the file: `4:info` then the dict.
    let bytes = std::fs::read(torrent).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"4:info")
        .expect("an info key")
        + 6;
    // The info dict runs to the byte before the outer dict's final `e`, when `info` is the
    // last key (as bitpeer create writes it).
    bytes.len() - 1 - at
}

#[test]
fn libtorrent_seeds_bitpeer_downloads_a_magnet_link() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make_album(tmp.path());
    assert!(
        metadata_size(&torrent) > 16384,
        "want several metadata pieces"
    );
    let (_seeder, port) = spawn_lt_peer(&torrent, &seed_dir, &[], &["--seed"]);
    let link = magnet(&torrent, &[format!("127.0.0.1:{port}")]);
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut dl = bitpeer_download_magnet(&link, &out);
    let last = finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    eprintln!(
        "magnet download in {:.1} s: {last}",
        started.elapsed().as_secs_f64()
    );
    let saw_metadata_phase = dl
        .stdout_lines()
        .iter()
        .any(|l| l.contains("\"state\":\"metadata\""));
    assert!(saw_metadata_phase, "{}", dl.explain());
    assert_same_tree(&seed_dir.join("album"), &out.join("album"));
}

/// The connection that fetched the metadata carries on into the download: libtorrent,
/// the only seeder, sees exactly one connection from bitpeer for the whole magnet
/// download.
#[test]
fn the_metadata_connection_also_delivers_the_pieces() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make_album(tmp.path());
    let (mut seeder, port) = spawn_lt_peer(
        &torrent,
        &seed_dir,
        &[],
        &["--seed", "--stats", "--count-incoming"],
    );
    // Until libtorrent has checked its data it turns connections away, and bitpeer would
    // have to dial again: start once it seeds.
    seeder.wait_line(Duration::from_secs(60), |l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["seeding"] == true).then_some(())
    });
    let link = magnet(&torrent, &[format!("127.0.0.1:{port}")]);
    let out = tmp.path().join("out");
    let mut dl = bitpeer_download_magnet(&link, &out);
    finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    assert_same_tree(&seed_dir.join("album"), &out.join("album"));
    // A stats line printed after the download ended counts every connection bitpeer
    // opened to the seeder.
    let seen = seeder.stdout_lines().len();
    let end = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let lines = seeder.stdout_lines();
        let after: Vec<Value> = lines[seen..]
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["incoming"].is_u64())
            .collect();
        if let Some(v) = after.last() {
            break v.clone();
        }
        assert!(
            Instant::now() < end,
            "no stats from the seeder: {}",
            seeder.explain()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let last = stats["incoming"].as_u64().unwrap();
    let uploaded = stats["uploaded"].as_u64().unwrap_or(0);
    assert!(
        uploaded > 0,
        "the seeder uploaded nothing: {}",
        seeder.explain()
    );
    assert_eq!(
        last,
        1,
        "bitpeer should reuse its metadata connection for the pieces\n{}",
        dl.explain()
    );
}

#[test]
fn bitpeer_seeds_libtorrent_downloads_a_magnet_link() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make_album(tmp.path());
    let (_seeder, addr) = spawn_bitpeer_seed(&torrent, &seed_dir, &[]);
    let link = magnet(&torrent, &[]);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join("lt_peer.py"))
        .arg(&link)
        .arg(&out)
        .args(["--peer", &addr])
        .args(["--deadline", "100"]);
    let mut lt = Proc::spawn(cmd, Duration::from_secs(110));
    let status = lt.wait_exit(Duration::from_secs(110));
    assert!(status.success(), "libtorrent: {}", lt.explain());
    let done = lt
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["done"] == true);
    assert!(done, "{}", lt.explain());
    assert_same_tree(&seed_dir.join("album"), &out.join("album"));
}

/// A peer that speaks just enough BEP 3/10/9 to serve metadata of the right size whose
/// bytes are wrong. Counts the metadata pieces it served.
struct LyingMetadataPeer {
    port: u16,
    served: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl LyingMetadataPeer {
    fn start(info_hash: [u8; 20], size: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (served.clone(), connections.clone());
        std::thread::spawn(move || {
            // Bounded: a test needs a handful of connections.
            for _ in 0..20 {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve_lies(stream, info_hash, size, &s);
                });
            }
        });
        LyingMetadataPeer {
            port,
            served,
            connections,
        }
    }
}

fn read_msg(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn send_ext(s: &mut TcpStream, id: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut msg = ((payload.len() + 2) as u32).to_be_bytes().to_vec();
    msg.push(20);
    msg.push(id);
    msg.extend_from_slice(payload);
    s.write_all(&msg)
}

fn serve_lies(
    mut s: TcpStream,
    info_hash: [u8; 20],
    size: usize,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    let mut ours = vec![19u8];
    ours.extend_from_slice(b"BitTorrent protocol");
    ours.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    ours.extend_from_slice(&info_hash);
    ours.extend_from_slice(b"-XX0000-liarliarliar");
    s.write_all(&ours)?;
    let ext = format!("d1:md11:ut_metadatai7ee13:metadata_sizei{size}ee");
    send_ext(&mut s, 0, ext.as_bytes())?;
    let mut their_id = None;
    loop {
        let body = read_msg(&mut s)?;
        if body.len() < 2 || body[0] != 20 {
            continue;
        }
        let payload = &body[2..];
        if body[1] == 0 {
            // Their handshake: find their ut_metadata id.
            let text = String::from_utf8_lossy(payload);
            if let Some(i) = text.find("11:ut_metadatai") {
                let rest = &text[i + 15..];
                their_id = rest[..rest.find('e').unwrap_or(0)].parse::<u8>().ok();
            }
            continue;
        }
        // A request: d8:msg_typei0e5:piecei{N}ee
        let text = String::from_utf8_lossy(payload);
        let Some(i) = text.find("5:piecei") else {
            continue;
        };
        let rest = &text[i + 8..];
        let Ok(piece) = rest[..rest.find('e').unwrap_or(0)].parse::<usize>() else {
            continue;
        };
        let len = (size - piece * 16384).min(16384);
        let mut reply =
            format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{size}ee").into_bytes();
        reply.extend(std::iter::repeat_n(b'x', len));
        send_ext(&mut s, their_id.unwrap_or(3), &reply)?;
        served.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn metadata_that_does_not_match_the_info_hash_is_rejected_and_its_sender_banned() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (torrent, seed_dir) = make_album(tmp.path());
    let size = metadata_size(&torrent);
    let liar = LyingMetadataPeer::start(info_hash_v1(&torrent), size);
    // Only the liar at first, so that its metadata is surely assembled and checked.
    let link = magnet(&torrent, &[format!("127.0.0.1:{}", liar.port)]);
    let out = tmp.path().join("out");
    let mut dl = bitpeer_download_magnet(&link, &out);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banned = false;
    while !banned {
        assert!(
            Instant::now() < deadline,
            "the lying peer was not banned in 30 s (served {} pieces): {}",
            liar.served.load(Ordering::SeqCst),
            dl.explain()
        );
        if let Some(line) = dl.next_line(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            banned = v["state"] == "metadata" && v["banned"].as_u64().unwrap_or(0) >= 1;
        }
        dl.assert_no_panic();
    }
    assert!(liar.served.load(Ordering::SeqCst) >= size.div_ceil(16384));
    let connections = liar.connections.load(Ordering::SeqCst);

    // Now an honest seeder, which the download learns of from... nobody: it dials us.
    let (_seeder, _port) = spawn_lt_peer(
        &torrent,
        &seed_dir,
        &[download_listen_addr(&mut dl)],
        &["--seed"],
    );
    finish_download(&mut dl, DOWNLOAD_TIMEOUT);
    assert_same_tree(&seed_dir.join("album"), &out.join("album"));
    assert_eq!(
        liar.connections.load(Ordering::SeqCst),
        connections,
        "a banned peer was dialled again"
    );
}

/// PEX (BEP 11): libtorrent seeder A; libtorrent peer B, connected to A, downloading and
/// uploading at a trickle (so it stays a leecher, connected to A); bitpeer is told only of
/// B. B's peer exchange names A, bitpeer dials A and finishes long before B alone could
/// have served it.
#[test]
fn bitpeer_learns_a_peer_from_libtorrent_pex_and_connects_to_it() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    // 3 MB at B's 16 KB/s would take over three minutes.
    write_random(&seed_dir.join("pex.bin"), 77, 3_000_000);
    let torrent = tmp.path().join("pex.torrent");
    bitpeer_create(
        &seed_dir.join("pex.bin"),
        &torrent,
        &["--piece-length", "32768"],
    );
    let (_a, a_port) = spawn_lt_peer(&torrent, &seed_dir, &[], &["--seed"]);
    let (_b, b_port) = spawn_lt_peer(
        &torrent,
        &tmp.path().join("b"),
        &[format!("127.0.0.1:{a_port}")],
        &[
            "--seed",
            "--upload-limit",
            "16000",
            "--download-limit",
            "16000",
        ],
    );
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-lsd"])
        .args(["--peer", &format!("127.0.0.1:{b_port}")]);
    let mut dl = Proc::spawn(cmd, Duration::from_secs(150));
    let last = finish_download(&mut dl, Duration::from_secs(150));
    let secs = started.elapsed().as_secs_f64();
    eprintln!("done in {secs:.1} s: {last}");
    assert_same_tree(&seed_dir.join("pex.bin"), &out.join("pex.bin"));
    // B alone needs over three minutes, so finishing fast means A was reached: bitpeer
    // dialled the address B's PEX gave (A then counts among the candidates), or A, told
    // about bitpeer by B's PEX in the other direction, dialled bitpeer first (a race the
    // test cannot order).
    eprintln!("candidates at the end: {}", last["candidates"]);
    assert!(
        secs < 60.0,
        "took {secs:.0} s: A was not found through PEX? {}",
        dl.explain()
    );
}
