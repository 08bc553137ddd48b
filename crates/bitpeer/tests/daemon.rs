//! `bitpeer daemon` run as a real process, on free ports of 127.0.0.1, with a temporary
//! state folder, driven through its HTTP API and the CLI client (`bitpeer add`, `ls`,
//! `pause`, `resume`, `rm`, `limit`), downloading from libtorrent seeders.
//!
//! The libtorrent tests fail when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One HTTP/1.1 request over a fresh connection; (status, body).
fn http(
    api: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {api}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (and close) before reading a huge body: a failed write is fine.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&out[..text_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol]).unwrap().trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

fn api_json(api: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|v| v.to_string()).unwrap_or_default();
    let (status, out) = http(
        api,
        method,
        &format!("/api/v1{path}"),
        &[("Content-Type", "application/json")],
        b.as_bytes(),
    );
    (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

fn cli(d: &Daemon, args: &[&str]) -> Output {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.args(args).args(["--api", &format!("http://{}", d.api)]);
    run(cmd, Duration::from_secs(60))
}

fn ls(d: &Daemon) -> Vec<Value> {
    let out = cli(d, &["ls", "--json"]);
    out.assert_success();
    serde_json::from_str::<Value>(&out.stdout_str())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn torrent(d: &Daemon, id: u64) -> Value {
    let (s, v) = api_json(&d.api, "GET", &format!("/torrents/{id}"), None);
    assert_eq!(s, 200, "{v}");
    v
}

/// Polls torrent `id` until `f` holds; panics with the daemon's stderr after `timeout`.
fn wait_torrent(
    d: &mut Daemon,
    id: u64,
    timeout: Duration,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + timeout;
    loop {
        let t = torrent(d, id);
        if f(&t) {
            return t;
        }
        if Instant::now() > end {
            panic!(
                "torrent {id}: not {what} within {timeout:?}: {t}\n{}",
                d.proc.explain()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The seeder's latest `uploaded` from its --stats lines (waits for at least one).
fn seeder_uploaded(seeder: &mut Proc) -> u64 {
    let mut last = None;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match seeder.next_line(Duration::from_millis(1200)) {
            Some(l) => {
                if let Some(u) = serde_json::from_str::<Value>(&l)
                    .ok()
                    .and_then(|v| v["uploaded"].as_u64())
                {
                    last = Some(u);
                }
            }
            None if last.is_some() => break,
            None => {}
        }
    }
    last.expect("the seeder prints its stats")
}

/// A single-file torrent of `len` random bytes with 32 KiB pieces; (data file, .torrent).
fn make_single(dir: &Path, name: &str, seed: u64, len: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("seed").join(name);
    write_random(&data, seed, len);
    let torrent = dir.join(format!("{name}.torrent"));
    bitpeer_create(&data, &torrent, &["--piece-length", "32768"]);
    (data, torrent)
}

#[test]
fn torrents_added_by_cli_and_api_download_pause_resume_and_remove() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let size_a = 4 << 20;
    let (data_a, torrent_a) = make_single(tmp.path(), "a.bin", 1, size_a);
    let set = tmp.path().join("seed").join("set");
    write_random(&set.join("x.bin"), 2, 100_001);
    write_random(&set.join("sub").join("y.bin"), 3, 77_777);
    let torrent_b = tmp.path().join("set.torrent");
    bitpeer_create(&set, &torrent_b, &["--piece-length", "32768"]);
    // A slow seeder for A (so it can be paused halfway), a fast one for B.
    let (mut seed_a, port_a) = spawn_lt_peer(
        &torrent_a,
        &tmp.path().join("seed"),
        &[],
        &["--seed", "--stats", "--upload-limit", "400000"],
    );
    let (_seed_b, port_b) = spawn_lt_peer(&torrent_b, &tmp.path().join("seed"), &[], &["--seed"]);
    let downloads = tmp.path().join("dl");
    // Another file in the download folder: removing a torrent with its data leaves it.
    write_random(&downloads.join("keep.me"), 9, 1000);
    let mut d = spawn_daemon(&tmp.path().join("state"), &downloads, &[]);

    // A through the CLI.
    let out = cli(
        &d,
        &[
            "add",
            torrent_a.to_str().unwrap(),
            "--peer",
            &format!("127.0.0.1:{port_a}"),
            "--category",
            "big",
            "--tags",
            "t1,t2",
            "--json",
        ],
    );
    out.assert_success();
    let added: Value = serde_json::from_str(&out.stdout_str()).unwrap();
    let id_a = added["id"].as_u64().unwrap();
    let hash_a = added["info_hash"].as_str().unwrap().to_string();
    assert_eq!(hash_a, metainfo_hex(&torrent_a));
    // B through the API, as a multipart upload like the web UI's.
    let boundary = "XbitpeerX";
    let mut form = Vec::new();
    for (name, value) in [
        ("peers", format!("127.0.0.1:{port_b}")),
        ("tags", "small".to_string()),
    ] {
        form.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    form.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"set.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").as_bytes());
    form.extend_from_slice(&std::fs::read(&torrent_b).unwrap());
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, body) = http(
        &d.api,
        "POST",
        "/api/v1/torrents",
        &[("Content-Type", &ct)],
        &form,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id_b = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    // Adding it again is a conflict.
    let (status, _) = http(
        &d.api,
        "POST",
        "/api/v1/torrents",
        &[("Content-Type", &ct)],
        &form,
    );
    assert_eq!(status, 409);

    // ls --json has the fields scripts rely on.
    let list = ls(&d);
    assert_eq!(list.len(), 2);
    for t in &list {
        for key in [
            "id",
            "info_hash",
            "name",
            "state",
            "progress",
            "size",
            "save_path",
            "download_rate",
            "upload_rate",
        ] {
            assert!(!t[key].is_null(), "ls --json lacks {key}: {t}");
        }
    }

    wait_torrent(&mut d, id_b, Duration::from_secs(120), "seeding", |t| {
        t["state"] == "seeding"
    });
    assert_same_tree(&set, &downloads.join("set"));

    // Pause A halfway, by a prefix of its info-hash: no bytes from the seeder for 5 s.
    wait_torrent(
        &mut d,
        id_a,
        Duration::from_secs(120),
        "a quarter done",
        |t| t["have_bytes"].as_u64().unwrap() > (size_a as u64) / 4,
    );
    cli(&d, &["pause", &hash_a[..8]]).assert_success();
    assert_eq!(torrent(&d, id_a)["state"], "paused");
    std::thread::sleep(Duration::from_millis(1500));
    let before = seeder_uploaded(&mut seed_a);
    std::thread::sleep(Duration::from_secs(5));
    let after = seeder_uploaded(&mut seed_a);
    assert_eq!(before, after, "the seeder sent bytes to a paused torrent");
    assert!(
        before < size_a as u64,
        "A finished before it could be paused"
    );

    cli(&d, &["resume", &id_a.to_string()]).assert_success();
    let t = wait_torrent(&mut d, id_a, Duration::from_secs(120), "seeding", |t| {
        t["state"] == "seeding"
    });
    assert_eq!(t["progress"], 1.0);
    assert_eq!(t["category"], "big");
    assert_eq!(t["tags"], json!(["t1", "t2"]));
    assert_eq!(
        std::fs::read(downloads.join("a.bin")).unwrap(),
        std::fs::read(&data_a).unwrap()
    );
    // Only the pieces still missing at the pause were sent again (a few in flight aside).
    let total = seeder_uploaded(&mut seed_a);
    assert!(
        total < size_a as u64 + (512 << 10),
        "A was downloaded twice: {total}"
    );

    // Files and pieces views.
    let (s, files) = api_json(&d.api, "GET", &format!("/torrents/{id_b}/files"), None);
    assert_eq!(s, 200);
    assert_eq!(files.as_array().unwrap().len(), 2);
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["progress"] == 1.0),
        "{files}"
    );
    let (s, pieces) = api_json(&d.api, "GET", &format!("/torrents/{id_a}/pieces"), None);
    assert_eq!(s, 200);
    assert_eq!(pieces["piece_count"], 128);
    assert!(
        pieces["have"].as_str().unwrap().starts_with("//////"),
        "{pieces}"
    );

    // Remove B with its data: exactly its files go.
    let out = cli(&d, &["rm", &id_b.to_string(), "--delete-data"]);
    out.assert_success();
    assert!(!downloads.join("set").exists());
    assert!(downloads.join("a.bin").exists());
    assert!(downloads.join("keep.me").exists());
    let list = ls(&d);
    assert_eq!(list.len(), 1);
    // Remove A without: its file stays.
    cli(&d, &["rm", &hash_a]).assert_success();
    assert!(downloads.join("a.bin").exists());
    assert!(ls(&d).is_empty());
    assert!(
        d.proc
            .terminate(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        d.proc.explain()
    );
    d.proc.assert_no_panic();
}

fn metainfo_hex(torrent: &Path) -> String {
    info_hash_v1(torrent)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn kill_9_and_restart_bring_every_torrent_back_without_downloading_again() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let size = 4 << 20;
    let (data, t_file) = make_single(tmp.path(), "k.bin", 7, size);
    let (_small_data, t_paused) = make_single(tmp.path(), "p.bin", 8, 50_000);
    let (mut seeder, port) = spawn_lt_peer(
        &t_file,
        &tmp.path().join("seed"),
        &[],
        &["--seed", "--stats", "--upload-limit", "400000"],
    );
    let state = tmp.path().join("state");
    let downloads = tmp.path().join("dl");
    let mut d = spawn_daemon(&state, &downloads, &[]);
    let peer = format!("127.0.0.1:{port}");
    let out = cli(
        &d,
        &["add", t_file.to_str().unwrap(), "--peer", &peer, "--json"],
    );
    out.assert_success();
    let id = serde_json::from_str::<Value>(&out.stdout_str()).unwrap()["id"]
        .as_u64()
        .unwrap();
    let out = cli(
        &d,
        &["add", t_paused.to_str().unwrap(), "--paused", "--json"],
    );
    out.assert_success();
    let id_paused = serde_json::from_str::<Value>(&out.stdout_str()).unwrap()["id"]
        .as_u64()
        .unwrap();
    let (s, _) = api_json(
        &d.api,
        "PATCH",
        &format!("/torrents/{id}"),
        Some(json!({"tags": ["kept"]})),
    );
    assert_eq!(s, 200);
    let have = wait_torrent(&mut d, id, Duration::from_secs(120), "40% done", |t| {
        t["have_bytes"].as_u64().unwrap() > (size as u64) * 2 / 5
    })["have_bytes"]
        .as_u64()
        .unwrap();
    let sent_before = seeder_uploaded(&mut seeder);
    d.proc.kill();

    let mut d = spawn_daemon(&state, &downloads, &[]);
    let list = ls(&d);
    assert_eq!(list.len(), 2, "{list:?}");
    let t = list
        .iter()
        .find(|t| t["id"] == id)
        .expect("the same id after a restart");
    assert_eq!(t["tags"], json!(["kept"]));
    let p = list.iter().find(|t| t["id"] == id_paused).unwrap();
    assert_eq!(p["state"], "paused");
    let t = wait_torrent(&mut d, id, Duration::from_secs(180), "seeding", |t| {
        t["state"] == "seeding"
    });
    assert_eq!(t["progress"], 1.0);
    assert_eq!(
        std::fs::read(downloads.join("k.bin")).unwrap(),
        std::fs::read(&data).unwrap()
    );
    let sent_after = seeder_uploaded(&mut seeder);
    let again = sent_after - sent_before;
    assert!(
        again <= size as u64 - have + (512 << 10),
        "after the restart the seeder sent {again} bytes, but only {} were missing",
        size as u64 - have
    );
    assert_eq!(torrent(&d, id_paused)["state"], "paused");
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

#[test]
fn bad_requests_get_4xx_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_data, t) = make_single(tmp.path(), "z.bin", 5, 100_000);
    let downloads = tmp.path().join("dl");
    let mut d = spawn_daemon(&tmp.path().join("state"), &downloads, &[]);
    let b64 = base64_std(&std::fs::read(&t).unwrap());
    let (s, v) = api_json(
        &d.api,
        "POST",
        "/torrents",
        Some(json!({"torrent_base64": b64, "paused": true})),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    let before = torrent(&d, id);
    let outside = tmp.path().join("elsewhere");
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("POST", "/api/v1/torrents".into(), b"{not json".to_vec(), 400),
        ("POST", "/api/v1/torrents".into(), b"{}".to_vec(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"torrent_base64": "!!!"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"torrent_base64": base64_std(b"d4:spam4:eggse")}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"magnet": "magnet:?xt=urn:btih:zz"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"magnet": "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567", "save_path": "../../etc"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"magnet": "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567", "save_path": outside}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), json!({"url": "file:///etc/passwd"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/torrents".into(), vec![b' '; 17 << 20], 413),
        ("GET", "/api/v1/torrents/999".into(), vec![], 404),
        ("GET", "/api/v1/torrents/abc".into(), vec![], 400),
        ("GET", "/api/v1/torrents/..%2f..%2fetc".into(), vec![], 400),
        ("POST", "/api/v1/torrents/999/pause".into(), vec![], 404),
        ("POST", format!("/api/v1/torrents/{id}/explode"), vec![], 404),
        ("DELETE", "/api/v1/torrents/999".into(), vec![], 404),
        ("PATCH", format!("/api/v1/torrents/{id}/files"), json!({"priorities": {"7": "skip"}}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/torrents/{id}/files"), json!({"priorities": {"-1": "skip"}}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/torrents/{id}/files"), json!({"priorities": {"0": "urgent"}}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/torrents/{id}"), json!({"upload_limit": -5}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/torrents/{id}"), json!({"tags": ["a\nb"]}).to_string().into_bytes(), 400),
        ("POST", format!("/api/v1/torrents/{id}/queue"), json!({"position": "sideways"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/categories".into(), json!({"name": "x", "save_path": "/etc"}).to_string().into_bytes(), 400),
        ("GET", "/api/v1/nothing".into(), vec![], 404),
    ];
    for (method, path, body, want) in &cases {
        let (status, out) = http(
            &d.api,
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(
            status,
            *want,
            "{method} {path}: {}",
            String::from_utf8_lossy(&out)
        );
        if *want != 413 || !out.is_empty() {
            let v: Value = serde_json::from_slice(&out).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: not JSON: {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {path}: {v}"
            );
        }
    }
    // What a web page elsewhere could make a browser send: refused.
    let (s, _) = http(
        &d.api,
        "GET",
        "/api/v1/torrents",
        &[("Host", "rebind.example:8080")],
        b"",
    );
    assert_eq!(s, 403);
    let origin = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "application/json"),
    ];
    let (s, _) = http(
        &d.api,
        "POST",
        &format!("/api/v1/torrents/{id}/resume"),
        &origin,
        b"",
    );
    assert_eq!(s, 403);
    let after = torrent(&d, id);
    assert_eq!(before, after, "a refused request changed the torrent");
    assert_eq!(ls(&d).len(), 1);
    let (_, cats) = api_json(&d.api, "GET", "/categories", None);
    assert_eq!(cats, json!({}));
    assert!(!outside.exists() && !tmp.path().join("etc").exists());
    // A good priority change works, and is kept.
    let (s, files) = api_json(
        &d.api,
        "PATCH",
        &format!("/torrents/{id}/files"),
        Some(json!({"priorities": {"0": "high"}})),
    );
    assert_eq!(s, 200, "{files}");
    assert_eq!(files[0]["priority"], "high");
    // The web UI and metrics are served.
    let (s, index) = http(&d.api, "GET", "/", &[], b"");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&index).contains("<html"));
    let (s, metrics) = http(&d.api, "GET", "/metrics", &[], b"");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("bitpeer_torrents{state=\"paused\"} 1"));
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

fn base64_std(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn credentials_are_required_when_set_and_off_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    // Not loopback without credentials: refused at start with one line.
    let out = bitpeer(
        [
            "daemon",
            "--api",
            "0.0.0.0:0",
            "--listen",
            "127.0.0.1:0",
            "--no-dht",
            "--no-lsd",
            "--state-dir",
            tmp.path().join("s").to_str().unwrap(),
            "--download-dir",
            tmp.path().join("d").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    assert!(
        out.stderr_str().starts_with("error: ") && out.stderr_str().contains("credentials"),
        "{}",
        out.explain()
    );

    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--api-user", "admin", "--api-password", "s3cret"],
    );
    let basic = |creds: &[u8]| format!("Basic {}", base64_std(creds));
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        ("/api/v1/torrents", vec![], 401),
        ("/metrics", vec![], 401),
        (
            "/api/v1/torrents",
            vec![("Authorization", basic(b"admin:wrong"))],
            401,
        ),
        (
            "/api/v1/torrents",
            vec![("Authorization", basic(b"admin:s3cret"))],
            200,
        ),
        (
            "/api/v1/torrents",
            vec![("Authorization", "Bearer nokey".into())],
            401,
        ),
        (
            "/api/v1/torrents",
            vec![("Cookie", "bitpeer_sid=0123".into())],
            401,
        ),
    ];
    for (path, headers, want) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, body) = http(&d.api, "GET", path, &h, b"");
        assert_eq!(
            s,
            want,
            "{path} {headers:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // The login cookie, as the web UI gets it.
    let mut st = TcpStream::connect(&d.api).unwrap();
    let body = r#"{"username":"admin","password":"s3cret"}"#;
    write!(st, "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    st.read_to_string(&mut resp).unwrap();
    let sid = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().split(';').next().unwrap().to_string())
        })
        .expect("a cookie");
    let (s, _) = http(&d.api, "GET", "/api/v1/session", &[("Cookie", &sid)], b"");
    assert_eq!(s, 200);
    // The web UI itself loads without credentials (it shows the login form).
    let (s, _) = http(&d.api, "GET", "/", &[], b"");
    assert_eq!(s, 200);
    // The CLI with and without credentials.
    let out = cli(&d, &["ls"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_str().starts_with("error: credentials"),
        "{}",
        out.explain()
    );
    let mut cmd = Command::new(bitpeer_bin());
    cmd.args([
        "ls",
        "--json",
        "--api",
        &format!("http://{}", d.api),
        "--api-user",
        "admin",
    ])
    .env("BITPEER_API_PASSWORD", "s3cret");
    let out = run(cmd, Duration::from_secs(30));
    out.assert_success();
    assert_eq!(out.stdout_str().trim(), "[]");
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

#[test]
fn cli_without_a_daemon_says_so_in_one_line_and_print_config_shows_the_effective_config() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bitpeer(["ls", "--api", &format!("http://127.0.0.1:{port}")], None);
    assert_eq!(out.code(), Some(1), "{}", out.explain());
    let err = out.stderr_str();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: no daemon answers at"), "{err}");

    let cfg = tmp.path().join("bitpeer.toml");
    std::fs::write(
        &cfg,
        "api = \"127.0.0.1:9999\"\ndownload_limit = 1000\ndht = false\n",
    )
    .unwrap();
    let out = bitpeer(
        [
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--print-config",
            "--api",
            "127.0.0.1:7777",
            "--download-dir",
            "/srv/dl",
        ],
        None,
    );
    out.assert_success();
    let text = out.stdout_str();
    assert!(text.contains("api = \"127.0.0.1:7777\""), "{text}");
    assert!(text.contains("download_limit = 1000"), "{text}");
    assert!(text.contains("dht = false"), "{text}");
    assert!(text.contains("download_dir = \"/srv/dl\""), "{text}");
    std::fs::write(&cfg, "apii = 1\n").unwrap();
    let out = bitpeer(
        [
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--print-config",
        ],
        None,
    );
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr_str().contains("apii"), "{}", out.explain());
}

