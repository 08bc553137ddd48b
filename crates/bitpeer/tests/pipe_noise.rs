//! The default, encrypted `bitpeer pipe`:
//!
//! - two bitpeer pipes connected by key alone, through a DHT on 127.0.0.1 made of
//!   libtorrent nodes (python3-libtorrent sessions bootstrapped from one another; no other
//!   bitpeer node): the listener's address record is stored on libtorrent's nodes, found,
//!   and 64 MiB go through byte for byte both ways at once;
//! - a connect to a key reaches only that key's holder: a listener with another key at the
//!   address is refused, and the connect exits 1;
//! - a peer that sends garbage instead of the handshake is dropped, and the listener still
//!   serves the real peer after it.
//!
//! The libtorrent test fails when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;
#[path = "support/lt_dht.rs"]
mod lt_dht;
#[path = "support/piped.rs"]
mod piped;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use piped::{Piped, same_file};

const LIMIT: Duration = Duration::from_secs(150);

fn pipe_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bitpeer_bin());
    c.arg("pipe").args(args);
    c
}

/// A listener on 127.0.0.1 with its key file in `dir`; returns it and its ticket.
fn listener(dir: &Path, key: &str, stdin: &Path, extra: &[&str]) -> (Piped, String) {
    let key = dir.join(key);
    let mut args = vec![
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut l = Piped::spawn(pipe_cmd(&args), stdin, &dir.join("l.out"), LIMIT);
    let ticket = l.wait_stderr(|line| line.strip_prefix("ticket: ").map(str::to_string));
    (l, ticket)
}

#[test]
fn two_pipes_find_each_other_by_key_through_libtorrent_dht_nodes() {
    if !libtorrent_available() {
        return;
    }
    let lt = lt_dht::lt_network(&python(), 4, LIMIT);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("a.in"), d.join("b.in"));
    write_random(&a, 11, 64 << 20);
    write_random(&b, 12, 64 << 20);
    let (mut l, ticket) = listener(d, "l.key", &a, &["--dht-bootstrap", &lt[0].addr()]);
    let key = ticket.split('@').next().unwrap().to_string();
    let stored: u32 = l.wait_stderr(|line| {
        line.strip_prefix("published to ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    assert!(
        stored > 0,
        "the record reached no libtorrent node: {}",
        l.stderr_str()
    );
    let mut c = Piped::spawn(
        pipe_cmd(&["connect", &key, "--dht-bootstrap", &lt[3].addr()]),
        &b,
        &d.join("c.out"),
        LIMIT,
    );
    let (cs, ls) = (c.wait(), l.wait());
    assert_eq!(cs.code(), Some(0), "connect: {}", c.stderr_str());
    assert_eq!(ls.code(), Some(0), "listen: {}", l.stderr_str());
    assert!(same_file(&a, &d.join("c.out")), "connector got other bytes");
    assert!(same_file(&b, &d.join("l.out")), "listener got other bytes");
}

#[test]
fn a_listener_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    write_random(&input, 3, 1000);
    // The listener holds one key; the connector asks for another at its address.
    let (mut other, other_ticket) = listener(d, "other.key", &input, &["--no-dht"]);
    let (_, addr) = other_ticket.split_once('@').unwrap();
    let my_key: String = dht::item::public_key(&[5u8; 32])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Another key at this listener's address: the handshake fails, connect exits 1.
    let forged = format!("{my_key}@{addr}");
    let mut c = Piped::spawn(
        pipe_cmd(&["connect", &forged]),
        &input,
        &d.join("c.out"),
        LIMIT,
    );
    assert_eq!(c.wait().code(), Some(1), "{}", c.stderr_str());
    let err = c.stderr_str();
    assert!(
        err.starts_with("error: no listener with key") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        std::fs::read(d.join("c.out")).unwrap(),
        b"",
        "bytes from the wrong peer"
    );
    // The other listener dropped that connection and still waits for its own peer.
    other.wait_stderr(|l| l.starts_with("warning: dropped a connection").then_some(()));
    let mut ok = Piped::spawn(
        pipe_cmd(&["connect", &other_ticket]),
        &input,
        &d.join("ok.out"),
        LIMIT,
    );
    assert_eq!(ok.wait().code(), Some(0), "{}", ok.stderr_str());
    assert_eq!(other.wait().code(), Some(0));
    assert!(same_file(&input, &d.join("ok.out")));
}

#[test]
fn garbage_instead_of_the_handshake_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    write_random(&input, 4, 100_000);
    let (mut l, ticket) = listener(d, "l.key", &input, &["--no-dht"]);
    let addr = ticket.split_once('@').unwrap().1.to_string();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x00, 0x30]
            .iter()
            .copied()
            .chain([0xAA; 48])
            .collect::<Vec<u8>>(),
        &[0xff; 4096],
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(garbage);
        // The listener closes the connection (EOF or reset), sending nothing back.
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the listener answered garbage");
    }
    // A peer that connects and says nothing is dropped after the handshake time limit;
    // meanwhile the real peer still gets through.
    let _silent = TcpStream::connect(&addr).unwrap();
    let mut c = Piped::spawn(
        pipe_cmd(&["connect", &ticket]),
        &input,
        &d.join("c.out"),
        LIMIT,
    );
    assert_eq!(c.wait().code(), Some(0), "{}", c.stderr_str());
    assert_eq!(l.wait().code(), Some(0), "{}", l.stderr_str());
    assert!(same_file(&input, &d.join("c.out")));
    assert!(same_file(&input, &d.join("l.out")));
    let drops = l.stderr_str().matches("dropped a connection").count();
    assert!(drops >= 3, "{}", l.stderr_str());
}

#[test]
fn host_port_without_plain_is_refused() {
    let out = bitpeer(["pipe", "connect", "127.0.0.1:9"], None);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_str().contains("needs --plain"),
        "{}",
        out.explain()
    );
}

/// The listener puts its record again before it expires, each time with a higher seq, and
/// libtorrent's nodes serve the newest one.
#[test]
fn the_record_is_republished_with_a_higher_seq() {
    if !libtorrent_available() {
        return;
    }
    let mut lt = lt_dht::lt_network(&python(), 3, LIMIT);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    write_random(&input, 5, 10);
    let boot = lt[0].addr();
    let (l, ticket) = listener(
        d,
        "l.key",
        &input,
        &["--dht-bootstrap", &boot, "--republish-every", "2"],
    );
    let key = ticket.split('@').next().unwrap().to_string();
    let seqs = |text: &str| -> Vec<(u32, i64)> {
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("published to ")?;
                let n = rest.split_whitespace().next()?.parse().ok()?;
                let seq = rest
                    .split("(seq ")
                    .nth(1)?
                    .trim_end_matches(')')
                    .parse()
                    .ok()?;
                Some((n, seq))
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let published = loop {
        let p = seqs(&l.stderr_str());
        if p.len() >= 2 || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(published.len() >= 2, "no second put: {}", l.stderr_str());
    assert!(
        published[1].1 > published[0].1,
        "seq did not grow: {published:?}"
    );
    assert!(published.iter().all(|(n, _)| *n > 0), "{published:?}");
    let newest = published[1].1;
    lt[2].send(&format!("get_mutable {key} {}", hex(pipe::record::SALT)));
    lt[2].wait_line(LIMIT, |line| {
        let w: Vec<&str> = line.split_whitespace().collect();
        (w.first() == Some(&"mutable") && w[1] == key && w[2].parse::<i64>().ok()? >= newest)
            .then_some(())
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
