//! `bitpeer info` and `bitpeer create` on bad input: exit code exactly 1 and exactly one
//! non-empty line on stderr starting with "error: " (exit 101 would be a panic).
//!
//! The bad torrents are written here by hand, byte by byte, so each one breaks exactly one
//! rule. A control checks that the hand-made good torrent they start from is accepted.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::*;

/// A well-formed single-file v1 torrent: 5 bytes, one piece of 16 KiB.
fn good_single() -> Vec<u8> {
    let mut t = b"d4:infod6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:pieces20:".to_vec();
    t.extend_from_slice(&[0xab; 20]);
    t.extend_from_slice(b"ee");
    t
}

/// A well-formed multi-file v1 torrent: files of 3 and 4 bytes in one piece.
fn good_multi() -> Vec<u8> {
    let mut t = b"d8:announce22:http://127.0.0.1:1/ann4:infod5:filesl".to_vec();
    t.extend_from_slice(b"d6:lengthi3e4:pathl1:a5:x.binee");
    t.extend_from_slice(b"d6:lengthi4e4:pathl5:y.binee");
    t.extend_from_slice(b"e4:name3:dir12:piece lengthi16384e6:pieces20:");
    t.extend_from_slice(&[0xcd; 20]);
    t.extend_from_slice(b"ee");
    t
}

/// A single-file torrent whose info dict is `d{middle}e`, sorted keys left to the caller.
fn torrent_with_info(middle: &[u8]) -> Vec<u8> {
    let mut t = b"d4:infod".to_vec();
    t.extend_from_slice(middle);
    t.extend_from_slice(b"ee");
    t
}

fn single_info(length: &str, name: &str, piece_length: &str, pieces: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(format!("6:length{length}").as_bytes());
    m.extend_from_slice(format!("4:name{name}").as_bytes());
    m.extend_from_slice(format!("12:piece length{piece_length}").as_bytes());
    m.extend_from_slice(format!("6:pieces{}:", pieces.len()).as_bytes());
    m.extend_from_slice(pieces);
    torrent_with_info(&m)
}

fn multi_info(files: &[u8]) -> Vec<u8> {
    let mut m = b"5:filesl".to_vec();
    m.extend_from_slice(files);
    m.extend_from_slice(b"e4:name3:dir12:piece lengthi16384e6:pieces20:");
    m.extend_from_slice(&[0xcd; 20]);
    torrent_with_info(&m)
}

/// Checks the error contract on one finished run.
fn assert_one_line_error(out: &Output, what: &str) {
    assert_eq!(
        out.code(),
        Some(1),
        "{what}: expected exit code 1 (101 means a panic): {}",
        out.explain()
    );
    let stderr = out.stderr_str();
    let line = stderr.strip_suffix('\n').unwrap_or(&stderr);
    assert!(
        !line.contains('\n'),
        "{what}: expected exactly one line on stderr: {}",
        out.explain()
    );
    assert!(
        line.starts_with("error: ") && line.len() > "error: ".len(),
        "{what}: stderr must be one non-empty line starting with \"error: \": {}",
        out.explain()
    );
}

/// `bitpeer info ARG` and `bitpeer info ARG --json` must both fail by the contract.
fn assert_info_rejects(arg: &OsStr, what: &str) {
    for json in [true, false] {
        let mut args = vec![OsStr::new("info"), arg];
        if json {
            args.push(OsStr::new("--json"));
        }
        let out = bitpeer(&args, None);
        assert_one_line_error(&out, &format!("{what} (--json: {json})"));
        if json {
            assert!(
                out.stdout.is_empty(),
                "{what}: nothing belongs on stdout: {}",
                out.explain()
            );
        }
    }
}

fn assert_torrent_rejected(dir: &Path, bytes: &[u8], what: &str) {
    let path = dir.join("bad.torrent");
    std::fs::write(&path, bytes).unwrap();
    assert_info_rejects(path.as_os_str(), what);
}

