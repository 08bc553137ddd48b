//! `bitpeer daemon` driven as qBittorrent and as Transmission by the real client libraries
//! and tools: PyPI `qbittorrent-api` and `transmission-rpc` (in the venv that
//! scripts/install-compat.sh makes) and Debian's `transmission-remote`, downloading from
//! libtorrent seeders on 127.0.0.1. The client side of each test is a Python script in
//! tests/interop (compat_qb.py, compat_tr.py) that checks every answer and exits non-zero
//! on the first wrong one: the *arr call sequence, a .torrent file and a magnet downloaded
//! to completion and compared byte for byte, files/peers/trackers, limits, category, tags,
//! stop, start, delete with data, and hostile calls (no or wrong credentials, a wrong
//! session id, malformed multipart, a save path outside the allowed folders, a huge body)
//! refused with nothing changed.
//!
//! The differential tests run Debian's qbittorrent-nox and transmission-daemon on loopback
//! with a temporary profile (no DHT, LSD, PeX or UPnP), make the same calls to them and to
//! bitpeer (compat_diff.py), and compare the answers field by field for presence and type,
//! and for value where they must agree.
//!
//! Across a daemon restart (compat_prefs_qb.py, compat_prefs_tr.py): settings changed with
//! app/setPreferences and session-set, applied live and kept; sync/maindata diffs by rid;
//! contentLayout NoSubfolder and Subfolder; a seeding limit's remove action; createTags
//! kept; the ban after five failed logins; the Bearer API key and Basic;
//! torrent-set-location with move: false. compat_first_last.py: firstLastPiecePrio changes
//! the order pieces come in.
//!
//! Fails when a client is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(200);

/// Where scripts/install-compat.sh installs: ${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer.
fn cache_dir() -> PathBuf {
    std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"))
        .join("bitpeer")
}

/// A libtorrent seeder of `torrent` (data in `seed_dir`) and a magnet link naming it (x.pe).
fn seeded_magnet(torrent: &Path, seed_dir: &Path, name: &str) -> (Proc, String) {
    let (seeder, port) = spawn_lt_peer(torrent, seed_dir, &[], &["--seed"]);
    let hex: String = info_hash_v1(torrent)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        seeder,
        format!("magnet:?xt=urn:btih:{hex}&dn={name}&x.pe=127.0.0.1:{port}"),
    )
}

/// The venv's Python with both client libraries (BITPEER_COMPAT_PYTHON overrides).
fn compat_python() -> Option<String> {
    let py = std::env::var("BITPEER_COMPAT_PYTHON").unwrap_or_else(|_| {
        cache_dir()
            .join("venv-compat/bin/python")
            .display()
            .to_string()
    });
    let mut cmd = Command::new(&py);
    cmd.args(["-c", "import qbittorrentapi, transmission_rpc"]);
    let ok = matches!(try_run(cmd, CLIENT_TIMEOUT), Ok(o) if o.status.success());
    let mut remote = Command::new("transmission-remote");
    remote.arg("--version");
    let ok = ok && try_run(remote, CLIENT_TIMEOUT).is_ok();
    available_or_fail(
        ok,
        &format!(
            "{py} cannot import qbittorrentapi and transmission_rpc, or no transmission-remote \
             (run scripts/install-compat.sh)"
        ),
    )
    .then_some(py)
}

/// A folder of two files and its torrent (for the .torrent add), and one file and its
/// torrent (for the magnet add).
fn make_data(tmp: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let seed = tmp.join("seed");
    let set = seed.join("Show.S01");
    write_random(&set.join("e01.mkv"), 11, 300_001);
    write_random(&set.join("sub").join("e01.srt"), 12, 7_777);
    let set_torrent = tmp.join("set.torrent");
    // A tracker the daemon (run with --no-trackers) never contacts, listed all the same.
    bitpeer_create(
        &set,
        &set_torrent,
        &[
            "--piece-length",
            "32768",
            "-t",
            "http://127.0.0.1:9/announce",
        ],
    );
    let single = seed.join("Movie.2026.mkv");
    write_random(&single, 13, 250_000);
    let single_torrent = tmp.join("single.torrent");
    bitpeer_create(&single, &single_torrent, &["--piece-length", "32768"]);
    (set, set_torrent, single, single_torrent)
}

