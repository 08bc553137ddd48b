//! BEP 44 between `bitpeer dht put/get` and libtorrent, both ways, over a DHT on 127.0.0.1
//! made of three libtorrent nodes: a mutable item put by libtorrent (`dht_put_mutable_item`)
//! is read by `bitpeer dht get` with its seq and value, one put by `bitpeer dht put` is read
//! by libtorrent (`dht_get_mutable_item`), and immutable items go both ways through
//! bitpeer. Fails when libtorrent is missing, unless BITPEER_SKIP_INTEROP=1.

mod common;
#[path = "support/lt_dht.rs"]
mod lt_dht;

use std::process::Command;
use std::time::Duration;

use common::*;
use lt_dht::lt_network;
use serde_json::Value;

const MAX: Duration = Duration::from_secs(120);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `bitpeer dht ARGS --dht-bootstrap BOOT --listen 127.0.0.1:0 --json`, parsed.
fn bitpeer_dht(args: &[&str], boot: &str) -> (Output, Option<Value>) {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("dht")
        .args(args)
        .args(["--dht-bootstrap", boot, "--listen", "127.0.0.1:0", "--json"]);
    let out = run(cmd, Duration::from_secs(90));
    let json = serde_json::from_slice(&out.stdout).ok();
    (out, json)
}

#[test]
fn mutable_items_go_both_ways_between_libtorrent_and_bitpeer() {
    if !libtorrent_available() {
        return;
    }
    let mut lt = lt_network(&python(), 3, MAX);
    let boot = lt[1].addr();

    // libtorrent puts, bitpeer reads.
    let seed = [0x5au8; 32];
    let pk = dht::item::public_key(&seed);
    let salt = b"lt-salt";
    lt[0].send(&format!(
        "put_mutable {} {} {} from-libtorrent",
        hex(&seed),
        hex(&pk),
        hex(salt)
    ));
    let stored: u32 = lt[0].wait_line(MAX, |l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&"put")).then(|| w[3].parse().unwrap())
    });
    assert!(stored > 0, "libtorrent's put reached no node");
    let (out, json) = bitpeer_dht(&["get", &hex(&pk), "--salt-hex", &hex(salt)], &boot);
    out.assert_success();
    let json = json.expect("get --json prints JSON");
    assert_eq!(json["seq"], 1, "{json}");
    assert_eq!(json["value"], "from-libtorrent", "{json}");
    assert_eq!(json["key"], hex(&pk));
    // The text form prints the seq and the value too.
    let mut cmd = Command::new(bitpeer_bin());
    cmd.args(["dht", "get", &hex(&pk), "--salt", "lt-salt"])
        .args(["--dht-bootstrap", &boot, "--listen", "127.0.0.1:0"]);
    let out = run(cmd, Duration::from_secs(90));
    out.assert_success();
    assert_eq!(out.stdout_str(), "seq: 1\nvalue: from-libtorrent\n");

    // bitpeer puts (a new key file, created 0600), libtorrent reads.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sub/key");
    let (out, json) = bitpeer_dht(
        &[
            "put",
            "from-bitpeer",
            "--key",
            key_file.to_str().unwrap(),
            "--salt",
            "bp",
        ],
        &lt[2].addr(),
    );
    out.assert_success();
    let json = json.expect("put --json prints JSON");
    assert!(json["stored"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["seq"], 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let key = json["key"].as_str().unwrap().to_string();
    // A second put with the same key takes the next seq by itself.
    let (out, json) = bitpeer_dht(
        &[
            "put",
            "from-bitpeer-2",
            "--key",
            key_file.to_str().unwrap(),
            "--salt",
            "bp",
        ],
        &lt[0].addr(),
    );
    out.assert_success();
    assert_eq!(json.unwrap()["seq"], 2);
    lt[1].send(&format!("get_mutable {key} {}", hex(b"bp")));
    let want = hex(b"14:from-bitpeer-2");
    lt[1].wait_line(MAX, |l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&"mutable") && w[1] == key && w[2] == "2" && w[3] == want).then_some(())
    });

    // Immutable: put through one libtorrent node, read through another.
    let (out, json) = bitpeer_dht(&["put", "plain value"], &lt[0].addr());
    out.assert_success();
    let target = json.unwrap()["target"].as_str().unwrap().to_string();
    let (out, json) = bitpeer_dht(&["get", &target], &lt[2].addr());
    out.assert_success();
    assert_eq!(json.unwrap()["value"], "plain value");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for args in [
        vec!["dht", "get", "abc"],
        vec!["dht", "get", "zz"],
        vec!["dht", "put", "x", "--salt", "s"],
    ] {
        let mut cmd = Command::new(bitpeer_bin());
        cmd.args(&args)
            .args(["--dht-bootstrap", "127.0.0.1:9", "--listen", "127.0.0.1:0"]);
        let out = run(cmd, Duration::from_secs(30));
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.explain());
        assert!(out.stderr_str().starts_with("error: "), "{}", out.explain());
        assert_eq!(out.stderr_str().lines().count(), 1, "{}", out.explain());
    }
}