#[test]
fn hand_made_good_torrents_are_accepted() {
    // The control for the tests below: the torrents they break are good to begin with.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("good.torrent");
    std::fs::write(&path, good_single()).unwrap();
    let v = bitpeer_info_json(&path);
    assert_eq!(v["name"], "a.txt");
    assert_eq!(v["total_size"], 5);
    assert_eq!(v["piece_length"], 16384);
    assert_eq!(v["piece_count"], 1);
    assert_eq!(v["version"], "v1");
    assert_eq!(
        v["files"],
        serde_json::json!([{"path": "a.txt", "size": 5, "pad": false}])
    );

    std::fs::write(&path, good_multi()).unwrap();
    let v = bitpeer_info_json(&path);
    assert_eq!(v["name"], "dir");
    assert_eq!(v["total_size"], 7);
    assert_eq!(
        v["files"],
        serde_json::json!([
            {"path": "a/x.bin", "size": 3, "pad": false},
            {"path": "y.bin", "size": 4, "pad": false},
        ])
    );
    assert_eq!(
        v["trackers"],
        serde_json::json!([["http://127.0.0.1:1/ann"]])
    );

    // Without --json it prints something and exits 0.
    let out = bitpeer([OsStr::new("info"), path.as_os_str()], None);
    out.assert_success();
    assert!(!out.stdout.is_empty());
}

#[test]
fn garbage_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", vec![]),
        ("random bytes", pseudo_random(99, 4096)),
        (
            "random bytes after d",
            [b"d".to_vec(), pseudo_random(98, 4096)].concat(),
        ),
        ("text", b"hello, this is not a torrent\n".to_vec()),
        ("a bare integer", b"i42e".to_vec()),
        ("a bare string", b"4:spam".to_vec()),
        ("a list", b"l4:infoe".to_vec()),
        ("an empty dict", b"de".to_vec()),
        ("a NUL byte", vec![0]),
        ("a lone e", b"e".to_vec()),
        ("json", br#"{"info": {}}"#.to_vec()),
    ];
    for (what, bytes) in cases {
        assert_torrent_rejected(tmp.path(), &bytes, what);
    }
}

#[test]
fn every_truncation_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    for good in [good_single(), good_multi()] {
        for len in 0..good.len() {
            let what = format!("the first {len} of {} bytes of a good torrent", good.len());
            assert_torrent_rejected(tmp.path(), &good[..len], &what);
        }
    }
}

#[test]
fn wrong_types_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let p20 = [0xab; 20];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("info is an integer", b"d4:infoi1ee".to_vec()),
        ("info is a string", b"d4:info3:abce".to_vec()),
        ("info is a list", b"d4:infol6:lengthi5eee".to_vec()),
        ("no info", b"d8:announce22:http://127.0.0.1:1/anne".to_vec()),
        ("empty info", b"d4:infodee".to_vec()),
        (
            "length is a string",
            single_info("1:5", "5:a.txt", "i16384e", &p20),
        ),
        (
            "name is an integer",
            single_info("i5e", "i5e", "i16384e", &p20),
        ),
        (
            "name is a list",
            single_info("i5e", "l5:a.txte", "i16384e", &p20),
        ),
        (
            "piece length is a string",
            single_info("i5e", "5:a.txt", "5:16384", &p20),
        ),
        ("pieces is an integer", {
            torrent_with_info(b"6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:piecesi0e")
        }),
        (
            "no pieces",
            torrent_with_info(b"6:lengthi5e4:name5:a.txt12:piece lengthi16384e"),
        ),
        ("no piece length", {
            let mut m = b"6:lengthi5e4:name5:a.txt6:pieces20:".to_vec();
            m.extend_from_slice(&p20);
            torrent_with_info(&m)
        }),
        ("no name", {
            let mut m = b"6:lengthi5e12:piece lengthi16384e6:pieces20:".to_vec();
            m.extend_from_slice(&p20);
            torrent_with_info(&m)
        }),
        ("no length and no files", {
            let mut m = b"4:name5:a.txt12:piece lengthi16384e6:pieces20:".to_vec();
            m.extend_from_slice(&p20);
            torrent_with_info(&m)
        }),
        (
            "files is a dict",
            multi_info(b"").replace_first(b"5:filesle", b"5:filesde"),
        ),
        ("files entry is an integer", multi_info(b"i1e")),
        (
            "file path is a string",
            multi_info(b"d6:lengthi7e4:path5:x.bine"),
        ),
        (
            "file path element is an integer",
            multi_info(b"d6:lengthi7e4:pathli1eee"),
        ),
        ("file path is empty", multi_info(b"d6:lengthi7e4:pathlee")),
        (
            "file length is a string",
            multi_info(b"d6:length1:74:pathl5:x.binee"),
        ),
        ("file without length", multi_info(b"d4:pathl5:x.binee")),
        ("no files in files", multi_info(b"")),
    ];
    for (what, bytes) in cases {
        assert_torrent_rejected(tmp.path(), &bytes, what);
    }
}