#[test]
fn a_torrent_dropped_in_the_watch_folder_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let (_data, t) = make_single(tmp.path(), "w.bin", 11, 10_000);
    let watch = tmp.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--watch-dir", watch.to_str().unwrap()],
    );
    std::fs::copy(&t, watch.join("w.torrent")).unwrap();
    std::fs::write(watch.join("bad.torrent"), b"not bencode").unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while ls(&d).is_empty() {
        assert!(Instant::now() < end, "not added: {}", d.proc.explain());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ls(&d)[0]["name"], "w.bin");
    let end = Instant::now() + Duration::from_secs(10);
    while !(watch.join("w.torrent.added").exists() && watch.join("bad.torrent.invalid").exists()) {
        assert!(Instant::now() < end, "watch folder files not renamed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ls(&d).len(), 1);
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

fn add_b64(d: &Daemon, torrent: &Path) -> u64 {
    let b64 = base64_std(&std::fs::read(torrent).unwrap());
    let (s, v) = api_json(
        &d.api,
        "POST",
        "/torrents",
        Some(json!({ "torrent_base64": b64 })),
    );
    assert_eq!(s, 201, "{v}");
    v["id"].as_u64().unwrap()
}

/// The states of the given torrents, by id.
fn states(d: &Daemon, ids: &[u64]) -> Vec<String> {
    let list = ls(d);
    ids.iter()
        .map(|id| {
            let t = list.iter().find(|t| t["id"] == *id).expect("listed");
            t["state"].as_str().unwrap().to_string()
        })
        .collect()
}

fn wait_states(d: &mut Daemon, ids: &[u64], what: &str, f: impl Fn(&[String]) -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = states(d, ids);
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < end,
            "not {what}: {s:?}\n{}",
            d.proc.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn queueing_keeps_at_most_n_downloading_and_a_seeding_limit_stops_a_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    // Three downloads nobody seeds (they never finish), and one whose data is there.
    let torrents: Vec<PathBuf> = (0..3)
        .map(|i| make_single(tmp.path(), &format!("q{i}.bin"), 30 + i, 40_000).1)
        .collect();
    let (data, seed_torrent) = make_single(tmp.path(), "s.bin", 40, 60_000);
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::copy(&data, downloads.join("s.bin")).unwrap();
    let cfg = tmp.path().join("bitpeer.toml");
    std::fs::write(&cfg, "max_active_downloads = 1\n").unwrap();
    let mut d = spawn_daemon(
        &tmp.path().join("state"),
        &downloads,
        &["--config", cfg.to_str().unwrap()],
    );
    let ids: Vec<u64> = torrents.iter().map(|t| add_b64(&d, t)).collect();
    let active = |s: &[String]| {
        s.iter()
            .filter(|s| *s != "queued" && *s != "paused")
            .count()
    };
    wait_states(&mut d, &ids, "one downloading, two queued", |s| {
        s[0] == "downloading" && s[1] == "queued" && s[2] == "queued"
    });
    // The last to the top of the queue: it takes the slot.
    let (s, v) = api_json(
        &d.api,
        "POST",
        &format!("/torrents/{}/queue", ids[2]),
        Some(json!({"position": "top"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["queue_position"], 1);
    wait_states(&mut d, &ids, "the third downloading", |s| {
        s[2] == "downloading" && s[0] == "queued" && s[1] == "queued"
    });
    // Force start runs one past the limit.
    let (s, _) = api_json(
        &d.api,
        "POST",
        &format!("/torrents/{}/force_start", ids[1]),
        None,
    );
    assert_eq!(s, 200);
    wait_states(&mut d, &ids, "two running", |s| {
        s[1] == "downloading" && active(s) == 2
    });
    // Pausing the first of the queue gives its slot to the next.
    cli(&d, &["pause", &ids[2].to_string()]).assert_success();
    wait_states(&mut d, &ids, "the first downloading again", |s| {
        s[0] == "downloading" && s[2] == "paused"
    });
    // A torrent whose data is there waits in the queue like any download until it is
    // checked; at the top it takes the slot, and once complete it seeds without one.
    let sid = add_b64(&d, &seed_torrent);
    assert_eq!(states(&d, &[sid]), ["queued"]);
    let (s, _) = api_json(
        &d.api,
        "POST",
        &format!("/torrents/{sid}/queue"),
        Some(json!({"position": "top"})),
    );
    assert_eq!(s, 200);
    wait_torrent(&mut d, sid, Duration::from_secs(30), "seeding", |t| {
        t["state"] == "seeding"
    });
    wait_states(&mut d, &ids, "the first downloading again", |s| {
        s[0] == "downloading"
    });
    // It stops at its seeding time.
    let (s, v) = api_json(
        &d.api,
        "PATCH",
        &format!("/torrents/{sid}"),
        Some(json!({"seeding_time_limit": 1})),
    );
    assert_eq!(s, 200, "{v}");
    wait_torrent(
        &mut d,
        sid,
        Duration::from_secs(30),
        "stopped by its seeding time",
        |t| t["state"] == "paused",
    );
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

/// A single-file torrent of `size` random bytes seeded by libtorrent (at most
/// `upload_limit` bytes per second, 0: no limit), added to a new daemon through the API;
/// (original file, seeder, daemon, torrent id). The torrent is downloading or done.
fn daemon_downloading(
    tmp: &Path,
    name: &str,
    seed: u64,
    size: usize,
    upload_limit: u64,
) -> (PathBuf, Proc, Daemon, u64) {
    let (data, t) = make_single(tmp, name, seed, size);
    let mut args = vec!["--seed".to_string()];
    if upload_limit > 0 {
        args.extend(["--upload-limit".to_string(), upload_limit.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (seeder, port) = spawn_lt_peer(&t, &tmp.join("seed"), &[], &args);
    let mut d = spawn_daemon(&tmp.join("state"), &tmp.join("dl"), &[]);
    let b64 = base64_std(&std::fs::read(&t).unwrap());
    let (s, v) = api_json(
        &d.api,
        "POST",
        "/torrents",
        Some(json!({"torrent_base64": b64, "peers": [format!("127.0.0.1:{port}")]})),
    );
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    wait_torrent(&mut d, id, Duration::from_secs(60), "started", |t| {
        t["state"] == "downloading" || t["state"] == "seeding"
    });
    (data, seeder, d, id)
}

#[test]
fn a_file_streams_with_range_requests_while_it_downloads() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let size = 4 << 20;
    let (data, _seeder, mut d, id) = daemon_downloading(tmp.path(), "v.bin", 50, size, 500_000);
    let before = torrent(&d, id);
    assert!(
        before["have_bytes"].as_u64().unwrap() < 2_000_000,
        "too fast to test: {before}"
    );
    // From the middle, while the download runs.
    let (status, body) = http(
        &d.api,
        "GET",
        &format!("/api/v1/torrents/{id}/files/0/stream"),
        &[("Range", "bytes=2000000-2999999")],
        b"",
    );
    assert_eq!(status, 206);
    let original = std::fs::read(&data).unwrap();
    assert!(
        body == original[2_000_000..3_000_000],
        "the streamed bytes differ ({} bytes)",
        body.len()
    );
    // The end of the file, and a range past it.
    let (status, body) = http(
        &d.api,
        "GET",
        &format!("/api/v1/torrents/{id}/files/0/stream"),
        &[("Range", "bytes=-1000")],
        b"",
    );
    assert_eq!(status, 206);
    assert!(body == original[size - 1000..]);
    let (status, _) = http(
        &d.api,
        "GET",
        &format!("/api/v1/torrents/{id}/files/0/stream"),
        &[("Range", &format!("bytes={size}-"))],
        b"",
    );
    assert_eq!(status, 416);
    let (status, _) = http(
        &d.api,
        "GET",
        &format!("/api/v1/torrents/{id}/files/1/stream"),
        &[],
        b"",
    );
    assert_eq!(status, 400);
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

/// `bitpeer move` moves a seeding torrent's files to another folder under the download
/// folder: it seeds again from there with every piece, and the old files are gone. A folder
/// outside the allowed ones is refused and nothing moves.
#[test]
fn move_takes_a_torrents_data_to_another_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().join("dl");
    let (data, t) = make_single(tmp.path(), "m.bin", 21, 300_000);
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::copy(&data, dl.join("m.bin")).unwrap();
    let mut d = spawn_daemon(&tmp.path().join("state"), &dl, &[]);
    let id = add_b64(&d, &t);
    wait_states(&mut d, &[id], "seeding", |s| s[0] == "seeding");
    let to = dl.join("archive");
    let out = cli(&d, &["move", &id.to_string(), to.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{}", out.explain());
    assert!(!dl.join("m.bin").exists(), "the old file is gone");
    assert_eq!(
        std::fs::read(to.join("m.bin")).unwrap(),
        std::fs::read(&data).unwrap()
    );
    wait_states(&mut d, &[id], "seeding again", |s| s[0] == "seeding");
    assert_eq!(torrent(&d, id)["progress"], 1.0);
    assert_eq!(torrent(&d, id)["save_path"], to.to_str().unwrap());
    // Outside the download folder: refused, nothing moves.
    let outside = tmp.path().join("outside");
    let bad = cli(&d, &["move", &id.to_string(), outside.to_str().unwrap()]);
    assert_eq!(bad.code(), Some(1), "{}", bad.explain());
    assert!(to.join("m.bin").exists() && !outside.exists());
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

#[test]
fn encryption_policy_from_the_flag_and_changed_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let d = spawn_daemon(
        &tmp.path().join("state"),
        &tmp.path().join("dl"),
        &["--encryption", "require"],
    );
    let (s, v) = api_json(&d.api, "GET", "/session", None);
    assert_eq!(s, 200);
    assert_eq!(v["encryption"], "require", "{v}");
    let (s, v) = api_json(
        &d.api,
        "PATCH",
        "/session",
        Some(json!({"encryption": "disable"})),
    );
    assert_eq!(s, 200);
    assert_eq!(v["encryption"], "disable", "{v}");
    let (s, _) = api_json(
        &d.api,
        "PATCH",
        "/session",
        Some(json!({"encryption": "sometimes"})),
    );
    assert_eq!(s, 400);
    let (_, v) = api_json(&d.api, "GET", "/session", None);
    assert_eq!(
        v["encryption"], "disable",
        "a bad value changes nothing: {v}"
    );
}

/// Two readers stream different parts of one file while it downloads slowly from a
/// libtorrent seeder: each gets its bytes (equal to the original) long before the torrent
/// completes, because the pieces just ahead of each reader are fetched first; the rest
/// keeps downloading and the whole file ends up equal to the original.
#[test]
fn two_readers_at_different_offsets_get_their_bytes_before_the_torrent_completes() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let size = 16 << 20;
    // About 20 s for the whole file.
    let (data, _seeder, mut d, id) = daemon_downloading(tmp.path(), "film.bin", 51, size, 800_000);
    let original = std::fs::read(&data).unwrap();
    // Two readers at once, far apart (the second one near the end of the file).
    let ranges = [(5_000_000usize, 5_600_000usize), (13_000_000, 13_600_000)];
    let readers: Vec<_> = ranges
        .iter()
        .map(|&(a, b)| {
            let api = d.api.clone();
            std::thread::spawn(move || {
                let (status, body) = http(
                    &api,
                    "GET",
                    &format!("/api/v1/torrents/{id}/files/0/stream"),
                    &[("Range", &format!("bytes={a}-{}", b - 1))],
                    b"",
                );
                (status, body)
            })
        })
        .collect();
    for (reader, &(a, b)) in readers.into_iter().zip(&ranges) {
        let (status, body) = reader.join().unwrap();
        assert_eq!(status, 206);
        assert!(
            body == original[a..b],
            "the bytes streamed from {a} differ ({} bytes)",
            body.len()
        );
    }
    // Both readers are served while most of the torrent is still missing: in rarest-first
    // (random) order their pieces would come near the end, sequentially the second
    // reader would wait for 13 MB first.
    let now = torrent(&d, id);
    let have = now["have_bytes"].as_u64().unwrap();
    assert!(
        have < size as u64 / 2,
        "the readers were served only after {have} of {size} bytes: {now}"
    );
    // The peers list (rates, transport) and the pieces' availability come from the engine.
    let (s, peers) = api_json(&d.api, "GET", &format!("/torrents/{id}/peers"), None);
    assert_eq!(s, 200, "{peers}");
    let seeder = &peers[0];
    assert_eq!(seeder["transport"], "tcp", "{peers}");
    assert_eq!(seeder["encrypted"], false, "{peers}");
    assert!(seeder["download_rate"].as_u64().unwrap() > 0, "{peers}");
    let (s, pieces) = api_json(&d.api, "GET", &format!("/torrents/{id}/pieces"), None);
    assert_eq!(s, 200);
    let availability = pieces["availability"].as_array().unwrap();
    assert_eq!(availability.len(), size / 32768);
    assert!(
        availability.iter().all(|a| a == 1),
        "the one seeder has every piece: {pieces}"
    );
    // The readers are gone and their windows with them: the rest downloads as usual.
    wait_torrent(&mut d, id, Duration::from_secs(120), "seeding", |t| {
        t["state"] == "seeding"
    });
    let path = tmp.path().join("dl").join("film.bin");
    assert!(
        std::fs::read(&path).unwrap() == original,
        "the file differs"
    );
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}

/// The payload totals and the seeding time survive a restart of the daemon (SIGTERM), and
/// keep counting from there.
#[test]
fn counters_survive_a_restart() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let size = 1 << 20;
    let (_data, _seeder, mut d, id) = daemon_downloading(tmp.path(), "c.bin", 52, size, 0);
    let (state, downloads) = (tmp.path().join("state"), tmp.path().join("dl"));
    let before = wait_torrent(&mut d, id, Duration::from_secs(60), "seeding 2 s", |t| {
        t["state"] == "seeding" && t["seeding_time"].as_u64().unwrap_or(0) >= 2
    });
    let downloaded = before["downloaded"].as_u64().unwrap();
    assert!(downloaded >= size as u64, "{before}");
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();

    let mut d = spawn_daemon(&state, &downloads, &[]);
    let after = wait_torrent(&mut d, id, Duration::from_secs(60), "seeding", |t| {
        t["state"] == "seeding"
    });
    assert_eq!(after["downloaded"].as_u64().unwrap(), downloaded, "{after}");
    assert!(after["seeding_time"].as_u64().unwrap() >= 2, "{after}");
    assert!(after["ratio"].as_f64().is_some());
    // And it keeps counting.
    wait_torrent(&mut d, id, Duration::from_secs(30), "seeding longer", |t| {
        t["seeding_time"].as_u64().unwrap() >= 4
    });
    d.proc.terminate(Duration::from_secs(20));
    d.proc.assert_no_panic();
}