fn run_client(script: &str) {
    if !libtorrent_available() {
        return;
    }
    let Some(py) = compat_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (set, set_torrent, single, single_torrent) = make_data(tmp.path());
    // The magnet's seeder runs first; the magnet names it (x.pe).
    let (_magnet_seeder, magnet) =
        seeded_magnet(&single_torrent, &tmp.path().join("seed"), "Movie.2026.mkv");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--api-user", "admin", "--api-password", "s3cret pass"],
    );
    let mut cmd = Command::new(&py);
    cmd.arg(interop_dir().join(script))
        .arg(&d.api)
        .args(["admin", "s3cret pass"])
        .arg(&set_torrent)
        .arg(&set)
        .arg(&magnet)
        .arg(&single)
        .arg(&outside);
    // Once the .torrent is added, its seeder starts and connects to the daemon.
    seeded_client(cmd, &set_torrent, &tmp.path().join("seed"), &mut d, script);
}

/// Runs the client script `cmd`; once it prints `{"added": HASH, "port": P}`, a libtorrent
/// seeder of `torrent` (data in `seed_dir`) starts and connects to the daemon's port P.
/// The script must end with `{"ok": true}`.
fn seeded_client(cmd: Command, torrent: &Path, seed_dir: &Path, d: &mut Daemon, script: &str) {
    let mut client = Proc::spawn(cmd, SCRIPT_TIMEOUT);
    let port = client.wait_line(Duration::from_secs(90), |l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v["added"].is_string())
            .and_then(|v| v["port"].as_u64())
    });
    let peer = [format!("127.0.0.1:{port}")];
    let (_seeder, _) = spawn_lt_peer(torrent, seed_dir, &peer, &["--seed"]);
    let status = client.wait_exit(SCRIPT_TIMEOUT);
    let ok = client
        .stdout_lines()
        .iter()
        .any(|l| l.contains("\"ok\": true"));
    assert!(
        status.success() && ok,
        "{script} failed: {}\ndaemon: {}",
        client.explain(),
        d.proc.explain()
    );
    d.proc.assert_no_panic();
}

#[test]
fn qbittorrent_clients_and_the_arr_sequence_work_against_the_daemon() {
    run_client("compat_qb.py");
}

#[test]
fn transmission_clients_work_against_the_daemon() {
    run_client("compat_tr.py");
}

