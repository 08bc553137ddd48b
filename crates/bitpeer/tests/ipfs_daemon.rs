//! IPFS in `bitpeer daemon` (the real binary): with `[ipfs] gateway = true` the daemon
//! serves its block store as a Trustless Gateway, and with `add_on_complete = true` a
//! completed torrent's content is imported (pieces checked) so its CID shows in the API.
//! Helia 7 (npm, Node 22), with the daemon's gateway as its only block source, fetches that
//! content byte for byte; a CAR imported into the daemon's store while it runs is served
//! back block for block.

mod common;
mod ipfs_util;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ipfs::car::CarReader;
use ipfs_util::{header, http_get, same_tree};

fn write_config(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

/// `bitpeer daemon --config CONFIG` on free loopback ports (no DHT, LSD or trackers): the
/// process, its API's HOST:PORT and the gateway's base URL, from the two lines it prints.
fn daemon_with_gateway(
    state: &Path,
    downloads: &Path,
    config: &Path,
) -> (common::Proc, String, String) {
    let cmd = common::daemon_command(state, downloads, &["--config", config.to_str().unwrap()]);
    let mut proc = common::Proc::spawn(cmd, common::DAEMON_TIMEOUT);
    let url = proc.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("gateway listening on ").map(str::to_owned)
    });
    let api = proc.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("api listening on http://")
            .map(str::to_owned)
    });
    (proc, api, url)
}

/// `bitpeer ARGS` with the API's credentials in the environment.
fn bitpeer(args: &[&str]) -> common::Output {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(args)
        .env("BITPEER_API_USER", "admin")
        .env("BITPEER_API_PASSWORD", "s3cret");
    common::run(cmd, common::BITPEER_TIMEOUT)
}

