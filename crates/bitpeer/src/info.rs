//! `bitpeer info TORRENT|MAGNET`: what a torrent holds, for people or (`--json`) scripts.

use crate::{CliError, CliResult, units};
use metainfo::{Magnet, Metainfo};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file or a magnet link.
    torrent: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let report = if args
        .torrent
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        let m = Magnet::parse(&args.torrent).map_err(|e| CliError::new(e.to_string()))?;
        of_magnet(&m)
    } else {
        let bytes = read_torrent_file(&args.torrent)?;
        let m = Metainfo::from_bytes(&bytes)
            .map_err(|e| CliError::new(format!("{}: invalid torrent: {e}", args.torrent)))?;
        of_torrent(&m)
    };
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    Ok(())
}

/// Read a .torrent file, refusing anything larger than the metainfo limit before reading it.
pub fn read_torrent_file(path: &str) -> CliResult<Vec<u8>> {
    use std::io::Read;
    let max = metainfo::Limits::default().max_torrent_bytes;
    let f = std::fs::File::open(path).map_err(|e| CliError::new(format!("{path}: {e}")))?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::new(format!("{path}: {e}")))?;
    if bytes.len() > max {
        return Err(CliError::new(format!(
            "{path}: invalid torrent: larger than {max} bytes"
        )));
    }
    Ok(bytes)
}

/// The magnet link that stands for a torrent: its hashes, name, trackers and web seeds.
pub fn magnet_of(m: &Metainfo) -> Magnet {
    Magnet {
        info_hashes: m.info_hashes,
        display_name: Some(m.info.name.clone()),
        trackers: m.trackers.iter().flatten().cloned().collect(),
        web_seeds: m.web_seeds.clone(),
        peers: Vec::new(),
        select_only: Vec::new(),
    }
}

fn of_torrent(m: &Metainfo) -> Value {
    // The CID `bitpeer ipfs add --torrent` recorded for this torrent's content, if any.
    let ipfs_cid = [
        m.info_hashes.get_v1().map(|h| h.to_hex()),
        m.info_hashes.get_v2().map(|h| h.to_hex()),
    ]
    .into_iter()
    .flatten()
    .find_map(|h| crate::ipfs::known_cid(&h));
    let files: Vec<Value> = m
        .info
        .files
        .iter()
        .map(|f| json!({"path": f.display_path(), "size": f.length, "pad": f.attr.pad}))
        .collect();
    json!({
        "name": m.info.name,
        "total_size": m.info.total_length,
        "piece_length": m.info.piece_length,
        "piece_count": m.info.piece_count(),
        "private": m.info.private,
        "version": m.info.version.as_str(),
        "info_hash_v1": m.info_hashes.get_v1().map(|h| h.to_hex()),
        "info_hash_v2": m.info_hashes.get_v2().map(|h| h.to_hex()),
        "files": files,
        "trackers": m.trackers,
        "web_seeds": m.web_seeds,
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "magnet": magnet_of(m).to_string(),
        "ipfs_cid": ipfs_cid,
    })
}

fn of_magnet(m: &Magnet) -> Value {
    let trackers: Vec<Vec<&String>> = m.trackers.iter().map(|t| vec![t]).collect();
    json!({
        // Until the metadata arrives, a magnet link without `dn` is known by its hash.
        "name": m.display_name.clone().unwrap_or_else(|| m.info_hashes.get_v1().map_or_else(
            || m.info_hashes.get_v2().map(|h| h.to_hex()).unwrap_or_default(),
            |h| h.to_hex(),
        )),
        "total_size": null,
        "piece_length": null,
        "piece_count": null,
        "private": false,
        "version": "magnet",
        "info_hash_v1": m.info_hashes.get_v1().map(|h| h.to_hex()),
        "info_hash_v2": m.info_hashes.get_v2().map(|h| h.to_hex()),
        "files": [],
        "trackers": trackers,
        "web_seeds": m.web_seeds,
        "peers": m.peers,
        "comment": null,
        "magnet": m.to_string(),
    })
}

fn print_text(r: &Value) {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let n = |k: &str| r[k].as_u64();
    println!("name          {}", s("name"));
    if let Some(h) = r["info_hash_v1"].as_str() {
        println!("info-hash v1  {h}");
    }
    if let Some(h) = r["info_hash_v2"].as_str() {
        println!("info-hash v2  {h}");
    }
    println!("version       {}", s("version"));
    if let (Some(total), Some(pl), Some(pc)) =
        (n("total_size"), n("piece_length"), n("piece_count"))
    {
        println!("size          {} ({total} bytes)", units::size(total));
        println!("pieces        {pc} x {}", units::size(pl));
        println!(
            "private       {}",
            if r["private"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    if let Some(c) = r["comment"].as_str() {
        println!("comment       {c}");
    }
    for (i, tier) in r["trackers"].as_array().into_iter().flatten().enumerate() {
        let urls: Vec<&str> = tier
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!("tracker       tier {}: {}", i + 1, urls.join(" "));
    }
    for w in r["web_seeds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        println!("web seed      {w}");
    }
    for p in r["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        println!("peer          {p}");
    }
    let files = r["files"].as_array().cloned().unwrap_or_default();
    // Each file with its index, as `download --only` takes it (pad files keep their
    // index but are not shown).
    let shown: Vec<(usize, &Value)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f["pad"].as_bool() != Some(true))
        .collect();
    if !shown.is_empty() {
        println!("files         {}", shown.len());
        for (i, f) in shown {
            println!(
                "  {:>4}  {:>12}  {}",
                i,
                units::size(f["size"].as_u64().unwrap_or(0)),
                f["path"].as_str().unwrap_or("")
            );
        }
    }
    println!("magnet        {}", s("magnet"));
    if let Some(cid) = r["ipfs_cid"].as_str() {
        println!("ipfs cid      {cid}");
    }
}