/// A free TCP port of 127.0.0.1 (bound, then released for the reference server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Same calls to a reference server and to bitpeer, answers compared (compat_diff.py).
fn differential(kind: &str, server: &str) {
    let Some(py) = compat_python() else { return };
    let mut probe = Command::new(server);
    probe.arg("--version");
    if !available_or_fail(
        try_run(probe, CLIENT_TIMEOUT).is_ok(),
        &format!("{server} not found (scripts/install-compat.sh installs it)"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_random(&data.join("Show.S02").join("e01.mkv"), 21, 200_003);
    write_random(&data.join("Show.S02").join("e01.nfo"), 22, 1_000);
    let torrent = tmp.path().join("x.torrent");
    bitpeer_create(
        &data.join("Show.S02"),
        &torrent,
        &["--piece-length", "32768"],
    );
    let (user, pass) = ("admin", "s3cret pass");
    let port = free_port();
    let profile = tmp.path().join("profile");
    let save = tmp.path().join("ref-save");
    std::fs::create_dir_all(&save).unwrap();
    let mut cmd = Command::new(&py);
    cmd.arg(interop_dir().join("compat_diff.py"))
        .arg(format!(
            "{kind}-{}",
            if kind == "qb" { "profile" } else { "config" }
        ))
        .arg(&profile)
        .args([user, pass])
        .arg(&save)
        .arg(port.to_string());
    run(cmd, CLIENT_TIMEOUT).assert_success();
    let mut reference = Command::new(server);
    if kind == "qb" {
        reference
            .arg(format!("--profile={}", profile.display()))
            .arg(format!("--webui-port={port}"));
    } else {
        reference.arg("-f").arg("-g").arg(&profile);
    }
    let mut reference = Proc::spawn(reference, SCRIPT_TIMEOUT);
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--api-user", user, "--api-password", pass],
    );
    let mut cmd = Command::new(&py);
    cmd.arg(interop_dir().join("compat_diff.py"))
        .arg(kind)
        .arg(format!("127.0.0.1:{port}"))
        .arg(&d.api)
        .args([user, pass])
        .arg(&torrent);
    let out = run(cmd, SCRIPT_TIMEOUT);
    assert!(
        out.status.success() && out.stdout_str().contains("\"ok\": true"),
        "{kind} differential failed: {}\nreference: {}\ndaemon: {}",
        out.explain(),
        reference.explain(),
        d.proc.explain()
    );
    eprintln!(
        "{kind}: fields the reference has and bitpeer leaves out: {}",
        out.stdout_str()
    );
    reference.kill();
    d.proc.assert_no_panic();
}

#[test]
fn qbittorrent_answers_match_debians_qbittorrent_nox() {
    differential("qb", "qbittorrent-nox");
}

#[test]
fn transmission_answers_match_debians_transmission_daemon() {
    differential("tr", "transmission-daemon");
}

/// npm flood (scripts/install-compat.sh) pointed at the daemon as `backend` ("qb" or "tr"),
/// driven through its own API by compat_flood.py.
fn flood(backend: &str) {
    if !libtorrent_available() {
        return;
    }
    let Some(py) = compat_python() else { return };
    let flood_js = cache_dir().join("npm-flood/node_modules/flood/dist/index.js");
    let mut node = Command::new("node");
    node.arg("--version");
    if !available_or_fail(
        flood_js.is_file() && try_run(node, CLIENT_TIMEOUT).is_ok(),
        &format!(
            "no node or no {} (run scripts/install-compat.sh)",
            flood_js.display()
        ),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_set, set_torrent, single, single_torrent) = make_data(tmp.path());
    let (_seeder, magnet) =
        seeded_magnet(&single_torrent, &tmp.path().join("seed"), "Movie.2026.mkv");
    let dl = tmp.path().join("dl");
    let (user, pass) = ("admin", "s3cret pass");
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &dl,
        &["--api-user", user, "--api-password", pass],
    );
    let port = free_port();
    let mut cmd = Command::new("node");
    cmd.arg(&flood_js)
        .args(["--auth", "none", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .arg("--rundir")
        .arg(tmp.path().join("flood"));
    if backend == "qb" {
        cmd.args(["--qburl", &format!("http://{}", d.api)])
            .args(["--qbuser", user, "--qbpass", pass]);
    } else {
        cmd.args(["--trurl", &format!("http://{}/transmission/rpc", d.api)])
            .args(["--truser", user, "--trpass", pass]);
    }
    let mut flood = Proc::spawn(cmd, SCRIPT_TIMEOUT);
    let mut script = Command::new(&py);
    script
        .arg(interop_dir().join("compat_flood.py"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&set_torrent)
        .arg(&magnet)
        .arg(&single)
        .arg(&dl);
    let out = run(script, SCRIPT_TIMEOUT);
    assert!(
        out.status.success() && out.stdout_str().contains("\"ok\": true"),
        "flood ({backend}) failed: {}\nflood: {}\ndaemon: {}",
        out.explain(),
        flood.explain(),
        d.proc.explain()
    );
    flood.kill();
    d.proc.assert_no_panic();
}

#[test]
fn flood_works_with_the_daemon_as_qbittorrent() {
    flood("qb");
}

#[test]
fn flood_works_with_the_daemon_as_transmission() {
    flood("tr");
}

#[test]
fn without_credentials_a_loopback_daemon_accepts_any_login() {
    let Some(py) = compat_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut d = spawn_daemon(&tmp.path().join("state"), &tmp.path().join("dl"), &[]);
    let mut cmd = Command::new(&py);
    cmd.arg(interop_dir().join("compat_open.py")).arg(&d.api);
    let out = run(cmd, SCRIPT_TIMEOUT);
    assert!(
        out.status.success() && out.stdout_str().contains("\"ok\": true"),
        "compat_open.py failed: {}\ndaemon: {}",
        out.explain(),
        d.proc.explain()
    );
    d.proc.assert_no_panic();
}

/// A daemon run twice on one state folder, with the user, password and (from a config
/// file) an API key; `script` runs against each run (phase `first`, then `second`) with
/// the torrent and data of one file, the download folder, a folder outside it, and the
/// torrent and data of a folder of two files.
fn across_a_restart(script: &str, with_key: bool) {
    let Some(py) = compat_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (set, set_torrent, single, single_torrent) = make_data(tmp.path());
    let dl = tmp.path().join("dl");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let (user, pass, key) = ("admin", "s3cret pass", "k3y-0123456789abcdef");
    let config = tmp.path().join("daemon.toml");
    std::fs::write(&config, format!("api_key = \"{key}\"\n")).unwrap();
    let config = config.display().to_string();
    let mut flags = vec!["--api-user", user, "--api-password", pass];
    if with_key {
        flags.extend(["--config", config.as_str()]);
    }
    for phase in ["first", "second"] {
        let mut d = spawn_daemon(&tmp.path().join("state"), &dl, &flags);
        let mut cmd = Command::new(&py);
        cmd.arg(interop_dir().join(script))
            .arg(phase)
            .arg(&d.api)
            .args([user, pass]);
        if with_key {
            cmd.arg(key);
        }
        cmd.arg(&single_torrent).arg(&single).arg(&dl).arg(&outside);
        cmd.arg(&set_torrent).arg(&set);
        let out = run(cmd, SCRIPT_TIMEOUT);
        assert!(
            out.status.success() && out.stdout_str().contains("\"ok\": true"),
            "{script} {phase} failed: {}\ndaemon: {}",
            out.explain(),
            d.proc.explain()
        );
        d.proc.assert_no_panic();
        d.proc.kill();
    }
}

/// setPreferences applied live and kept, sync/maindata diffs by rid, contentLayout
/// NoSubfolder and Subfolder, firstLastPiecePrio, a seeding limit's remove action, createTags kept across a restart, the ban
/// after five failed logins, the Bearer API key and Basic.
#[test]
fn qbittorrent_preferences_sync_layout_tags_and_ban() {
    across_a_restart("compat_prefs_qb.py", true);
}

/// session-set applied and kept across a restart; torrent-set-location with move: false
/// points the torrent at data already there and checks it.
#[test]
fn transmission_session_set_and_set_location_without_move() {
    across_a_restart("compat_prefs_tr.py", false);
}

/// firstLastPiecePrio: from a libtorrent seeder, through a slow global limit, the first
/// pieces the daemon has include the first and the last (of 40).
#[test]
fn first_and_last_pieces_come_first() {
    if !libtorrent_available() {
        return;
    }
    let Some(py) = compat_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed").join("video.mkv");
    write_random(&data, 31, 40 * 16384);
    let torrent = tmp.path().join("video.torrent");
    bitpeer_create(&data, &torrent, &["--piece-length", "16384"]);
    let (user, pass) = ("admin", "s3cret pass");
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--api-user", user, "--api-password", pass],
    );
    let mut cmd = Command::new(&py);
    cmd.arg(interop_dir().join("compat_first_last.py"))
        .arg(&d.api)
        .args([user, pass])
        .arg(&torrent);
    let seed = tmp.path().join("seed");
    seeded_client(cmd, &torrent, &seed, &mut d, "compat_first_last.py");
}
