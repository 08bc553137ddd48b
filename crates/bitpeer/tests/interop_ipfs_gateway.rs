//! `bitpeer ipfs serve` is a Trustless Gateway real IPFS software fetches from: Helia 7
//! (npm, Node 22) with our gateway as its only block source gets a file and a folder byte
//! for byte, and refuses our gateway when a proxy flips a byte of its blocks. Also the
//! gateway's HTTP answers: formats, Accept, dag-scope, entity-bytes, 404, headers, probe.

mod common;
mod ipfs_util;

use std::fs;
use std::path::Path;
use std::process::Command;

use ipfs::car::CarReader;
use ipfs_util::{add, header, helia, http_get, same_tree, serve};

fn sample(root: &Path) -> std::path::PathBuf {
    let top = root.join("site");
    common::write_random(&top.join("big.bin"), 1, 5 * (1 << 20) + 3);
    common::write_random(&top.join("dir/Ünïcode name"), 2, 1000);
    fs::write(top.join("dir/empty"), b"").unwrap();
    fs::create_dir_all(top.join("empty-dir")).unwrap();
    top
}

fn helia_fetch(
    h: &ipfs_util::Helia,
    url: &str,
    cid: &str,
    out: &Path,
    flip: bool,
) -> common::Output {
    let mut cmd = Command::new(&h.node);
    cmd.arg(ipfs_util::interop_script("helia_fetch.mjs"))
        .arg(&h.dir)
        .arg(url)
        .arg(cid)
        .arg(out);
    if flip {
        cmd.arg("flip");
    }
    common::run(cmd, ipfs_util::HELIA_TIMEOUT)
}

#[test]
fn helia_fetches_from_our_gateway_and_refuses_a_lying_one() {
    let Some(h) = helia() else { return };
    let dir = tempfile::tempdir().unwrap();
    let top = sample(dir.path());
    let store = dir.path().join("store");
    let root = add(&store, &top);
    let file = add(&store, &top.join("big.bin"));
    let (_gateway, url) = serve(&store);

    let out = dir.path().join("folder-by-helia");
    helia_fetch(&h, &url, &root, &out, false).assert_success();
    same_tree(&top, &out);
    let out = dir.path().join("file-by-helia");
    helia_fetch(&h, &url, &file, &out, false).assert_success();
    same_tree(&top.join("big.bin"), &out);

    let out = dir.path().join("flipped");
    let run = helia_fetch(&h, &url, &file, &out, true);
    assert_eq!(
        run.code(),
        Some(3),
        "Helia accepted flipped blocks: {}",
        run.explain()
    );
    assert!(
        run.stderr_str().contains("helia refused"),
        "{}",
        run.explain()
    );
}

#[test]
fn gateway_answers_follow_the_trustless_spec() {
    let dir = tempfile::tempdir().unwrap();
    let top = sample(dir.path());
    let store = dir.path().join("store");
    let root = add(&store, &top);
    let (_gateway, url) = serve(&store);
    let car_blocks = |body: &[u8]| {
        let mut r = CarReader::new(body).unwrap();
        let roots = r.roots.clone();
        let mut n = 0;
        while let Some((cid, block)) = r.next_block().unwrap() {
            ipfs::verify_block(&cid, &block).unwrap();
            n += 1;
        }
        (roots, n)
    };

    // The probe: an identity CID of nothing.
    let (status, _, body) = http_get(&url, "GET", "/ipfs/bafkqaaa?format=raw", None);
    assert_eq!((status, body.len()), (200, 0));

    // A raw block, by format= and by Accept, with the headers clients rely on.
    let (status, h, body) = http_get(
        &url,
        "GET",
        &format!("/ipfs/{root}"),
        Some("application/vnd.ipld.raw"),
    );
    assert_eq!(status, 200);
    ipfs::verify_block(&ipfs::parse_cid(&root).unwrap(), &body).unwrap();
    assert_eq!(header(&h, "content-type"), Some("application/vnd.ipld.raw"));
    assert_eq!(header(&h, "etag"), Some(format!("\"{root}.raw\"").as_str()));
    assert!(header(&h, "cache-control").unwrap().contains("immutable"));
    assert!(
        header(&h, "content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let (_, _, body2) = http_get(
        &url,
        "GET",
        &format!("/ipfs/{root}?format=raw"),
        Some("text/html"),
    );
    assert_eq!(body, body2);

    // HEAD: the same status and type, no body.
    let (status, h, body) = http_get(&url, "HEAD", &format!("/ipfs/{root}?format=car"), None);
    assert_eq!((status, body.len()), (200, 0));
    assert!(
        header(&h, "content-type")
            .unwrap()
            .starts_with("application/vnd.ipld.car")
    );

    // CARs: the whole DAG, the folder alone, one block, a path, a byte range.
    let car = |q: &str| {
        let (status, h, body) = http_get(&url, "GET", &format!("/ipfs/{root}{q}"), None);
        assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&body));
        assert!(header(&h, "content-type").unwrap().contains("order=dfs"));
        car_blocks(&body)
    };
    let (roots, all) = car("?format=car");
    assert_eq!(roots[0].to_string(), root);
    // The root folder; big.bin: a file node over 6 raw leaves of 1 MiB; dir/ with two raw
    // files (one empty); empty-dir/.
    assert_eq!(all, 1 + 7 + 3 + 1);
    assert_eq!(car("?format=car&dag-scope=entity").1, 1);
    assert_eq!(car("?format=car&dag-scope=block").1, 1);
    // Path: the root folder, then the whole file.
    assert_eq!(car("/big.bin?format=car").1, 1 + 7);
    // Bytes 1 MiB .. 1 MiB + 10 live in the second leaf: root folder, file node, one leaf.
    assert_eq!(
        car("/big.bin?format=car&dag-scope=entity&entity-bytes=1048576:1048586").1,
        3
    );
    // The last byte: the last leaf.
    assert_eq!(
        car("/big.bin?format=car&dag-scope=entity&entity-bytes=-1:*").1,
        3
    );

    // Errors: missing root, missing path, no format, bad CID, CAR version 2, POST.
    let missing = ipfs::cid_of(ipfs::RAW, b"held by no one", false);
    for (target, accept, want) in [
        (format!("/ipfs/{missing}?format=raw"), None, 404),
        (format!("/ipfs/{missing}?format=car"), None, 404),
        (format!("/ipfs/{root}/nope?format=car"), None, 404),
        (format!("/ipfs/{root}"), Some("text/html"), 406),
        ("/ipfs/not-a-cid?format=raw".to_owned(), None, 400),
        (
            format!("/ipfs/{root}"),
            Some("application/vnd.ipld.car; version=2"),
            400,
        ),
        (format!("/ipfs/{root}/../x?format=car"), None, 400),
    ] {
        let (status, _, _) = http_get(&url, "GET", &target, accept);
        assert_eq!(status, want, "{target}");
    }
    let (status, _, _) = http_get(&url, "POST", &format!("/ipfs/{root}?format=raw"), None);
    assert_eq!(status, 405);
}