/// `replace_first` on byte vectors, for tweaking one spot of a hand-made torrent.
trait ReplaceFirst {
    fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = self
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(from)));
        [&self[..at], to, &self[at + from.len()..]].concat()
    }
}

#[test]
fn bad_numbers_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let p20 = [0xab; 20];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "negative length",
            single_info("i-5e", "5:a.txt", "i16384e", &p20),
        ),
        ("zero length", single_info("i0e", "5:a.txt", "i16384e", &[])),
        (
            "zero length with a piece",
            single_info("i0e", "5:a.txt", "i16384e", &p20),
        ),
        (
            "negative file length",
            multi_info(b"d6:lengthi-7e4:pathl5:x.binee"),
        ),
        (
            "all files empty",
            multi_info(b"d6:lengthi0e4:pathl5:x.binee"),
        ),
        (
            "piece length zero",
            single_info("i5e", "5:a.txt", "i0e", &p20),
        ),
        (
            "piece length negative",
            single_info("i5e", "5:a.txt", "i-16384e", &p20),
        ),
        ("length -0", single_info("i-0e", "5:a.txt", "i16384e", &p20)),
        (
            "length with leading zero",
            single_info("i05e", "5:a.txt", "i16384e", &p20),
        ),
        (
            "empty integer",
            single_info("ie", "5:a.txt", "i16384e", &p20),
        ),
        (
            "integer with a sign only",
            single_info("i-e", "5:a.txt", "i16384e", &p20),
        ),
        (
            "integer with a letter",
            single_info("i5xe", "5:a.txt", "i16384e", &p20),
        ),
        (
            "huge length",
            single_info("i99999999999999999999999e", "5:a.txt", "i16384e", &p20),
        ),
        (
            "length past i64",
            single_info("i9223372036854775808e", "5:a.txt", "i16384e", &p20),
        ),
        (
            "huge piece length",
            single_info("i5e", "5:a.txt", "i9223372036854775807e", &p20),
        ),
        (
            "pieces of 19 bytes",
            single_info("i5e", "5:a.txt", "i16384e", &[1; 19]),
        ),
        (
            "pieces of 21 bytes",
            single_info("i5e", "5:a.txt", "i16384e", &[1; 21]),
        ),
        (
            "pieces of 0 bytes",
            single_info("i5e", "5:a.txt", "i16384e", &[]),
        ),
        (
            "two hashes for one piece",
            single_info("i5e", "5:a.txt", "i16384e", &[1; 40]),
        ),
        (
            "too few hashes",
            single_info("i40000e", "5:a.txt", "i16384e", &[1; 40]),
        ),
        (
            "total size overflows u64",
            multi_info(
                b"d6:lengthi9223372036854775807e4:pathl1:xeed6:lengthi9223372036854775807e\
                  4:pathl1:yeed6:lengthi9223372036854775807e4:pathl1:zee",
            ),
        ),
        (
            "string length past the end",
            b"d4:info99999999:abcde".to_vec(),
        ),
        (
            "string length of 2^64",
            b"d4:info18446744073709551616:xe".to_vec(),
        ),
        ("string length of 4 GiB", b"d4:info4294967296:xe".to_vec()),
        ("negative string length", b"d4:info-1:xe".to_vec()),
        (
            "string length with leading zero",
            single_info("i5e", "05:a.txt", "i16384e", &p20),
        ),
    ];
    for (what, bytes) in cases {
        assert_torrent_rejected(tmp.path(), &bytes, what);
    }
}

