//! `bitpeer pipe --plain` against Debian's netcat-openbsd (`nc`), with nc on either side:
//! 64 MiB of random bytes both ways at once, and empty input, compared byte for byte; the
//! end of input is a half-close (`nc -N`), both commands exit 0 once both directions are
//! done, and a refused connection exits 1 like nc. Fails when nc is missing, unless
//! BITPEER_SKIP_INTEROP=1.

mod common;
#[path = "support/piped.rs"]
mod piped;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use piped::{Piped, free_tcp_port, same_file, wait_listening};

const LIMIT: Duration = Duration::from_secs(120);
const BIG: usize = 64 << 20;

fn nc_available() -> bool {
    let ok = std::process::Command::new("nc")
        .arg("-h")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    available_or_fail(ok, "nc (netcat-openbsd) not found")
}

fn nc(args: &[&str]) -> Command {
    let mut c = Command::new("nc");
    c.args(args);
    c
}

fn bitpeer_pipe(args: &[&str]) -> Command {
    let mut c = Command::new(bitpeer_bin());
    c.arg("pipe").args(args);
    c
}

/// Inputs of `len` bytes for each side, in `dir`.
fn inputs(dir: &Path, len: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("a.in"), dir.join("b.in"));
    write_random(&a, 1, len);
    write_random(&b, 2, len);
    (a, b)
}

/// The listener `l` got b.in and sent a.in; the connector the other way round.
fn check(dir: &Path) {
    assert!(
        same_file(&dir.join("a.in"), &dir.join("b.out")),
        "connector got other bytes"
    );
    assert!(
        same_file(&dir.join("b.in"), &dir.join("a.out")),
        "listener got other bytes"
    );
}

fn nc_listens_bitpeer_connects(len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = inputs(d, len);
    let port = free_tcp_port();
    let mut l = Piped::spawn(
        nc(&["-N", "-l", "127.0.0.1", &port.to_string()]),
        &a,
        &d.join("a.out"),
        LIMIT,
    );
    wait_listening(port, Duration::from_secs(10));
    // `nc -l` stops sending once the peer's stream ends (nc to nc alike), so our end of
    // input waits until nc's whole input has arrived: both directions still run at once.
    let out = d.join("b.out");
    let got_all = move || std::fs::metadata(&out).is_ok_and(|m| m.len() == len as u64);
    let mut c = Piped::spawn_held(
        bitpeer_pipe(&["connect", &format!("127.0.0.1:{port}"), "--plain"]),
        &b,
        &d.join("b.out"),
        LIMIT,
        got_all,
    );
    let cs = c.wait();
    let ls = l.wait();
    assert_eq!(cs.code(), Some(0), "bitpeer: {}", c.stderr_str());
    assert_eq!(ls.code(), Some(0), "nc: {}", l.stderr_str());
    check(d);
}

fn bitpeer_listens_nc_connects(len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = inputs(d, len);
    let mut l = Piped::spawn(
        bitpeer_pipe(&["listen", "--plain", "--listen", "127.0.0.1:0"]),
        &a,
        &d.join("a.out"),
        LIMIT,
    );
    let port: u16 = l.wait_stderr(|line| {
        line.strip_prefix("listening on ")
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
    });
    let mut c = Piped::spawn(
        nc(&["-N", "127.0.0.1", &port.to_string()]),
        &b,
        &d.join("b.out"),
        LIMIT,
    );
    let cs = c.wait();
    let ls = l.wait();
    assert_eq!(cs.code(), Some(0), "nc: {}", c.stderr_str());
    assert_eq!(ls.code(), Some(0), "bitpeer: {}", l.stderr_str());
    check(d);
}

#[test]
fn nc_listens_bitpeer_connects_64_mib_both_ways() {
    if nc_available() {
        nc_listens_bitpeer_connects(BIG);
    }
}

#[test]
fn bitpeer_listens_nc_connects_64_mib_both_ways() {
    if nc_available() {
        bitpeer_listens_nc_connects(BIG);
    }
}

#[test]
fn empty_input_both_ways() {
    if nc_available() {
        nc_listens_bitpeer_connects(0);
        bitpeer_listens_nc_connects(0);
    }
}

#[test]
fn a_refused_connection_exits_1_like_nc() {
    if !nc_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, _) = inputs(d, 10);
    let port = free_tcp_port().to_string();
    let mut n = Piped::spawn(nc(&["-N", "127.0.0.1", &port]), &a, &d.join("n.out"), LIMIT);
    let target = format!("127.0.0.1:{port}");
    let mut b = Piped::spawn(
        bitpeer_pipe(&["connect", &target, "--plain"]),
        &a,
        &d.join("b.out"),
        LIMIT,
    );
    let (ns, bs) = (n.wait(), b.wait());
    assert_eq!(ns.code(), Some(1));
    assert_eq!(bs.code(), ns.code(), "{}", b.stderr_str());
    let err = b.stderr_str();
    assert!(
        err.starts_with("error: cannot connect") && err.lines().count() == 1,
        "{err}"
    );
}
