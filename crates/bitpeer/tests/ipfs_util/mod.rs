//! Helpers of the IPFS interop tests: where scripts/install-ipfs.sh put the real IPFS
//! software (npm packages pinned into cache folders), and running it under a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Output};

/// Deadline for one run of Helia's importer (a 1 GiB sparse file takes ~5 s here).
pub const HELIA_TIMEOUT: Duration = Duration::from_secs(180);

/// `${XDG_CACHE_HOME:-$HOME/.cache}/bitpeer`, where scripts/install-ipfs.sh installs.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("bitpeer")
}

/// The npm folder of Helia's UnixFS importer, if installed (else panics, or returns None
/// with a notice under BITPEER_SKIP_INTEROP=1).
pub fn importer_dir() -> Option<PathBuf> {
    let dir = cache_dir().join("npm-ipfs-importer");
    let ok = dir
        .join("node_modules/ipfs-unixfs-importer/package.json")
        .is_file()
        && Command::new("node").arg("--version").output().is_ok();
    let why = format!(
        "Helia's importer is not installed in {} (run scripts/install-ipfs.sh)",
        dir.display()
    );
    common::available_or_fail(ok, &why).then_some(dir)
}

pub fn interop_script(name: &str) -> PathBuf {
    common::interop_dir().join(name)
}

/// The root CID Helia's importer gives `path` with `profile`.
pub fn helia_cid(npm: &Path, profile: &str, path: &Path) -> String {
    let mut cmd = Command::new("node");
    cmd.arg(interop_script("helia_import.mjs"))
        .arg(npm)
        .arg(profile)
        .arg(path);
    let out = common::run(cmd, HELIA_TIMEOUT);
    out.assert_success();
    last_line(&out)
}

/// `bitpeer ipfs add --only-hash --profile PROFILE PATH`'s root CID.
pub fn bitpeer_cid(profile: &str, path: &Path) -> String {
    let out = bitpeer_ok(&[
        "ipfs".as_ref(),
        "add".as_ref(),
        "--only-hash".as_ref(),
        "--profile".as_ref(),
        profile.as_ref(),
        path.as_os_str(),
    ]);
    last_line(&out)
}

pub fn bitpeer_ok(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(args);
    let out = common::run(cmd, HELIA_TIMEOUT);
    out.assert_success();
    out
}

pub fn last_line(out: &Output) -> String {
    out.stdout_str()
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{} printed nothing: {}", out.desc, out.explain()))
        .trim()
        .to_owned()
}

/// The npm folder of Helia 7 and the Node 22 binary npm's `node` package put there.
pub struct Helia {
    pub dir: PathBuf,
    pub node: PathBuf,
}

pub fn helia() -> Option<Helia> {
    let dir = cache_dir().join("npm-helia");
    let node = dir.join("node_modules/node/bin/node");
    let ok = dir.join("node_modules/helia/package.json").is_file() && node.is_file();
    let why = format!(
        "Helia and Node 22 are not installed in {} (run scripts/install-ipfs.sh)",
        dir.display()
    );
    common::available_or_fail(ok, &why).then_some(Helia { dir, node })
}

/// `bitpeer ipfs serve --store STORE --http 127.0.0.1:0`, and its base URL once it listens.
pub fn serve(store: &Path) -> (common::Proc, String) {
    let mut cmd = Command::new(common::bitpeer_bin());
    cmd.args(["ipfs", "serve", "--http", "127.0.0.1:0", "--store"])
        .arg(store);
    let mut proc = common::Proc::spawn(cmd, Duration::from_secs(600));
    let url = proc.wait_line(Duration::from_secs(30), |l| {
        l.strip_prefix("gateway listening on ").map(str::to_owned)
    });
    (proc, url)
}

/// `bitpeer ipfs add --store STORE PATH`'s root CID.
pub fn add(store: &Path, path: &Path) -> String {
    let out = bitpeer_ok(&[
        "ipfs".as_ref(),
        "add".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
        path.as_os_str(),
    ]);
    last_line(&out)
}

/// One HTTP/1.1 request to `url` (http://HOST:PORT) over a plain socket: (status, headers
/// with lower-case names, body). Bounded by a 30 s deadline.
pub fn http_get(
    url: &str,
    method: &str,
    target: &str,
    accept: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let host = url.strip_prefix("http://").expect("http URL");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(a) = accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        b = &b[end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Asserts `b` holds the same files and folders as `a`, byte for byte.
pub fn same_tree(a: &Path, b: &Path) {
    if a.is_dir() {
        assert!(b.is_dir(), "{} is not a folder", b.display());
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(a), names(b), "{}", b.display());
        for n in names(a) {
            same_tree(&a.join(&n), &b.join(&n));
        }
    } else {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs",
            b.display()
        );
    }
}

/// A sparse file of `len` bytes, zero but for a few random bytes: big DAGs cost no disk.
fn sparse(path: &Path, len: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (i, at) in [0, len / 3, len.saturating_sub(7)].into_iter().enumerate() {
        f.write_all_at(&common::pseudo_random(i as u64, 7), at)
            .unwrap();
    }
}

/// Files of `len` bytes around chunk and node boundaries for a profile of `chunk`-byte
/// chunks and `links` links per node: (name, size).
pub fn file_cases(chunk: u64, links: u64) -> [(&'static str, u64); 6] {
    [
        ("empty", 0),
        ("one-byte", 1),
        ("one-chunk", chunk),
        ("chunk-plus-one", chunk + 1),
        ("large-random", 20 * (1 << 20) + 12_345),
        // One full node of leaves plus one more chunk: the root is two levels up.
        ("two-level", chunk * links + 1),
    ]
}

/// Writes file case `name` of `len` bytes at `path` (the two-level one sparse).
pub fn write_case(path: &Path, name: &str, len: u64) {
    if name == "two-level" {
        sparse(path, len);
    } else {
        common::write_random(path, len, len as usize);
    }
}

/// A nested folder with an empty subfolder and non-ASCII and upper/lower-case names.
pub fn nested_folder(root: &Path) -> PathBuf {
    let top = root.join("nested");
    let w = |rel: &str, seed: u64, len: usize| common::write_random(&top.join(rel), seed, len);
    w("a.txt", 1, 10);
    w("A.txt", 2, 11);
    w("b", 3, 300_000);
    w("B", 4, 0);
    w("Zebra", 5, 1);
    w("café/crème brûlée.md", 6, 2_000_000);
    w("日本語/ファイル", 7, 262_145);
    w("deep/er/still/x", 8, 5);
    w("deep/y", 9, 1 << 20);
    std::fs::create_dir_all(top.join("empty")).unwrap();
    std::fs::create_dir_all(top.join("deep/er/void")).unwrap();
    top
}

/// A folder of 5000 entries of ~70 estimated bytes each: well past the 256 KiB threshold,
/// with sub-shards where names collide on the first byte of their hash; a subfolder with
/// content and an empty one among them.
pub fn sharded_folder(root: &Path) -> PathBuf {
    let top = root.join("sharded");
    std::fs::create_dir_all(top.join("sub dir")).unwrap();
    std::fs::write(top.join("sub dir/inner"), b"inner").unwrap();
    std::fs::create_dir_all(top.join("empty")).unwrap();
    for i in 0..5000u32 {
        let name = format!("a-file-with-a-rather-long-name-{i:05}.txt");
        std::fs::write(top.join(name), i.to_le_bytes()).unwrap();
    }
    top
}