/// The daemon's torrent list (`bitpeer ls --json`).
fn ls(api: &str) -> serde_json::Value {
    let out = bitpeer(&["ls", "--json", "--api", &format!("http://{api}")]);
    out.assert_success();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls the daemon's torrent list until its one torrent has a CID.
fn wait_cid(proc: &mut common::Proc, api: &str) -> String {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let list = ls(api);
        if let Some(cid) = list[0]["ipfs_cid"].as_str() {
            return cid.to_owned();
        }
        assert!(
            Instant::now() < end,
            "no ipfs_cid within 120 s: {list}\n{}",
            proc.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn car_blocks(body: &[u8]) -> Vec<(ipfs::Cid, Vec<u8>)> {
    let mut r = CarReader::new(body).unwrap();
    let mut blocks = Vec::new();
    while let Some((cid, block)) = r.next_block().unwrap() {
        ipfs::verify_block(&cid, &block).unwrap();
        blocks.push((cid, block));
    }
    blocks
}

#[test]
fn daemon_bridges_a_completed_torrent_and_helia_fetches_it_from_the_daemons_gateway() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon's default state folder, as `bitpeer info` finds it too.
    let xdg = dir.path().join("xdg");
    let state = xdg.join("bitpeer");
    let downloads = dir.path().join("dl");
    let top = downloads.join("album");
    common::write_random(&top.join("01 intro.flac"), 1, 3_000_000);
    common::write_random(&top.join("art/cover.jpg"), 2, 200_000);
    common::write_random(&top.join("Ünïcode notes.txt"), 3, 1234);
    let torrent = dir.path().join("album.torrent");
    common::bitpeer_create(&top, &torrent, &["--piece-length", "65536"]);
    let expected = ipfs_util::bitpeer_cid("unixfs-v1-2025", &top);

    // The gateway on the API's address (loopback: no credentials asked for /ipfs/, even
    // though the API has them).
    let config = dir.path().join("bitpeer.toml");
    write_config(
        &config,
        "api_user = \"admin\"\napi_password = \"s3cret\"\n\
         [ipfs]\ngateway = true\nadd_on_complete = true\n",
    );
    let printed = bitpeer(&[
        "daemon",
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--print-config",
    ]);
    printed.assert_success();
    let text = printed.stdout_str();
    assert!(
        text.contains("[ipfs]") && text.contains("gateway = true"),
        "{text}"
    );
    let store = state.join("ipfs");
    assert!(
        text.contains(&format!("store = {:?}", store.to_str().unwrap())),
        "{text}"
    );

    let (mut d, api, url) = daemon_with_gateway(&state, &downloads, &config);
    assert_eq!(url, format!("http://{api}"));

    // The torrent's data is there already: it completes on its check, then the bridge
    // imports it.
    bitpeer(&[
        "add",
        torrent.to_str().unwrap(),
        "--api",
        &format!("http://{api}"),
    ])
    .assert_success();
    let cid = wait_cid(&mut d, &api);
    assert_eq!(cid, expected);

    // The probe and a raw block, without credentials; the API itself still asks for them.
    let (status, _, _) = http_get(&url, "GET", "/ipfs/bafkqaaa?format=raw", None);
    assert_eq!(status, 200);
    let (status, h, body) = http_get(&url, "GET", &format!("/ipfs/{cid}?format=raw"), None);
    assert_eq!(status, 200);
    ipfs::verify_block(&ipfs::parse_cid(&cid).unwrap(), &body).unwrap();
    assert!(header(&h, "cache-control").unwrap().contains("immutable"));
    let (status, _, _) = http_get(&url, "GET", "/api/v1/torrents", None);
    assert_eq!(status, 401);
    // Read-only.
    let (status, _, _) = http_get(&url, "POST", &format!("/ipfs/{cid}?format=raw"), None);
    assert_eq!(status, 405);

    // The whole DAG as a CAR: every block verified, the file's bytes in it.
    let (status, _, body) = http_get(&url, "GET", &format!("/ipfs/{cid}?format=car"), None);
    assert_eq!(status, 200);
    let blocks = car_blocks(&body);
    assert_eq!(blocks[0].0.to_string(), cid);
    let cover = fs::read(top.join("art/cover.jpg")).unwrap();
    assert!(blocks.iter().any(|(_, b)| *b == cover));

    // `bitpeer info` (same state folder) shows the CID the daemon recorded.
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(["info", "--json", torrent.to_str().unwrap()])
        .env("XDG_STATE_HOME", &xdg);
    let info = common::run(cmd, common::BITPEER_TIMEOUT);
    info.assert_success();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["ipfs_cid"].as_str(), Some(cid.as_str()), "{v}");

    // A CAR imported into the daemon's store while it runs is served back.
    let other = dir.path().join("other");
    common::write_random(&other.join("x.bin"), 9, 2_500_000);
    let side_store = dir.path().join("side-store");
    let other_cid = ipfs_util::add(&side_store, &other);
    let car = dir.path().join("other.car");
    bitpeer(&[
        "ipfs",
        "export",
        &other_cid,
        "--car",
        car.to_str().unwrap(),
        "--store",
        side_store.to_str().unwrap(),
    ])
    .assert_success();
    bitpeer(&[
        "ipfs",
        "import",
        "--car",
        car.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ])
    .assert_success();
    let (status, _, body) = http_get(&url, "GET", &format!("/ipfs/{other_cid}?format=car"), None);
    assert_eq!(status, 200);
    let served = car_blocks(&body);
    let original = car_blocks(&fs::read(&car).unwrap());
    assert_eq!(served, original);

    // Helia, with the daemon's gateway as its only block source.
    let Some(h) = ipfs_util::helia() else { return };
    let out = dir.path().join("by-helia");
    let mut cmd = Command::new(&h.node);
    cmd.arg(ipfs_util::interop_script("helia_fetch.mjs"))
        .arg(&h.dir)
        .arg(&url)
        .arg(&cid)
        .arg(&out);
    common::run(cmd, ipfs_util::HELIA_TIMEOUT).assert_success();
    same_tree(&top, &out);
}

#[test]
fn gateway_on_its_own_address_serves_only_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let downloads = dir.path().join("dl");
    let store = dir.path().join("blocks");
    let content = dir.path().join("site");
    common::write_random(&content.join("a.bin"), 4, 1_500_000);
    fs::write(content.join("b.txt"), b"hello").unwrap();
    let cid = ipfs_util::add(&store, &content);

    let config = dir.path().join("bitpeer.toml");
    write_config(
        &config,
        &format!(
            "[ipfs]\ngateway = true\ngateway_listen = \"127.0.0.1:0\"\nstore = {:?}\n",
            store.to_str().unwrap()
        ),
    );
    let (_d, api, url) = daemon_with_gateway(&state, &downloads, &config);
    assert_ne!(url, format!("http://{api}"));

    let (status, _, body) = http_get(&url, "GET", &format!("/ipfs/{cid}/b.txt?format=car"), None);
    assert_eq!(status, 200);
    let blocks = car_blocks(&body);
    assert_eq!(blocks.last().unwrap().1, b"hello");
    let missing = ipfs::cid_of(ipfs::RAW, b"nobody has this", false);
    let (status, _, _) = http_get(&url, "GET", &format!("/ipfs/{missing}?format=raw"), None);
    assert_eq!(status, 404);
    // Only the gateway there: no API, no web UI.
    let (status, _, _) = http_get(&url, "GET", "/api/v1/torrents", None);
    assert_eq!(status, 404);
    // And the API's address has no gateway.
    let (status, _, _) = http_get(
        &format!("http://{api}"),
        "GET",
        &format!("/ipfs/{cid}?format=raw"),
        None,
    );
    assert_ne!(status, 200);
}