#[test]
fn deep_nesting_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 100_000;
    let open_lists = vec![b'l'; n];
    let closed_lists = [vec![b'l'; n], vec![b'e'; n]].concat();
    let dicts = [b"d1:a".repeat(n), b"i0e".to_vec(), vec![b'e'; n]].concat();
    let in_info = [b"d4:info".to_vec(), closed_lists.clone(), b"e".to_vec()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("100000 open lists", open_lists),
        ("100000 nested lists", closed_lists),
        ("100000 nested dicts", dicts),
        ("100000 nested lists as info", in_info),
    ];
    for (what, bytes) in cases {
        assert_torrent_rejected(tmp.path(), &bytes, what);
    }
}

/// A path as `bitpeer info --json` prints it must stay inside the download folder.
fn assert_safe_path(path: &str, what: &str) {
    assert!(!path.is_empty(), "{what}: empty path");
    assert!(!path.starts_with('/'), "{what}: absolute path {path:?}");
    assert!(!path.contains('\\'), "{what}: backslash in {path:?}");
    for part in path.split('/') {
        assert!(
            !part.is_empty() && part != "." && part != "..",
            "{what}: unsafe component {part:?} in {path:?}"
        );
    }
}

#[test]
fn unsafe_paths_are_rejected_or_repaired() {
    // A torrent whose files would land outside the download folder is hostile input. The
    // metainfo crate repairs what it can, like libtorrent (drops `..`, replaces separators)
    // and rejects what leaves nothing usable: either way no unsafe path may come out.
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "a .. path element",
            multi_info(b"d6:lengthi7e4:pathl2:..6:passwdee"),
            false,
        ),
        (
            "a lone .. path",
            multi_info(b"d6:lengthi7e4:pathl2:..ee"),
            true,
        ),
        (
            "only . and ..",
            multi_info(b"d6:lengthi7e4:pathl1:.2:..ee"),
            true,
        ),
        (
            "name ..",
            {
                let mut m = b"6:lengthi5e4:name2:..12:piece lengthi16384e6:pieces20:".to_vec();
                m.extend_from_slice(&[0xab; 20]);
                torrent_with_info(&m)
            },
            false,
        ),
        (
            "a path element with a slash",
            multi_info(b"d6:lengthi7e4:pathl9:../passwdee"),
            false,
        ),
        (
            "an absolute path element",
            multi_info(b"d6:lengthi7e4:pathl11:/etc/passwdee"),
            false,
        ),
        (
            "a backslash path element",
            multi_info(b"d6:lengthi7e4:pathl10:..\\..\\evilee"),
            false,
        ),
    ];
    for (what, bytes, must_reject) in cases {
        if must_reject {
            assert_torrent_rejected(tmp.path(), &bytes, what);
            continue;
        }
        let path = tmp.path().join("unsafe.torrent");
        std::fs::write(&path, &bytes).unwrap();
        let out = bitpeer(
            [OsStr::new("info"), path.as_os_str(), OsStr::new("--json")],
            None,
        );
        if out.code() != Some(0) {
            assert_one_line_error(&out, what);
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        check_info_schema(&v);
        let name = v["name"].as_str().unwrap();
        assert!(
            !name.contains('/') && name != ".." && name != ".",
            "{what}: name {name:?}"
        );
        for f in v["files"].as_array().unwrap() {
            assert_safe_path(f["path"].as_str().unwrap(), what);
        }
    }
}

#[test]
fn missing_and_unreadable_files_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("does-not-exist.torrent");
    assert_info_rejects(missing.as_os_str(), "a nonexistent file");
    assert_info_rejects(tmp.path().as_os_str(), "a folder");
    assert_info_rejects(OsStr::new(""), "an empty argument");
}

#[test]
fn bad_magnet_links_are_rejected() {
    let hex40 = "0123456789abcdef0123456789abcdef01234567";
    let hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cases: Vec<(&str, String)> = vec![
        ("bare scheme", "magnet:".into()),
        ("empty query", "magnet:?".into()),
        ("no xt", "magnet:?dn=hello".into()),
        ("empty btih", "magnet:?xt=urn:btih:".into()),
        (
            "btih of 39 hex digits",
            format!("magnet:?xt=urn:btih:{}", &hex40[..39]),
        ),
        (
            "btih of 41 hex digits",
            format!("magnet:?xt=urn:btih:{hex40}0"),
        ),
        (
            "btih of non-hex",
            format!("magnet:?xt=urn:btih:{}", "z".repeat(40)),
        ),
        (
            "btih of bad base32",
            format!("magnet:?xt=urn:btih:{}", "1".repeat(32)),
        ),
        ("unknown urn", format!("magnet:?xt=urn:sha1:{hex40}")),
        ("xt without urn", format!("magnet:?xt={hex40}")),
        (
            "btmh with a sha1 multihash",
            format!("magnet:?xt=urn:btmh:1114{hex40}"),
        ),
        (
            "btmh without multihash prefix",
            format!("magnet:?xt=urn:btmh:{hex64}"),
        ),
        (
            "btmh too short",
            format!("magnet:?xt=urn:btmh:1220{}", &hex64[..62]),
        ),
        (
            "btmh non-hex",
            format!("magnet:?xt=urn:btmh:1220{}", "g".repeat(64)),
        ),
        ("broken percent escape", "magnet:?xt=urn:btih:%zz".into()),
        (
            "not a magnet scheme",
            format!("magnot:?xt=urn:btih:{hex40}"),
        ),
        (
            "huge magnet",
            format!("magnet:?xt=urn:btih:{}", "a".repeat(100_000)),
        ),
    ];
    for (what, magnet) in cases {
        assert_info_rejects(OsStr::new(&magnet), what);
    }
}

#[test]
fn good_magnet_links_are_accepted() {
    // Controls for the test above.
    let hex40 = "0123456789abcdef0123456789abcdef01234567";
    let v = bitpeer_info_json(format!("magnet:?xt=urn:btih:{hex40}&dn=hello"));
    assert_eq!(v["version"], "magnet");
    assert_eq!(v["info_hash_v1"], hex40);
    assert_eq!(v["name"], "hello");
    // Upper-case hex and base32 (BEP 9) name the same info-hash.
    let v = bitpeer_info_json(format!("magnet:?xt=urn:btih:{}", hex40.to_uppercase()));
    assert_eq!(v["info_hash_v1"], hex40);
    let v = bitpeer_info_json("magnet:?xt=urn:btih:AERUKZ4JVPG66AJDIVTYTK6N54ASGRLH");
    assert_eq!(v["info_hash_v1"], hex40);
}

#[test]
fn create_rejects_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.torrent");
    let missing = tmp.path().join("missing");
    let empty_dir = tmp.path().join("empty-dir");
    std::fs::create_dir(&empty_dir).unwrap();
    let data = tmp.path().join("data.bin");
    write_random(&data, 5, 1000);
    let o = out.as_os_str();
    let out_in_missing = missing.join("x.torrent");
    let cases: Vec<(&str, Vec<&OsStr>)> = vec![
        (
            "a nonexistent path",
            vec![missing.as_os_str(), "-o".as_ref(), o],
        ),
        (
            "an empty folder",
            vec![empty_dir.as_os_str(), "-o".as_ref(), o],
        ),
        (
            "piece length zero",
            vec![
                data.as_os_str(),
                "-o".as_ref(),
                o,
                "--piece-length".as_ref(),
                "0".as_ref(),
            ],
        ),
        (
            "an output in a missing folder",
            vec![data.as_os_str(), "-o".as_ref(), out_in_missing.as_os_str()],
        ),
    ];
    for (what, args) in cases {
        let mut full = vec![OsStr::new("create")];
        full.extend(args);
        let out = bitpeer(&full, None);
        assert_one_line_error(&out, &format!("create with {what}"));
    }
}

#[test]
fn create_without_output_writes_name_torrent_in_cwd() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").join("movie.bin");
    write_random(&data, 6, 100_000);
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    bitpeer([OsStr::new("create"), data.as_os_str()], Some(&cwd)).assert_success();
    let written = cwd.join("movie.bin.torrent");
    assert!(
        written.is_file(),
        "no movie.bin.torrent in the current folder"
    );
    let v = bitpeer_info_json(&written);
    assert_eq!(v["name"], "movie.bin");
    assert_eq!(v["total_size"], 100_000);
}