#[test]
fn bad_ipfs_config_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitpeer.toml");
    for (text, want) in [
        ("[ipfs]\nprofile = \"nope\"\n", "ipfs.profile"),
        (
            "[ipfs]\ngateway_listen = \"127.0.0.1:0\"\n",
            "ipfs.gateway is false",
        ),
        ("[ipfs]\ngatway = true\n", "unknown field"),
    ] {
        write_config(&config, text);
        let cmd = common::daemon_command(
            &dir.path().join("state"),
            &dir.path().join("dl"),
            &["--config", config.to_str().unwrap()],
        );
        let out = common::run(cmd, common::BITPEER_TIMEOUT);
        assert_eq!(out.code(), Some(1), "{text}: {}", out.explain());
        assert!(out.stderr_str().contains(want), "{text}: {}", out.explain());
    }
}

/// Several completed torrents are imported one after another (one import at a time, the
/// others on later passes), and each gets its own CID.
#[test]
fn the_bridge_imports_every_completed_torrent_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let downloads = dir.path().join("dl");
    let config = dir.path().join("bitpeer.toml");
    write_config(
        &config,
        "api_user = \"admin\"\napi_password = \"s3cret\"\n[ipfs]\nadd_on_complete = true\n",
    );
    let mut expected = std::collections::BTreeMap::new();
    let (mut d, api) = {
        let mut torrents = Vec::new();
        for i in 0..3u64 {
            let data = downloads.join(format!("part-{i}.bin"));
            common::write_random(&data, 40 + i, 300_000 + 7 * i as usize);
            let torrent = dir.path().join(format!("part-{i}.torrent"));
            common::bitpeer_create(&data, &torrent, &[]);
            expected.insert(
                format!("part-{i}.bin"),
                ipfs_util::bitpeer_cid("unixfs-v1-2025", &data),
            );
            torrents.push(torrent);
        }
        let mut cmd =
            common::daemon_command(&state, &downloads, &["--config", config.to_str().unwrap()]);
        cmd.env("BITPEER_API_USER", "admin")
            .env("BITPEER_API_PASSWORD", "s3cret");
        let mut proc = common::Proc::spawn(cmd, common::DAEMON_TIMEOUT);
        let api = proc.wait_line(Duration::from_secs(60), |l| {
            l.strip_prefix("api listening on http://")
                .map(str::to_owned)
        });
        for t in &torrents {
            bitpeer(&[
                "add",
                t.to_str().unwrap(),
                "--api",
                &format!("http://{api}"),
            ])
            .assert_success();
        }
        (proc, api)
    };
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let list = ls(&api);
        let got: std::collections::BTreeMap<String, String> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| {
                Some((
                    t["name"].as_str()?.to_owned(),
                    t["ipfs_cid"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if got.len() == expected.len() {
            assert_eq!(got, expected);
            break;
        }
        assert!(
            Instant::now() < end,
            "not every torrent got its CID within 120 s: {list}\n{}",
            d.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    d.assert_no_panic();
}
